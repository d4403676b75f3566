"""Adapter for `tf_keras` (Keras 2) models.

This is the only module that touches `tf_keras` internals. The reading of a
Sequential or Functional model (nested models and shared layers included)
into the neutral `Graph` IR and the rebuilding from rewritten layer configs
are shared with Keras 3 (`GraphReader`, `ModelAdapter`); this module gives
their hooks: where tf_keras keeps a model's graph, a node's call and a
layer's class, and how it builds and compiles a model. No `tf_keras` object
leaves the adapter: the rest of the library sees `Graph`, plain dicts and
numpy arrays.
"""

import tensorflow as tf
import tf_keras
from tf_keras.src.engine import functional as functional_lib
from tf_keras.src.saving import serialization_lib

from vai_optimizer_tf import errors
from vai_optimizer_tf.graph import ir
from vai_optimizer_tf.graph import tf_keras_calibration
from vai_optimizer_tf.graph import tf_keras_insertion
from vai_optimizer_tf.graph import tf_keras_rules  # noqa: F401  (registers the entries)
from vai_optimizer_tf.graph.adapter import ModelAdapter
from vai_optimizer_tf.masks import channel_mask


def is_supported_model(model):
    """Whether `model` is a tf_keras model (of any kind)."""
    return isinstance(model, tf_keras.Model)


def _config_tensor_entries(node_data):
    """The `[layer, node, tensor, kwargs]` entries of one serialized inbound node."""
    if isinstance(node_data, (list, tuple)) and node_data and isinstance(node_data[0], str):
        return [node_data]
    entries = []
    for item in node_data if isinstance(node_data, (list, tuple)) else []:
        entries.extend(_config_tensor_entries(item))
    return entries


class TfKerasAdapter(ModelAdapter):
    """Reads a tf_keras model into a `Graph` and rebuilds it with changes.

    Args:
      model: A tf_keras Sequential or Functional model. It is never modified.
      input_signature: Optional `tf.TensorSpec` (or list, one per input)
        fixing undefined input dimensions for reading (see `GraphReader`).
        Defaults to the model's own input shapes.

    Raises:
      UnsupportedModelError: for subclassed models, unbuilt Sequential
        models, Keras 3 models, or an `input_signature` that does not fit.
    """

    flavour = "tf_keras"
    mask_class = channel_mask.ChannelMask
    _keras = tf_keras
    _reroute = staticmethod(tf_keras_insertion.reroute)
    _calibration_config = staticmethod(tf_keras_calibration.calibration_config)

    @staticmethod
    def io_names(model):
        """`(input names, output names)` of a tf_keras model."""
        inputs = list(getattr(model, "input_names", None)
                      or [t.name.split(":")[0] for t in model.inputs])
        return inputs, list(model.output_names)

    # Reading -----------------------------------------------------------------

    @staticmethod
    def _check_model(model):
        if not isinstance(model, tf_keras.Model):
            module = type(model).__module__
            if module.startswith("keras"):
                raise errors.UnsupportedModelError(
                    f"Got a Keras 3 model ({type(model).__name__}); TfKerasAdapter reads "
                    "tf_keras (Keras 2) models. Use "
                    "vai_optimizer_tf.graph.adapters.adapter_for(model), which picks the "
                    "Keras 3 adapter.")
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

    @staticmethod
    def _tensor_shape(keras_tensor):
        return tuple(keras_tensor.shape.as_list())

    @staticmethod
    def _tensor_dtype(keras_tensor):
        return keras_tensor.dtype.name if keras_tensor.dtype else "float32"

    @staticmethod
    def _function_of(model):
        return model

    @staticmethod
    def _is_graph_model(layer):
        return getattr(layer, "_is_graph_network", False)

    @staticmethod
    def _node_call(node):
        return (node.layer, node.keras_inputs, tf.nest.flatten(node.outputs), node.call_args,
                node.call_kwargs)

    @staticmethod
    def _is_graph_call(model, layer, node_index):
        return functional_lib._make_node_key(layer.name, node_index) in model._network_nodes

    @staticmethod
    def _weight_info(variable):
        name = variable.name.split("/")[-1].split(":")[0]
        return ir.WeightInfo(name, tuple(variable.shape.as_list()), bool(variable.trainable))

    @staticmethod
    def _set_input_shapes(config, sequential, input_names, shapes):
        """Sets the `batch_input_shape` of a model config's inputs, in place."""
        for entry in config["layers"]:
            if entry["class_name"] == "InputLayer" and entry["config"]["name"] in input_names:
                entry["config"]["batch_input_shape"] = list(
                    shapes[input_names.index(entry["config"]["name"])])
        if sequential and config["layers"][0]["class_name"] != "InputLayer":
            config["layers"][0]["config"]["batch_input_shape"] = list(shapes[0])

    @staticmethod
    def _plain_value(value):
        """Also shapes (as lists) and dtypes (as names)."""
        if isinstance(value, tf.TensorShape):
            return value.as_list()
        if isinstance(value, tf.DType):
            return value.name
        return ModelAdapter._plain_value(value)

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

    def _from_config(self, model, config, extra_objects=None):
        # While the model is read (for an input signature), no custom objects yet.
        objects = self.custom_objects() if self._layers else {}
        objects.update(extra_objects or {})
        # The config comes from the model in memory, not from a file, so its
        # Lambda layers are the user's own code: safe mode would only refuse them.
        with tf_keras.utils.custom_object_scope(objects), \
                serialization_lib.SafeModeScope(False):
            if isinstance(model, tf_keras.Sequential):
                return tf_keras.Sequential.from_config(config)
            return tf_keras.Model.from_config(config)

    def _replace_class(self, entry, cls):
        entry["class_name"] = cls.__name__ if isinstance(cls, type) else cls
        entry.pop("module", None)
        entry.pop("registered_name", None)

    @staticmethod
    def _rewrite_call(inbound_node, fn):
        for tensor_entry in _config_tensor_entries(inbound_node):
            if len(tensor_entry) > 3:
                tensor_entry[3] = fn(tensor_entry[3])

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

    def _compile_args(self):
        source = self.source_model
        if not getattr(source, "_is_compiled", False):
            return None
        args = source._get_compile_args()
        optimizer = args.get("optimizer")
        if optimizer is not None:
            optimizer = tf_keras.optimizers.deserialize(tf_keras.optimizers.serialize(optimizer))
        return dict(optimizer=optimizer, loss=args.get("loss"), metrics=args.get("metrics"),
                    weighted_metrics=args.get("weighted_metrics"),
                    loss_weights=args.get("loss_weights"))
