"""Builds channel groups from a graph and the layer registry.

Every tensor gets a channel `Layout` over *channel spaces*; each producer
output and each model input opens a new space. Layers then unite spaces
mechanically from their registry role: pass-throughs forward their input
layout, merges unite all their inputs, concatenations place layouts side by
side, flattens tile them, barriers block what touches them. The union-find
roots at the end are the channel groups.
"""

import dataclasses
import math

import numpy as np

from vai_optimizer_tf.graph import registry as registry_lib
from vai_optimizer_tf.graph.registry import Role
from vai_optimizer_tf.groups import layout as layout_lib
from vai_optimizer_tf.groups.channel_group import ChannelGroup


class _UnionFind:
    def __init__(self):
        self.parent = []

    def add(self):
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, x):
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The older space stays root, so group ids follow graph order.
            self.parent[max(ra, rb)] = min(ra, rb)


class DependencyGraph:
    """Channel groups of a `Graph`, and the layout of every tensor.

    Args:
      graph: A `vai_optimizer_tf.graph.ir.Graph`.
      registry: A `LayerRegistry`. Defaults to the global registry.
      excludes: Layer paths whose output channels must not shrink.
        Defaults to none.

    Example:

    ```python
    adapter = TfKerasAdapter(model)
    deps = DependencyGraph(adapter.graph)
    for group in deps.groups:
        print(group.describe())
    ```
    """

    def __init__(self, graph, registry=None, excludes=()):
        self.graph = graph
        self.registry = registry or registry_lib.REGISTRY
        self._uf = _UnionFind()
        self._space_width = []
        self._space_origin = []
        self._blocked = {}
        self._producers = {}
        self.layouts = {}
        self.specs = {}
        self._build(set(excludes))
        self.groups = self._collect_groups()
        self._by_name = {g.name: g for g in self.groups}
        self._by_id = {g.id: g for g in self.groups}

    # Public look-ups -----------------------------------------------------------

    def find(self, space):
        """Group id of a raw channel space."""
        return self._uf.find(space)

    def group_at(self, index):
        """The group at `index` in graph order."""
        return self.groups[index]

    def group(self, name_or_id):
        """The group with this name or id."""
        if isinstance(name_or_id, (int, np.integer)):
            return self._by_id[int(name_or_id)]
        try:
            return self._by_name[name_or_id]
        except KeyError:
            raise KeyError(f"No channel group named {name_or_id!r}. Known groups: "
                           f"{sorted(self._by_name)[:20]}...") from None

    @property
    def prunable_groups(self):
        return [g for g in self.groups if g.prunable]

    def tensor_layout(self, tensor_id):
        """The `Layout` of a tensor's channel axis, or None if it has none."""
        return self.layouts.get(tensor_id)

    def node_spec(self, node_name):
        return self.specs[node_name]

    def groups_of_layout(self, layout):
        return sorted({self.find(s) for s in layout.spaces()})

    # Construction ----------------------------------------------------------------

    def _new_space(self, width, origin):
        space = self._uf.add()
        self._space_width.append(int(width))
        self._space_origin.append(origin)
        return space

    def _block(self, layout, reason):
        if layout is None:
            return
        for space in layout.spaces():
            self._blocked.setdefault(space, []).append(reason)

    def _fresh_layout(self, tensor_id, origin):
        channels = self.graph.tensors[tensor_id].channels
        if channels is None:
            return None
        return layout_lib.Base(self._new_space(channels, origin), channels)

    def _unite(self, a, b, node, what):
        pairs = layout_lib.pair_spaces(a, b)
        if pairs is None:
            reason = f"layer {node.layer_path!r} couples {what} with different channel layouts"
            self._block(a, reason)
            self._block(b, reason)
            return
        for sa, sb in pairs:
            self._uf.union(sa, sb)

    def _build(self, excludes):
        graph = self.graph
        for tid in graph.inputs:
            self.layouts[tid] = self._fresh_layout(tid, "model input")
            self._block(self.layouts[tid], "carries a model input, whose width is fixed")
        for node in graph.nodes:
            spec = self.registry.resolve(node)
            if spec.layer_config(node.config).get("data_format") == "channels_first":
                spec = registry_lib.LayerSpec.barrier(
                    f"layer {node.layer_path!r} uses data_format='channels_first'; only "
                    "channels_last is supported").replace(flops=spec.flops)
            spec = _fit_weight_axes(node, spec)
            self.specs[node.name] = spec
            in_layouts = [self.layouts.get(t) for t in node.inputs]
            out_layouts = self._apply(node, spec, in_layouts)
            for tid, lay in zip(node.outputs, out_layouts):
                self.layouts[tid] = lay
        self._unite_shared_layers()
        for tid, name in zip(graph.outputs, graph.output_names):
            self._block(self.layouts.get(tid), f"reaches model output {name!r}")
        for node in graph.nodes:
            if node.layer_path in excludes:
                for tid in node.outputs:
                    self._block(self.layouts.get(tid),
                                f"excluded by the user (layer {node.layer_path!r})")

    def _apply(self, node, spec, in_layouts):
        """Returns the output layouts of `node` and records its couplings."""
        role = spec.role
        out_tensors = [self.graph.tensors[t] for t in node.outputs]
        if role is Role.PRODUCER:
            outs = [self._fresh_layout(t.id, node.layer_path) for t in out_tensors]
            for lay in outs:
                if lay is not None:
                    self._producers.setdefault(lay.space, []).append(node.layer_path)
                if spec.fixed_output:
                    self._block(lay, spec.fixed_output)
            return outs
        if role is Role.BARRIER:
            for lay in in_layouts:
                self._block(lay, f"feeds {spec.reason}")
            outs = [self._fresh_layout(t.id, node.layer_path) for t in out_tensors]
            for lay in outs:
                self._block(lay, f"comes out of {spec.reason}")
            return outs
        first = in_layouts[0] if in_layouts else None
        if role is Role.PASSTHROUGH:
            out = first
            if first is not None and spec.expand_key:
                multiplier = int(spec.layer_config(node.config).get(spec.expand_key, 1))
                if multiplier > 1:
                    out = layout_lib.Tile(first, inner=multiplier)
            for extra in in_layouts[1:]:
                self._block(extra, f"is a side input of layer {node.layer_path!r}")
            return [self._checked(node, out, t) for t in out_tensors]
        if role is Role.MERGE:
            out_width = out_tensors[0].channels
            full = [lay for lay in in_layouts if lay is not None and lay.width == out_width]
            for lay in in_layouts:
                if lay is not None and lay.width not in (out_width, 1):
                    self._block(lay, f"is broadcast by layer {node.layer_path!r}")
            for lay in full[1:]:
                self._unite(full[0], lay, node, "its inputs")
            out = full[0] if full else None
            return [self._checked(node, out, t) for t in out_tensors]
        if role is Role.CONCAT:
            if any(lay is None for lay in in_layouts):
                return [self._fresh_blocked(node, t, "concatenates tensors without a channel axis")
                        for t in out_tensors]
            out = layout_lib.Concat(in_layouts)
            return [self._checked(node, out, t) for t in out_tensors]
        if role is Role.FLATTEN:
            in_shape = self.graph.tensors[node.inputs[0]].shape
            spatial = in_shape[1:-1]
            if first is None or any(d is None for d in spatial):
                self._block(first, f"is flattened by layer {node.layer_path!r} with unknown "
                            "spatial size")
                return [self._fresh_blocked(node, t, "flattens a tensor of unknown size")
                        for t in out_tensors]
            out = layout_lib.Tile(first, outer=math.prod(spatial)) if spatial else first
            return [self._checked(node, out, t) for t in out_tensors]
        raise AssertionError(f"unhandled role {role}")

    def _fresh_blocked(self, node, tensor, why):
        lay = self._fresh_layout(tensor.id, node.layer_path)
        self._block(lay, f"layer {node.layer_path!r} {why}")
        return lay

    def _checked(self, node, layout, tensor):
        """`layout` if its width matches the tensor's channels, else a blocked one."""
        if layout is None or tensor.channels is None:
            return None if tensor.channels is None else self._fresh_blocked(
                node, tensor, "makes channels from a tensor without a channel axis")
        if layout.width != tensor.channels:
            why = (f"layer {node.layer_path!r} maps {layout.width} channels to "
                   f"{tensor.channels}, which its registry role does not explain")
            self._block(layout, why)
            lay = self._fresh_layout(tensor.id, node.layer_path)
            self._block(lay, why)
            return lay
        return layout

    def _unite_shared_layers(self):
        by_layer = {}
        for node in self.graph.nodes:
            by_layer.setdefault(node.layer_path, []).append(node)
        for path, nodes in by_layer.items():
            if len(nodes) < 2:
                continue
            first = nodes[0]
            for other in nodes[1:]:
                for a, b in zip(first.inputs + first.outputs, other.inputs + other.outputs):
                    la, lb = self.layouts.get(a), self.layouts.get(b)
                    if la is not None and lb is not None:
                        self._unite(la, lb, first, "the tensors of its shared calls")

    # Groups --------------------------------------------------------------------

    def _collect_groups(self):
        find = self._uf.find
        members = {}
        for space in range(len(self._space_width)):
            members.setdefault(find(space), []).append(space)
        producers, consumers, carriers = {}, {}, {}
        for node in self.graph.nodes:
            spec = self.specs[node.name]
            if spec.role is Role.PRODUCER:
                for tid in node.inputs:
                    lay = self.layouts.get(tid)
                    if lay is not None and spec.in_axes:
                        for gid in self.groups_of_layout(lay):
                            _add(consumers, gid, node.layer_path)
            elif spec.role is Role.PASSTHROUGH and (spec.in_axes or spec.out_axes):
                lay = self.layouts.get(node.inputs[0]) if node.inputs else None
                if lay is not None:
                    for gid in self.groups_of_layout(lay):
                        _add(carriers, gid, node.layer_path)
        for space, paths in self._producers.items():
            for path in paths:
                _add(producers, find(space), path)
        groups = []
        for gid in sorted(members):
            spaces = members[gid]
            reasons = []
            for space in spaces:
                for reason in self._blocked.get(space, []):
                    if reason not in reasons:
                        reasons.append(reason)
            if gid not in producers and not reasons:
                reasons.append("has no producer layer whose output channels could shrink")
            if self._space_width[gid] < 2 and not reasons:
                reasons.append("has a single channel")
            origin = producers.get(gid, [self._space_origin[gid]])[0]
            groups.append(ChannelGroup(
                id=gid, index=len(groups), name=origin, width=self._space_width[gid],
                producers=tuple(producers.get(gid, ())),
                consumers=tuple(consumers.get(gid, ())),
                members=tuple(carriers.get(gid, ())),
                reasons=tuple(reasons)))
        return _unique_names(groups)


