"""The sparse model: the original architecture with pruned channels zeroed and held at zero."""

import logging

import numpy as np

from vai_optimizer_tf.masks.slice_plan import SlicePlan

logger = logging.getLogger("vai_optimizer_tf")


def mask_plan(plan):
    """A plan listing every sliceable axis of every prunable group, for masks."""
    deps = plan.deps
    kept = {g.id: np.arange(g.width) for g in deps.prunable_groups}
    kept.update(plan.kept_by_group)
    return SlicePlan(deps, kept, include_full=True)


def build_sparse_model(adapter, plan, weights=None):
    """Builds a copy of the adapter's model whose pruned slices are zero and stay zero.

    Zeroed: each producer's output slices (kernel, bias), the per-channel
    weights of layers that carry the pruned channels (BatchNormalization
    gamma, beta and moving statistics, PReLU alpha, depthwise slices), and
    each consumer's input slices. Zeroing the consumers' inputs is what makes
    the pruned channels dead even after an activation with f(0) != 0, so the
    slim model is exactly equivalent.

    Every trainable weight of every prunable group carries a `ChannelMask`
    constraint of the model's Keras flavour (all ones where nothing is pruned
    yet), so training with any optimizer keeps the pruned slices at zero, and
    pruning callbacks can prune further during `fit`.

    Args:
      adapter: The `ModelAdapter` of the source model (never modified).
      plan: A `SlicePlan`.
      weights: Optional layer path -> arrays to start from. Defaults to the
        source model's weights.

    Returns:
      A new model of the source's flavour.
    """
    weights = weights if weights is not None else adapter.all_weights()
    full = mask_plan(plan)
    masked = full.masked_weights(weights)
    merged = {path: masked.get(path, values) for path, values in weights.items()}
    configs = {}
    graph = plan.graph
    for path, per_weight in full.weight_slices.items():
        node = graph.nodes_of_layer(path)[0]
        spec = plan.deps.node_spec(node.name)
        masks = {node.weights[i].name: (node.weights[i].shape, [[a, k] for a, k in slices])
                 for i, slices in per_weight.items() if node.weights[i].trainable}
        # The constraints live in the config of the layer that owns the weights
        # (the wrapped layer of a TimeDistributed).
        layer_config, unmasked = adapter.with_masks(spec.layer_config(node.config), masks)
        configs[path] = spec.with_layer_config(node.config, layer_config)
        if unmasked:
            logger.warning("Layer %r has no constraint argument for %s: its pruned slices are "
                           "zeroed but not held at zero during training.", path, unmasked)
    return adapter.rebuild(layer_configs=configs, layer_weights=merged)
