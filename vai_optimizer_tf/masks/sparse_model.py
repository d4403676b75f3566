"""The sparse model: the original architecture with pruned channels zeroed."""


def build_sparse_model(adapter, plan, weights=None):
    """Builds a copy of the adapter's model whose pruned slices are zero.

    Zeroed: each producer's output slices (kernel, bias), the per-channel
    weights of layers that carry the pruned channels (BatchNormalization
    gamma, beta and moving statistics, PReLU alpha, depthwise slices), and
    each consumer's input slices. Zeroing the consumers' inputs is what makes
    the pruned channels dead even after an activation with f(0) != 0, so the
    slim model is exactly equivalent.

    Args:
      adapter: The `TfKerasAdapter` of the source model (never modified).
      plan: A `SlicePlan`.
      weights: Optional layer path -> arrays to start from. Defaults to the
        source model's weights.

    Returns:
      A new tf_keras model.
    """
    weights = weights if weights is not None else adapter.all_weights()
    masked = plan.masked_weights(weights)
    merged = {path: masked.get(path, values) for path, values in weights.items()}
    return adapter.rebuild(layer_weights=merged)
