"""Functions called on Keras tensors: how each couples channels, and that pruning stays exact.

`tf.*` calls in tf_keras models (op layers), then `keras.ops` calls in Keras 3
models (op classes). Like test_layer_patterns.py: tiny models, slim == sparse
on random inputs, and the expected channel groups. Also zero safety: in the sparse model a
pruned channel is exactly 0 and the layers reading it have zero weights for
it, so a function that is not finite at 0 (or whose gradient is not) would
put inf or NaN in the outputs or in the gradients of fine-tuning. Such
functions must be barriers; the others must keep the sparse model finite.
"""

import keras as keras3
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import vai_optimizer_tf as vot
from tests import model_utils
from tests.op_calls import (BINARY_CALLS, KERAS_BINARY_OP_CALLS, KERAS_OP_CALLS,
                            KERAS_UNARY_OP_CALLS, REDUCE_CALLS, SAFE_UNARY_CALLS,
                            UNSAFE_UNARY_CALLS)
from tests.pattern_utils import assert_blocked_by, group_of, prune_and_compare

L = keras.layers


def _op_model(op):
    inputs = keras.Input((4, 4, 3))
    a = L.Conv2D(8, 1, name="conv_a")(inputs)
    b = L.Conv2D(8, 1, name="conv_b")(inputs)
    x = op(a, b)
    outputs = L.Conv2D(2, 1, name="head")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("op", [
    lambda a, b: a + b,
    lambda a, b: a * b,
    lambda a, b: tf.math.maximum(a, b),
], ids=["add", "multiply", "maximum"])
def test_tf_binary_ops_merge_their_operands(op):
    runner, _, _ = prune_and_compare(_op_model(op))

    group = group_of(runner, "conv_a")
    assert group.prunable
    assert sorted(group.producers) == ["conv_a", "conv_b"]


def assert_finite_with_finite_gradients(model):
    """Outputs and the gradients of every weight are finite: no inf or NaN from pruned zeros."""
    x = model_utils.random_inputs(model, batch=2)
    with tf.GradientTape() as tape:
        loss = tf.add_n([tf.reduce_sum(tf.square(y)) for y in tf.nest.flatten(model(x))])
    gradients = tape.gradient(loss, model.trainable_weights)
    assert np.isfinite(float(loss))
    bad = [w.name for w, g in zip(model.trainable_weights, gradients)
           if g is not None and not np.all(np.isfinite(g))]
    assert not bad, f"non-finite gradients for {bad}"


def test_op_calls_cover_the_op_tables():
    from vai_optimizer_tf.graph import op_rules

    assert set(SAFE_UNARY_CALLS) == set(op_rules.SAFE_UNARY_OPS)
    assert set(UNSAFE_UNARY_CALLS) == set(op_rules.UNSAFE_UNARY_OPS)
    assert set(BINARY_CALLS) == set(op_rules.BINARY_OPS) | op_rules.POW_OPS
    assert set(REDUCE_CALLS) == set(op_rules.REDUCE_OPS)


@pytest.mark.parametrize("function", sorted(SAFE_UNARY_CALLS))
def test_tf_unary_ops_finite_at_zero_pass_channels_through(function):
    model = _op_model(lambda a, b: SAFE_UNARY_CALLS[function](a) * b)
    assert [n.config["function"] for n in vot.IterativePruningRunner(model).graph.nodes
            if n.class_name == "TFOpLambda"][0] == function
    runner, _, sparse, _ = prune_and_compare(model, return_sparse=True)

    assert group_of(runner, "conv_a").prunable
    assert sorted(group_of(runner, "conv_a").producers) == ["conv_a", "conv_b"]
    assert_finite_with_finite_gradients(sparse)


@pytest.mark.parametrize("function", sorted(REDUCE_CALLS))
def test_tf_reductions_over_space_keep_channels(function):
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="conv")(inputs)
    x = REDUCE_CALLS[function](x)
    outputs = L.Dense(3, name="logits")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "conv").prunable
    assert group_of(runner, "conv").consumers == ("logits",)


