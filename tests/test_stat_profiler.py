"""`vai_optimizer_tf.stat` against TensorFlow's own profiler.

The truth here is independent of the library: FLOPs come from
``tf.compat.v1.profiler`` on the frozen inference graph (see
profiler_flops.py) and parameter counts from ``model.count_params()``.
Each FLOP comparison records the measured relative error as the JUnit
property ``relative_error``
(``pytest -o junit_family=xunit1 --junitxml=out.xml``).
"""

import collections
import functools

import pytest
import tf_keras as keras

import vai_optimizer_tf as vot
from profiler_flops import profiler_flops
from zoo_models import (ZOO, input_shapes, relative_error, zoo_model, zoo_profile,
                        zoo_pruned, zoo_slim_profile)

L = keras.layers

TOLERANCE = 0.02

# Small models: one layer (or one merge) each ------------------------------------

def _single(shape, layer, n_inputs=1):
    """Builds `layer` applied to `n_inputs` inputs of `shape` (batch excluded)."""
    def build():
        inputs = [keras.Input(shape) for _ in range(n_inputs)]
        return keras.Model(inputs, layer()(inputs if n_inputs > 1 else inputs[0]))
    return build


_LAYER_CASES = {
    "conv2d_bias": _single((16, 16, 8), lambda: L.Conv2D(12, 3)),
    "conv2d_no_bias": _single((16, 16, 8), lambda: L.Conv2D(12, 3, use_bias=False)),
    "conv2d_strided_same": _single((16, 16, 8),
                                   lambda: L.Conv2D(12, 3, strides=2, padding="same")),
    "conv2d_dilated_same": _single((16, 16, 8),
                                   lambda: L.Conv2D(12, 3, dilation_rate=2, padding="same")),
    # An odd size: TF pads each spatial dim to a multiple of the dilation.
    "conv2d_dilated_valid": _single((17, 17, 8), lambda: L.Conv2D(12, 3, dilation_rate=2)),
    "conv2d_relu": _single((16, 16, 8), lambda: L.Conv2D(12, 3, activation="relu")),
    "conv2d_swish": _single((16, 16, 8), lambda: L.Conv2D(12, 3, activation="swish")),
    "dense": _single((20,), lambda: L.Dense(7)),
    "dense_on_3d_input": _single((5, 20), lambda: L.Dense(7)),
    "dense_softmax": _single((20,), lambda: L.Dense(7, activation="softmax")),
    "depthwise_multiplier_2": _single((16, 16, 8),
                                      lambda: L.DepthwiseConv2D(3, depth_multiplier=2)),
    "depthwise_dilated_no_bias": _single(
        (16, 16, 8), lambda: L.DepthwiseConv2D(3, dilation_rate=2, padding="same",
                                               use_bias=False)),
    "separable_conv2d": _single((16, 16, 8), lambda: L.SeparableConv2D(12, 3)),
    "separable_conv2d_multiplier_2": _single(
        (16, 16, 8), lambda: L.SeparableConv2D(12, 3, depth_multiplier=2, padding="same")),
    "conv2d_transpose": _single((8, 8, 8), lambda: L.Conv2DTranspose(12, 3)),
    "conv2d_transpose_strided_same": _single(
        (8, 8, 8), lambda: L.Conv2DTranspose(12, 3, strides=2, padding="same")),
    "conv2d_transpose_strided_valid": _single(
        (8, 8, 8), lambda: L.Conv2DTranspose(12, 3, strides=2)),
    "conv1d": _single((20, 8), lambda: L.Conv1D(12, 3)),
    "conv1d_strided_same": _single((20, 8), lambda: L.Conv1D(12, 3, strides=2, padding="same")),
    "add_of_3": _single((8, 8, 4), L.Add, n_inputs=3),
    "multiply": _single((8, 8, 4), L.Multiply, n_inputs=2),
    "average_of_3": _single((8, 8, 4), L.Average, n_inputs=3),
    "max_pooling2d": _single((16, 16, 4), lambda: L.MaxPooling2D(2)),
    "average_pooling2d_3_stride_2": _single((16, 16, 4),
                                            lambda: L.AveragePooling2D(3, strides=2)),
    "max_pooling1d": _single((16, 4), lambda: L.MaxPooling1D(2)),
    "global_average_pooling2d": _single((16, 16, 4), L.GlobalAveragePooling2D),
    "global_average_pooling2d_keepdims": _single(
        (16, 16, 4), lambda: L.GlobalAveragePooling2D(keepdims=True)),
    "softmax_spatial_axis": _single((16, 16, 4), lambda: L.Softmax(axis=1)),
    "prelu": _single((8, 8, 4), L.PReLU),
    "prelu_shared_axes": _single((8, 8, 4), lambda: L.PReLU(shared_axes=[1, 2])),
    "rescaling": _single((8, 8, 4), lambda: L.Rescaling(1 / 255.0)),
    "rescaling_offset": _single((8, 8, 4), lambda: L.Rescaling(2.0, offset=-1.0)),
    "swish_activation": _single((8, 8, 4), lambda: L.Activation("swish")),
    "batch_norm_4d_fused": _single((8, 8, 4), L.BatchNormalization),
    "batch_norm_2d": _single((8,), L.BatchNormalization),
    # Barriers still count their FLOPs.
    "softmax_channel_axis": _single((16, 16, 4), L.Softmax),
    "softmax_activation": _single((10,), lambda: L.Activation("softmax")),
    "conv2d_grouped": _single((16, 16, 8), lambda: L.Conv2D(12, 3, groups=4)),
    "normalization_fixed_mean": _single(
        (8, 8, 3), lambda: L.Normalization(mean=[0.5, 0.4, 0.3], variance=[0.05, 0.06, 0.07])),
    "conv2d_channels_first": _single(
        (8, 16, 16), lambda: L.Conv2D(12, 3, data_format="channels_first")),
    "layer_normalization": _single((8, 8, 4), L.LayerNormalization),
}

