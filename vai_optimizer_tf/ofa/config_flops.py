"""`ConfigFlops`: analytic FLOPs of supernet configurations, widths and kernel sizes.

`WidthFlops` counts FLOPs for any width per channel group. A configuration
also shrinks kernels: a convolution running the centre `k x k` of its
kernel costs what a static `k x k` convolution costs, so its registry FLOP
formula is evaluated on the node with `kernel_size` set to `k` (the output
shape is unchanged: elastic kernels use `padding="same"`). Genes change one
at a time during the evolutionary search, so totals are updated
incrementally from the nodes a gene touches.
"""

import dataclasses

import numpy as np

from vai_optimizer_tf.planning.width_flops import WidthFlops


class ConfigFlops(WidthFlops):
    """FLOPs of `ConfigSpace` gene vectors.

    Args:
      deps: The model's `DependencyGraph`.
      space: The `ConfigSpace`; its groups are looked up in `deps` by name.
    """

    def __init__(self, deps, space):
        self._kernels = {}
        self._resized = {}
        super().__init__(deps)
        self.space = space
        self._group_ids = [deps.group(g.name).id for g in space.groups]
        self._kernel_nodes = {k.path: [i for i, (node, _) in enumerate(self._nodes)
                                       if node.layer_path == k.path] for k in space.kernels}
        self._cache = {}

    def _node_flops(self, index, kept_counts):
        node, formula = self._nodes[index]
        size = self._kernels.get(node.layer_path)
        if size is not None:
            key = (index, size)
            if key not in self._resized:
                config = dict(node.config)
                rank = len(config["kernel_size"])
                config["kernel_size"] = (size,) * rank
                self._resized[key] = dataclasses.replace(node, config=config)
            node = self._resized[key]
        return formula(node, [self._shape(t, kept_counts) for t in node.inputs],
                       [self._shape(t, kept_counts) for t in node.outputs])

    def _state(self, genes):
        n = len(self._group_ids)
        counts = {gid: g.choices[i] for gid, g, i in zip(self._group_ids, self.space.groups,
                                                         genes[:n])}
        kernels = {k.path: k.choices[i] for k, i in zip(self.space.kernels, genes[n:])}
        return counts, kernels

    def per_node_of(self, genes):
        """FLOPs of every counted node for a gene vector."""
        counts, self._kernels = self._state(genes)
        try:
            return self.per_node(counts)
        finally:
            self._kernels = {}

    def flops(self, genes):
        """Total FLOPs of a gene vector."""
        genes = tuple(int(g) for g in genes)
        if genes not in self._cache:
            self._cache[genes] = int(self.per_node_of(genes).sum())
        return self._cache[genes]

    def reduction(self, genes):
        """FLOPs reduction of a gene vector against the full model."""
        return 1.0 - self.flops(genes) / self.baseline

    def changed(self, per_node, genes, gene):
        """`(total, per_node)` after gene `gene` of `genes` changed, from the nodes it touches."""
        n = len(self._group_ids)
        if gene < n:
            indices = sorted(self._affected.get(self._group_ids[gene], ()))
        else:
            indices = self._kernel_nodes[self.space.kernels[gene - n].path]
        counts, self._kernels = self._state(genes)
        try:
            per_node = np.array(per_node, copy=True)
            for i in indices:
                per_node[i] = self._node_flops(i, counts)
        finally:
            self._kernels = {}
        total = int(per_node.sum())
        self._cache.setdefault(tuple(int(g) for g in genes), total)
        return total, per_node
