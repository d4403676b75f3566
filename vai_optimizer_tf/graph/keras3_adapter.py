"""Adapter for Keras 3 models (`import keras`, and `tf.keras` from TF 2.16 on).

With `keras3_rules.py` and `keras3_calibration.py`, this is the only module
that touches Keras 3 internals. It reads a Sequential or Functional model,
with nested models, shared layers and `keras.ops` calls, into the neutral
`Graph` IR, reads layer weights by layer path, and rebuilds a model from
rewritten layer configs with new weights. No Keras object leaves this module:
the rest of the library sees `Graph`, plain dicts and numpy arrays.

Keras 3 stores what tf_keras stores, under other names: a functional model's
graph is `_nodes_by_depth` of its `Function` (a Sequential model keeps one in
`_functional`), a node's call is `node.arguments` and its operation
`node.operation` (a layer, or a `keras.ops` operation such as
`keras.src.ops.numpy.Add` for `x + y`), an input layer's shape is
`batch_shape`, and a layer config carries a `build_config` with the input
shape it was built for. Only the TensorFlow backend is supported: the sparse
model's masks and the exports are TensorFlow graphs.
"""

import copy

import keras
import numpy as np
import tensorflow as tf
from keras.src.ops.function import make_node_key
from keras.src.saving import serialization_lib

from vai_optimizer_tf import errors
from vai_optimizer_tf.graph import ir
from vai_optimizer_tf.graph import keras3_calibration
from vai_optimizer_tf.graph import keras3_insertion
from vai_optimizer_tf.graph import keras3_rules  # noqa: F401  (registers the entries)
from vai_optimizer_tf.graph import layer_insertion
from vai_optimizer_tf.graph.adapter import ModelAdapter
from vai_optimizer_tf.masks import channel_mask_base
from vai_optimizer_tf.masks import keras3_channel_mask

_MODEL_CLASS_NAMES = ("Functional", "Sequential", "Model")


def is_supported_model(model):
    """Whether `model` is a Keras 3 model (of any kind)."""
    return isinstance(model, keras.Model)


def _function_of(model):
    """The `Function` holding the graph of a Functional or built Sequential model, or None."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    if hasattr(model, "_nodes_by_depth") and hasattr(model, "_operations"):
        return model
    return None


def _check_backend():
    if keras.config.backend() != "tensorflow":
        raise errors.UnsupportedModelError(
            f"Keras 3 models are supported on the TensorFlow backend only; this process runs "
            f"Keras with the {keras.config.backend()!r} backend. Set KERAS_BACKEND=tensorflow "
            "before importing Keras.")


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise errors.UnsupportedModelError(
            f"Expected a Keras 3 Sequential or Functional model. Received: model of type "
            f"{type(model).__name__}")
    _check_backend()
    if _function_of(model) is None:
        if isinstance(model, keras.Sequential):
            raise errors.UnsupportedModelError(
                f"Sequential model {model.name!r} has no defined input, so its graph cannot "
                "be read. Start it with `keras.Input(shape=...)` or call "
                "`model.build((None, ...))` before pruning.")
        raise errors.UnsupportedModelError(
            f"Model {model.name!r} is a subclassed model (class {type(model).__name__}); its "
            "graph is hidden in Python code and cannot be read. Supported kinds: Keras 3 "
            "Sequential and Functional models (nested ones included). Rebuild it with the "
            "Functional API, e.g. `keras.Model(inputs, outputs)`.")


def _is_graph_model(operation):
    return isinstance(operation, keras.Model) and _function_of(operation) is not None


def _operations_of(model):
    """Every operation of `model` (layers and `keras.ops` calls), nested models opened."""
    for operation in _function_of(model)._operations:
        if _is_graph_model(operation):
            yield from _operations_of(operation)
        else:
            yield operation


def _history_key(keras_tensor):
    operation, node_index, tensor_index = keras_tensor._keras_history
    return (id(operation), node_index, tensor_index)


def _shape(keras_tensor):
    return tuple(None if d is None else int(d) for d in keras_tensor.shape)


def _dtype(keras_tensor):
    dtype = keras_tensor.dtype
    return dtype if isinstance(dtype, str) else getattr(dtype, "name", "float32")


def _strip_masks(config):
    """A layer config without `ChannelMask`s, the wrapped layer's config included."""
    config = channel_mask_base.strip_masks(config)
    inner = config.get("layer")
    if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
        config = dict(config)
        config["layer"] = dict(inner, config=_strip_masks(inner["config"]))
    return config