# Calls that are not finite at 0, or whose gradient is not, on a pruned channel.
# The operand is squared first so that kept channels stay in the domain.
_UNSAFE_AT_ZERO = {
    "log": lambda a, b: tf.math.log(tf.square(a)),
    "rsqrt": lambda a, b: tf.math.rsqrt(tf.square(a)),
    "reciprocal": lambda a, b: tf.math.reciprocal(a),
    "sqrt": lambda a, b: tf.math.sqrt(tf.square(a)),
    "divide_by_tensor": lambda a, b: a / b,
    "divide_constant_by_tensor": lambda a, b: 1.0 / a,
    "xlogy": lambda a, b: tf.math.xlogy(b, tf.square(a)),
    "floor_div": lambda a, b: b // a,
    "floormod": lambda a, b: b % a,
    "xdivy": lambda a, b: tf.math.xdivy(b, a),
    "pow_half": lambda a, b: tf.square(a) ** 0.5,
    "pow_negative": lambda a, b: a ** -1.0,
    "pow_tensor": lambda a, b: tf.square(a) ** b,
}


@pytest.mark.parametrize("op", list(_UNSAFE_AT_ZERO))
def test_tf_ops_not_finite_at_zero_are_barriers(op):
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    a = L.Conv2D(8, 1, name="conv_a")(x)
    b = L.Conv2D(8, 1, name="conv_b")(x)
    y = _UNSAFE_AT_ZERO[op](a, b)
    outputs = L.Conv2D(2, 1, name="head")(y)
    runner, _, sparse, _ = prune_and_compare(keras.Model(inputs, outputs), return_sparse=True)

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv_a"), "not finite at 0")
    assert_finite_with_finite_gradients(sparse)


@pytest.mark.parametrize("op", [
    lambda a, b: a / 2.0,
    lambda a, b: a / tf.math.exp(b),
    lambda a, b: a ** 2,
    lambda a, b: 2.0 ** a,
    lambda a, b: tf.math.divide_no_nan(a, b),
    lambda a, b: tf.math.squared_difference(a, 1.0),
], ids=["by_constant", "by_single_channel", "squared", "positive_base", "divide_no_nan",
        "squared_difference"])
def test_tf_binary_ops_finite_at_zero_keep_channels_prunable(op):
    inputs = keras.Input((4, 4, 3))
    a = L.Conv2D(8, 1, name="conv_a")(inputs)
    b = L.Conv2D(1, 1, name="conv_b")(inputs)
    outputs = L.Conv2D(2, 1, name="head")(op(a, b))
    runner, _, sparse, _ = prune_and_compare(keras.Model(inputs, outputs), return_sparse=True)

    assert group_of(runner, "conv_a").prunable
    assert_finite_with_finite_gradients(sparse)


def log_of_square(t):
    return tf.math.log(tf.square(t))


@pytest.mark.filterwarnings("ignore:The object being serialized includes a `lambda`")
@pytest.mark.parametrize("function", [log_of_square, lambda t: tf.math.log(tf.square(t))],
                         ids=["function", "lambda"])
def test_activation_layer_with_a_users_function_is_a_barrier(function):
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    x = L.Conv2D(8, 1, name="conv")(x)
    x = L.Activation(function, name="log_act")(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner = vot.IterativePruningRunner(model_utils.randomize_weights(
        keras.Model(inputs, outputs)))

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv"), "'log_act'", "finite at 0")


def test_producer_with_a_users_activation_keeps_its_output_width():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    x = L.Conv2D(8, 1, activation=log_of_square, name="conv")(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner = vot.IterativePruningRunner(model_utils.randomize_weights(
        keras.Model(inputs, outputs)))

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv"), "'conv'", "'log_of_square'", "finite at 0")


def test_tf_concat_on_channels_concatenates_groups():
    runner, _, slim = prune_and_compare(_op_model(lambda a, b: tf.concat([a, b], axis=-1)))

    assert group_of(runner, "conv_a") is not group_of(runner, "conv_b")
    assert group_of(runner, "conv_a").prunable and group_of(runner, "conv_b").prunable
    assert slim.get_layer("head").kernel.shape[-2] == 8


def test_tf_reduce_mean_over_space_keeps_channels():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="conv")(inputs)
    x = tf.math.reduce_mean(x, axis=[1, 2], keepdims=True)
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "conv").prunable
    assert group_of(runner, "conv").consumers == ("head",)


def test_tf_reshape_to_batch_by_features_flattens():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="conv")(inputs)
    x = tf.reshape(x, (-1, 4 * 4 * 8))
    outputs = L.Dense(3, name="logits")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "conv").prunable
    assert group_of(runner, "conv").consumers == ("logits",)
    assert slim.get_layer("logits").kernel.shape == (4 * 4 * 4, 3)


