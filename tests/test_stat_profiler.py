"""`vai_optimizer_tf.stat` against TensorFlow's own profiler, on both Keras flavours.

The truth here is independent of the library: FLOPs come from
``tf.compat.v1.profiler`` on the frozen inference graph (see
profiler_flops.py) and parameter counts from ``model.count_params()``.
The counts are exact, so every comparison is an equality. The one exception
is the few ops the profiler registers no FLOPs for (MaxPool3D, AvgPool3D,
Conv3DBackpropInputV2): those layers are checked against hand counts instead
(`test_layers_the_profiler_cannot_count_match_hand_counts`).

Every case is built with tf_keras and with Keras 3, whose layers sometimes
run other TF ops for the same computation (Keras 3 never uses the fused
BatchNormalization kernel, for one); each flavour must match its own profile.
"""

import collections
import functools
import re

import numpy as np
import pytest
import tensorflow as tf

import vai_optimizer_tf as vot
from flavours import FLAVOURS, private_layer
from op_calls import (BINARY_CALLS, KERAS_BINARY_OP_CALLS, KERAS_OP_CALLS, REDUCE_CALLS,
                      SAFE_UNARY_CALLS, UNSAFE_UNARY_CALLS)
from profiler_flops import profiler_flops
from vai_optimizer_tf.graph import adapters
from vai_optimizer_tf.graph.registry import REGISTRY
from vai_optimizer_tf.stats import formulas
from zoo_models import (ZOO_CASES, case_ids, input_shapes, zoo_model, zoo_profile,
                        zoo_pruned, zoo_slim_profile)

# Small models: one layer (or one merge) each ------------------------------------


