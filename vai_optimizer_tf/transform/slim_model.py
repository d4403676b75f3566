"""The slim model: pruned channels physically removed."""


def build_slim_model(adapter, plan, weights=None):
    """Rebuilds the adapter's model from configs with fewer channels.

    Layer names, inputs and outputs stay the same; producer widths, reshape
    targets (of `Reshape` layers and `tf.reshape` calls) and nested-model
    input shapes shrink, and every weight is sliced to the kept channels. The
    result is a plain model of the source's Keras flavour that saves and
    reloads without custom objects (unless the source had custom layers).

    Args:
      adapter: The `ModelAdapter` of the source model (never modified).
      plan: A `SlicePlan`.
      weights: Optional layer path -> arrays to slice. Defaults to the source
        model's weights.

    Returns:
      A new model of the source's flavour.
    """
    weights = weights if weights is not None else adapter.all_weights()
    sliced = plan.sliced_weights(weights)
    merged = {path: sliced.get(path, values) for path, values in weights.items()}
    return adapter.rebuild(layer_configs=plan.slim_configs(), layer_weights=merged,
                           tensor_shapes=plan.changed_tensors(),
                           call_rewrites=plan.call_rewrites())
