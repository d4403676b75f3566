"""`sparsity_report`: what an N:M sparse model holds now, layer by layer."""

import dataclasses
from typing import List

import numpy as np

from vai_optimizer_tf.graph import adapters
from vai_optimizer_tf.sparsity import block_pattern
from vai_optimizer_tf.sparsity import block_mask_base as block_mask
from vai_optimizer_tf.sparsity import sparse_targets
from vai_optimizer_tf.sparsity.activation_sparsity_base import ActivationSparsityBase


@dataclasses.dataclass(frozen=True)
class LayerSparsity:
    """The pattern of one sparse kernel, measured on its current values.

    Attributes:
      layer: The layer path.
      weight: The weight's short name.
      block_size: Input channels per block.
      pattern: The target pattern, e.g. `"2:4"`.
      target_sparsity: The fraction of zeros the pattern asks for.
      sparsity: The fraction of the kernel's entries that are exactly zero.
      blocks: The number of blocks.
      violations: Blocks with fewer zeros than the pattern asks.
      activation_sparsity: The fraction of each block of the layer's inputs
        zeroed at run time (0 without activation sparsity).
    """

    layer: str
    weight: str
    block_size: int
    pattern: str
    target_sparsity: float
    sparsity: float
    blocks: int
    violations: int
    activation_sparsity: float


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per-layer N:M sparsity of a model, and the layers left dense with why.

    Attributes:
      model_name: The model's name.
      layers: One `LayerSparsity` per sparse kernel, in graph order.
      exclusions: One `Exclusion` per kernel left dense.
    """

    model_name: str
    layers: List[LayerSparsity]
    exclusions: List[sparse_targets.Exclusion]

    @property
    def violations(self):
        """Blocks, over all sparse kernels, with fewer zeros than the pattern asks."""
        return sum(layer.violations for layer in self.layers)

    @property
    def compliant(self):
        """Whether every block of every sparse kernel keeps the pattern."""
        return self.violations == 0

    def describe(self):
        """The report as a table."""
        lines = [f"Model {self.model_name!r}: {len(self.layers)} sparse kernels, "
                 f"{len(self.exclusions)} left dense, {self.violations} pattern violations"]
        lines.append(f"{'layer':<32}{'pattern':>9}{'sparsity':>10}{'blocks':>9}"
                     f"{'violations':>12}{'inputs':>8}")
        for layer in self.layers:
            name = layer.layer if layer.weight == "kernel" else f"{layer.layer}.{layer.weight}"
            inputs = f"{layer.activation_sparsity:.0%}" if layer.activation_sparsity else "-"
            lines.append(f"{name:<32}{layer.pattern:>9}{layer.sparsity:>10.2%}"
                         f"{layer.blocks:>9}{layer.violations:>12}{inputs:>8}")
        if self.exclusions:
            lines.append("left dense:")
            lines.extend(f"  {e.describe()}" for e in self.exclusions)
        return "\n".join(lines)

    __str__ = describe

    def to_dict(self):
        return {"model_name": self.model_name,
                "layers": [dataclasses.asdict(layer) for layer in self.layers],
                "exclusions": [dataclasses.asdict(e) for e in self.exclusions]}


def _input_sparsity(graph, path):
    """The `sparsity` of the ActivationSparsity layer feeding `path`, or 0."""
    node = graph.nodes_of_layer(path)[0]
    producer = graph.producer(node.inputs[0]) if node.inputs else None
    if producer is not None and issubclass(producer.layer_class, ActivationSparsityBase):
        return float(producer.config["sparsity"])
    return 0.0


def sparsity_report(model):
    """Measures the N:M pattern of every sparse kernel of a model, and lists the others.

    Sparsity and violations are counted on the kernels' current values
    (exact zeros), so the report also shows whether a pattern held through
    training or survived a reload.

    Args:
      model: A sparse model from `SparsePruner.sparse_model` (or reloaded).

    Returns:
      A `SparsityReport`; `print(report)` shows it as a table.

    Raises:
      ValueError: if `model` has no `BlockSparseMask`.

    Example:

    ```python
    report = vot.sparsity_report(sparse)
    print(report.compliant, [e.describe() for e in report.exclusions])
    ```
    """
    found = block_mask.find_block_masks(model)
    if not found:
        raise ValueError(f"Model {model.name!r} has no BlockSparseMask: it is not a sparse "
                         "model of vai_optimizer_tf.SparsePruner.")
    masks = {(path, name): (variable, mask) for path, name, variable, mask in found}
    block_size = found[0][3].block_size
    graph = adapters.adapter_for(model).graph
    a_sparsity = max([_input_sparsity(graph, path) for path, _, _, _ in found] + [0.0])
    targets, exclusions = sparse_targets.plan_targets(graph, block_size, a_sparsity)
    layers = []
    for target in targets:
        if (target.layer, target.weight) not in masks:
            exclusions.append(sparse_targets.Exclusion(target.layer, target.weight,
                                                       sparse_targets.EXCLUDED_BY_USER))
            continue
        variable, mask = masks[(target.layer, target.weight)]
        values = variable.numpy()
        zeros = block_pattern.zeros_per_block(values, mask.axis, mask.block_size)
        target_pattern = mask.target
        layers.append(LayerSparsity(
            target.layer, target.weight, mask.block_size, str(target_pattern),
            target_pattern.sparsity, float(np.mean(values == 0)), int(zeros.size),
            int(np.sum(zeros < target_pattern.zeros)), _input_sparsity(graph, target.layer)))
    order = {path: i for i, path in enumerate(graph.layer_paths())}
    exclusions.sort(key=lambda e: order.get(e.layer, len(order)))
    return SparsityReport(graph.name, layers, exclusions)
