"""The layer registry: how each layer class treats channels.

One entry per layer class, looked up through the class's MRO, so a rule
written for `Conv` covers every subclass that has no entry of its own. An
entry is either a `LayerSpec` or a function `node -> LayerSpec` for layers
whose behaviour depends on their config (a `Concatenate` on the channel axis
concatenates channels; on another axis it merges them).

Adding support for a layer means one `register_layer` call:

```python
import vai_optimizer_tf as vot
from vai_optimizer_tf.stats import formulas

class Swish(tf_keras.layers.Layer):
    def call(self, x):
        return x * tf.sigmoid(x)

# Channels pass through; one multiply per element (sigmoid counts 0, as
# TensorFlow's profiler counts it).
vot.register_layer(Swish, vot.LayerSpec.passthrough(flops=formulas.per_element(1)))
```
"""

import dataclasses
import enum
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union


class Role(enum.Enum):
    """How a layer relates its output channels to its input channels."""

    PRODUCER = "producer"
    """Output channels are the layer's own (Conv, Dense): they can shrink
    independently of the input channels."""
    PASSTHROUGH = "passthrough"
    """Output channel i comes from input channel i (BN, ReLU, pooling,
    depthwise conv). Input and output channels are coupled."""
    MERGE = "merge"
    """Element-wise over several inputs (Add, Multiply): all inputs and the
    output share one set of channels."""
    CONCAT = "concat"
    """Concatenation on the channel axis: output channels are the inputs'
    channels, offset."""
    FLATTEN = "flatten"
    """Spatial positions times channels become features (Flatten)."""
    BARRIER = "barrier"
    """Channel semantics unknown or not slicable: channels on both sides stay
    as they are."""


@dataclasses.dataclass(frozen=True)
class Axis:
    """A weight axis that is sliced by channels.

    Attributes:
      index: The axis of the weight (negative counts from the end).
      repeat_key: Config key of a channel multiplier. Set for the pointwise
        kernel of a separable conv, whose input axis holds each input channel
        `depth_multiplier` times.
    """

    index: int
    repeat_key: Optional[str] = None


def _as_axes(mapping):
    return {k: v if isinstance(v, Axis) else Axis(int(v)) for k, v in (mapping or {}).items()}


