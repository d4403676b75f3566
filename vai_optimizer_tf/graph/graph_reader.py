"""`GraphReader`: the walk over a Keras model's graph that every flavour shares.

tf_keras and Keras 3 store a model's graph alike under other names: nodes by
depth, each a call of a layer (or, in Keras 3, of a `keras.ops` operation)
on symbolic tensors whose `_keras_history` names the call that made them.
`GraphReader` reads it into the neutral `Graph` IR once for both, with nested
models, shared layers and input signatures; a flavour's adapter implements
the small hooks that say where its Keras keeps each thing. It is the base of
`ModelAdapter`, which adds rebuilding.
"""

import abc
import copy

import numpy as np
import tensorflow as tf

from vai_optimizer_tf import errors
from vai_optimizer_tf.graph import ir
from vai_optimizer_tf.masks import channel_mask_base

MODEL_CLASS_NAMES = ("Functional", "Sequential", "Model")


def is_model_entry(entry):
    """Whether a layer entry of a model config is a nested model with its own layers."""
    return entry.get("class_name") in MODEL_CLASS_NAMES and "layers" in entry.get("config", {})


def strip_layer_masks(config):
    """A layer config without `ChannelMask`s, the wrapped layer's config included."""
    config = channel_mask_base.strip_masks(config)
    inner = config.get("layer")
    if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
        config = dict(config)
        config["layer"] = dict(inner, config=strip_layer_masks(inner["config"]))
    return config


def _per_step(shape):
    """A `TimeDistributed` tensor shape without its time axis."""
    return (shape[0],) + tuple(shape[2:])


def _merged_shape(shapes):
    """The dims all `shapes` agree on, None elsewhere."""
    return tuple(dims[0] if len(set(dims)) == 1 else None for dims in zip(*shapes))


def _history_key(keras_tensor):
    operation, node_index, tensor_index = keras_tensor._keras_history
    return (id(operation), node_index, tensor_index)


def _input_names(model):
    """The names of the input layers of `model`, in `model.inputs` order."""
    return [t._keras_history[0].name for t in model.inputs]