def _layer_cases(keras):
    """Case name -> model builder, for one flavour's `keras` module."""
    L = keras.layers
    LayerScale = private_layer(keras, "LayerScale")
    CustomScaleLayer = private_layer(keras, "CustomScaleLayer")

    def _single(shape, layer, n_inputs=1):
        """Builds `layer` applied to `n_inputs` inputs of `shape` (batch excluded)."""
        def build():
            inputs = [keras.Input(shape) for _ in range(n_inputs)]
            return keras.Model(inputs, layer()(inputs if n_inputs > 1 else inputs[0]))
        return build

    cases = {
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
        # Every other registered class, and the config options that change a count.
        "conv1d_transpose_strided": _single((8, 4), lambda: L.Conv1DTranspose(6, 3, strides=2)),
        "conv3d": _single((6, 6, 6, 4), lambda: L.Conv3D(6, 3)),
        "depthwise_conv1d": _single((8, 4), lambda: L.DepthwiseConv1D(3)),
        "separable_conv1d": _single((8, 4), lambda: L.SeparableConv1D(6, 3)),
        "embedding": _single((5,), lambda: L.Embedding(10, 4)),
        "relu": _single((8, 8, 4), L.ReLU),
        "relu_max_value_6": _single((8, 8, 4), lambda: L.ReLU(6.0)),
        "relu_max_value_3": _single((8, 8, 4), lambda: L.ReLU(3.0)),
        "relu_negative_slope": _single((8, 8, 4), lambda: L.ReLU(negative_slope=0.1)),
        "relu_threshold": _single((8, 8, 4), lambda: L.ReLU(threshold=0.5)),
        "relu_every_option": _single(
            (8, 8, 4), lambda: L.ReLU(max_value=3.0, negative_slope=0.1, threshold=0.5)),
        "relu6_negative_slope": _single((8, 8, 4), lambda: L.ReLU(6.0, negative_slope=0.1)),
        "leaky_relu": _single((8, 8, 4), L.LeakyReLU),
        "elu": _single((8, 8, 4), L.ELU),
        "elu_alpha": _single((8, 8, 4), lambda: L.ELU(0.5)),
        "dropout": _single((8, 8, 4), lambda: L.Dropout(0.5)),
        "spatial_dropout2d": _single((8, 8, 4), lambda: L.SpatialDropout2D(0.5)),
        "gaussian_noise": _single((8, 8, 4), lambda: L.GaussianNoise(0.5)),
        "gaussian_dropout": _single((8, 8, 4), lambda: L.GaussianDropout(0.5)),
        "alpha_dropout": _single((8, 8, 4), lambda: L.AlphaDropout(0.5)),
        "activity_regularization": _single((8, 8, 4), lambda: L.ActivityRegularization(0.1)),
        "repeat_vector": _single((4,), lambda: L.RepeatVector(3)),
        "upsampling1d": _single((8, 4), L.UpSampling1D),
        "upsampling2d_bilinear": _single((8, 8, 4),
                                         lambda: L.UpSampling2D(interpolation="bilinear")),
        "upsampling3d": _single((4, 4, 4, 4), L.UpSampling3D),
        "zero_padding1d": _single((8, 4), L.ZeroPadding1D),
        "zero_padding2d": _single((8, 8, 4), L.ZeroPadding2D),
        "zero_padding3d": _single((4, 4, 4, 4), L.ZeroPadding3D),
        "cropping1d": _single((8, 4), L.Cropping1D),
        "cropping2d": _single((8, 8, 4), lambda: L.Cropping2D(1)),
        "cropping3d": _single((4, 4, 4, 4), lambda: L.Cropping3D(1)),
        "average_pooling1d": _single((16, 4), lambda: L.AveragePooling1D(2)),
        "global_max_pooling1d": _single((8, 4), L.GlobalMaxPooling1D),
        "global_max_pooling2d": _single((8, 8, 4), L.GlobalMaxPooling2D),
        "global_max_pooling3d": _single((4, 4, 4, 4), L.GlobalMaxPooling3D),
        "global_average_pooling1d": _single((8, 4), L.GlobalAveragePooling1D),
        "global_average_pooling3d": _single((4, 4, 4, 4), L.GlobalAveragePooling3D),
        "flatten": _single((8, 8, 4), L.Flatten),
        "reshape_keeping_channels": _single((8, 8, 4), lambda: L.Reshape((64, 4))),
        "reshape_fixed": _single((8, 8, 4), lambda: L.Reshape((16, 16))),
        "permute": _single((8, 8, 4), lambda: L.Permute((2, 1, 3))),
        "subtract": _single((8, 8, 4), L.Subtract, n_inputs=2),
        "maximum": _single((8, 8, 4), L.Maximum, n_inputs=2),
        "minimum_of_3": _single((8, 8, 4), L.Minimum, n_inputs=3),
        "concatenate": _single((8, 8, 4), L.Concatenate, n_inputs=2),
        "concatenate_axis_1": _single((8, 8, 4), lambda: L.Concatenate(axis=1), n_inputs=2),
        "batch_norm_3d_input": _single((8, 4), L.BatchNormalization),
        "batch_norm_no_scale": _single((4,), lambda: L.BatchNormalization(scale=False)),
        "batch_norm_no_center_no_scale": _single(
            (4,), lambda: L.BatchNormalization(center=False, scale=False)),
        "batch_norm_axis_1_fused": _single((8, 8, 4), lambda: L.BatchNormalization(axis=1)),
        "batch_norm_time_axis": _single((8, 4), lambda: L.BatchNormalization(axis=1)),
        "layer_normalization_spatial": _single((8, 8, 4),
                                               lambda: L.LayerNormalization(axis=[1, 2])),
        "layer_normalization_no_scale": _single(
            (8, 8, 4), lambda: L.LayerNormalization(axis=[1, 2], scale=False)),
        "layer_normalization_no_affine": _single(
            (8, 8, 4), lambda: L.LayerNormalization(center=False, scale=False)),
        "group_normalization_per_channel": _single((8, 8, 4),
                                                   lambda: L.GroupNormalization(-1)),
        "group_normalization_2_groups": _single((8, 8, 4), lambda: L.GroupNormalization(2)),
        "group_normalization_no_scale": _single(
            (8, 4), lambda: L.GroupNormalization(2, scale=False)),
        "unit_normalization": _single((8, 8, 4), L.UnitNormalization),
        "unit_normalization_spatial": _single((8, 8, 4),
                                              lambda: L.UnitNormalization(axis=[1, 2])),
        "normalization_adapted": _single((8, 8, 4), lambda: _adapted(L.Normalization(), (8, 8, 4))),
        "rescaling_per_channel": _single((8, 8, 4), lambda: L.Rescaling([1.0, 2.0, 3.0, 4.0])),
        "time_distributed_conv2d": _single((3, 8, 8, 4),
                                           lambda: L.TimeDistributed(L.Conv2D(6, 3))),
        "time_distributed_batch_norm_2d": _single((3, 4),
                                                  lambda: L.TimeDistributed(L.BatchNormalization())),
        "time_distributed_flatten": _single((3, 4, 4, 2), lambda: L.TimeDistributed(L.Flatten())),
        "time_distributed_prelu": _single((3, 4, 4, 2), lambda: L.TimeDistributed(L.PReLU())),
        "time_distributed_normalization": _single(
            (3, 4), lambda: L.TimeDistributed(L.Normalization(mean=[0.1] * 4, variance=[2.0] * 4))),
        "layer_scale": _single((8, 8, 4), lambda: LayerScale(1e-6, 4)),
        "custom_scale_layer": _single((8, 8, 4), lambda: CustomScaleLayer(0.17), n_inputs=2),
    }
    if hasattr(L, "ThresholdedReLU"):  # tf_keras only
        cases["thresholded_relu"] = _single((8, 8, 4), L.ThresholdedReLU)
    if hasattr(L, "Identity"):  # Keras 3 only
        cases["identity"] = _single((8, 8, 4), L.Identity)
    # Every Keras activation of the flavour, as a layer.
    cases.update({f"activation_{name}": _single((8, 8, 4), lambda name=name: L.Activation(name))
                  for name in formulas.ACTIVATION_FLOPS if hasattr(keras.activations, name)})
    return cases


