"""`ModelAdapter`: what the library asks of the reader of one Keras flavour.

An adapter reads a model of its flavour (tf_keras, Keras 3) into the neutral
`Graph` IR, gives its weights by layer path as numpy arrays, and rebuilds the
model from rewritten layer configs. Everything outside `graph/` talks to a
model through these methods only, so it works unchanged on every flavour.

The part of the contract that only needs the Keras layer API both flavours
share (`get_weights`, `set_weights`, `get_layer`, `weights`, `get_config`) is
implemented here; each flavour implements reading, rebuilding, compiling and
its own mask and calibration classes.
"""

import abc
import copy
import difflib
import hashlib

import numpy as np


class ModelAdapter(abc.ABC):
    """Reads a model of one Keras flavour into a `Graph` and rebuilds it with changes.

    Subclasses set, while reading the model: `source_model` (the model as
    given, never modified), `model` (the model read, a clone when an input
    signature fixed undefined input dimensions), `graph`, `_layers` (layer
    path -> layer object) and `_path_parts` (layer path -> the names leading
    to the layer through nested models).

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

    # Reading -----------------------------------------------------------------

    @abc.abstractmethod
    def source_digest(self):
        """`Graph.digest()` of the model as given, with its own input shapes."""

    @abc.abstractmethod
    def custom_objects(self):
        """Name -> class for the layer classes a config of this model needs to deserialize."""

    # Rebuilding --------------------------------------------------------------

    @abc.abstractmethod
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
          layer_classes: Layer path -> class name replacing the layer's class
            (a class known to `custom_objects()`).

        Returns:
          A new model of the same flavour and kind, with the same layer names.
        """

    @abc.abstractmethod
    def _from_config(self, model, config, extra_objects=None):
        """A model of `model`'s kind built from `config` (a config of this flavour).

        Args:
          model: The model whose kind (Sequential or Functional) to build.
          config: The model config.
          extra_objects: Name -> class, besides `custom_objects()`.
        """

    @abc.abstractmethod
    def _insert_layers(self, config, layer_for, suffix):
        """The flavour's `layer_insertion.insert_layers` (see `insert_before`)."""

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
        inserted, classes = self._insert_layers(config, layer_for, suffix)
        new = self._from_config(model, config, classes)
        self.assign_weights(new, {path: self.layer_values(model, path)
                                  for path in self.all_weights()})
        return new, inserted

    @abc.abstractmethod
    def rebuild_for_calibration(self, layer_weights=None):
        """A copy for adaptive BN whose BatchNormalization layers sum batch statistics.

        Args:
          layer_weights: Layer path -> arrays to start from. Defaults to the
            source model's weights.

        Returns:
          `(model, calibrating)`: the copy, and its calibrating layers by path
          (each with `reset_sums()`, `batches_seen()` and `set_average()`).
        """

    @abc.abstractmethod
    def compile_like_source(self, model):
        """Compiles `model` like the source model, with a fresh optimizer.

        Returns:
          Whether `model` was compiled (False when the source was not).
        """

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
        digest = hashlib.sha256()
        for path, values in sorted(self.all_weights().items()):
            digest.update(path.encode())
            for value in values:
                value = np.ascontiguousarray(value)
                digest.update(str(value.shape).encode())
                digest.update(value.tobytes())
        return digest.hexdigest()[:16]

    def layer_config(self, layer_path):
        """A deep copy of the source layer's config."""
        return copy.deepcopy(self._layers[layer_path].get_config())

    @staticmethod
    def _find_layer(model, parts):
        layer = model
        for part in parts:
            layer = layer.get_layer(part)
        return layer

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
