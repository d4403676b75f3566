"""Which channel groups and kernels of a model are elastic, and the elastic config of each layer.

Elastic widths come from the channel groups: a prunable group gets the
widths `expand_ratio x width` (rounded to `channel_divisible`). Every layer
that reads an elastic group with a weight (a consumer: Conv, Dense,
SeparableConv) becomes elastic and masks its input channels beyond the
active widths. Elastic kernel sizes apply to convolutions with a square, odd
kernel larger than 1, `padding="same"` and no dilation: each may run with the
centre `k x k` of its kernel for every `k` of `kernel_sizes` that is smaller
and at least its stride.

When depthwise convolutions with kernels larger than 1 outnumber regular
ones (MobileNet-style models), the search space is focused, as in the Vitis
AI Optimizer, on the groups that a convolution with a kernel larger than 1
produces or carries (the expanded channels of inverted residual blocks, the
stem); groups that only 1x1 convolutions touch keep their full width.
"""

import math

from vai_optimizer_tf.graph.registry import Role
from vai_optimizer_tf.groups import layout as layout_lib
from vai_optimizer_tf.ofa.config_space import ConfigSpace, ElasticGroup, ElasticKernel
from vai_optimizer_tf.planning.importance import kept_count

SEARCH_SPACES = ("auto", "all", "spatial")


def width_choices(width, expand_ratios, channel_divisible):
    """The widths a group of `width` channels may take, ascending."""
    return tuple(sorted({kept_count(width, 1.0 - r, channel_divisible) for r in expand_ratios}))


def _kernel_size(deps, node):
    size = deps.node_spec(node.name).layer_config(node.config).get("kernel_size")
    if size is None:
        return None
    return tuple(size) if isinstance(size, (list, tuple)) else (int(size),)


def _runs(deps, layout, slot_of):
    """`[[slot, first channel, length], ...]` of a layout; slot -1 for non-elastic groups."""
    gids, chans = layout.index_map(deps.find)
    runs = []
    for gid, chan in zip(gids.tolist(), chans.tolist()):
        slot = slot_of.get(gid, -1)
        if runs and runs[-1][0] == slot and runs[-1][1] + runs[-1][2] == chan:
            runs[-1][2] += 1
        else:
            runs.append([slot, chan, 1])
    return runs