def _adapted(layer, shape):
    layer.adapt(np.random.RandomState(0).uniform(size=(4,) + shape).astype("float32"))
    return layer


def _op_case(keras, call, n_inputs=1):
    """A model calling `call` (a `tf.*` or `keras.ops` function) on `n_inputs` (8, 8, 4) inputs."""
    def build():
        inputs = [keras.Input((8, 8, 4)) for _ in range(n_inputs)]
        return keras.Model(inputs, call(*inputs))
    return build


def _tf_op_cases(keras):
    """Every function of the tf_keras op tables, safe or not (barriers count their FLOPs too)."""
    cases = {f"tf.{name}": _op_case(keras, call) for name, call in
             {**SAFE_UNARY_CALLS, **UNSAFE_UNARY_CALLS, **REDUCE_CALLS}.items()}
    cases.update({f"tf.{name}": _op_case(keras, call, 2) for name, call in BINARY_CALLS.items()})
    cases.update({
        "tf.concat": _op_case(keras, lambda a, b: tf.concat([a, b], axis=-1), 2),
        "tf.reshape": _op_case(keras, lambda t: tf.reshape(t, (-1, 8 * 8 * 4))),
        "slicing": _op_case(keras, lambda t: t[..., :2]),
    })
    return cases


def _keras_op_cases(keras):
    """Every Keras 3 op class with a rule, called as users call it."""
    two = set(KERAS_BINARY_OP_CALLS) | {"Concatenate"}
    cases = {f"ops.{name}": _op_case(keras, call, 2 if name in two else 1)
             for name, call in KERAS_OP_CALLS.items()}
    cases["ops.Gelu_exact"] = _op_case(keras, lambda t: keras.ops.gelu(t, approximate=False))
    cases["ops.Add_scalar"] = _op_case(keras, lambda t: t + 3.0)
    return cases


