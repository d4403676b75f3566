"""`LatencyUnit`: a piece of the model whose run time depends on kept widths.

A unit is one layer call whose input or output width depends on a prunable
group (a conv, a dense, a depthwise conv, an add, a pooling), together with
the channel-wise layers that follow it and that backends fuse into it: TFLite
folds BatchNormalization into the conv and fuses ReLU, and TensorFlow's
remapper does the same on CPU. By the FLOPs conventions (TensorFlow's
profiler), those are exactly the pass-through layers that count 0 FLOPs, so
fusion is read from the registry, not from layer classes. Layers whose widths
never change are not units: their time is a constant of the calibration.

Units of the same configuration and shapes share one `signature`, so a
ResNet's repeated blocks are measured once. A unit is built on its own as a
small tf_keras model at any (input, output) width to be timed.
"""

import dataclasses
import json
from typing import Tuple

import numpy as np

from vai_optimizer_tf.graph.ir import TensorRef
from vai_optimizer_tf.graph.registry import Role

_SIGNATURE_VERSION = 1
_TIMED_ROLES = (Role.PRODUCER, Role.PASSTHROUGH, Role.MERGE)


@dataclasses.dataclass(frozen=True)
class LatencyUnit:
    """One timed piece of the model.

    Attributes:
      nodes: Node names, the unit's first layer first, then its fused
        followers.
      in_tensor: Id of the first layer's (first) input tensor.
      num_inputs: How many inputs the first layer takes (2 for an add).
      out_tensor: Id of the unit's output tensor.
      in_varies: Whether the input width depends on a prunable group.
      out_varies: Whether the output width depends on a prunable group
        independently of the input (a conv's filters; not a depthwise conv,
        whose output follows its input).
      in_width: The input width of the baseline.
      out_width: The output width of the baseline.
      signature: JSON text identifying the configuration and shapes; units
        with equal signatures take the same time at equal widths.
    """

    nodes: Tuple[str, ...]
    in_tensor: int
    num_inputs: int
    out_tensor: int
    in_varies: bool
    out_varies: bool
    in_width: int
    out_width: int
    signature: str

    @property
    def axes(self):
        """The widths the unit's time depends on: `("in",)`, `("out",)` or `("in", "out")`."""
        return tuple(a for a, v in (("in", self.in_varies), ("out", self.out_varies)) if v)

    def describe(self):
        """One line: the layers and the widths the unit depends on."""
        return (f"unit {' + '.join(self.nodes)}: {self.in_width} -> {self.out_width} channels, "
                f"timed over {' and '.join(self.axes)} widths")

    def __repr__(self):
        return f"LatencyUnit({self.nodes[0]!r}, axes={self.axes})"


def _proportional(a, b):
    """Whether coefficient maps `b` = k * `a` for one k > 0."""
    if not a or set(a) != set(b):
        return False
    ratios = [b[g] / a[g] for g in a]
    return max(ratios) - min(ratios) <= 1e-9 * max(ratios)


def _fuses(deps, node):
    """Whether `node` fuses into the layer before it: a channel-wise pass-through of 0 FLOPs."""
    spec = deps.node_spec(node.name)
    if spec.role is not Role.PASSTHROUGH or spec.expand_key or len(node.inputs) != 1:
        return False
    if spec.flops is None:
        return True
    graph = deps.graph
    shapes_in = [graph.tensors[t].shape for t in node.inputs]
    shapes_out = [graph.tensors[t].shape for t in node.outputs]
    try:
        return int(spec.flops(node, shapes_in, shapes_out)) == 0
    except (TypeError, ValueError, KeyError):
        return False


def _simple_call(node):
    """Whether the layer is called on its input tensors alone (rebuildable on its own)."""
    if node.call_kwargs and any(v is not None for k, v in node.call_kwargs.items()
                                if k not in ("training", "mask")):
        return False
    refs = []
    for arg in node.call_args:
        items = arg if isinstance(arg, (list, tuple)) else [arg]
        if not all(isinstance(i, TensorRef) for i in items):
            return False
        refs.extend(items)
    return [r.id for r in refs] == list(node.inputs)


def _config_for_signature(config, drop_key=None):
    return {k: v for k, v in config.items() if k not in ("name", drop_key)}