def _without_build_configs(value):
    """`value` with the `build_config` of every serialized layer in it removed.

    Keras 3 builds a deserialized layer with the input shape its
    `build_config` records (a wrapped layer too); after pruning that shape is
    wrong, so layers are left to build when the rebuilt graph calls them.
    """
    if isinstance(value, dict):
        return {k: _without_build_configs(v) for k, v in value.items()
                if not (k == "build_config" and "class_name" in value)}
    if isinstance(value, list):
        return [_without_build_configs(v) for v in value]
    return value


def _per_step(shape):
    """A `TimeDistributed` tensor shape without its time axis."""
    return (shape[0],) + tuple(shape[2:])


def _neutral(value, local):
    """Replaces KerasTensors in a call-argument structure by `ir.TensorRef`s.

    Numpy arrays and constant tensors become nested lists, so registry rules
    see plain Python values.
    """
    def convert(x):
        if hasattr(x, "_keras_history"):
            return ir.TensorRef(local[_history_key(x)])
        if isinstance(x, (np.ndarray, np.generic)):
            return x.tolist()
        if tf.is_tensor(x) and hasattr(x, "numpy"):
            return x.numpy().tolist()
        return x
    return tf.nest.map_structure(convert, value)


def _is_model_entry(entry):
    return entry.get("class_name") in _MODEL_CLASS_NAMES and "layers" in entry.get("config", {})


def _input_entries(model_config, sequential):
    """The `InputLayer` entries of a model config, in input order."""
    layers = model_config["layers"]
    if sequential:
        return layers[:1] if layers and layers[0]["class_name"] == "InputLayer" else []
    names = [spec[0] for spec in _input_specs(model_config["input_layers"])]
    by_name = {e["config"]["name"]: e for e in layers if e["class_name"] == "InputLayer"}
    return [by_name[n] for n in names if n in by_name]


def _input_specs(input_layers):
    """`[[layer, node, tensor], ...]` of a config's `input_layers` (one input or several)."""
    if input_layers and isinstance(input_layers[0], str):
        return [input_layers]
    if isinstance(input_layers, dict):
        return [input_layers[k] for k in sorted(input_layers)]
    return list(input_layers)


def _set_input_shapes(config, sequential, shapes):
    """Sets the `batch_shape` of a model config's inputs, in place."""
    for entry, shape in zip(_input_entries(config, sequential), shapes):
        entry["config"]["batch_shape"] = list(shape)
    if sequential and config.get("build_input_shape") is not None:
        config["build_input_shape"] = list(shapes[0])


def _merged_shape(shapes):
    """The dims all `shapes` agree on, None elsewhere."""
    return tuple(dims[0] if len(set(dims)) == 1 else None for dims in zip(*shapes))


def _calls_in(model, operation):
    """The nodes of `operation` that are calls inside `model`'s graph."""
    function = _function_of(model)
    return [node for i, node in enumerate(operation._inbound_nodes)
            if make_node_key(operation, i) in function._nodes]


def _concretize_nested_inputs(model, config):
    """Gives nested models in `config` the input shapes `model` calls them with.

    Returns whether any shape became more defined, in which case the model
    must be rebuilt from `config` and this called again for deeper nesting.
    """
    changed = False
    for entry in config["layers"]:
        if not _is_model_entry(entry):
            continue
        nested = model.get_layer(entry["config"]["name"])
        calls = _calls_in(model, nested)
        if calls:
            own = [_shape(t) for t in nested.inputs]
            called = [_merged_shape(shapes) for shapes in zip(
                *[[_shape(t) for t in node.input_tensors] for node in calls])]
            merged = [(None,) + tuple(c if o is None else o for o, c in zip(own_s[1:], call_s[1:]))
                      for own_s, call_s in zip(own, called)]
            if merged != own:
                _set_input_shapes(entry["config"], entry["class_name"] == "Sequential", merged)
                changed = True
        changed |= _concretize_nested_inputs(nested, entry["config"])
    return changed