@functools.lru_cache(maxsize=None)
def _builders(flavour):
    keras = FLAVOURS[flavour]
    ops = _tf_op_cases(keras) if flavour == "tf_keras" else _keras_op_cases(keras)
    return {**_layer_cases(keras), **ops}


_LAYER_PARAMS = [(flavour, case) for flavour in FLAVOURS for case in _builders(flavour)]


@functools.lru_cache(maxsize=None)
def _layer_model(flavour, case):
    return _builders(flavour)[case]()


def _assert_flops_equal(model):
    total, per_op_type, _ = profiler_flops(model, input_shapes(model))
    stats = vot.stat(model)
    assert not stats.unknown_flops
    assert stats.flops == total, (
        f"stat={stats.flops:,} FLOPs, profiler={total:,}; profiler by op type: {per_op_type}")


@pytest.mark.parametrize("flavour, case", _LAYER_PARAMS, ids=case_ids(_LAYER_PARAMS))
def test_layer_flops_match_profiler(flavour, case):
    _assert_flops_equal(_layer_model(flavour, case))


# Layers whose TF op has no FLOPs registered with the profiler, which counts them as 0.
_PROFILER_BLIND = {
    "MaxPooling3D": "MaxPool3D has no registered FLOPs",
    "AveragePooling3D": "AvgPool3D has no registered FLOPs",
    "Conv3DTranspose": "Conv3DBackpropInputV2 has no registered FLOPs",
}
# Where each flavour's classes live.
_MODULE_PREFIXES = {"tf_keras": "tf_keras.", "keras3": "keras."}


def _case_classes(flavour):
    """The classes of every node (and wrapped layer) of the flavour's cases."""
    classes = set()
    for case in _builders(flavour):
        for node in adapters.adapter_for(_layer_model(flavour, case)).graph.nodes:
            classes.add(node.layer_class)
            if node.wrapped is not None:
                classes.add(node.wrapped.layer_class)
    return classes


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_every_registered_class_is_checked_against_the_profiler(flavour):
    covered = _case_classes(flavour)
    missing = [cls.__name__ for cls in REGISTRY.registered_classes()
               if cls.__module__.startswith(_MODULE_PREFIXES[flavour])
               and cls.__name__ not in _PROFILER_BLIND
               and not any(issubclass(c, cls) for c in covered)]
    assert not missing, f"no profiler case for {missing}"


def test_layers_the_profiler_cannot_count_match_hand_counts(keras):
    L = keras.layers

    def single(shape, layer):
        inputs = keras.Input(shape)
        return keras.Model(inputs, layer(inputs))

    # 2 x 2 x 2 windows over 2 x 2 x 2 outputs of 4 channels: one FLOP per window element.
    for pool in (L.MaxPooling3D, L.AveragePooling3D):
        assert vot.stat(single((4, 4, 4, 4), pool(2))).flops == 8 * (2 * 2 * 2 * 4)
    # Each of the 4 x 4 x 4 input positions scatters a 3 x 3 x 3 x 4 x 6 kernel
    # (one multiply-add = 2 FLOPs); the bias adds one FLOP per output element.
    model = single((4, 4, 4, 4), L.Conv3DTranspose(6, 3, strides=2, padding="same"))
    assert model.output_shape == (None, 8, 8, 8, 6)
    assert vot.stat(model).flops == 2 * 4 ** 3 * 27 * 4 * 6 + 8 ** 3 * 6


@pytest.mark.parametrize("function", sorted(name[3:] for name in _builders("tf_keras")
                                            if name.startswith("tf.")))
def test_op_cases_call_the_function_they_are_named_after(function):
    model = _layer_model("tf_keras", f"tf.{function}")
    assert [layer.get_config()["function"] for layer in model.layers
            if type(layer).__name__ == "TFOpLambda"] == [function]


