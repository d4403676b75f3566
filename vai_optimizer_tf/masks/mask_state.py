"""`MaskState`: the kept channels of a live sparse model, read from and written to its masks."""

import numpy as np

from vai_optimizer_tf.masks.slice_plan import SlicePlan
from vai_optimizer_tf.masks.sparse_model import mask_plan


class MaskState:
    """Reads and changes which channels a sparse model keeps, during training.

    Args:
      deps: The runner's `DependencyGraph`.
      adapter: The runner's `TfKerasAdapter`.
      model: A sparse model built by `runner.get_sparse_model` (or reloaded).

    Raises:
      ValueError: if `model` carries no channel masks.
    """

    def __init__(self, deps, adapter, model):
        self.deps = deps
        self.adapter = adapter
        self.model = model
        self.masks = adapter.channel_masks(model)
        if not self.masks:
            raise ValueError(
                f"Model {model.name!r} is not a sparse model of vai_optimizer_tf: it has no "
                "channel masks. Build it with runner.get_sparse_model(spec) (or reload one "
                "saved from it) and train that model.")
        # Where to read each group's kept channels: a producer weight's output axis.
        self._out_axis = {}
        for group in deps.prunable_groups:
            for path in group.producers:
                node = deps.graph.nodes_of_layer(path)[0]
                spec = deps.node_spec(node.name)
                found = [(i, spec.out_axes[w.name].index % len(w.shape))
                         for i, w in enumerate(node.weights)
                         if w.name in spec.out_axes and (path, i) in self.masks]
                if found:
                    self._out_axis[group.id] = (path,) + found[0]
                    break

    def kept_by_group(self):
        """Group id -> kept channel indices, read from the producers' masks."""
        return {gid: self.masks[(path, i)][1].kept(axis)
                for gid, (path, i, axis) in self._out_axis.items()}

    def kept_from_zero_weights(self):
        """Group id -> channels whose producer output weights are not all zero.

        After `load_weights` into a freshly built sparse model the masks are
        all ones, but the pruned slices are zero: this recovers the pruning.
        """
        kept = {}
        for gid, (path, i, axis) in self._out_axis.items():
            value = self.adapter.layer_values(self.model, path)[i]
            rows = np.moveaxis(value, axis, 0).reshape(value.shape[axis], -1)
            alive = np.nonzero(np.any(rows != 0, axis=1))[0]
            kept[gid] = alive if len(alive) else np.arange(value.shape[axis])
        return kept

    def apply_spec(self, spec):
        """Sets the masks to the kept channels of a `PruningSpec`."""
        kept = {g.id: list(range(g.width)) for g in self.deps.prunable_groups}
        kept.update(spec.kept_by_group(self.deps))
        self.apply(kept)

    @property
    def is_unpruned(self):
        """Whether every mask keeps every channel."""
        return all(len(k) == self.deps.group(g).width for g, k in self.kept_by_group().items())

    def apply(self, kept_by_group):
        """Sets the masks to `kept_by_group` and zeroes the newly pruned slices now."""
        plan = mask_plan(SlicePlan(self.deps, kept_by_group))
        for path, per_weight in plan.weight_slices.items():
            for i, slices in per_weight.items():
                if (path, i) not in self.masks:
                    continue
                _, mask = self.masks[(path, i)]
                for axis, kept in slices:
                    mask.set_kept(axis, kept)
        # Zero the new slices now, moving statistics included (they have no mask,
        # but stay zero once zeroed: a dead channel has zero batch statistics).
        values = {path: self.adapter.layer_values(self.model, path) for path in plan.weight_slices}
        self.adapter.assign_weights(self.model, plan.masked_weights(values))
