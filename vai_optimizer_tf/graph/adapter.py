"""`ModelAdapter`: what the library asks of the reader of one Keras flavour.

An adapter reads a model of its flavour (tf_keras, Keras 3) into the neutral
`Graph` IR, gives its weights by layer path as numpy arrays, and rebuilds the
model from rewritten layer configs. Everything outside `graph/` talks to a
model through these methods only, so it works unchanged on every flavour.

Both flavours store the same things under other names, so reading (the
`GraphReader` base), rebuilding from a rewritten config, and the weight
handling are written once; each flavour's adapter implements the small hooks
that say where its Keras keeps each thing (how a node's call arguments are
stored, how a model is built from a config, how a layer's class is named)
and has its own mask and calibration classes.
"""

import abc
import copy
import difflib

import numpy as np

from vai_optimizer_tf.graph import graph_reader
from vai_optimizer_tf.graph import layer_insertion
from vai_optimizer_tf.utils import digests


class ModelAdapter(graph_reader.GraphReader):
    """Reads a model of one Keras flavour into a `Graph` and rebuilds it with changes.

    The constructor (see `GraphReader`) sets `source_model` (the model as
    given, never modified), `model` (the model read, a clone when an input
    signature fixed undefined input dimensions) and `graph`.

    Args:
      model: A Sequential or Functional model of the adapter's flavour. It is
        never modified.
      input_signature: Optional input specs fixing undefined input
        dimensions (see `GraphReader`). Defaults to the model's own input
        shapes.

    Attributes:
      flavour: The Keras flavour read, `"tf_keras"` or `"keras3"`.
      mask_class: The flavour's `ChannelMask` constraint class.
    """

    flavour = None
    mask_class = None

    @staticmethod
    @abc.abstractmethod
    def io_names(model):
        """`(input names, output names)` of a model of this flavour.

        Inputs are named after their `InputLayer`, outputs after the layer
        (or nested model) that produces them, in `model.inputs` and
        `model.outputs` order.
        """

    # Rebuilding --------------------------------------------------------------

    @abc.abstractmethod
    def custom_objects(self):
        """Name -> class for the layer classes a config of this model needs to deserialize."""

    @abc.abstractmethod
    def _replace_class(self, entry, cls):
        """Makes a layer entry of a model config deserialize as `cls`, in place.

        `cls` is a class, or the name of a class known to `custom_objects()`.
        """

    @staticmethod
    def _entry_config(config):
        """A layer's config as the rebuilt model's config holds it. Defaults to `config`."""
        return config

    @staticmethod
    @abc.abstractmethod
    def _rewrite_call(inbound_node, fn):
        """Applies `fn(call_kwargs) -> call_kwargs` to one serialized call of a layer, in place."""

    @abc.abstractmethod
    def _rewrite_nested_inputs(self, entry, path, tensor_shapes):
        """Sets the channel axis of a nested model entry's inputs from `tensor_shapes`, in place."""

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
            applied to the keyword arguments the config stores for that call
            (e.g. the `shape` of a `tf.reshape`).
          name: Optional new model name. Defaults to the source's name.
          layer_classes: Layer path -> class replacing the layer's class: the
            class itself, or the name of a class known to `custom_objects()`.

        Returns:
          A new model of the same flavour and kind, with the same layer names.

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
        for entry in model_config["layers"]:
            name = entry["config"]["name"]
            path = prefix + name
            # Layers are built when the rebuilt graph calls them, with the
            # input shapes they get there (which pruning changes), not with
            # the shapes they were built for.
            entry.pop("build_config", None)
            if path in layer_classes:
                self._replace_class(entry, layer_classes[path])
            if graph_reader.is_model_entry(entry):
                self._rewrite(entry["config"], path + "/", layer_configs, tensor_shapes,
                              layer_classes)
                self._rewrite_nested_inputs(entry, path, tensor_shapes)
            elif path in layer_configs:
                entry["config"] = self._entry_config(copy.deepcopy(layer_configs[path]))
            else:
                # A model read from a sparse model is rebuilt without its masks
                # unless the caller passes masked configs.
                entry["config"] = self._entry_config(graph_reader.strip_layer_masks(
                    entry["config"]))

    def _rewrite_calls(self, model_config, call_rewrites):
        for node_name, fn in call_rewrites.items():
            path, index = self._config_calls[node_name]
            entry = self._config_entry(model_config, self._path_parts[path])
            inbound = entry.get("inbound_nodes") or []
            if index is None or index >= len(inbound):
                raise ValueError(f"Cannot rewrite the call arguments of {node_name!r}: the model "
                                 "config does not list them. Exclude the layer feeding it.")
            self._rewrite_call(inbound[index], fn)

    @staticmethod
    def _config_entry(model_config, parts):
        """The config entry of the layer at `parts` (nested model names, then the layer)."""
        entry = None
        for part in parts:
            layers = (entry["config"] if entry is not None else model_config)["layers"]
            entry = next(e for e in layers if e["config"]["name"] == part)
        return entry

    @staticmethod
    @abc.abstractmethod
    def _reroute(node, new_name, index):
        """The flavour's `reroute` for `layer_insertion.insert_layers` (see there)."""

    def insert_before(self, model, layer_for, suffix):
        """A copy of a model rebuilt by this adapter, with new layers in front of some layers.

        In a Functional model the new layer takes over every call of its
        target (shared layers and nested models included), in a Sequential
        model it comes right before the target. No existing layer is wrapped
        or renamed, and the copy has `model`'s weights.

        Args:
          model: A model rebuilt by this adapter (not modified).
          layer_for: `fn(layer path) -> layer or None`: a new layer of this
            flavour to call in front of that layer, or None.
          suffix: The new layers are named `<target name>_<suffix>`.

        Returns:
          `(new model, {target path: inserted layer path})`.

        Raises:
          ValueError: if a target is called on several tensors.
        """
        config = copy.deepcopy(model.get_config())
        inserted, classes = layer_insertion.insert_layers(
            config, layer_for, suffix, self._keras.saving.serialize_keras_object, self._reroute)
        new = self._from_config(model, config, classes)
        self.assign_weights(new, {path: self.layer_values(model, path)
                                  for path in self.all_weights()})
        return new, inserted

    @staticmethod
    @abc.abstractmethod
    def _calibration_config(layer):
        """`(class_name, config)` of `layer` in a calibration copy, or None to keep it as is."""

    def rebuild_for_calibration(self, layer_weights=None):
        """A copy for adaptive BN whose BatchNormalization layers sum batch statistics.

        Every BatchNormalization becomes a `CalibratingBatchNormalization`
        with momentum 0, and Dropout-like noise layers are switched off; in
        inference the copy computes what the source computes. Channel masks
        are dropped (the copy is not trained).

        Args:
          layer_weights: Layer path -> arrays to start from. Defaults to the
            source model's weights.

        Returns:
          `(model, calibrating)`: the copy, and its calibrating layers by path
          (each with `reset_sums()`, `batches_seen()` and `set_average()`).
        """
        return self._calibration_copy(self._calibration_config, layer_weights)

    @abc.abstractmethod
    def _compile_args(self):
        """The source model's `compile` arguments with a fresh optimizer, or None if uncompiled."""

    def compile_like_source(self, model):
        """Compiles `model` with the source model's loss and metrics, if it had any.

        The optimizer is a fresh copy of the source's, so the two models never
        share optimizer state.

        Returns:
          Whether `model` was compiled (False when the source was not).
        """
        args = self._compile_args()
        if args is None:
            return False
        model.compile(**args)
        return True

    def with_masks(self, layer_config, masks):
        """A copy of `layer_config` with this flavour's `ChannelMask` on the weights in `masks`.

        Args:
          layer_config: The layer's config (without masks).
          masks: Weight name -> `(shape, [[axis, kept], ...])`.

        Returns:
          `(config, unmasked)`: the new config, and the weight names whose layer
          has no constraint argument to hold a mask.
        """
        config = dict(layer_config)
        unmasked = []
        for name, (shape, axes) in masks.items():
            key = self._constraint_key(name, config)
            if key not in config:
                unmasked.append(name)
                continue
            config[key] = self.mask_class(shape, axes, inner=config.get(key)).serialize()
        return config, unmasked

    def _constraint_key(self, weight_name, layer_config):
        """The key of `layer_config` that holds the constraint of weight `weight_name`."""
        return self.mask_class.constraint_key(weight_name)

    # Weights and layers --------------------------------------------------------

    def layer_weights(self, layer_path):
        """The numpy values of the layer's variables, in `Node.weights` order."""
        return self._layers[layer_path].get_weights()

    def all_weights(self):
        """Layer path -> list of numpy arrays, for every layer with weights."""
        return {path: layer.get_weights() for path, layer in self._layers.items()
                if getattr(layer, "weights", None)}

    def weights_digest(self):
        """A hex digest of all weight values, for cache keys."""
        return digests.weights_digest(self.all_weights())

    def layer_config(self, layer_path):
        """A deep copy of the source layer's config."""
        return copy.deepcopy(self._layers[layer_path].get_config())

    @staticmethod
    def _find_layer(model, parts):
        layer = model
        for part in parts:
            layer = layer.get_layer(part)
        return layer

    def resolve_layers(self, layers):
        """Layer paths (a frozenset) of `None`, one layer, or an iterable of layers.

        Each layer is given as `resolve_layer` takes it; `None` is no layer.
        """
        if layers is None:
            return frozenset()
        if isinstance(layers, str) or not hasattr(layers, "__iter__"):
            layers = [layers]
        return frozenset(self.resolve_layer(layer) for layer in layers)

    def resolve_layer(self, layer_or_name):
        """Layer path of a layer given as an object, a path, or a unique name.

        Raises:
          ValueError: if no layer (or several nested ones) match, with the
            closest names in the message.
        """
        if isinstance(layer_or_name, str):
            if layer_or_name in self._layers:
                return layer_or_name
            matches = [p for p in self._layers if p.split("/")[-1] == layer_or_name]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise ValueError(f"Layer name {layer_or_name!r} is ambiguous: it matches "
                                 f"{matches}. Pass the full path or the layer object.")
            close = difflib.get_close_matches(layer_or_name, list(self._layers), n=3)
            raise ValueError(f"No layer named {layer_or_name!r} in model {self.model.name!r}"
                             + (f"; did you mean {close}?" if close else ".")
                             + " Layers without weights that only pass channels through "
                             "cannot be excluded on their own; exclude the layer producing "
                             "the channels instead.")
        for path, layer in self._layers.items():
            if layer is layer_or_name:
                return path
        name = getattr(layer_or_name, "name", None)
        if isinstance(name, str) and self.model is not self.source_model:
            return self.resolve_layer(name)
        raise ValueError(f"Layer object {layer_or_name!r} is not part of model "
                         f"{self.model.name!r}. Pass one of its layers or a layer name.")

    # Models built from this adapter -------------------------------------------

    def channel_masks(self, model):
        """The masked variables of a model rebuilt by this adapter.

        Returns:
          `(layer path, weight index) -> (variable, ChannelMask)`.
        """
        return {(path, i): (variable, constraint) for path, i, variable, constraint
                in self.constrained_weights(model, self.mask_class)}

    def constrained_weights(self, model, constraint_class):
        """The variables of a model whose constraint is a `constraint_class`.

        Args:
          model: The model read by this adapter, or one it rebuilt.
          constraint_class: A constraint class (or tuple of classes).

        Returns:
          A list of `(layer path, weight index, variable, constraint)`, in
          layer order.
        """
        found = []
        for path, source_layer in self._layers.items():
            if not getattr(source_layer, "weights", None):
                continue
            layer = self._find_layer(model, self._path_parts[path])
            for i, variable in enumerate(layer.weights):
                constraint = getattr(variable, "constraint", None)
                if isinstance(constraint, constraint_class):
                    found.append((path, i, variable, constraint))
        return found

    def layer_values(self, model, layer_path):
        """Numpy values of a layer's weights in a model rebuilt by this adapter."""
        return self._find_layer(model, self._path_parts[layer_path]).get_weights()

    def assign_weights(self, model, layer_weights):
        """Sets weights, by layer path, on a model rebuilt by this adapter."""
        for path, values in layer_weights.items():
            self._find_layer(model, self._path_parts[path]).set_weights(values)

    def assign_source_weights(self, layer_weights):
        """Sets weights, by layer path, on the source model itself.

        Only for functions whose documented effect is to change the user's
        model (such as `adaptive_bn`); runners never call it.
        """
        self.assign_weights(self.source_model, layer_weights)

    def _set_rebuilt_weights(self, model, layer_weights):
        """Loads `layer_weights` (or the source's) into every layer of a rebuilt model."""
        for path, layer in self._layers.items():
            if not getattr(layer, "weights", None):
                continue
            values = layer_weights.get(path)
            if values is None:
                values = layer.get_weights()
            target = self._find_layer(model, self._path_parts[path])
            try:
                target.set_weights(values)
            except ValueError as e:
                raise ValueError(f"Rebuilt layer {path!r} does not accept its new weights "
                                 f"({[np.shape(v) for v in values]}): {e}") from e

    def _calibration_copy(self, replacement, layer_weights):
        """`rebuild_for_calibration` given `replacement(layer) -> (class_name, config) | None`."""
        configs, classes = {}, {}
        for path, layer in self._layers.items():
            found = replacement(layer)
            if found is None:
                continue
            class_name, config = found
            configs[path] = self.mask_class.strip_masks(config)
            if class_name is not None:
                classes[path] = class_name
        model = self.rebuild(layer_configs=configs, layer_weights=layer_weights,
                             layer_classes=classes)
        calibrating = {path: self._find_layer(model, self._path_parts[path]) for path in classes}
        return model, calibrating