_ALL_LAYER_BUILDERS = _LAYER_CASES
_LAYER_PARAMS = list(_LAYER_CASES)


@functools.lru_cache(maxsize=None)
def _layer_model(case):
    return _ALL_LAYER_BUILDERS[case]()


def _assert_flops_close(model, record_property):
    total, per_op_type, _ = profiler_flops(model, input_shapes(model))
    ours = vot.stat(model).flops
    error = relative_error(ours, total)
    record_property("relative_error", error)
    assert abs(error) <= TOLERANCE, (
        f"stat={ours:,} FLOPs, profiler={total:,} ({error:+.4%}); "
        f"profiler by op type: {per_op_type}")


@pytest.mark.parametrize("case", _LAYER_PARAMS)
def test_layer_flops_match_profiler(case, record_property):
    _assert_flops_close(_layer_model(case), record_property)


@pytest.mark.parametrize("case", list(_ALL_LAYER_BUILDERS))
def test_layer_params_match_count_params(case):
    model = _layer_model(case)
    assert vot.stat(model).params == model.count_params()


def test_bias_free_conv_counts_only_multiply_adds():
    # 14 x 14 outputs, 12 filters, each 3 x 3 x 8 multiply-adds of 2 FLOPs.
    assert vot.stat(_layer_model("conv2d_no_bias")).flops == 14 * 14 * 12 * 3 * 3 * 8 * 2


# The zoo --------------------------------------------------------------------------

_ZOO_NAMES = list(ZOO)


@pytest.mark.parametrize("name", _ZOO_NAMES)
def test_zoo_flops_match_profiler(name, record_property):
    total, per_op_type, _ = zoo_profile(name)
    ours = vot.stat(zoo_model(name)).flops
    error = relative_error(ours, total)
    record_property("relative_error", error)
    assert abs(error) <= TOLERANCE, (
        f"{name}: stat={ours:,} FLOPs, profiler={total:,} ({error:+.4%}); "
        f"profiler by op type: {per_op_type}")


@pytest.mark.parametrize("name", _ZOO_NAMES)
def test_zoo_params_match_count_params(name):
    model = zoo_model(name)
    assert vot.stat(model).params == model.count_params()


def _profiler_flops_by_layer(model, per_node):
    """Sums the profiler's per-node FLOPs by the top-level layer that owns each node.

    Frozen node names look like "<model>/<layer>/<op>"; layer names may hold
    "/" themselves (DenseNet's "conv1/conv"), so the longest matching name wins.
    Nodes outside every layer are summed under `None`.
    """
    prefix = model.name + "/"
    names = sorted((layer.name for layer in model.layers), key=len, reverse=True)
    by_layer = collections.Counter()
    for node, flops in per_node.items():
        rest = node[len(prefix):] if node.startswith(prefix) else ""
        owner = next((n for n in names if rest.startswith(n + "/")), None)
        by_layer[owner] += flops
    return by_layer