class GraphReader(abc.ABC):
    """Reads a Sequential or Functional model of one Keras flavour into a `Graph`.

    The constructor sets `source_model` (the model as given, never
    modified), `model` (the model read, a clone when an input signature
    fixed undefined input dimensions) and `graph`. A flavour sets `_keras`
    (its Keras package) and implements the hooks.

    Args:
      model: A Sequential or Functional model of the reader's flavour. It is
        never modified.
      input_signature: Optional `tf.TensorSpec` (or list, one per input)
        giving concrete input shapes for models whose inputs have unknown
        dimensions. The graph is read with them (nested models included), so
        FLOPs can be counted; rebuilt models keep the source's own input
        shapes. Defaults to the model's own input shapes.

    Raises:
      UnsupportedModelError: for models the flavour cannot read, or an
        `input_signature` that does not fit.
    """

    _keras = None

    def __init__(self, model, input_signature=None):
        self._check_model(model)
        self.source_model = model
        self._layers = {}  # layer path -> layer object
        self._path_parts = {}  # layer path -> names leading to it through nested models
        self._nested_inputs = {}  # nested model path -> graph tensor ids of its inputs
        self._config_calls = {}  # node name -> (layer path, index in the config's inbound nodes)
        self._source_digest = None
        self.model = self._with_input_signature(model, input_signature)
        self.graph = self._read()

    # Flavour hooks for reading -------------------------------------------------

    @staticmethod
    @abc.abstractmethod
    def _check_model(model):
        """Raises `UnsupportedModelError` unless `model` is a model of this flavour it can read."""

    @staticmethod
    @abc.abstractmethod
    def _tensor_shape(keras_tensor):
        """The shape of a symbolic tensor, as a tuple with None for unknown dims."""

    @staticmethod
    @abc.abstractmethod
    def _tensor_dtype(keras_tensor):
        """The dtype name of a symbolic tensor."""

    @staticmethod
    @abc.abstractmethod
    def _function_of(model):
        """The object holding a model's graph (`inputs`, `outputs`, `_nodes_by_depth`)."""

    @staticmethod
    @abc.abstractmethod
    def _is_graph_model(layer):
        """Whether `layer` is a model whose graph can be read (a nested model)."""

    @staticmethod
    @abc.abstractmethod
    def _node_call(node):
        """`(layer or operation, input tensors, output tensors, args, kwargs)` of a graph node."""

    @staticmethod
    @abc.abstractmethod
    def _is_graph_call(model, layer, node_index):
        """Whether `layer._inbound_nodes[node_index]` is a call inside `model`'s graph."""

    @staticmethod
    @abc.abstractmethod
    def _weight_info(variable):
        """The `ir.WeightInfo` of a layer variable."""

    @staticmethod
    @abc.abstractmethod
    def _set_input_shapes(config, sequential, input_names, shapes):
        """Sets the input shapes of a model config (a Sequential one or not), in place."""

    @abc.abstractmethod
    def _from_config(self, model, config, extra_objects=None):
        """A model of `model`'s kind built from `config` (a config of this flavour).

        Args:
          model: The model whose kind (Sequential or Functional) to build.
          config: The model config.
          extra_objects: Name -> class, besides the model's own custom objects.
        """

    @staticmethod
    def _plain_value(value):
        """A non-tensor call argument as plain Python values (arrays as nested lists)."""
        if isinstance(value, (np.ndarray, np.generic)):
            return value.tolist()
        if tf.is_tensor(value) and hasattr(value, "numpy"):  # a constant: tf.constant(...)
            return value.numpy().tolist()
        return value

    # Reading -----------------------------------------------------------------

    def _with_input_signature(self, model, input_signature):
        """`model`, or a clone whose inputs (nested models' included) are concrete."""
        config = None
        if input_signature is not None:
            shapes = self._signature_shapes(model, input_signature)
            if shapes != [self._tensor_shape(t) for t in model.inputs]:
                config = copy.deepcopy(model.get_config())
                self._set_input_shapes(config, isinstance(model, self._keras.Sequential),
                                       _input_names(model), shapes)
        if config is None:
            # Nested models keep their own input shapes, which may be less
            # defined than those they are called with: (None, None, 3) for a
            # backbone called on 224 x 224 images.
            if not any(self._is_graph_model(layer) for layer in model.layers):
                return model
            config = copy.deepcopy(model.get_config())
            if not self._concretize_nested_inputs(model, config):
                return model
        clone = self._from_config(model, config)
        # One nesting level per rebuild.
        while self._concretize_nested_inputs(clone, config):
            clone = self._from_config(model, config)
        clone.set_weights(model.get_weights())
        return clone

    def _signature_shapes(self, model, input_signature):
        """The model's input shapes with undefined dims taken from `input_signature`."""
        specs = tf.nest.flatten(input_signature)
        if len(specs) != len(model.inputs):
            raise errors.UnsupportedModelError(
                f"Invalid `input_signature`: the model has {len(model.inputs)} input(s) but "
                f"{len(specs)} spec(s) were given. Received: input_signature={input_signature!r}")
        shapes = []
        for spec, tensor in zip(specs, model.inputs):
            shape = tuple(tf.TensorShape(getattr(spec, "shape", spec)).as_list())
            model_shape = self._tensor_shape(tensor)
            if len(shape) != len(model_shape) or any(
                    m is not None and s is not None and m != s
                    for s, m in zip(shape[1:], model_shape[1:])):
                raise errors.UnsupportedModelError(
                    f"Invalid `input_signature`: shape {shape} does not fit model input "
                    f"{tensor.name!r} of shape {model_shape}.")
            shapes.append((None,) + tuple(m if m is not None else s
                                          for s, m in zip(shape[1:], model_shape[1:])))
        return shapes

    def _calls_in(self, model, layer):
        """The nodes of `layer` that are calls inside `model`'s graph."""
        return [node for i, node in enumerate(layer._inbound_nodes)
                if self._is_graph_call(model, layer, i)]

    def _concretize_nested_inputs(self, model, config):
        """Gives nested models in `config` the input shapes `model` calls them with.

        Returns whether any shape became more defined, in which case the model
        must be rebuilt from `config` and this called again for deeper nesting.
        """
        changed = False
        for entry in config["layers"]:
            if not is_model_entry(entry):
                continue
            nested = model.get_layer(entry["config"]["name"])
            calls = self._calls_in(model, nested)
            if calls:
                own = [self._tensor_shape(t) for t in nested.inputs]
                called = [_merged_shape(shapes) for shapes in zip(
                    *[[self._tensor_shape(t) for t in self._node_call(node)[1]]
                      for node in calls])]
                merged = [(None,) + tuple(c if o is None else o
                                          for o, c in zip(own_s[1:], call_s[1:]))
                          for own_s, call_s in zip(own, called)]
                if merged != own:
                    self._set_input_shapes(entry["config"], entry["class_name"] == "Sequential",
                                           _input_names(nested), merged)
                    changed = True
            changed |= self._concretize_nested_inputs(nested, entry["config"])
        return changed

    def _read(self):
        model = self.model
        self._tensors = []
        self._nodes = []
        self._calls = {}
        input_ids = [self._new_tensor(t) for t in model.inputs]
        output_ids = self._walk(model, "", input_ids)
        output_names = [t._keras_history[0].name for t in model.outputs]
        return ir.Graph(model.name, self._nodes, self._tensors, input_ids, output_ids,
                        output_names)

    def _new_tensor(self, keras_tensor):
        tensor = ir.TensorInfo(len(self._tensors), self._tensor_shape(keras_tensor),
                               self._tensor_dtype(keras_tensor))
        self._tensors.append(tensor)
        return tensor.id

    def _neutral(self, value, local):
        """Replaces KerasTensors in a call-argument structure by `ir.TensorRef`s.

        Other values go through `_plain_value`, so registry rules see plain
        Python values.
        """
        def convert(x):
            if hasattr(x, "_keras_history"):
                return ir.TensorRef(local[_history_key(x)])
            return self._plain_value(x)
        return tf.nest.map_structure(convert, value)

    def _config_node_index(self, model, layer, node):
        """Index of `node` in the `inbound_nodes` that `model.get_config()` lists for `layer`.

        Returns None for Sequential models, whose config lists no inbound nodes.
        """
        if isinstance(model, self._keras.Sequential):
            return None
        index = 0
        for original_index, other in enumerate(layer._inbound_nodes):
            if other is node:
                return index
            if self._is_graph_call(model, layer, original_index) and not other.is_input:
                index += 1
        return None

    def _walk(self, model, prefix, input_ids, parts=()):
        """Adds the nodes of `model` with its inputs bound to `input_ids`.

        Returns the ids of the model's outputs.
        """
        function = self._function_of(model)
        local = {_history_key(t): tid for t, tid in zip(function.inputs, input_ids)}
        for depth in sorted(function._nodes_by_depth, reverse=True):
            for node in function._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                layer, in_tensors, out_tensors, args, kwargs = self._node_call(node)
                in_ids = [local[_history_key(t)] for t in in_tensors]
                path = prefix + layer.name
                if self._is_graph_model(layer):
                    self._nested_inputs.setdefault(path, in_ids)
                    inner_out = self._walk(layer, path + "/", in_ids, parts + (layer.name,))
                    for t, tid in zip(out_tensors, inner_out):
                        local[_history_key(t)] = tid
                    continue
                if isinstance(layer, self._keras.Model):
                    self._check_model(layer)
                out_ids = [self._new_tensor(t) for t in out_tensors]
                for t, tid in zip(out_tensors, out_ids):
                    local[_history_key(t)] = tid
                count = self._calls.get(path, 0)
                self._calls[path] = count + 1
                self._layers[path] = layer
                self._path_parts[path] = parts + (layer.name,)
                node_name = path if count == 0 else f"{path}@{count}"
                self._config_calls[node_name] = (path, self._config_node_index(model, layer, node))
                weights = tuple(self._weight_info(v) for v in getattr(layer, "weights", ()))
                in_shapes = tuple(self._tensors[t].shape for t in in_ids)
                out_shapes = tuple(self._tensors[t].shape for t in out_ids)
                wrapped = None
                if isinstance(layer, self._keras.layers.TimeDistributed):
                    wrapped = ir.Node(
                        name=node_name, layer_path=path, layer_class=type(layer.layer),
                        config=strip_layer_masks(layer.layer.get_config()), inputs=tuple(in_ids),
                        outputs=tuple(out_ids), weights=weights,
                        input_shapes=tuple(_per_step(s) for s in in_shapes),
                        output_shapes=tuple(_per_step(s) for s in out_shapes))
                self._nodes.append(ir.Node(
                    name=node_name,
                    layer_path=path,
                    layer_class=type(layer),
                    config=strip_layer_masks(layer.get_config()),
                    inputs=tuple(in_ids),
                    outputs=tuple(out_ids),
                    weights=weights,
                    input_shapes=in_shapes,
                    output_shapes=out_shapes,
                    call_args=self._neutral(tuple(args), local),
                    call_kwargs=self._neutral(dict(kwargs), local),
                    wrapped=wrapped,
                ))
        return [local[_history_key(t)] for t in function.outputs]

    def source_digest(self):
        """`Graph.digest()` of the model as given, with its own input shapes.

        Equals `graph.digest()` unless an `input_signature` fixed undefined
        input dimensions for counting; models rebuilt by this adapter (sparse
        models) keep the source's input shapes, so this is the digest they
        have.
        """
        if self.model is self.source_model:
            return self.graph.digest()
        if self._source_digest is None:
            self._source_digest = type(self)(self.source_model).graph.digest()
        return self._source_digest
