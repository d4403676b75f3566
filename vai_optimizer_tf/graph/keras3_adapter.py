"""Adapter for Keras 3 models (`import keras`, and `tf.keras` from TF 2.16 on).

With `keras3_rules.py` and `keras3_calibration.py`, this is the only module
that touches Keras 3 internals. The reading of a Sequential or Functional
model (nested models, shared layers and `keras.ops` calls included) into the
neutral `Graph` IR and the rebuilding from rewritten layer configs are shared
with tf_keras (`GraphReader`, `ModelAdapter`); this module gives their hooks.
No Keras object leaves the adapter: the rest of the library sees `Graph`,
plain dicts and numpy arrays.

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
from keras.src.ops.function import make_node_key
from keras.src.saving import serialization_lib

from vai_optimizer_tf import errors
from vai_optimizer_tf.graph import ir
from vai_optimizer_tf.graph import keras3_calibration
from vai_optimizer_tf.graph import keras3_insertion
from vai_optimizer_tf.graph import keras3_rules  # noqa: F401  (registers the entries)
from vai_optimizer_tf.graph.adapter import ModelAdapter
from vai_optimizer_tf.masks import keras3_channel_mask


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


class Keras3Adapter(ModelAdapter):
    """Reads a Keras 3 model into a `Graph` and rebuilds it with changes.

    Args:
      model: A Keras 3 Sequential or Functional model. It is never modified.
      input_signature: Optional `tf.TensorSpec` (or list, one per input)
        fixing undefined input dimensions for reading (see `GraphReader`).
        Defaults to the model's own input shapes.

    Raises:
      UnsupportedModelError: for subclassed models, unbuilt Sequential
        models, a backend other than TensorFlow, or an `input_signature` that
        does not fit.
    """

    flavour = "keras3"
    mask_class = keras3_channel_mask.ChannelMask
    _keras = keras
    _reroute = staticmethod(keras3_insertion.reroute)
    _calibration_config = staticmethod(keras3_calibration.calibration_config)

    @staticmethod
    def io_names(model):
        """`(input names, output names)` of a Keras 3 model (Sequential ones have no
        `output_names`)."""
        return ([t._keras_history[0].name for t in model.inputs],
                [t._keras_history[0].name for t in model.outputs])

    # Reading -----------------------------------------------------------------

    _check_model = staticmethod(_check_model)
    _function_of = staticmethod(_function_of)
    _is_graph_model = staticmethod(_is_graph_model)

    @staticmethod
    def _tensor_shape(keras_tensor):
        return tuple(None if d is None else int(d) for d in keras_tensor.shape)

    @staticmethod
    def _tensor_dtype(keras_tensor):
        dtype = keras_tensor.dtype
        return dtype if isinstance(dtype, str) else getattr(dtype, "name", "float32")

    @staticmethod
    def _node_call(node):
        return (node.operation, node.input_tensors, list(node.outputs), node.arguments.args,
                node.arguments.kwargs)

    @staticmethod
    def _is_graph_call(model, layer, node_index):
        return make_node_key(layer, node_index) in _function_of(model)._nodes

    @staticmethod
    def _weight_info(variable):
        return ir.WeightInfo(variable.name.split("/")[-1], tuple(int(d) for d in variable.shape),
                             bool(variable.trainable))

    @staticmethod
    def _set_input_shapes(config, sequential, input_names, shapes):
        """Sets the `batch_shape` of a model config's inputs, in place."""
        for entry, shape in zip(_input_entries(config, sequential), shapes):
            entry["config"]["batch_shape"] = list(shape)
        if sequential and config.get("build_input_shape") is not None:
            config["build_input_shape"] = list(shapes[0])

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

    def _replace_class(self, entry, cls):
        cls = cls if isinstance(cls, type) else self.custom_objects()[cls]
        entry.update(class_name=cls.__name__, module=cls.__module__,
                     registered_name=keras.saving.get_registered_name(cls))

    @staticmethod
    def _entry_config(config):
        return _without_build_configs(config)

    @staticmethod
    def _rewrite_call(inbound_node, fn):
        inbound_node["kwargs"] = fn(dict(inbound_node.get("kwargs") or {}))

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

    def _constraint_key(self, weight_name, layer_config):
        """Also `depthwise_constraint` for the `kernel` of a Keras 3 `DepthwiseConv*D`."""
        key = self.mask_class.constraint_key(weight_name)
        if key not in layer_config and weight_name == "kernel" \
                and "depthwise_constraint" in layer_config:
            return "depthwise_constraint"
        return key

    # Models built from this adapter -------------------------------------------

    def _compile_args(self):
        source = self.source_model
        compiled = getattr(source, "_compile_config", None)
        if not getattr(source, "compiled", False) or compiled is None:
            return None
        args = dict(compiled.config)
        optimizer = args.get("optimizer")
        if isinstance(optimizer, keras.optimizers.Optimizer):
            optimizer = type(optimizer).from_config(optimizer.get_config())
        return dict(optimizer=optimizer, loss=args.get("loss"), metrics=args.get("metrics"),
                    weighted_metrics=args.get("weighted_metrics"),
                    loss_weights=args.get("loss_weights"),
                    run_eagerly=args.get("run_eagerly", False),
                    jit_compile=args.get("jit_compile", "auto"))
