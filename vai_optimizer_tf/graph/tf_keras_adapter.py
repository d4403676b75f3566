"""Adapter for `tf_keras` (Keras 2) models.

This is the only module that touches `tf_keras` internals. It reads a
Sequential or Functional model, with nested models and shared layers, into
the neutral `Graph` IR, reads layer weights by layer path, and rebuilds a model
from rewritten layer configs with new weights. No `tf_keras` object leaves
this module: the rest of the library sees `Graph`, plain dicts and numpy
arrays.
"""

import copy

import numpy as np
import tensorflow as tf
import tf_keras
from tf_keras.src.engine import functional as functional_lib
from tf_keras.src.saving import serialization_lib

from vai_optimizer_tf import errors
from vai_optimizer_tf.graph import ir
from vai_optimizer_tf.graph import layer_insertion
from vai_optimizer_tf.graph import tf_keras_calibration
from vai_optimizer_tf.graph import tf_keras_insertion
from vai_optimizer_tf.graph import tf_keras_rules  # noqa: F401  (registers the entries)
from vai_optimizer_tf.graph.adapter import ModelAdapter
from vai_optimizer_tf.masks import channel_mask

_MODEL_CLASS_NAMES = ("Functional", "Sequential", "Model")


def is_supported_model(model):
    """Whether `model` is a tf_keras model (of any kind)."""
    return isinstance(model, tf_keras.Model)


def _check_model(model):
    if not isinstance(model, tf_keras.Model):
        module = type(model).__module__
        if module.startswith("keras"):
            raise errors.UnsupportedModelError(
                f"Got a Keras 3 model ({type(model).__name__}); TfKerasAdapter reads tf_keras "
                "(Keras 2) models. Use vai_optimizer_tf.graph.adapters.adapter_for(model), "
                "which picks the Keras 3 adapter.")
        raise errors.UnsupportedModelError(
            f"Expected a tf_keras Sequential or Functional model. Received: model of type "
            f"{type(model).__name__}")
    if not getattr(model, "_is_graph_network", False):
        if isinstance(model, tf_keras.Sequential):
            raise errors.UnsupportedModelError(
                f"Sequential model {model.name!r} has no defined input, so its graph cannot "
                "be read. Start it with `tf_keras.Input(shape=...)` or call "
                "`model.build((None, ...))` before pruning.")
        raise errors.UnsupportedModelError(
            f"Model {model.name!r} is a subclassed model (class {type(model).__name__}); its "
            "graph is hidden in Python code and cannot be read. Supported kinds: tf_keras "
            "Sequential and Functional models (nested ones included). Rebuild it with the "
            "Functional API, e.g. `tf_keras.Model(inputs, outputs)`.")


def _short_weight_name(variable):
    name = variable.name.split("/")[-1]
    return name.split(":")[0]


def _history_key(keras_tensor):
    layer, node_index, tensor_index = keras_tensor._keras_history
    return (id(layer), node_index, tensor_index)


def _shape(keras_tensor):
    return tuple(keras_tensor.shape.as_list())


def _config_node_index(model, layer, node):
    """Index of `node` in the `inbound_nodes` that `model.get_config()` lists for `layer`.

    Returns None for Sequential models, whose config lists no inbound nodes.
    """
    if isinstance(model, tf_keras.Sequential):
        return None
    index = 0
    for original_index, other in enumerate(layer._inbound_nodes):
        if other is node:
            return index
        key = functional_lib._make_node_key(layer.name, original_index)
        if key in model._network_nodes and not other.is_input:
            index += 1
    return None


def _strip_masks(config):
    """A layer config without `ChannelMask`s, the wrapped layer's config included."""
    config = channel_mask.strip_masks(config)
    inner = config.get("layer")
    if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
        config = dict(config)
        config["layer"] = dict(inner, config=_strip_masks(inner["config"]))
    return config


def _per_step(shape):
    """A `TimeDistributed` tensor shape without its time axis."""
    return (shape[0],) + tuple(shape[2:])


def _config_tensor_entries(node_data):
    """The `[layer, node, tensor, kwargs]` entries of one serialized inbound node."""
    if isinstance(node_data, (list, tuple)) and node_data and isinstance(node_data[0], str):
        return [node_data]
    entries = []
    for item in node_data if isinstance(node_data, (list, tuple)) else []:
        entries.extend(_config_tensor_entries(item))
    return entries