def test_tf_op_with_a_per_channel_constant_is_a_barrier():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    x = L.Conv2D(8, 1, name="conv")(x)
    x = x + tf.constant(np.linspace(-1, 1, 8, dtype="float32"))
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv"), "per-channel constant")


def test_tf_op_with_a_scalar_constant_passes_channels_through():
    runner, _, _ = prune_and_compare(_op_model(lambda a, b: 2.0 * a + 1.0))

    assert group_of(runner, "conv_a").prunable
    assert group_of(runner, "conv_a").consumers == ("head",)


def test_tf_slicing_is_a_barrier():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    x = L.Conv2D(8, 1, name="conv")(x)
    x = x[..., :2]
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv"), "slicing")


# keras.ops calls in Keras 3 models ---------------------------------------------------

K3 = keras3.layers
OPS = keras3.ops


def _keras3_op_model(op, b_channels=8):
    inputs = keras3.Input((4, 4, 3))
    a = K3.Conv2D(8, 1, name="conv_a")(inputs)
    b = K3.Conv2D(b_channels, 1, name="conv_b")(inputs)
    outputs = K3.Conv2D(2, 1, name="head")(op(a, b))
    return keras3.Model(inputs, outputs)


def _stem_op_model(op):
    inputs = keras3.Input((4, 4, 3))
    x = K3.Conv2D(8, 1, name="stem")(inputs)
    a = K3.Conv2D(8, 1, name="conv_a")(x)
    b = K3.Conv2D(8, 1, name="conv_b")(x)
    outputs = K3.Conv2D(2, 1, name="head")(op(a, b))
    return keras3.Model(inputs, outputs)


def test_keras_op_calls_cover_the_keras3_op_entries():
    from vai_optimizer_tf.graph import keras3_rules

    assert set(KERAS_OP_CALLS) == {cls.__name__ for cls in keras3_rules.OP_ENTRIES}
    for name, call in KERAS_OP_CALLS.items():
        inputs = [keras3.Input((8, 8, 4)) for _ in range(
            2 if name in KERAS_BINARY_OP_CALLS or name == "Concatenate" else 1)]
        assert type(call(*inputs)._keras_history[0]).__name__ == name


@pytest.mark.parametrize("op", ["Add", "Multiply", "Maximum", "Subtract", "Minimum"])
def test_keras_binary_ops_merge_their_operands(op):
    runner, _, _ = prune_and_compare(_keras3_op_model(KERAS_BINARY_OP_CALLS[op]))

    group = group_of(runner, "conv_a")
    assert group.prunable
    assert sorted(group.producers) == ["conv_a", "conv_b"]


@pytest.mark.parametrize("op", sorted(KERAS_UNARY_OP_CALLS))
def test_keras_unary_ops_finite_at_zero_pass_channels_through(op):
    model = _keras3_op_model(lambda a, b: KERAS_UNARY_OP_CALLS[op](a) * b)
    runner, _, sparse, _ = prune_and_compare(model, return_sparse=True)

    assert op in [n.class_name for n in runner.graph.nodes]
    assert group_of(runner, "conv_a").prunable
    assert sorted(group_of(runner, "conv_a").producers) == ["conv_a", "conv_b"]
    assert_finite_with_finite_gradients(sparse)


_KERAS_UNSAFE_AT_ZERO = {
    "log": lambda a, b: OPS.log(OPS.square(a)),
    "sqrt": lambda a, b: OPS.sqrt(OPS.square(a)),
    "rsqrt": lambda a, b: OPS.rsqrt(OPS.square(a)),
    "reciprocal": lambda a, b: OPS.reciprocal(a),
    "divide_by_tensor": lambda a, b: b / a,
    "divide_constant_by_tensor": lambda a, b: 1.0 / a,
    "floor_divide": lambda a, b: b // a,
    "mod": lambda a, b: b % a,
    "pow_half": lambda a, b: OPS.square(a) ** 0.5,
    "pow_negative": lambda a, b: a ** -1.0,
}


@pytest.mark.parametrize("op", list(_KERAS_UNSAFE_AT_ZERO))
def test_keras_ops_not_finite_at_zero_are_barriers(op):
    runner, _, sparse, _ = prune_and_compare(_stem_op_model(_KERAS_UNSAFE_AT_ZERO[op]),
                                             return_sparse=True)

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv_a"), "not finite at 0", "keras.ops")
    assert_finite_with_finite_gradients(sparse)


