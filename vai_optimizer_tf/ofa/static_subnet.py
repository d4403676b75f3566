"""Static subnets: one configuration of a supernet as a plain slim model.

Widths are prefixes of the reordered groups, so a configuration is the slim
model of the spec keeping, in every elastic group, its first `width`
channels (a `SlicePlan`); elastic kernels keep the centre `k x k` of their
kernel, and their layer config says `kernel_size=k`. Elastic layers become
their original classes again and lose their `ofa_*` variables, so the result
has no masks and no custom layers, and exports like any slim model.
"""

import numpy as np

from vai_optimizer_tf.masks.slice_plan import SlicePlan

ELASTIC_KEY = "ofa_elastic"
_SPATIAL_WEIGHTS = ("kernel", "depthwise_kernel")


def _is_elastic_weight(name):
    return name.startswith("ofa_")


def base_weights(graph, weights):
    """`weights` (layer path -> arrays) without the elastic layers' `ofa_*` variables."""
    first = {}
    for node in graph.nodes:
        first.setdefault(node.layer_path, node)
    out = {}
    for path, values in weights.items():
        names = [w.name for w in first[path].weights]
        out[path] = [v for v, n in zip(values, names) if not _is_elastic_weight(n)]
    return out


class StaticSubnetBuilder:
    """Builds static subnets of one supernet.

    Args:
      adapter: The adapter of the supernet.
      deps: The supernet's `DependencyGraph`.
      space: The supernet's `ConfigSpace`.
      static_classes: Elastic class name -> original class.
    """

    def __init__(self, adapter, deps, space, static_classes):
        self.adapter = adapter
        self.deps = deps
        self.graph = deps.graph
        self.space = space
        self.static_classes = dict(static_classes)
        self._first = {}
        for node in self.graph.nodes:
            self._first.setdefault(node.layer_path, node)

    def plan(self, config):
        """The `SlicePlan` keeping each elastic group's first `width` channels."""
        config = self.space.check(config)
        kept = {}
        for g in self.space.groups:
            width = config.widths[g.name]
            if width < g.width:
                kept[self.deps.group(g.name).id] = np.arange(width)
        return SlicePlan(self.deps, kept)

    def build(self, config, weights=None):
        """The static model of `config`.

        Args:
          config: A `SubnetConfig` (or `OFASubnet`, or dict) of the supernet.
          weights: Layer path -> arrays of the supernet. Defaults to its
            current weights.

        Returns:
          A new model of plain layers.
        """
        config = self.space.check(config)
        plan = self.plan(config)
        weights = base_weights(self.graph, weights if weights is not None
                               else self.adapter.all_weights())
        sliced = plan.sliced_weights(weights)
        layer_weights = {path: sliced.get(path, values) for path, values in weights.items()}
        configs = plan.slim_configs()
        classes = {}
        for path, node in self._first.items():
            static_class = self.static_classes.get(node.class_name)
            if static_class is None:
                continue
            classes[path] = static_class
            layer_config = dict(configs.get(path, node.config))
            layer_config.pop(ELASTIC_KEY, None)
            size = config.kernel_sizes.get(path)
            full = layer_config.get("kernel_size")
            if size is not None and full is not None and size < max(full):
                rank = len(full)
                layer_config["kernel_size"] = (size,) * rank
                lo = (max(full) - size) // 2
                names = [w.name for w in node.weights if not _is_elastic_weight(w.name)]
                index = tuple([slice(lo, lo + size)] * rank)
                layer_weights[path] = [v[index] if n in _SPATIAL_WEIGHTS else v
                                       for v, n in zip(layer_weights[path], names)]
            configs[path] = layer_config
        return self.adapter.rebuild(layer_configs=configs, layer_weights=layer_weights,
                                    tensor_shapes=plan.changed_tensors(),
                                    call_rewrites=plan.call_rewrites(), layer_classes=classes)
