"""Analytic FLOPs as a function of each group's kept width.

Planning tries many candidate widths; building a model, or even computing
kept channel positions, for each candidate would be slow. Every tensor's
channel width is a linear function of the groups' kept counts (a concat adds
them, a Flatten or depthwise multiplier scales them), so we precompute those
coefficients once and evaluate the registry's FLOP formulas on the resulting
shapes.
"""

import numpy as np


class WidthFlops:
    """Counts FLOPs for any assignment of kept widths to groups.

    Args:
      deps: A `DependencyGraph`.

    Example:

    ```python
    flops = WidthFlops(deps)
    flops.total({})                      # baseline
    flops.total({deps.group("conv1").id: 16})
    ```
    """

    def __init__(self, deps):
        self.deps = deps
        graph = deps.graph
        self._group_width = {g.id: g.width for g in deps.groups}
        # tensor id -> (group ids array, coefficients array)
        self._coefs = {}
        for tid, lay in deps.layouts.items():
            if lay is None:
                continue
            gids, _ = lay.index_map(deps.find)
            uniq, counts = np.unique(gids, return_counts=True)
            widths = np.array([self._group_width[int(g)] for g in uniq])
            self._coefs[tid] = (uniq.astype(np.int64), counts / widths)
        self._nodes = []
        self._affected = {}
        for node in graph.nodes:
            formula = deps.node_spec(node.name).flops
            if formula is None:
                continue
            for tid in node.inputs + node.outputs:
                for gid in self._coefs.get(tid, ((), ()))[0]:
                    nodes = self._affected.setdefault(int(gid), [])
                    if not nodes or nodes[-1] != len(self._nodes):
                        nodes.append(len(self._nodes))
            self._nodes.append((node, formula))
        self._baseline = self.total({})

    @property
    def baseline(self):
        return self._baseline

    def tensor_coefficients(self, tensor_id):
        """Group id -> channels of the tensor per kept channel of the group.

        A tensor's width is `sum(coefficient * kept width)` over these groups
        (1 for a plain tensor, the number of copies for a concat of a group
        with itself, the spatial size after a Flatten). Empty for tensors
        without a channel layout.
        """
        gids, weights = self._coefs.get(tensor_id, ((), ()))
        return {int(g): float(w) for g, w in zip(gids, weights)}

    def tensor_width(self, tensor_id, kept_counts):
        coefs = self._coefs.get(tensor_id)
        shape = self.deps.graph.tensors[tensor_id].shape
        if coefs is None:
            return shape[-1] if len(shape) > 1 else None
        gids, weights = coefs
        counts = np.array([kept_counts.get(int(g), self._group_width[int(g)]) for g in gids])
        return int(round(float(np.dot(counts, weights))))

    def _shape(self, tensor_id, kept_counts):
        shape = self.deps.graph.tensors[tensor_id].shape
        if len(shape) < 2:
            return shape
        return tuple(shape[:-1]) + (self.tensor_width(tensor_id, kept_counts),)

    def _node_flops(self, index, kept_counts):
        node, formula = self._nodes[index]
        return formula(node, [self._shape(t, kept_counts) for t in node.inputs],
                       [self._shape(t, kept_counts) for t in node.outputs])

    def per_node(self, kept_counts):
        """FLOPs of every counted node, as an int array (for `total_after`)."""
        return np.array([self._node_flops(i, kept_counts) for i in range(len(self._nodes))],
                        dtype=np.int64)

    def total(self, kept_counts):
        """Total FLOPs with `kept_counts` (group id -> kept width); others keep all."""
        return int(self.per_node(kept_counts).sum())

    def total_after(self, per_node, kept_counts, changed_groups):
        """Total FLOPs after changing `changed_groups`, recomputing only their nodes.

        Args:
          per_node: `per_node(...)` of the state before the change.
          kept_counts: Kept widths after the change.
          changed_groups: Ids of the groups whose width changed.
        """
        indices = sorted({i for g in changed_groups for i in self._affected.get(g, ())})
        total = int(per_node.sum())
        for i in indices:
            total += int(self._node_flops(i, kept_counts)) - int(per_node[i])
        return total
