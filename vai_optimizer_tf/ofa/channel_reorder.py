"""Channel reorder: each group's channels sorted by importance, so every width is a prefix.

An elastic-width supernet keeps the first `w` channels of a group when it
runs the group at width `w`. Sorting each group's channels by importance
first (most important first) makes every prefix the best `w` channels by the
criterion. The reorder moves the same channel in every weight that touches
it (the producers' filters and biases, the per-channel weights of the layers
carrying the group, the consumers' input slices), so the reordered model
computes exactly what the original computes.
"""

import numpy as np

from vai_optimizer_tf.groups import layout as layout_lib
from vai_optimizer_tf.masks.slice_plan import SlicePlan
from vai_optimizer_tf.planning import importance


class ReorderPlan(SlicePlan):
    """A `SlicePlan` whose "kept" positions are all positions, permuted.

    Taking a weight's positions in this order (`sliced_weights`) reorders it.

    Args:
      deps: A `DependencyGraph`.
      order_by_group: Group id -> permutation of the group's channels (new
        channel j is old channel `order[j]`).
    """

    def __init__(self, deps, order_by_group):
        super().__init__(deps, order_by_group, include_full=True)

    def _kept(self, lay):
        if lay is None or not any(self.deps.find(s) in self.kept_by_group for s in lay.spaces()):
            return None
        return layout_lib.permuted_positions(lay, self.deps.find, self.kept_by_group)


def importance_order(deps, groups, weights, criterion="l1"):
    """Group id -> channel order, most important first (ties keep the lower index first).

    Args:
      deps: The `DependencyGraph`.
      groups: The `ChannelGroup`s to reorder.
      weights: Layer path -> arrays, the weights scored.
      criterion: Importance criterion (see `importance.get_criterion`).
        Defaults to `"l1"`.

    Returns:
      Group id -> int64 permutation array.
    """
    return {g.id: np.argsort(-importance.score_group(deps, g, weights, criterion),
                             kind="stable").astype(np.int64)
            for g in groups}


def reordered_weights(deps, weights, order_by_group):
    """Copies of `weights` with each group's channels in `order_by_group` order.

    Args:
      deps: The `DependencyGraph`.
      weights: Layer path -> list of numpy arrays (every layer with weights).
      order_by_group: Group id -> permutation (see `importance_order`).

    Returns:
      Layer path -> list of arrays, for every layer in `weights`.
    """
    moved = ReorderPlan(deps, order_by_group).sliced_weights(weights)
    return {path: moved.get(path, values) for path, values in weights.items()}