def _fit_weight_axes(node, spec):
    """`spec` with its sliced weight axes checked against the node's weights.

    A weight the spec declares per channel may be shared across channels in
    this layer (a PReLU whose alpha is shared over the channel axis has one
    entry there): that axis is dropped, the weight is not sliced. Any other
    width that is not the channel count means the entry does not describe
    this layer, which becomes a barrier naming the weight.
    """
    if spec.role is Role.BARRIER or not (spec.in_axes or spec.out_axes):
        return spec
    config = spec.layer_config(node.config)
    in_channels = node.input_shapes[0][-1] if node.input_shapes else None
    out_channels = node.output_shapes[0][-1] if node.output_shapes else None
    shapes = {w.name: w.shape for w in node.weights}
    fitted = {}
    for field, channels, side in (("in_axes", in_channels, "input"),
                                  ("out_axes", out_channels, "output")):
        axes = {}
        for name, axis in getattr(spec, field).items():
            shape = shapes.get(name)
            if shape is None:  # a weight the layer does not have (no bias)
                continue
            expected = channels
            if axis.repeat_key and channels is not None:
                expected = channels * int(config.get(axis.repeat_key, 1))
            width = shape[axis.index] if -len(shape) <= axis.index < len(shape) else None
            if width == expected:
                axes[name] = axis
            elif width == 1:
                continue  # shared across channels: nothing to slice
            else:
                return registry_lib.LayerSpec.barrier(
                    f"layer {node.layer_path!r} ({node.class_name}), whose weight {name!r} "
                    f"of shape {tuple(shape)} has {width} entries on axis {axis.index}, not "
                    f"one per {side} channel ({expected}) as its registry entry declares"
                ).replace(flops=spec.flops)
        fitted[field] = axes
    return spec.replace(**fitted)


def _add(table, key, value):
    values = table.setdefault(key, [])
    if value not in values:
        values.append(value)


def _unique_names(groups):
    seen = {}
    out = []
    for g in groups:
        count = seen.get(g.name, 0)
        seen[g.name] = count + 1
        out.append(g if count == 0 else dataclasses.replace(g, name=f"{g.name}#{count}"))
    return out
