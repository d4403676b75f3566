"""FLOPs and parameter counts, per layer and in total."""

import dataclasses
import logging
import math
from typing import List, Optional


@dataclasses.dataclass(frozen=True)
class LayerStats:
    """Counts for one layer (summed over its calls for a shared layer).

    Attributes:
      name: The layer's path (`outer/inner/layer` in nested models).
      class_name: The layer's class name.
      flops: FLOPs per sample; 0 when unknown.
      params: Number of weights.
      flops_known: Whether the layer has a FLOP formula. A layer without one
        (a Lambda, a custom layer, an unknown `tf.*` call) counts 0 here, but
        its real cost is unknown.
    """

    name: str
    class_name: str
    flops: int
    params: int
    flops_known: bool = True


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Predicted latency of a model on one device, from the measured latency table.

    Attributes:
      seconds: Predicted seconds per call (one batch).
      device: `"tf"` or `"tflite"`.
      batch_size: The batch size of a call.
      fraction: `seconds` as a fraction of the baseline's measured latency.
      measured: The measured fraction, when the slim model was measured
        (latency-targeted pruning), else None.
    """

    seconds: float
    device: str
    batch_size: int
    fraction: float = 1.0
    measured: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class ModelStats:
    """FLOPs and parameters of a model.

    Attributes:
      flops: Total FLOPs per sample; one multiply-add counts as 2 FLOPs.
        Layers whose cost is unknown (see `unknown_flops`) count 0.
      params: Total number of weights (trainable and not), as
        `model.count_params()`.
      layers: Per-layer `LayerStats`, in graph order.
      latency: Predicted `LatencyStats`, when asked for (see
        `PruningRunner.stat`), else None.
    """

    flops: int
    params: int
    layers: List[LayerStats]
    latency: Optional[LatencyStats] = None

    @property
    def unknown_flops(self):
        """Names of the layers whose FLOPs are unknown (left out of `flops`)."""
        return [entry.name for entry in self.layers if not entry.flops_known]

    def layer(self, name):
        for entry in self.layers:
            if entry.name == name:
                return entry
        raise KeyError(f"No layer named {name!r} in these stats.")

    def to_dict(self):
        out = {"flops": self.flops, "params": self.params,
               "layers": [dataclasses.asdict(entry) for entry in self.layers]}
        if self.latency is not None:
            out["latency"] = dataclasses.asdict(self.latency)
        return out

    def summary(self, top=None):
        """A text table of per-layer counts, largest FLOPs first when `top` is set."""
        rows = self.layers if top is None else sorted(
            self.layers, key=lambda r: -r.flops)[:top]
        width = max([len(r.name) for r in rows] + [5])
        lines = [f"{'layer':<{width}}  {'class':<22} {'FLOPs':>14} {'params':>12}"]
        for r in rows:
            flops = f"{r.flops:>14,}" if r.flops_known else f"{'unknown':>14}"
            lines.append(f"{r.name:<{width}}  {r.class_name:<22} {flops} {r.params:>12,}")
        lines.append(f"{'total':<{width}}  {'':<22} {self.flops:>14,} {self.params:>12,}")
        if self.unknown_flops:
            lines.append(f"FLOPs unknown (not in the total) for: {', '.join(self.unknown_flops)}")
        return "\n".join(lines)

    def __repr__(self):
        latency = ("" if self.latency is None else
                   f", latency={1000 * self.latency.seconds:.3f} ms predicted "
                   f"({self.latency.device}, batch {self.latency.batch_size})")
        return (f"ModelStats(flops={self.flops:,}, params={self.params:,}, "
                f"layers={len(self.layers)}{latency})")


def unknown_flops_layers(deps):
    """Layers whose FLOPs are unknown: their registry spec has no formula.

    Args:
      deps: A `DependencyGraph`.

    Returns:
      `[(layer path, class name), ...]` in graph order, each layer once.
    """
    unknown = {}
    for node in deps.graph.nodes:
        if deps.node_spec(node.name).flops is None:
            unknown.setdefault(node.layer_path, node.class_name)
    return list(unknown.items())


def _describe(layers):
    return ", ".join(f"{path!r} ({class_name})" for path, class_name in layers)


def check_flops_known(deps, action):
    """Raises if any layer's FLOPs are unknown, since `action` needs them all.

    Args:
      deps: A `DependencyGraph`.
      action: What needs the FLOPs, for the message (`"prune(ratio=0.5)"`).

    Raises:
      ValueError: naming every layer whose cost is unknown, and the ways out.
    """
    unknown = unknown_flops_layers(deps)
    if not unknown:
        return
    raise ValueError(
        f"Cannot {action}: the FLOPs of {len(unknown)} layer(s) are unknown, so the "
        f"reduction would be measured without them: {_describe(unknown)}. Register each "
        "layer class with a FLOP formula, e.g. vai_optimizer_tf.register_layer(MyLayer, "
        "LayerSpec.passthrough(flops=fn), replace=True) where fn(node, in_shapes, "
        "out_shapes) returns its FLOPs per sample; to accept a layer as costing nothing, "
        "let fn return 0. For a Lambda layer or an unknown tf.* call, rewrite it as a "
        "registered layer, or prune by `threshold` or with a spec instead of a FLOPs "
        "`ratio`.")


def compute_stats(deps, plan=None, warn_unknown=False):
    """Counts FLOPs and params of the graph, pruned by `plan` if given.

    Analytic: nothing is built. With a `SlicePlan`, tensor and weight shapes
    take their slim widths.

    Args:
      deps: A `DependencyGraph`.
      plan: Optional `SlicePlan`.
      warn_unknown: Whether to log a warning naming the layers whose FLOPs
        are unknown (no formula), which count as 0. Defaults to `False`.

    Returns:
      A `ModelStats`.

    Raises:
      ValueError: if a tensor shape needed for FLOPs is not fully defined.
    """
    graph = deps.graph
    shape_of = plan.tensor_shape if plan is not None else (lambda t: graph.tensors[t].shape)
    weight_shapes = plan.sliced_weight_shapes() if plan is not None else None
    flops = {}
    classes = {}
    for node in graph.nodes:
        classes.setdefault(node.layer_path, node.class_name)
        formula = deps.node_spec(node.name).flops
        count = 0
        if formula is not None:
            in_shapes = [shape_of(t) for t in node.inputs]
            out_shapes = [shape_of(t) for t in node.outputs]
            for shape in in_shapes + out_shapes:
                if any(d is None for d in shape[1:]):
                    raise ValueError(
                        f"Cannot count FLOPs of layer {node.layer_path!r}: its tensor shape "
                        f"{tuple(shape)} is not fully defined. Pass a concrete input_signature, "
                        "e.g. input_signature=tf.TensorSpec((1, 224, 224, 3)).")
            count = int(formula(node, in_shapes, out_shapes))
        flops[node.layer_path] = flops.get(node.layer_path, 0) + count
    unknown = dict(unknown_flops_layers(deps))
    if warn_unknown and unknown:
        logging.getLogger("vai_optimizer_tf").warning(
            "FLOPs unknown for %s: they are left out of the total. Register them with "
            "vai_optimizer_tf.register_layer(cls, LayerSpec(..., flops=fn)).",
            _describe(unknown.items()))
    rows = []
    for path in graph.layer_paths():
        node = graph.nodes_of_layer(path)[0]
        shapes = (weight_shapes[path] if weight_shapes is not None and path in weight_shapes
                  else [w.shape for w in node.weights])
        params = sum(math.prod(s) for s in shapes)
        rows.append(LayerStats(path, classes[path], flops[path], params,
                               flops_known=path not in unknown))
    return ModelStats(sum(r.flops for r in rows), sum(r.params for r in rows), rows)


def stat(model, input_signature=None):
    """Counts the FLOPs and parameters of a Keras model, per layer and in total.

    One multiply-add counts as **2 FLOPs**. The conventions follow TensorFlow's
    profiler on the frozen inference graph (fused BatchNormalization and
    ReLU-like activations count 0, a bias add 1 FLOP per output element), and
    the test suite checks the totals against it. Counts are per sample.

    Args:
      model: A tf_keras or Keras 3 Sequential or Functional model.
      input_signature: Optional `tf.TensorSpec` (or list of them) giving the
        input shape when the model's own is not fully defined. Defaults to
        the model's input shapes.

    Returns:
      A `ModelStats` with `.flops`, `.params` and `.layers`. Layers whose
      cost is unknown (Lambda layers, unregistered custom layers, unknown
      `tf.*` calls) count 0 and are listed in `.unknown_flops` and in
      `summary()`; a warning names them too.

    Example:

    ```python
    model = tf_keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3))
    stats = vai_optimizer_tf.stat(model)
    print(stats.flops, stats.params)
    print(stats.summary(top=5))
    ```
    """
    from vai_optimizer_tf.graph import adapters
    from vai_optimizer_tf.groups.dependency_graph import DependencyGraph
    adapter = adapters.adapter_for(model, input_signature)
    return compute_stats(DependencyGraph(adapter.graph), warn_unknown=True)