@pytest.mark.parametrize("name", _ZOO_NAMES)
def test_zoo_layer_flops_match_profiler(name):
    # Totals could hide errors that cancel out; compare every layer.
    model = zoo_model(name)
    truth = _profiler_flops_by_layer(model, zoo_profile(name)[2])
    ours = {row.name: row.flops for row in vot.stat(model).layers}
    wrong = [(layer, ours.get(layer, 0), truth.get(layer, 0))
             for layer in sorted(set(ours) | set(truth), key=str)
             if abs(ours.get(layer, 0) - truth.get(layer, 0)) > TOLERANCE * truth.get(layer, 0)]
    assert not wrong, f"{name}: (layer, stat, profiler) differ: {wrong[:10]}"


# Slim models: analytic counts of a spec == counts of the built model ------------------

def _mixed_2d():
    x = keras.Input((16, 16, 3))
    a = L.Rescaling(1 / 127.5, offset=-1.0)(x)
    a = L.Conv2D(16, 3, padding="same", name="stem")(a)
    a = L.BatchNormalization()(a)
    a = L.PReLU(shared_axes=[1, 2])(a)
    b = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(a)
    b = L.Conv2D(16, 3, dilation_rate=2, padding="same", use_bias=False)(b)
    c = L.SeparableConv2D(16, 3, depth_multiplier=2, padding="same")(a)
    s = L.Add()([a, b, c])
    s = L.Activation("swish")(s)
    t = L.Conv2DTranspose(12, 3, strides=2, padding="same")(s)
    u = L.Conv2D(12, 1, activation="swish")(t)
    t = L.Multiply()([t, u])
    t = L.MaxPooling2D(2)(t)
    t = L.AveragePooling2D(3, strides=2)(t)
    g = L.GlobalAveragePooling2D()(t)
    g = L.Dense(24, activation="relu")(g)
    return keras.Model(x, L.Dense(10)(g), name="mixed_2d")


def _mixed_1d():
    x = keras.Input((32, 4))
    a = L.Conv1D(16, 3, padding="same")(x)
    b = L.Conv1D(16, 5, padding="same", activation="relu")(a)
    a = L.Add()([a, b])
    a = L.Conv1D(8, 3, strides=2)(a)
    a = L.MaxPooling1D(2)(a)
    a = L.Flatten()(a)
    return keras.Model(x, L.Dense(3)(a), name="mixed_1d")


_SMALL_PRUNABLE = {"mixed_2d": _mixed_2d, "mixed_1d": _mixed_1d}


@functools.lru_cache(maxsize=None)
def _pruned(name):
    """(runner, spec, slim, slim profile or None) of a zoo or small model pruned by half."""
    if name in _SMALL_PRUNABLE:
        runner = vot.IterativePruningRunner(_SMALL_PRUNABLE[name]())
        spec = runner.uniform_spec(0.5, channel_divisible=1)
        return runner, spec, runner.get_slim_model(spec), None
    pruned = zoo_pruned(name)
    return pruned.runner, pruned.spec, pruned.slim, zoo_slim_profile(name)


@pytest.mark.parametrize("name", list(_SMALL_PRUNABLE) + _ZOO_NAMES)
def test_slim_model_stat_equals_runner_stat(name):
    runner, spec, slim, _ = _pruned(name)
    analytic = runner.stat(spec)
    assert analytic.flops < runner.stat().flops, "the spec pruned nothing"
    assert vot.stat(slim).layers == analytic.layers
    assert analytic.params == slim.count_params()


@pytest.mark.parametrize("name", list(_SMALL_PRUNABLE) + _ZOO_NAMES)
def test_runner_stat_of_spec_matches_profiler_on_slim_model(name, record_property):
    runner, spec, slim, profile = _pruned(name)
    total = (profile or profiler_flops(slim, input_shapes(slim)))[0]
    analytic = runner.stat(spec).flops
    error = relative_error(analytic, total)
    record_property("relative_error", error)
    assert abs(error) <= TOLERANCE, (
        f"{name}: runner.stat(spec)={analytic:,} FLOPs, profiler on slim={total:,} "
        f"({error:+.4%})")
