"""Which weights of a model take an N:M pattern, and why the others do not.

Read from the neutral graph and the layer registry, never from layer
classes: a weight is a candidate when the registry gives it both an input-
and an output-channel axis (the kernel of a Conv, ConvTranspose, Dense, or
the pointwise kernel of a separable conv), so each output sums over its
input channels and blocks of consecutive input channels exist. A weight with
only an input axis is a depthwise kernel. Both `SparsePruner` and
`sparsity_report` call `plan_targets`, so they agree on every reason.
"""

import dataclasses
from typing import Optional, Tuple

from vai_optimizer_tf.graph.registry import REGISTRY, Role

EXCLUDED_BY_USER = "excluded by `excludes`"


@dataclasses.dataclass(frozen=True)
class SparseTarget:
    """A weight that takes the N:M pattern.

    Attributes:
      layer: The layer path (`outer/inner/layer` in nested models).
      weight: The weight's short name, e.g. `kernel`.
      index: The weight's index in the layer's weights.
      shape: The weight's shape.
      axis: Its input-channel axis (non-negative), along which blocks are cut.
      out_axis: Its output-channel axis (non-negative).
    """

    layer: str
    weight: str
    index: int
    shape: Tuple[int, ...]
    axis: int
    out_axis: int

    @property
    def in_channels(self):
        return self.shape[self.axis]


@dataclasses.dataclass(frozen=True)
class Exclusion:
    """A layer (or one of its weights) left dense, and why.

    Attributes:
      layer: The layer path.
      weight: The weight's short name, or `None` for the whole layer.
      reason: Why it stays dense.
    """

    layer: str
    weight: Optional[str]
    reason: str

    def describe(self):
        where = f"{self.layer}.{self.weight}" if self.weight else self.layer
        return f"{where}: {self.reason}"


def constraint_key(weight_name):
    """The layer config key of a weight's constraint (`kernel` -> `kernel_constraint`)."""
    return weight_name.replace("_kernel", "") + "_constraint"


def _activation_reason(nodes, weight_name, axis_spec, in_channels):
    """Why activation sparsity cannot go in front of this weight's layer, or None."""
    for node in nodes:
        if node.config.get("data_format") == "channels_first":
            return ("channels_first data format: activation sparsity works on the last "
                    "axis of its input")
        if axis_spec.repeat_key:
            return (f"the inputs of `{weight_name}` are made inside the layer (by its "
                    "depthwise step), out of reach of activation sparsity")
        if len(node.inputs) != 1 or node.input_shapes[0][-1] != in_channels:
            return (f"the layer's input does not carry the {in_channels} input channels of "
                    f"`{weight_name}` on its last axis, so activation sparsity cannot be put "
                    "in front of it")
    return None


def plan_targets(graph, block_size, a_sparsity=0.0, excludes=frozenset(), registry=REGISTRY):
    """Splits the model's kernels into N:M targets and exclusions with reasons.

    Args:
      graph: The model's neutral `Graph`.
      block_size: Consecutive input channels per block.
      a_sparsity: Activation sparsity; when positive, layers whose input
        tensor does not carry the kernel's input channels are excluded.
        Defaults to `0.0`.
      excludes: Layer paths the user excluded. Defaults to none.
      registry: The layer registry. Defaults to the library's.

    Returns:
      `(targets, exclusions)`: lists of `SparseTarget` and `Exclusion`, in
      graph order.
    """
    targets, exclusions = [], []
    seen = set()
    for node in graph.nodes:
        path = node.layer_path
        if path in seen or not node.weights:
            continue
        seen.add(path)
        nodes = graph.nodes_of_layer(path)
        spec = registry.resolve(node)
        if spec.role is Role.BARRIER:
            if any(len(w.shape) >= 2 for w in node.weights):
                exclusions.append(Exclusion(
                    path, None, f"the layer registry gives no input-channel axis: {spec.reason}"))
            continue
        for index, weight in enumerate(node.weights):
            axis_spec = spec.in_axes.get(weight.name)
            if axis_spec is None:
                continue
            if weight.name not in spec.out_axes:
                exclusions.append(Exclusion(
                    path, weight.name, "depthwise kernel: each filter reads one input channel, "
                    "so there are no blocks of input channels"))
                continue
            if path in excludes:
                exclusions.append(Exclusion(path, weight.name, EXCLUDED_BY_USER))
                continue
            axis = axis_spec.index % len(weight.shape)
            in_channels = weight.shape[axis]
            reason = None
            if in_channels % block_size:
                reason = (f"{in_channels} input channels, not a multiple of "
                          f"block_size={block_size}")
            elif constraint_key(weight.name) not in node.config:
                reason = (f"the layer has no `{constraint_key(weight.name)}` argument to hold "
                          "the mask")
            elif a_sparsity > 0:
                reason = _activation_reason(nodes, weight.name, axis_spec, in_channels)
            if reason is not None:
                exclusions.append(Exclusion(path, weight.name, reason))
            else:
                out_axis = spec.out_axes[weight.name].index % len(weight.shape)
                targets.append(SparseTarget(path, weight.name, index, tuple(weight.shape), axis,
                                            out_axis))
    return targets, exclusions
