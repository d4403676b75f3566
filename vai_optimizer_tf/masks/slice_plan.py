"""`SlicePlan`: what a pruning spec means for every weight and tensor.

From the dependency graph and the kept channels of each group, it derives
the kept positions of each tensor's channel axis, the kept positions along
each sliced axis of each layer weight, and the slim config of each layer.
Both the sparse model (zero what is not kept) and the slim model (drop what is
not kept) are built from it, so they cannot disagree.
"""

import copy

import numpy as np

from vai_optimizer_tf.graph.registry import RewriteContext, Role
from vai_optimizer_tf.groups import layout as layout_lib


class SlicePlan:
    """Kept positions per tensor and per weight axis for one set of kept channels.

    Args:
      deps: A `DependencyGraph`.
      kept_by_group: Group id -> sorted int array of kept channels. Groups
        not listed keep all channels.
      include_full: Whether `weight_slices` also lists axes of the listed
        groups on which every channel is kept (used to attach masks to every
        prunable weight). Defaults to `False`.
    """

    def __init__(self, deps, kept_by_group, include_full=False):
        self.include_full = include_full
        self.deps = deps
        self.graph = deps.graph
        self.kept_by_group = {int(k): np.asarray(v, dtype=np.int64)
                              for k, v in kept_by_group.items()}
        self.tensor_kept = {}
        for tid, lay in deps.layouts.items():
            kept = self._kept(lay)
            if kept is not None:
                self.tensor_kept[tid] = kept
        self.weight_slices = self._weight_slices()

    def _kept(self, lay):
        """Kept positions of a layout, or None when none of its groups is listed."""
        if lay is None or not any(self.deps.find(s) in self.kept_by_group for s in lay.spaces()):
            return None
        return layout_lib.kept_positions(lay, self.deps.find, self.kept_by_group)

    def _weight_slices(self):
        """Layer path -> {weight index: [(axis, kept positions), ...]}."""
        slices = {}
        seen = set()
        for node in self.graph.nodes:
            if node.layer_path in seen or not node.weights:
                continue
            seen.add(node.layer_path)
            spec = self.deps.node_spec(node.name)
            in_lay = self.deps.tensor_layout(node.inputs[0]) if node.inputs else None
            out_lay = self.deps.tensor_layout(node.outputs[0]) if node.outputs else None
            per_weight = {}
            for i, w in enumerate(node.weights):
                for axes, lay in ((spec.in_axes, in_lay), (spec.out_axes, out_lay)):
                    axis = axes.get(w.name)
                    if axis is None or lay is None:
                        continue
                    if axis.repeat_key:
                        multiplier = int(spec.layer_config(node.config).get(axis.repeat_key, 1))
                        if multiplier > 1:
                            lay = layout_lib.Tile(lay, inner=multiplier)
                    kept = self._kept(lay)
                    if kept is not None and (self.include_full or len(kept) < w.shape[axis.index]):
                        per_weight.setdefault(i, []).append((axis.index % len(w.shape), kept))
            if per_weight:
                slices[node.layer_path] = per_weight
        return slices

    def tensor_width(self, tensor_id):
        """Slim width of a tensor's channel axis."""
        kept = self.tensor_kept.get(tensor_id)
        return len(kept) if kept is not None else self.graph.tensors[tensor_id].channels

    def tensor_shape(self, tensor_id):
        shape = self.graph.tensors[tensor_id].shape
        if len(shape) < 2:
            return shape
        return tuple(shape[:-1]) + (self.tensor_width(tensor_id),)

    def changed_tensors(self):
        """Tensor id -> slim shape, for tensors whose width changes."""
        return {tid: self.tensor_shape(tid) for tid in self.tensor_kept
                if len(self.tensor_kept[tid]) < self.graph.tensors[tid].channels}

    # Sparse and slim weights ------------------------------------------------------

    def masked_weights(self, weights):
        """Copies of `weights` with every pruned slice set to zero.

        Args:
          weights: Layer path -> list of numpy arrays.

        Returns:
          Layer path -> list of arrays, for the layers that change.
        """
        out = {}
        for path, per_weight in self.weight_slices.items():
            values = [np.array(v, copy=True) for v in weights[path]]
            for i, axis_slices in per_weight.items():
                for axis, kept in axis_slices:
                    mask = np.zeros(values[i].shape[axis], dtype=bool)
                    mask[kept] = True
                    shape = [1] * values[i].ndim
                    shape[axis] = -1
                    values[i] = values[i] * mask.reshape(shape).astype(values[i].dtype)
            out[path] = values
        return out

    def weight_masks(self):
        """Layer path -> {weight index: boolean mask of the weight's shape}."""
        masks = {}
        for path, per_weight in self.weight_slices.items():
            node = self.graph.nodes_of_layer(path)[0]
            for i, axis_slices in per_weight.items():
                mask = np.ones(node.weights[i].shape, dtype=bool)
                for axis, kept in axis_slices:
                    keep = np.zeros(mask.shape[axis], dtype=bool)
                    keep[kept] = True
                    shape = [1] * mask.ndim
                    shape[axis] = -1
                    mask &= keep.reshape(shape)
                masks.setdefault(path, {})[i] = mask
        return masks

    def sliced_weights(self, weights):
        """Copies of `weights` with every pruned slice removed."""
        out = {}
        for path, per_weight in self.weight_slices.items():
            values = list(weights[path])
            for i, axis_slices in per_weight.items():
                for axis, kept in axis_slices:
                    values[i] = np.take(values[i], kept, axis=axis)
            out[path] = values
        return out

    def sliced_weight_shapes(self):
        """Layer path -> list of slim weight shapes, for every layer with weights."""
        shapes = {}
        seen = set()
        for node in self.graph.nodes:
            if node.layer_path in seen or not node.weights:
                continue
            seen.add(node.layer_path)
            layer_shapes = [list(w.shape) for w in node.weights]
            for i, axis_slices in self.weight_slices.get(node.layer_path, {}).items():
                for axis, kept in axis_slices:
                    layer_shapes[i][axis] = len(kept)
            shapes[node.layer_path] = [tuple(s) for s in layer_shapes]
        return shapes

    def slim_configs(self):
        """Layer path -> slim config, for layers whose config must change."""
        configs = {}
        seen = set()
        for node in self.graph.nodes:
            if node.layer_path in seen:
                continue
            seen.add(node.layer_path)
            if not self._touches_changed_tensor(node):
                continue
            spec = self.deps.node_spec(node.name)
            config = copy.deepcopy(node.config)
            layer_config = spec.layer_config(config)
            if spec.role is Role.PRODUCER and node.outputs[0] in self.tensor_kept:
                layer_config[spec.width_key] = self.tensor_width(node.outputs[0])
            if spec.rewrite is not None:
                layer_config = spec.rewrite(layer_config, self._rewrite_context(node))
            config = spec.with_layer_config(config, layer_config)
            if config != node.config:
                configs[node.layer_path] = config
        return configs

    def call_rewrites(self):
        """Node name -> `fn(call_kwargs) -> call_kwargs`, for calls whose arguments change.

        Only layers whose spec has a `rewrite_call` and whose first input or
        output loses channels are listed.
        """
        rewrites = {}
        for node in self.graph.nodes:
            spec = self.deps.node_spec(node.name)
            if spec.rewrite_call is None or not self._touches_changed_tensor(node):
                continue
            rewrites[node.name] = (lambda kwargs, fn=spec.rewrite_call,
                                   ctx=self._rewrite_context(node): fn(kwargs, ctx))
        return rewrites

    def _touches_changed_tensor(self, node):
        ends = node.inputs[:1] + node.outputs[:1]
        return any(t in self.tensor_kept for t in ends)

    def _rewrite_context(self, node):
        in_id = node.inputs[0] if node.inputs else None
        out_id = node.outputs[0] if node.outputs else None
        return RewriteContext(
            in_width=self.tensor_width(in_id) if in_id is not None else None,
            out_width=self.tensor_width(out_id) if out_id is not None else None,
            in_kept=self.tensor_kept.get(in_id),
            out_kept=self.tensor_kept.get(out_id),
            out_shape=self.tensor_shape(out_id) if out_id is not None else None)