class Keras3Adapter(ModelAdapter):
    """Reads a Keras 3 model into a `Graph` and rebuilds it with changes.

    Args:
      model: A Keras 3 Sequential or Functional model. It is never modified.
      input_signature: Optional `tf.TensorSpec` (or list, one per input)
        giving concrete input shapes for models whose inputs have unknown
        dimensions. The graph is read with them (nested models included), so
        FLOPs can be counted; rebuilt models keep the source's own input
        shapes. Defaults to the model's own input shapes.

    Raises:
      UnsupportedModelError: for subclassed models, unbuilt Sequential
        models, a backend other than TensorFlow, or an `input_signature` that
        does not fit.
    """

    flavour = "keras3"
    mask_class = keras3_channel_mask.ChannelMask

    @staticmethod
    def io_names(model):
        """`(input names, output names)` of a Keras 3 model (Sequential ones have no
        `output_names`)."""
        return ([t._keras_history[0].name for t in model.inputs],
                [t._keras_history[0].name for t in model.outputs])

    def __init__(self, model, input_signature=None):
        _check_model(model)
        self.source_model = model
        self._layers = {}
        self._path_parts = {}
        self._nested_inputs = {}
        self._config_calls = {}
        self._source_digest = None
        self.model = self._with_input_signature(model, input_signature)
        self.graph = self._read()

    # Reading -----------------------------------------------------------------

    def _with_input_signature(self, model, input_signature):
        """`model`, or a clone whose inputs (nested models' included) are concrete."""
        config = None
        if input_signature is not None:
            shapes = self._signature_shapes(model, input_signature)
            if shapes != [_shape(t) for t in model.inputs]:
                config = copy.deepcopy(model.get_config())
                _set_input_shapes(config, isinstance(model, keras.Sequential), shapes)
        if config is None:
            # Nested models keep their own input shapes, which may be less
            # defined than those they are called with: (None, None, 3) for a
            # backbone called on 224 x 224 images.
            if not any(_is_graph_model(layer) for layer in model.layers):
                return model
            config = copy.deepcopy(model.get_config())
            if not _concretize_nested_inputs(model, config):
                return model
        clone = self._from_config(model, config)
        # One nesting level per rebuild.
        while _concretize_nested_inputs(clone, config):
            clone = self._from_config(model, config)
        clone.set_weights(model.get_weights())
        return clone

    @staticmethod
    def _signature_shapes(model, input_signature):
        """The model's input shapes with undefined dims taken from `input_signature`."""
        specs = tf.nest.flatten(input_signature)
        if len(specs) != len(model.inputs):
            raise errors.UnsupportedModelError(
                f"Invalid `input_signature`: the model has {len(model.inputs)} input(s) but "
                f"{len(specs)} spec(s) were given. Received: input_signature={input_signature!r}")
        shapes = []
        for spec, tensor in zip(specs, model.inputs):
            shape = tuple(tf.TensorShape(getattr(spec, "shape", spec)).as_list())
            model_shape = _shape(tensor)
            if len(shape) != len(model_shape) or any(
                    m is not None and s is not None and m != s
                    for s, m in zip(shape[1:], model_shape[1:])):
                raise errors.UnsupportedModelError(
                    f"Invalid `input_signature`: shape {shape} does not fit model input "
                    f"{tensor.name!r} of shape {model_shape}.")
            shapes.append((None,) + tuple(m if m is not None else s
                                          for s, m in zip(shape[1:], model_shape[1:])))
        return shapes

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
        tensor = ir.TensorInfo(len(self._tensors), _shape(keras_tensor), _dtype(keras_tensor))
        self._tensors.append(tensor)
        return tensor.id

    def _walk(self, model, prefix, input_ids, parts=()):
        """Adds the nodes of `model` with its inputs bound to `input_ids`.

        Returns the ids of the model's outputs.
        """
        function = _function_of(model)
        local = {_history_key(t): tid for t, tid in zip(function.inputs, input_ids)}
        for depth in sorted(function._nodes_by_depth, reverse=True):
            for node in function._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                operation = node.operation
                in_ids = [local[_history_key(t)] for t in node.input_tensors]
                out_tensors = list(node.outputs)
                path = prefix + operation.name
                if _is_graph_model(operation):
                    self._nested_inputs.setdefault(path, in_ids)
                    inner_out = self._walk(operation, path + "/", in_ids, parts + (operation.name,))
                    for t, tid in zip(out_tensors, inner_out):
                        local[_history_key(t)] = tid
                    continue
                if isinstance(operation, keras.Model):
                    _check_model(operation)
                out_ids = [self._new_tensor(t) for t in out_tensors]
                for t, tid in zip(out_tensors, out_ids):
                    local[_history_key(t)] = tid
                count = self._calls.get(path, 0)
                self._calls[path] = count + 1
                self._layers[path] = operation
                self._path_parts[path] = parts + (operation.name,)
                node_name = path if count == 0 else f"{path}@{count}"
                self._config_calls[node_name] = (path, self._config_node_index(model, operation,
                                                                               node))
                weights = tuple(ir.WeightInfo(v.name.split("/")[-1], tuple(int(d) for d in v.shape),
                                              bool(v.trainable))
                                for v in getattr(operation, "weights", ()))
                in_shapes = tuple(self._tensors[t].shape for t in in_ids)
                out_shapes = tuple(self._tensors[t].shape for t in out_ids)
                wrapped = None
                if isinstance(operation, keras.layers.TimeDistributed):
                    wrapped = ir.Node(
                        name=node_name, layer_path=path, layer_class=type(operation.layer),
                        config=_strip_masks(operation.layer.get_config()), inputs=tuple(in_ids),
                        outputs=tuple(out_ids), weights=weights,
                        input_shapes=tuple(_per_step(s) for s in in_shapes),
                        output_shapes=tuple(_per_step(s) for s in out_shapes))
                self._nodes.append(ir.Node(
                    name=node_name,
                    layer_path=path,
                    layer_class=type(operation),
                    config=_strip_masks(operation.get_config()),
                    inputs=tuple(in_ids),
                    outputs=tuple(out_ids),
                    weights=weights,
                    input_shapes=in_shapes,
                    output_shapes=out_shapes,
                    call_args=_neutral(tuple(node.arguments.args), local),
                    call_kwargs=_neutral(dict(node.arguments.kwargs), local),
                    wrapped=wrapped,
                ))
        return [local[_history_key(t)] for t in function.outputs]

    @staticmethod
    def _config_node_index(model, operation, node):
        """Index of `node` in the `inbound_nodes` that `model.get_config()` lists for it.

        Returns None for Sequential models, whose config lists no inbound nodes.
        """
        if isinstance(model, keras.Sequential):
            return None
        index = 0
        for original_index, other in enumerate(operation._inbound_nodes):
            if other is node:
                return index
            if make_node_key(operation, original_index) in model._nodes and not other.is_input:
                index += 1
        return None

    def source_digest(self):
        """`Graph.digest()` of the model as given, with its own input shapes.

        Equals `graph.digest()` unless an `input_signature` fixed undefined
        input dimensions for counting; models rebuilt by this adapter keep
        the source's input shapes, so this is the digest they have.
        """
        if self.model is self.source_model:
            return self.graph.digest()
        if self._source_digest is None:
            self._source_digest = Keras3Adapter(self.source_model).graph.digest()
        return self._source_digest

    # Rebuilding --------------------------------------------------------------

    def custom_objects(self):
        """Name -> class for layer classes that are not part of Keras."""
        objects = {}
        for operation in _operations_of(self.source_model):
            cls = type(operation)
            # Keras' own classes (layers, ops, application layers) deserialize
            # from their module; anything else (user layers) must be passed.
            if not cls.__module__.startswith("keras."):
                objects[cls.__name__] = cls
                objects[keras.saving.get_registered_name(cls)] = cls
        calibrating = keras3_calibration.CalibratingBatchNormalization
        objects[calibrating.__name__] = calibrating
        return objects

    def _from_config(self, model, config, extra_objects=None):
        config = copy.deepcopy(config)  # Keras 3's from_config pops keys from it
        objects = dict(self.custom_objects(), **(extra_objects or {}))
        # The config comes from the model in memory, not from a file, so its
        # Lambda layers are the user's own code: safe mode would only refuse them.
        with keras.saving.custom_object_scope(objects), serialization_lib.SafeModeScope(False):
            if isinstance(model, keras.Sequential):
                return keras.Sequential.from_config(config)
            return keras.Model.from_config(config)

    def rebuild(self, layer_configs=None, layer_weights=None, tensor_shapes=None,
                call_rewrites=None, name=None, layer_classes=None):
        """Builds a new model from the source's config with changes.

        Args:
          layer_configs: Layer path -> replacement config dict.
          layer_weights: Layer path -> list of numpy arrays to load. Layers
            not listed keep the source model's weights.
          tensor_shapes: Graph tensor id -> new shape, used to update the
            input shapes of nested models whose inputs shrink.
          call_rewrites: Node name -> `fn(call_kwargs) -> call_kwargs`,
            applied to the keyword arguments the config stores for that call.
          name: Optional new model name. Defaults to the source's name.
          layer_classes: Layer path -> class replacing the layer's class: the
            class itself, or the name of a class known to `custom_objects()`.

        Returns:
          A new Keras 3 model of the same kind, with the same layer names.

        Raises:
          ValueError: if a call to rewrite has no arguments in the config
            (a call inside a Sequential model).
        """
        layer_configs = layer_configs or {}
        layer_weights = layer_weights or {}
        tensor_shapes = tensor_shapes or {}
        # The source's config, not the model read with `input_signature`:
        # the signature is only for counting, the input shapes stay the user's.
        config = copy.deepcopy(self.source_model.get_config())
        layer_classes = layer_classes or {}
        extra_objects = {c.__name__: c for c in layer_classes.values() if isinstance(c, type)}
        self._rewrite(config, "", layer_configs, tensor_shapes, layer_classes)
        self._rewrite_calls(config, call_rewrites or {})
        if name:
            config["name"] = name
        model = self._from_config(self.source_model, config, extra_objects)
        self._set_rebuilt_weights(model, layer_weights)
        return model

    def _rewrite(self, model_config, prefix, layer_configs, tensor_shapes, layer_classes):
        objects = self.custom_objects() if layer_classes else {}
        for entry in model_config["layers"]:
            name = entry["config"]["name"]
            path = prefix + name
            # Layers are built when the rebuilt graph calls them, with the
            # input shapes they get there (which pruning changes), not with
            # the shapes they were built for.
            entry.pop("build_config", None)
            if path in layer_classes:
                cls = layer_classes[path]
                cls = cls if isinstance(cls, type) else objects[cls]
                entry.update(class_name=cls.__name__, module=cls.__module__,
                             registered_name=keras.saving.get_registered_name(cls))
            if _is_model_entry(entry):
                self._rewrite(entry["config"], path + "/", layer_configs, tensor_shapes,
                              layer_classes)
                self._rewrite_nested_inputs(entry, path, tensor_shapes)
            elif path in layer_configs:
                entry["config"] = _without_build_configs(copy.deepcopy(layer_configs[path]))
            else:
                # A model read from a sparse model is rebuilt without its masks
                # unless the caller passes masked configs.
                entry["config"] = _without_build_configs(_strip_masks(entry["config"]))

    def _rewrite_calls(self, model_config, call_rewrites):
        for node_name, fn in call_rewrites.items():
            path, index = self._config_calls[node_name]
            entry = self._config_entry(model_config, self._path_parts[path])
            inbound = entry.get("inbound_nodes") or []
            if index is None or index >= len(inbound):
                raise ValueError(f"Cannot rewrite the call arguments of {node_name!r}: the model "
                                 "config does not list them. Exclude the layer feeding it.")
            inbound[index]["kwargs"] = fn(dict(inbound[index].get("kwargs") or {}))

    @staticmethod
    def _config_entry(model_config, parts):
        """The config entry of the layer at `parts` (nested model names, then the layer)."""
        entry = None
        for part in parts:
            layers = (entry["config"] if entry is not None else model_config)["layers"]
            entry = next(e for e in layers if e["config"]["name"] == part)
        return entry

    def _rewrite_nested_inputs(self, entry, path, tensor_shapes):
        in_ids = self._nested_inputs.get(path)
        if not in_ids:
            return
        sequential = entry["class_name"] == "Sequential"
        for layer_entry, tid in zip(_input_entries(entry["config"], sequential), in_ids):
            # Only the channel axis changes; other dims stay as the source has them.
            shape = layer_entry["config"].get("batch_shape")
            if tid in tensor_shapes and shape:
                layer_entry["config"]["batch_shape"] = list(shape[:-1]) + [tensor_shapes[tid][-1]]
        build_shape = entry["config"].get("build_input_shape")
        if sequential and build_shape and in_ids[0] in tensor_shapes:
            entry["config"]["build_input_shape"] = (list(build_shape[:-1])
                                                    + [tensor_shapes[in_ids[0]][-1]])

    def _insert_layers(self, config, layer_for, suffix):
        return layer_insertion.insert_layers(config, layer_for, suffix,
                                             keras.saving.serialize_keras_object,
                                             keras3_insertion.reroute)

    def _constraint_key(self, weight_name, layer_config):
        """Also `depthwise_constraint` for the `kernel` of a Keras 3 `DepthwiseConv*D`."""
        key = self.mask_class.constraint_key(weight_name)
        if key not in layer_config and weight_name == "kernel" \
                and "depthwise_constraint" in layer_config:
            return "depthwise_constraint"
        return key

    # Models built from this adapter -------------------------------------------

    def compile_like_source(self, model):
        """Compiles `model` with the source model's loss and metrics, if it had any.

        The optimizer is a fresh copy of the source's, so the two models never
        share optimizer state. Returns whether `model` was compiled.
        """
        source = self.source_model
        compiled = getattr(source, "_compile_config", None)
        if not getattr(source, "compiled", False) or compiled is None:
            return False
        args = dict(compiled.config)
        optimizer = args.get("optimizer")
        if isinstance(optimizer, keras.optimizers.Optimizer):
            optimizer = type(optimizer).from_config(optimizer.get_config())
        model.compile(optimizer=optimizer, loss=args.get("loss"), metrics=args.get("metrics"),
                      weighted_metrics=args.get("weighted_metrics"),
                      loss_weights=args.get("loss_weights"),
                      run_eagerly=args.get("run_eagerly", False),
                      jit_compile=args.get("jit_compile", "auto"))
        return True

    # Adaptive-BN calibration -----------------------------------------------------

    def rebuild_for_calibration(self, layer_weights=None):
        """A copy for adaptive BN: BatchNormalization layers sum training batches' statistics.

        Every BatchNormalization becomes a `CalibratingBatchNormalization`
        with momentum 0, and Dropout-like noise layers are switched off; in
        inference the copy computes what the source computes. Channel masks
        are dropped (the copy is not trained).

        Args:
          layer_weights: Layer path -> arrays to start from. Defaults to the
            source model's weights.

        Returns:
          `(model, calibrating)`: the copy, and its calibrating layers by path.
        """
        return self._calibration_copy(keras3_calibration.calibration_config, layer_weights)