@pytest.mark.parametrize("flavour, case", _LAYER_PARAMS, ids=case_ids(_LAYER_PARAMS))
def test_layer_params_match_count_params(flavour, case):
    model = _layer_model(flavour, case)
    assert vot.stat(model).params == model.count_params()


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_bias_free_conv_counts_only_multiply_adds(flavour):
    # 14 x 14 outputs, 12 filters, each 3 x 3 x 8 multiply-adds of 2 FLOPs.
    model = _layer_model(flavour, "conv2d_no_bias")
    assert vot.stat(model).flops == 14 * 14 * 12 * 3 * 3 * 8 * 2


def test_keras3_batch_norm_is_never_the_fused_kernel():
    # The same 4D BatchNormalization costs 0 in tf_keras (FusedBatchNormV3) and
    # 2 FLOPs per element plus 6 per channel in Keras 3 (tf.nn.batch_normalization).
    tf_keras_flops = vot.stat(_layer_model("tf_keras", "batch_norm_4d_fused")).flops
    keras3_flops = vot.stat(_layer_model("keras3", "batch_norm_4d_fused")).flops
    assert (tf_keras_flops, keras3_flops) == (0, 2 * 8 * 8 * 4 + 6 * 4)


# The zoo --------------------------------------------------------------------------


@pytest.mark.parametrize("flavour, name", ZOO_CASES, ids=case_ids(ZOO_CASES))
def test_zoo_flops_match_profiler(flavour, name):
    total, per_op_type, _ = zoo_profile(flavour, name)
    ours = vot.stat(zoo_model(flavour, name)).flops
    assert ours == total, (f"{name}: stat={ours:,} FLOPs, profiler={total:,}; "
                           f"profiler by op type: {per_op_type}")


@pytest.mark.parametrize("flavour, name", ZOO_CASES, ids=case_ids(ZOO_CASES))
def test_zoo_params_match_count_params(flavour, name):
    model = zoo_model(flavour, name)
    assert vot.stat(model).params == model.count_params()


def _profiler_flops_by_layer(model, per_node):
    """Sums the profiler's per-node FLOPs by the top-level layer that owns each node.

    tf_keras names frozen nodes "<model>/<layer>/<op>"; layer names may hold
    "/" themselves (DenseNet's "conv1/conv"), so the longest matching name
    wins. Keras 3 adds a uniquifying suffix to every scope,
    "<model>_<i>/<layer>_<j>/<op>" (layer `conv_1` is scope `conv_1_2`), and
    its layer names hold no "/", so the owner is the first scope without its
    suffix. Nodes outside every layer are summed under `None`: in Keras 3 the
    `keras.ops` calls (`x + 3.0`), which open no scope of their own.
    """
    names = sorted((row.name for row in vot.stat(model).layers), key=len, reverse=True)
    keras3 = adapters.flavour_of(model) == "keras3"
    by_layer = collections.Counter()
    for node, flops in per_node.items():
        scope, _, rest = node.partition("/")
        if keras3:
            owner = re.sub(r"_\d+$", "", rest.split("/")[0]) if rest else None
            owner = owner if owner in names else None
        else:
            rest = rest if scope == model.name else ""
            owner = next((n for n in names if rest.startswith(n + "/")), None)
        by_layer[owner] += flops
    return by_layer


@pytest.mark.parametrize("flavour, name", ZOO_CASES, ids=case_ids(ZOO_CASES))
def test_zoo_layer_flops_match_profiler(flavour, name):
    # Totals could hide errors that cancel out; compare every layer.
    model = zoo_model(flavour, name)
    truth = _profiler_flops_by_layer(model, zoo_profile(flavour, name)[2])
    layers = {layer.name for layer in model.layers}
    ours = collections.Counter()
    for row in vot.stat(model).layers:  # keras.ops calls are no layers: see above
        ours[row.name if row.name in layers else None] += row.flops
    wrong = [(layer, ours.get(layer, 0), truth.get(layer, 0))
             for layer in sorted(set(ours) | set(truth), key=str)
             if ours.get(layer, 0) != truth.get(layer, 0)]
    assert not wrong, f"{name}: (layer, stat, profiler) differ: {wrong[:10]}"