def _neutral(value, local):
    """Replaces KerasTensors in a call-argument structure by `ir.TensorRef`s.

    Constant tensors and numpy arrays become nested lists, so registry rules
    see plain Python values.
    """
    def convert(x):
        if hasattr(x, "_keras_history"):
            return ir.TensorRef(local[_history_key(x)])
        if isinstance(x, (np.ndarray, np.generic)):
            return x.tolist()
        if tf.is_tensor(x) and hasattr(x, "numpy"):  # a constant operand: tf.constant(...)
            return x.numpy().tolist()
        if isinstance(x, tf.TensorShape):
            return x.as_list()
        if isinstance(x, tf.DType):
            return x.name
        return x
    return tf.nest.map_structure(convert, value)


def _set_input_shapes(config, sequential, input_names, shapes):
    """Sets the `batch_input_shape` of a model config's inputs, in place."""
    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer" and entry["config"]["name"] in input_names:
            entry["config"]["batch_input_shape"] = list(
                shapes[input_names.index(entry["config"]["name"])])
    if sequential and config["layers"][0]["class_name"] != "InputLayer":
        config["layers"][0]["config"]["batch_input_shape"] = list(shapes[0])


def _merged_shape(shapes):
    """The dims all `shapes` agree on, None elsewhere."""
    return tuple(dims[0] if len(set(dims)) == 1 else None for dims in zip(*shapes))


def _concretize_nested_inputs(model, config):
    """Gives nested models in `config` the input shapes `model` calls them with.

    Returns whether any shape became more defined, in which case the model
    must be rebuilt from `config` and this called again for deeper nesting.
    """
    changed = False
    for entry in config["layers"]:
        if entry["class_name"] not in _MODEL_CLASS_NAMES or "layers" not in entry["config"]:
            continue
        nested = model.get_layer(entry["config"]["name"])
        calls = [node for i, node in enumerate(nested._inbound_nodes)
                 if functional_lib._make_node_key(nested.name, i) in model._network_nodes]
        if calls:
            own = [_shape(t) for t in nested.inputs]
            called = [_merged_shape(shapes) for shapes in zip(
                *[[_shape(t) for t in node.keras_inputs] for node in calls])]
            merged = [(None,) + tuple(c if o is None else o for o, c in zip(own_s[1:], call_s[1:]))
                      for own_s, call_s in zip(own, called)]
            if merged != own:
                _set_input_shapes(entry["config"], entry["class_name"] == "Sequential",
                                  [t._keras_history[0].name for t in nested.inputs], merged)
                changed = True
        changed |= _concretize_nested_inputs(nested, entry["config"])
    return changed


