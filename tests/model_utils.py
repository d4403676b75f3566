"""Helpers for tests: random BN statistics and output comparison, for either Keras flavour."""

import keras as keras3
import numpy as np
import tensorflow as tf
import tf_keras

_BATCH_NORMS = (tf_keras.layers.BatchNormalization, keras3.layers.BatchNormalization)
_MODELS = (tf_keras.Model, keras3.Model)


def randomize_batch_norm(model, seed=0):
    """Gives every BatchNormalization layer non-trivial statistics, in place.

    Fresh models have gamma=1, beta=0, mean=0, var=1, under which BN is the
    identity and bugs in slicing its weights would go unseen.
    """
    rs = np.random.RandomState(seed)
    ranges = {"gamma": (0.5, 1.5), "beta": (-0.2, 0.2), "moving_mean": (-0.2, 0.2),
              "moving_variance": (0.5, 1.5)}
    for layer in leaf_layers(model):
        if isinstance(layer, _BATCH_NORMS):
            values = []
            for var, value in zip(layer.weights, layer.get_weights()):
                name = var.name.split("/")[-1].split(":")[0]
                lo, hi = ranges[name]
                values.append(rs.uniform(lo, hi, value.shape).astype(value.dtype))
            layer.set_weights(values)
    return model


def leaf_layers(model):
    """Every layer of `model`, nested models opened."""
    for layer in model.layers:
        if isinstance(layer, _MODELS):
            yield from leaf_layers(layer)
        else:
            yield layer


# Initial values that are all zeros or ones hide slicing bugs; give them
# random values in a range that keeps each weight's meaning (variances > 0).
_RANDOM_RANGES = {"bias": (-0.5, 0.5), "beta": (-0.5, 0.5), "gamma": (0.5, 1.5),
                  "alpha": (0.05, 0.5), "mean": (-0.3, 0.3), "variance": (0.5, 1.5)}


def randomize_weights(model, seed=0):
    """Random BN statistics, biases, scales and PReLU slopes, in place."""
    randomize_batch_norm(model, seed)
    rs = np.random.RandomState(seed + 1)
    for layer in leaf_layers(model):
        if isinstance(layer, _BATCH_NORMS) or not layer.weights:
            continue
        values = []
        for var, value in zip(layer.weights, layer.get_weights()):
            bounds = _RANDOM_RANGES.get(var.name.split("/")[-1].split(":")[0])
            if bounds is not None:
                value = rs.uniform(*bounds, np.shape(value)).astype(value.dtype)
            values.append(value)
        layer.set_weights(values)
    return model


def random_inputs(model, batch=2, seed=0):
    rs = np.random.RandomState(seed)
    xs = [rs.uniform(-1, 1, (batch,) + tuple(t.shape[1:])).astype("float32")
          for t in model.inputs]
    return xs[0] if len(xs) == 1 else xs


def outputs(model, x):
    y = model(x, training=False)
    ys = y if isinstance(y, (list, tuple)) else [y]
    return [np.asarray(v) for v in ys]


def max_relative_difference(model_a, model_b, x):
    """max |a - b| / max |a| over all outputs of two models on input `x`."""
    worst = 0.0
    for a, b in zip(outputs(model_a, x), outputs(model_b, x)):
        if a.shape != b.shape:
            raise AssertionError(f"output shapes differ: {a.shape} vs {b.shape}")
        worst = max(worst, float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12)))
    return worst


def prune_checked(model, sparsity=0.5, tolerance=1e-5, **spec_kwargs):
    """`(runner, spec, sparse, slim)` for a uniform spec, after checking slim == sparse."""
    import vai_optimizer_tf as vot

    runner = vot.IterativePruningRunner(model)
    # Pattern models are a few channels wide: "auto" (16 on AVX-512) would keep them whole.
    spec_kwargs.setdefault("channel_divisible", 1)
    spec = runner.uniform_spec(sparsity, **spec_kwargs)
    sparse = runner.get_sparse_model(spec)
    slim = runner.get_slim_model(spec)
    assert max_relative_difference(sparse, slim, random_inputs(model)) < tolerance
    return runner, spec, sparse, slim


def train_with_gradient_tape(model, optimizer, loss, data, batch=8, epochs=1):
    """Trains `model` with a hand-written `tf.GradientTape` loop (no `fit`, no callbacks)."""

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        grads = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    x, y = data
    for _ in range(epochs):
        for start in range(0, len(x), batch):
            train_step(x[start:start + batch], y[start:start + batch])