# Slim models: analytic counts of a spec == counts of the built model ------------------

def _mixed_2d(keras):
    L = keras.layers
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


def _mixed_1d(keras):
    L = keras.layers
    x = keras.Input((32, 4))
    a = L.Conv1D(16, 3, padding="same")(x)
    b = L.Conv1D(16, 5, padding="same", activation="relu")(a)
    a = L.Add()([a, b])
    a = L.Conv1D(8, 3, strides=2)(a)
    a = L.MaxPooling1D(2)(a)
    a = L.Flatten()(a)
    return keras.Model(x, L.Dense(3)(a), name="mixed_1d")


def _time_distributed(keras):
    # A TimeDistributed(Conv2D) stack: counted once per time step.
    L = keras.layers
    x = keras.Input((3, 8, 8, 3))
    a = L.TimeDistributed(L.Conv2D(16, 3, padding="same"), name="conv_a")(x)
    a = L.TimeDistributed(L.BatchNormalization(), name="bn")(a)
    a = L.TimeDistributed(L.ReLU(), name="relu")(a)
    a = L.TimeDistributed(L.Conv2D(16, 3, strides=2), name="conv_b")(a)
    a = L.TimeDistributed(L.GlobalAveragePooling2D(), name="pool")(a)
    return keras.Model(x, L.Dense(4)(a), name="time_distributed")


_SMALL_PRUNABLE = {"mixed_2d": _mixed_2d, "mixed_1d": _mixed_1d,
                   "time_distributed": _time_distributed}
_PRUNED_CASES = ([(flavour, name) for flavour in FLAVOURS for name in _SMALL_PRUNABLE]
                 + ZOO_CASES)


@functools.lru_cache(maxsize=None)
def _pruned(flavour, name):
    """(runner, spec, slim, slim profile or None) of a zoo or small model pruned by half."""
    if name in _SMALL_PRUNABLE:
        runner = vot.IterativePruningRunner(_SMALL_PRUNABLE[name](FLAVOURS[flavour]))
        spec = runner.uniform_spec(0.5, channel_divisible=1)
        return runner, spec, runner.get_slim_model(spec), None
    pruned = zoo_pruned(flavour, name)
    return pruned.runner, pruned.spec, pruned.slim, zoo_slim_profile(flavour, name)


@pytest.mark.parametrize("flavour, name", _PRUNED_CASES, ids=case_ids(_PRUNED_CASES))
def test_slim_model_stat_equals_runner_stat(flavour, name):
    runner, spec, slim, _ = _pruned(flavour, name)
    analytic = runner.stat(spec)
    assert analytic.flops < runner.stat().flops, "the spec pruned nothing"
    assert vot.stat(slim).layers == analytic.layers
    assert analytic.params == slim.count_params()


@pytest.mark.parametrize("flavour, name", _PRUNED_CASES, ids=case_ids(_PRUNED_CASES))
def test_runner_stat_of_spec_matches_profiler_on_slim_model(flavour, name):
    runner, spec, slim, profile = _pruned(flavour, name)
    total = (profile or profiler_flops(slim, input_shapes(slim)))[0]
    analytic = runner.stat(spec).flops
    assert analytic == total, (
        f"{name}: runner.stat(spec)={analytic:,} FLOPs, profiler on slim={total:,}")


@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_time_distributed_flops_reduction_is_the_profilers(flavour):
    # Before TimeDistributed had a rule, stat said -49.8% where the profiler said -0.27%.
    runner, spec, slim, _ = _pruned(flavour, "time_distributed")
    model = runner.model
    before = profiler_flops(model, input_shapes(model))[0]
    after = profiler_flops(slim, input_shapes(slim))[0]
    assert runner.stat().flops == before
    assert 1 - runner.stat(spec).flops / runner.stat().flops == 1 - after / before