class SpaceBuilder:
    """Builds the `ConfigSpace` of a model and the elastic configs of its layers.

    Args:
      deps: The model's `DependencyGraph` (excludes applied).
      elastic_class: `fn(layer class) -> its elastic subclass`,
        or None when it has none (from the Keras flavour's elastic module).
      masked_weight: `fn(layer class) -> name of the weight whose input
        channels its elastic version masks`, or None.
      excluded: Layer paths the user excluded. Defaults to none.
    """

    def __init__(self, deps, elastic_class, masked_weight, excluded=()):
        self.deps = deps
        self.graph = deps.graph
        self.elastic_class = elastic_class
        self.masked_weight = masked_weight
        self.excluded = set(excluded)
        self._first = {}
        for node in self.graph.nodes:
            self._first.setdefault(node.layer_path, node)

    # Kernel sizes ---------------------------------------------------------------------

    def _counts(self):
        """(depthwise, regular) convolutions with a kernel larger than 1."""
        depthwise = regular = 0
        for node in self._first.values():
            size = _kernel_size(self.deps, node)
            if size is None or math.prod(size) <= 1:
                continue
            spec = self.deps.node_spec(node.name)
            if (spec.role is Role.PASSTHROUGH and spec.expand_key) or \
                    "depthwise_kernel" in spec.in_axes:
                depthwise += 1
            elif spec.role is Role.PRODUCER:
                regular += 1
        return depthwise, regular

    def focused(self, search_space):
        """Whether the width search space is limited to groups of convolutions with kernel > 1."""
        if search_space == "auto":
            depthwise, regular = self._counts()
            return depthwise > regular
        return search_space == "spatial"

    def _is_spatial(self, group):
        for path in group.producers + group.members:
            size = _kernel_size(self.deps, self._first[path])
            if size is not None and math.prod(size) > 1:
                return True
        return False

    def _kernel_problem(self, node, size):
        config = self.deps.node_spec(node.name).layer_config(node.config)
        if node.layer_path in self.excluded:
            return "it is excluded by the user"
        if self.elastic_class(node.layer_class) is None:
            return f"{node.class_name} has no elastic version"
        if config.get("padding") != "same":
            return (f"it uses padding={config.get('padding')!r}; only 'same' keeps the output "
                    "size when the kernel shrinks")
        if any(int(d) != 1 for d in (config.get("dilation_rate") or (1,))):
            return "it is dilated"
        if len(set(size)) != 1 or size[0] % 2 == 0:
            return f"its kernel {size} is not square and odd"
        if int(config.get("groups", 1) or 1) > 1:
            return "it is a grouped convolution"
        if config.get("data_format") == "channels_first":
            return "it uses data_format='channels_first'"
        return None

    def _kernels(self, kernel_sizes):
        kernels, fixed = [], {}
        if not kernel_sizes:
            return kernels, fixed
        for path, node in self._first.items():
            size = _kernel_size(self.deps, node)
            if size is None or math.prod(size) <= 1:
                continue
            problem = self._kernel_problem(node, size)
            if problem:
                fixed[path] = problem
                continue
            config = self.deps.node_spec(node.name).layer_config(node.config)
            stride = max(int(s) for s in (config.get("strides") or (1,)))
            choices = tuple(sorted({k for k in kernel_sizes if k < size[0] and k >= stride}
                                   | {size[0]}))
            if len(choices) == 1:
                fixed[path] = (f"no size of kernel_sizes={tuple(kernel_sizes)} is smaller "
                               f"than its kernel {size[0]} and at least its stride {stride}")
                continue
            kernels.append(ElasticKernel(path, size[0], choices))
        return kernels, fixed

    # Widths -------------------------------------------------------------------------------

    def _width_problem(self, group, choices, focused):
        if not group.prunable:
            return group.reasons[0]
        for path in group.consumers:
            node = self._first[path]
            if self.masked_weight(node.layer_class) is None:
                return (f"feeds layer {path!r} ({node.class_name}), which has no elastic "
                        "version")
        if focused and not self._is_spatial(group):
            return ("is only touched by 1x1 convolutions; the search space focuses on "
                    "convolutions with kernels larger than 1 because depthwise ones outnumber "
                    "regular ones (pass search_space='all' to include it)")
        if len(choices) < 2:
            return f"keeps one width ({choices[0]}) at these expand_ratios and channel_divisible"
        return None

    def build(self, expand_ratios, kernel_sizes, channel_divisible, search_space):
        """Builds the space and the elastic layers.

        Returns:
          `(space, layer_specs, layer_classes)`: the `ConfigSpace`; layer path
          -> its `ofa_elastic` config entry; layer path -> elastic class.
        """
        focused = self.focused(search_space)
        groups, fixed = [], {}
        for group in self.deps.groups:
            choices = width_choices(group.width, expand_ratios, channel_divisible)
            problem = self._width_problem(group, choices, focused)
            if problem:
                fixed[group.name] = problem
            else:
                groups.append(ElasticGroup(group.index, group.name, group.width, choices))
        kernels, fixed_kernels = self._kernels(kernel_sizes)
        space = ConfigSpace(groups, kernels, fixed, fixed_kernels)
        specs, classes = self._layer_specs(space)
        return space, specs, classes

    def _layer_specs(self, space):
        slot_index = {self.deps.group(g.name).id: i for i, g in enumerate(space.groups)}
        kernel_index = {k.path: i for i, k in enumerate(space.kernels)}
        specs, classes = {}, {}
        for path, node in self._first.items():
            entry = {"groups": [], "widths": [], "in_runs": None, "kernel_index": None,
                     "kernel_sizes": None}
            weight = self.masked_weight(node.layer_class)
            spec = self.deps.node_spec(node.name)
            axis = spec.in_axes.get(weight) if weight else None
            lay = self.deps.tensor_layout(node.inputs[0]) if axis is not None else None
            if lay is not None and spec.role is Role.PRODUCER:
                if axis.repeat_key:
                    multiplier = int(spec.layer_config(node.config).get(axis.repeat_key, 1))
                    if multiplier > 1:
                        lay = layout_lib.Tile(lay, inner=multiplier)
                elastic = [gid for gid in self.deps.groups_of_layout(lay) if gid in slot_index]
                if elastic:
                    slot_of = {gid: i for i, gid in enumerate(elastic)}
                    entry["groups"] = [slot_index[gid] for gid in elastic]
                    entry["widths"] = [self.deps.group(gid).width for gid in elastic]
                    entry["in_runs"] = _runs(self.deps, lay, slot_of)
            if path in kernel_index:
                entry["kernel_index"] = kernel_index[path]
                entry["kernel_sizes"] = list(space.kernels[kernel_index[path]].choices)
            if entry["groups"] or entry["kernel_sizes"]:
                specs[path] = entry
                classes[path] = self.elastic_class(node.layer_class)
        return specs, classes