@pytest.mark.parametrize("op", [
    lambda a, b: a / 2.0,
    lambda a, b: a / OPS.exp(b),
    lambda a, b: a ** 2.0,
    lambda a, b: 2.0 ** a,
    lambda a, b: OPS.divide_no_nan(a, b),
    lambda a, b: 2.0 * a + 1.0,
], ids=["by_constant", "by_single_channel", "squared", "positive_base", "divide_no_nan",
        "scalar_constants"])
def test_keras_binary_ops_finite_at_zero_keep_channels_prunable(op):
    runner, _, sparse, _ = prune_and_compare(_keras3_op_model(op, b_channels=1),
                                             return_sparse=True)

    assert group_of(runner, "conv_a").prunable
    assert group_of(runner, "conv_a").consumers == ("head",)
    assert_finite_with_finite_gradients(sparse)


def test_keras_concatenate_on_channels_concatenates_groups():
    runner, _, slim = prune_and_compare(_keras3_op_model(KERAS_OP_CALLS["Concatenate"]))

    assert group_of(runner, "conv_a") is not group_of(runner, "conv_b")
    assert group_of(runner, "conv_a").prunable and group_of(runner, "conv_b").prunable
    assert slim.get_layer("head").kernel.shape[-2] == 8


@pytest.mark.parametrize("op", ["Mean", "Sum", "Max", "Min"])
def test_keras_reductions_over_space_keep_channels(op):
    inputs = keras3.Input((4, 4, 3))
    x = K3.Conv2D(8, 1, name="conv")(inputs)
    outputs = K3.Dense(3, name="logits")(KERAS_OP_CALLS[op](x))
    runner, _, _ = prune_and_compare(keras3.Model(inputs, outputs))

    assert group_of(runner, "conv").prunable
    assert group_of(runner, "conv").consumers == ("logits",)


def test_keras_reduction_over_channels_is_a_barrier():
    inputs = keras3.Input((4, 4, 3))
    x = K3.Conv2D(8, 1, name="stem")(inputs)
    x = K3.Conv2D(8, 1, name="conv")(x)
    x = OPS.mean(x, axis=-1, keepdims=True)
    outputs = K3.Conv2D(2, 1, name="head")(x)
    runner, _, _ = prune_and_compare(keras3.Model(inputs, outputs))

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv"), "reduces over the channel axis")


def test_keras_reshape_to_batch_by_features_flattens_and_rewrites_its_shape():
    inputs = keras3.Input((4, 4, 3))
    x = K3.Conv2D(8, 1, name="conv")(inputs)
    x = OPS.reshape(x, (-1, 4 * 4 * 8))
    outputs = K3.Dense(3, name="logits")(x)
    runner, _, slim = prune_and_compare(keras3.Model(inputs, outputs))

    assert group_of(runner, "conv").prunable
    assert group_of(runner, "conv").consumers == ("logits",)
    assert slim.get_layer("logits").kernel.shape == (4 * 4 * 4, 3)


@pytest.mark.parametrize("op, words", [
    (lambda x: x[..., :2], ("slicing",)),
    (lambda x: OPS.softmax(x), ("softmax",)),
    (lambda x: x + np.linspace(-1, 1, 8, dtype="float32"), ("per-channel constant",)),
    (lambda x: OPS.reshape(x, (-1, 4, 32)), ("fixed shape",)),
], ids=["slicing", "softmax_over_channels", "per_channel_constant", "fixed_reshape"])
def test_keras_ops_that_fix_channels_are_barriers(op, words):
    inputs = keras3.Input((4, 4, 3))
    x = K3.Conv2D(8, 1, name="stem")(inputs)
    x = K3.Conv2D(8, 1, name="conv")(x)
    x = op(x)
    outputs = K3.Dense(2, name="head")(x)
    runner, _, _ = prune_and_compare(keras3.Model(inputs, outputs))

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv"), *words)


def test_unregistered_keras_op_is_a_barrier_naming_it():
    inputs = keras3.Input((4, 4, 3))
    x = K3.Conv2D(8, 1, name="stem")(inputs)
    x = K3.Conv2D(8, 1, name="conv")(x)
    x = OPS.cumsum(x, axis=1)
    outputs = K3.Conv2D(2, 1, name="head")(x)
    runner, _, _ = prune_and_compare(keras3.Model(inputs, outputs))

    assert_blocked_by(group_of(runner, "conv"), "Cumsum", "register_layer")