@dataclasses.dataclass(frozen=True)
class RewriteContext:
    """What a config rewrite needs to know about the slim model.

    Attributes:
      in_width: Slim width of the first input's channel axis.
      out_width: Slim width of the first output's channel axis.
      in_kept: Kept channel positions of the first input (numpy int array).
      out_kept: Kept channel positions of the first output.
      out_shape: Slim shape of the first output, batch included.
    """

    in_width: Optional[int]
    out_width: Optional[int]
    in_kept: Any
    out_kept: Any
    out_shape: Any


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """How one layer class treats channels.

    Attributes:
      role: A `Role`.
      in_axes: Weight name -> axis sliced by the input channels.
      out_axes: Weight name -> axis sliced by the output channels.
      width_key: For producers, the config key holding the output width
        (`"filters"`, `"units"`).
      expand_key: For pass-throughs that repeat each input channel (depthwise
        conv), the config key of the multiplier.
      reason: For barriers, why channels cannot cross the layer.
      fixed_output: Why the output width cannot change even though the layer
        is otherwise understood (a Dense with a softmax activation).
      rewrite: Optional `fn(config, RewriteContext) -> config` that updates
        the config for the slim model beyond `width_key`.
      rewrite_call: Optional `fn(call_kwargs, RewriteContext) -> call_kwargs`
        that updates the non-tensor arguments of one call for the slim model
        (the `shape` of a `tf.reshape`), for layers whose widths live in the
        call rather than in the config. `call_kwargs` maps argument names to
        values as the model config stores them.
      flops: `fn(node, in_shapes, out_shapes) -> int` giving FLOPs per
        sample, with one multiply-add counted as 2 FLOPs (return 0 for a
        layer that costs nothing). `None` means the cost is unknown: `stat`
        lists the layer and `prune(ratio=...)` refuses to target a FLOPs
        reduction that would leave it out.
      config_path: Keys leading from the node's config to the config that
        `width_key`, `expand_key`, `Axis.repeat_key`, `rewrite` and the
        weight constraints refer to. Empty (the node's own config) except
        for wrappers: `("layer", "config")` for a layer inside
        `TimeDistributed`.
    """

    role: Role
    in_axes: Mapping[str, Axis] = dataclasses.field(default_factory=dict)
    out_axes: Mapping[str, Axis] = dataclasses.field(default_factory=dict)
    width_key: Optional[str] = None
    expand_key: Optional[str] = None
    reason: Optional[str] = None
    fixed_output: Optional[str] = None
    rewrite: Optional[Callable[[Dict[str, Any], RewriteContext], Dict[str, Any]]] = None
    rewrite_call: Optional[Callable[[Dict[str, Any], RewriteContext], Dict[str, Any]]] = None
    flops: Optional[Callable[..., int]] = None
    config_path: Tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.role, Role):
            raise ValueError(f"Invalid `role`: expected a vai_optimizer_tf.Role. "
                             f"Received: role={self.role!r}")
        object.__setattr__(self, "in_axes", _as_axes(self.in_axes))
        object.__setattr__(self, "out_axes", _as_axes(self.out_axes))
        if self.role is Role.PRODUCER and not self.width_key:
            raise ValueError("Invalid `width_key`: a PRODUCER must name the config key of "
                             "its output width, e.g. width_key='filters'. Received: width_key=None")
        if self.role is Role.BARRIER and not self.reason:
            raise ValueError("Invalid `reason`: a BARRIER must say why channels cannot "
                             "cross it. Received: reason=None")

    def layer_config(self, config):
        """The part of a node's `config` this spec's config keys refer to (see `config_path`)."""
        for key in self.config_path:
            config = config[key]
        return config

    def with_layer_config(self, config, layer_config):
        """A copy of a node's `config` with the part at `config_path` replaced."""
        if not self.config_path:
            return layer_config
        config = dict(config)
        inner = self.replace(config_path=self.config_path[1:])
        config[self.config_path[0]] = inner.with_layer_config(config[self.config_path[0]],
                                                              layer_config)
        return config

    def replace(self, **changes):
        """A copy of this spec with `changes` applied."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def passthrough(cls, per_channel_weights=None, flops=None, rewrite=None):
        """A channel-preserving layer.

        Only for layers that are finite, with a finite gradient, at 0: in the
        sparse model a pruned channel is 0 and the layers reading it have
        zero weights for it, so an inf there becomes NaN.

        Args:
          per_channel_weights: Weight name -> axis holding one entry per
            channel (e.g. `{"gamma": 0}`). Defaults to none.
          flops: FLOPs formula `fn(node, in_shapes, out_shapes) -> int`.
            Defaults to `None`: the cost is unknown.
          rewrite: Optional config rewrite. Defaults to none.
        """
        return cls(Role.PASSTHROUGH, out_axes=per_channel_weights or {}, flops=flops,
                   rewrite=rewrite)

    @classmethod
    def barrier(cls, reason, flops=None):
        """A layer that channels cannot cross, with the reason shown to users.

        Args:
          reason: Why channels cannot cross it.
          flops: FLOPs formula. Defaults to `None`: the cost is unknown.
        """
        return cls(Role.BARRIER, reason=reason, flops=flops)


Entry = Union[LayerSpec, Callable[[Any], LayerSpec]]


class LayerRegistry:
    """Maps layer classes to `LayerSpec`s, looked up through the MRO.

    Example:

    ```python
    registry = LayerRegistry()
    registry.register(tf_keras.layers.ReLU, LayerSpec.passthrough())
    registry.lookup(tf_keras.layers.ReLU)  # -> the spec
    ```
    """

    def __init__(self):
        self._entries = {}

    def register(self, layer_class, entry, replace=False):
        """Registers `entry` for `layer_class`.

        Args:
          layer_class: A layer class (not an instance).
          entry: A `LayerSpec`, or a callable `node -> LayerSpec`.
          replace: Whether an existing entry may be replaced. Defaults to
            `False`.

        Raises:
          ValueError: if `layer_class` is not a class, `entry` is neither a
            spec nor callable, or an entry exists and `replace` is False.
        """
        if not isinstance(layer_class, type):
            raise ValueError("Invalid `layer_class`: expected a layer class, not an instance. "
                             f"Received: layer_class={layer_class!r}")
        if not (isinstance(entry, LayerSpec) or callable(entry)):
            raise ValueError("Invalid `entry`: expected a LayerSpec or a callable "
                             f"node -> LayerSpec. Received: entry={entry!r}")
        if layer_class in self._entries and not replace:
            raise ValueError(f"{layer_class.__name__} is already registered; pass replace=True "
                             "to override its entry.")
        self._entries[layer_class] = entry

    def lookup(self, layer_class):
        """The entry of the nearest registered class in `layer_class`'s MRO, or None."""
        for klass in layer_class.__mro__:
            if klass in self._entries:
                return self._entries[klass]
        return None

    def resolve(self, node):
        """The `LayerSpec` that applies to `node`.

        Unknown layers resolve to a barrier whose reason names the layer, its
        class and both ways out, so they are never passed through silently.
        """
        entry = self.lookup(node.layer_class)
        if entry is None:
            return LayerSpec.barrier(
                f"layer {node.layer_path!r} of class {node.class_name} has no channel rule; "
                "register it with vai_optimizer_tf.register_layer(cls, LayerSpec...) or "
                "exclude it")
        spec = entry if isinstance(entry, LayerSpec) else entry(node)
        if not isinstance(spec, LayerSpec):
            raise TypeError(f"The registry entry for {node.class_name} returned {spec!r}; "
                            "entry functions must return a LayerSpec.")
        return spec

    def registered_classes(self):
        return list(self._entries)


REGISTRY = LayerRegistry()


def register_layer(layer_class, spec, replace=False):
    """Declares how `layer_class` (and its subclasses) treat channels.

    Args:
      layer_class: A Keras layer class.
      spec: A `LayerSpec`, or a callable `node -> LayerSpec`.
      replace: Whether to override an existing entry. Defaults to `False`.

    Example:

    ```python
    class Swish(tf_keras.layers.Layer):
        def call(self, x):
            return x * tf.sigmoid(x)

    vai_optimizer_tf.register_layer(
        Swish, vai_optimizer_tf.LayerSpec.passthrough(
            flops=lambda node, in_shapes, out_shapes: np.prod(out_shapes[0][1:])))
    ```
    """
    REGISTRY.register(layer_class, spec, replace=replace)