class TfKerasAdapter(ModelAdapter):
    """Reads a tf_keras model into a `Graph` and rebuilds it with changes.

    Args:
      model: A tf_keras Sequential or Functional model. It is never modified.
      input_signature: Optional `tf.TensorSpec` (or list, one per input)
        giving concrete input shapes for models whose inputs have unknown
        dimensions. The graph is read with them (nested models included), so
        FLOPs can be counted; rebuilt models keep the source's own input
        shapes. Defaults to the model's own input shapes.

    Raises:
      UnsupportedModelError: for subclassed models, unbuilt Sequential
        models, Keras 3 models, or an `input_signature` that does not fit.
    """

    flavour = "tf_keras"
    mask_class = channel_mask.ChannelMask

    @staticmethod
    def io_names(model):
        """`(input names, output names)` of a tf_keras model."""
        inputs = list(getattr(model, "input_names", None)
                      or [t.name.split(":")[0] for t in model.inputs])
        return inputs, list(model.output_names)

    def __init__(self, model, input_signature=None):
        _check_model(model)
        self.source_model = model
        self.model = self._with_input_signature(model, input_signature)
        self._layers = {}
        self._path_parts = {}
        self._nested_inputs = {}
        self._config_calls = {}
        self._source_digest = None
        self.graph = self._read()

    # Reading -----------------------------------------------------------------

    def _with_input_signature(self, model, input_signature):
        """`model`, or a clone whose inputs (nested models' included) are concrete."""
        config = None
        if input_signature is not None:
            shapes = self._signature_shapes(model, input_signature)
            if shapes != [_shape(t) for t in model.inputs]:
                config = copy.deepcopy(model.get_config())
                _set_input_shapes(config, isinstance(model, tf_keras.Sequential),
                                  [t._keras_history[0].name for t in model.inputs], shapes)
        if config is None:
            # Nested models keep their own input shapes, which may be less
            # defined than those they are called with: (None, None, 3) for a
            # backbone called on 224 x 224 images.
            if not any(getattr(layer, "_is_graph_network", False) for layer in model.layers):
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
        tensor = ir.TensorInfo(len(self._tensors), _shape(keras_tensor),
                               keras_tensor.dtype.name if keras_tensor.dtype else "float32")
        self._tensors.append(tensor)
        return tensor.id

    def _walk(self, model, prefix, input_ids, parts=()):
        """Adds the nodes of `model` with its inputs bound to `input_ids`.

        Returns the ids of the model's outputs.
        """
        local = {_history_key(t): tid for t, tid in zip(model.inputs, input_ids)}
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                layer = node.layer
                in_ids = [local[_history_key(t)] for t in node.keras_inputs]
                out_tensors = tf.nest.flatten(node.outputs)
                path = prefix + layer.name
                if getattr(layer, "_is_graph_network", False):
                    self._nested_inputs.setdefault(path, in_ids)
                    inner_out = self._walk(layer, path + "/", in_ids, parts + (layer.name,))
                    for t, tid in zip(out_tensors, inner_out):
                        local[_history_key(t)] = tid
                    continue
                if isinstance(layer, tf_keras.Model):
                    _check_model(layer)
                out_ids = [self._new_tensor(t) for t in out_tensors]
                for t, tid in zip(out_tensors, out_ids):
                    local[_history_key(t)] = tid
                count = self._calls.get(path, 0)
                self._calls[path] = count + 1
                self._layers[path] = layer
                self._path_parts[path] = parts + (layer.name,)
                node_name = path if count == 0 else f"{path}@{count}"
                self._config_calls[node_name] = (path, _config_node_index(model, layer, node))
                weights = tuple(ir.WeightInfo(_short_weight_name(v), tuple(v.shape.as_list()),
                                              bool(v.trainable))
                                for v in layer.weights)
                in_shapes = tuple(self._tensors[t].shape for t in in_ids)
                out_shapes = tuple(self._tensors[t].shape for t in out_ids)
                wrapped = None
                if isinstance(layer, tf_keras.layers.TimeDistributed):
                    wrapped = ir.Node(
                        name=node_name, layer_path=path, layer_class=type(layer.layer),
                        config=_strip_masks(layer.layer.get_config()), inputs=tuple(in_ids),
                        outputs=tuple(out_ids), weights=weights,
                        input_shapes=tuple(_per_step(s) for s in in_shapes),
                        output_shapes=tuple(_per_step(s) for s in out_shapes))
                self._nodes.append(ir.Node(
                    name=node_name,
                    layer_path=path,
                    layer_class=type(layer),
                    config=_strip_masks(layer.get_config()),
                    inputs=tuple(in_ids),
                    outputs=tuple(out_ids),
                    weights=weights,
                    input_shapes=in_shapes,
                    output_shapes=out_shapes,
                    call_args=_neutral(tuple(node.call_args), local),
                    call_kwargs=_neutral(dict(node.call_kwargs), local),
                    wrapped=wrapped,
                ))
        return [local[_history_key(t)] for t in model.outputs]

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
            self._source_digest = TfKerasAdapter(self.source_model).graph.digest()
        return self._source_digest

    # Rebuilding --------------------------------------------------------------

    def custom_objects(self):
        """Name -> class for layer classes that are not part of tf_keras."""
        objects = {}
        for layer in self._layers.values():
            cls = type(layer)
            # Public tf_keras layers deserialize by name; anything else (user
            # layers, and private ones such as ConvNeXt's LayerScale) must be passed.
            if getattr(tf_keras.layers, cls.__name__, None) is not cls:
                objects[cls.__name__] = cls
                objects[tf_keras.saving.get_registered_name(cls)] = cls
        objects["CalibratingBatchNormalization"] = tf_keras_calibration.CalibratingBatchNormalization
        return objects

    # Rebuilding --------------------------------------------------------------

    def _from_config(self, model, config, extra_objects=None):
        objects = self.custom_objects() if hasattr(self, "_layers") else {}
        objects.update(extra_objects or {})
        # The config comes from the model in memory, not from a file, so its
        # Lambda layers are the user's own code: safe mode would only refuse them.
        with tf_keras.utils.custom_object_scope(objects), \
                serialization_lib.SafeModeScope(False):
            if isinstance(model, tf_keras.Sequential):
                return tf_keras.Sequential.from_config(config)
            return tf_keras.Model.from_config(config)

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
            applied to the non-tensor arguments the config stores for that
            call (e.g. the `shape` of a `tf.reshape`).
          name: Optional new model name. Defaults to the source's name.
          layer_classes: Layer path -> class replacing the layer's class: the
            class itself, or the name of a class known to this module's
            custom objects.

        Returns:
          A new tf_keras model of the same kind, with the same layer names.

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
        layer_classes = {path: c.__name__ if isinstance(c, type) else c
                         for path, c in layer_classes.items()}
        self._rewrite(config, "", layer_configs, tensor_shapes, layer_classes)
        self._rewrite_calls(config, call_rewrites or {})
        if name:
            config["name"] = name
        model = self._from_config(self.source_model, config, extra_objects)
        self._set_rebuilt_weights(model, layer_weights)
        return model

    def _insert_layers(self, config, layer_for, suffix):
        return layer_insertion.insert_layers(config, layer_for, suffix,
                                             tf_keras.saving.serialize_keras_object,
                                             tf_keras_insertion.reroute)

    def _rewrite(self, model_config, prefix, layer_configs, tensor_shapes, layer_classes):
        for entry in model_config["layers"]:
            name = entry["config"]["name"]
            path = prefix + name
            # Layers are built when the rebuilt graph calls them, with the
            # input shapes they get there (which pruning changes), not with
            # the shapes their `build_config` records.
            entry.pop("build_config", None)
            if path in layer_classes:
                entry["class_name"] = layer_classes[path]
                entry.pop("module", None)
                entry.pop("registered_name", None)
            if entry["class_name"] in _MODEL_CLASS_NAMES and "layers" in entry["config"]:
                self._rewrite(entry["config"], path + "/", layer_configs, tensor_shapes,
                              layer_classes)
                self._rewrite_nested_inputs(entry, path, tensor_shapes)
            elif path in layer_configs:
                entry["config"] = copy.deepcopy(layer_configs[path])
            else:
                # A model read from a sparse model is rebuilt without its masks
                # unless the caller passes masked configs.
                entry["config"] = _strip_masks(entry["config"])

    def _rewrite_calls(self, model_config, call_rewrites):
        for node_name, fn in call_rewrites.items():
            path, index = self._config_calls[node_name]
            entry = self._config_entry(model_config, self._path_parts[path])
            inbound = entry.get("inbound_nodes") or []
            if index is None or index >= len(inbound):
                raise ValueError(f"Cannot rewrite the call arguments of {node_name!r}: the model "
                                 "config does not list them. Exclude the layer feeding it.")
            for tensor_entry in _config_tensor_entries(inbound[index]):
                if len(tensor_entry) > 3:
                    tensor_entry[3] = fn(tensor_entry[3])

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
        def narrowed(config, tid):
            # Only the channel axis changes; other dims stay as the source has them.
            if tid in tensor_shapes and config.get("batch_input_shape"):
                config["batch_input_shape"] = (list(config["batch_input_shape"][:-1])
                                               + [tensor_shapes[tid][-1]])

        layers = entry["config"]["layers"]
        if entry["class_name"] == "Sequential":
            narrowed(layers[0]["config"], in_ids[0])
            return
        input_names = [spec[0] for spec in entry["config"]["input_layers"]]
        for layer_entry in layers:
            if layer_entry["class_name"] == "InputLayer" and layer_entry["config"]["name"] in input_names:
                narrowed(layer_entry["config"],
                         in_ids[input_names.index(layer_entry["config"]["name"])])

    # Models built from this adapter -------------------------------------------

    def compile_like_source(self, model):
        """Compiles `model` with the source model's loss and metrics, if it had any.

        The optimizer is a fresh copy of the source's, so the two models never
        share optimizer state. Returns whether `model` was compiled.
        """
        source = self.source_model
        if not getattr(source, "_is_compiled", False):
            return False
        args = source._get_compile_args()
        optimizer = args.get("optimizer")
        if optimizer is not None:
            optimizer = tf_keras.optimizers.deserialize(tf_keras.optimizers.serialize(optimizer))
        model.compile(optimizer=optimizer, loss=args.get("loss"), metrics=args.get("metrics"),
                      weighted_metrics=args.get("weighted_metrics"),
                      loss_weights=args.get("loss_weights"))
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
        return self._calibration_copy(tf_keras_calibration.calibration_config, layer_weights)