def find_units(deps, flops, groups=None):
    """The latency units of a dependency graph, and the width-dependent layers left untimed.

    Args:
      deps: The `DependencyGraph` (excludes applied).
      flops: Its `WidthFlops` (for the tensors' group coefficients).
      groups: The groups whose widths may change. Defaults to the prunable
        groups of `deps`.

    Returns:
      `(units, untimed)`: the `LatencyUnit`s in graph order, and the names of
      layers whose widths change but that cannot be timed on their own
      (concatenations, reshapes, layers with extra call arguments); their
      time counts as a constant.
    """
    graph = deps.graph
    varying = {g.id for g in (deps.prunable_groups if groups is None else groups)}

    def coefs(tid):
        return {g: c for g, c in flops.tensor_coefficients(tid).items() if g in varying}

    units, untimed, taken = [], [], set()
    for node in graph.nodes:
        if node.name in taken or not node.inputs or not node.outputs:
            continue
        ins = [coefs(t) for t in node.inputs]
        if not any(ins) and not any(coefs(t) for t in node.outputs):
            continue
        spec = deps.node_spec(node.name)
        same_inputs = all(c == ins[0] for c in ins[1:]) and all(
            graph.tensors[t].shape == graph.tensors[node.inputs[0]].shape for t in node.inputs)
        if (spec.role not in _TIMED_ROLES or spec.rewrite is not None or spec.rewrite_call
                is not None or not same_inputs or len(node.outputs) != 1
                or not _simple_call(node) or len(graph.tensors[node.inputs[0]].shape) < 2):
            untimed.append(node.name)
            continue
        chain = [node]
        while True:
            out = chain[-1].outputs[0]
            consumers = graph.consumers(out)
            if len(consumers) != 1 or out in graph.outputs:
                break
            nxt = consumers[0]
            if nxt.name in taken or not _fuses(deps, nxt) or not _simple_call(nxt):
                break
            chain.append(nxt)
        taken.update(n.name for n in chain)
        units.append(_make_unit(deps, flops, chain, coefs))
    return units, untimed


def _make_unit(deps, flops, chain, coefs):
    graph = deps.graph
    head = chain[0]
    in_tensor, out_tensor = head.inputs[0], chain[-1].outputs[0]
    c_in, c_out = coefs(in_tensor), coefs(out_tensor)
    in_varies = bool(c_in)
    out_varies = bool(c_out) and not _proportional(c_in, c_out)
    spec = deps.node_spec(head.name)
    in_shape = graph.tensors[in_tensor].shape
    out_shape = graph.tensors[out_tensor].shape
    layers = []
    for i, node in enumerate(chain):
        cls = node.layer_class
        drop = deps.node_spec(node.name).width_key if i == 0 and out_varies else None
        layers.append([f"{cls.__module__}.{cls.__qualname__}",
                       _config_for_signature(node.config, drop)])
    signature = json.dumps({
        "version": _SIGNATURE_VERSION, "layers": layers, "inputs": len(head.inputs),
        "in_shape": list(in_shape[1:]), "out_shape": list(out_shape[1:]),
        "in_varies": in_varies, "out_varies": out_varies,
        "width_key": spec.width_key if out_varies else None,
    }, sort_keys=True, default=str)
    return LatencyUnit(tuple(n.name for n in chain), in_tensor, len(head.inputs), out_tensor,
                       in_varies, out_varies, int(in_shape[-1]), int(out_shape[-1]), signature)


def axis_widths(flops, tensor_id, stairs, max_points):
    """The widths a tensor can take, from its groups' staircases, at most `max_points` of them.

    Args:
      flops: The `WidthFlops`.
      tensor_id: The tensor.
      stairs: Group id -> ascending kept widths of each varying group.
      max_points: Largest number of widths returned. When the tensor can take
        more, evenly spaced ones are kept (always the smallest and the full
        width); the time between them is interpolated.

    Returns:
      An ascending int array.
    """
    coefficients = {g: c for g, c in flops.tensor_coefficients(tensor_id).items() if g in stairs}
    full = flops.tensor_width(tensor_id, {})
    fixed = full - sum(c * max(stairs[g]) for g, c in coefficients.items())
    if len(coefficients) == 1:
        (gid, c), = coefficients.items()
        values = np.unique(np.round(fixed + c * np.asarray(stairs[gid], float)).astype(int))
    else:
        low = int(round(fixed + sum(c * min(stairs[g]) for g, c in coefficients.items())))
        values = np.unique(np.round(np.linspace(low, full, max_points)).astype(int))
    values = values[values >= 1]
    if len(values) > max_points:
        picks = np.unique(np.round(np.linspace(0, len(values) - 1, max_points)).astype(int))
        values = values[picks]
    return values


def build_unit_model(deps, unit, in_width, out_width, batch_size):
    """A model of the unit alone, at the given widths and batch size.

    The model is of the flavour (tf_keras or Keras 3) of the unit's layers.

    Args:
      deps: The `DependencyGraph` the unit comes from.
      unit: The `LatencyUnit`.
      in_width: Input width.
      out_width: Output width (used when the output varies on its own).
      batch_size: The model's fixed batch size.

    Returns:
      A `Model` with random weights.
    """
    from vai_optimizer_tf.graph import adapters  # pylint: disable=import-outside-toplevel
    graph = deps.graph
    first = graph.node(unit.nodes[0]).layer_class
    flavour = next(f for f in adapters.FLAVOURS
                   if issubclass(first, adapters.keras_module(f).layers.Layer))
    keras = adapters.keras_module(flavour)
    shape = tuple(graph.tensors[unit.in_tensor].shape[1:-1]) + (int(in_width),)
    inputs = [keras.Input(shape, batch_size=batch_size) for _ in range(unit.num_inputs)]
    x = inputs if unit.num_inputs > 1 else inputs[0]
    for i, name in enumerate(unit.nodes):
        node = graph.node(name)
        config = dict(node.config)
        config.pop("name", None)
        width_key = deps.node_spec(name).width_key
        if i == 0 and unit.out_varies and width_key:
            config[width_key] = int(out_width)
        x = node.layer_class.from_config(config)(x)
    return keras.Model(inputs, x)
