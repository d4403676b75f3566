"""Layer patterns: how each supported layer couples channels, and that pruning stays exact.

Every test builds a tiny model around one layer pattern, once with tf_keras
and once with Keras 3 (the `keras` fixture), and checks three things against
independent truth:

* the slim model (pruned channels removed) computes the same outputs as the
  sparse model (pruned channels zeroed), within 1e-5 relative, on random
  inputs, with random biases and normalization statistics so that slicing
  mistakes cannot hide behind zeros and ones;
* the slim model has fewer parameters than the original whenever something
  is prunable;
* the channel groups are the expected ones: which are prunable and, for the
  others, that the reason names the layer that blocks them.

`tf.*` calls on Keras tensors are in test_op_patterns.py.
"""

import numpy as np
import pytest
import tensorflow as tf

import vai_optimizer_tf as vot
from tests.flavours import private_layer
from tests.pattern_utils import assert_blocked_by, group_named, group_of, prune_and_compare


def conv_for(L, rank):
    return {3: L.Conv1D, 4: L.Conv2D, 5: L.Conv3D}[rank]


# Convolutions --------------------------------------------------------------------

@pytest.mark.parametrize("conv, input_shape", [
    ("Conv1D", (8, 3)),
    ("Conv2D", (8, 8, 3)),
    ("Conv3D", (4, 4, 4, 3)),
    ("Conv1DTranspose", (4, 3)),
    ("Conv2DTranspose", (4, 4, 3)),
    ("Conv3DTranspose", (2, 2, 2, 3)),
], ids=str)
def test_convolutions_prune_their_filters(keras, conv, input_shape):
    L = keras.layers
    strides = 2 if "Transpose" in conv else 1
    conv = getattr(L, conv)
    inputs = keras.Input(input_shape)
    x = conv(8, 3, padding="same", name="conv_a")(inputs)
    x = L.ReLU(name="relu")(x)
    x = conv(8, 3, strides=strides, padding="same", name="conv_b")(x)
    outputs = conv(4, 3, padding="same", name="head")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "conv_a").prunable
    assert group_of(runner, "conv_a").consumers == ("conv_b",)
    assert group_of(runner, "conv_b").prunable
    assert_blocked_by(group_of(runner, "head"), "model output", "head")
    assert slim.get_layer("conv_a").filters == 4


@pytest.mark.parametrize("depthwise, input_shape", [
    ("DepthwiseConv1D", (8, 3)),
    ("DepthwiseConv2D", (8, 8, 3)),
], ids=["1d", "2d"])
@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_conv_carries_the_group_of_its_input(keras, depthwise, input_shape,
                                                        multiplier):
    L = keras.layers
    conv = conv_for(L, len(input_shape) + 1)
    inputs = keras.Input(input_shape)
    x = conv(8, 1, name="conv")(inputs)
    x = getattr(L, depthwise)(3, depth_multiplier=multiplier, padding="same", name="dw")(x)
    x = conv(6, 1, name="pointwise")(x)
    outputs = conv(2, 1, name="head")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    group = group_of(runner, "conv")
    assert group.prunable and group.width == 8
    assert group.members == ("dw",)
    assert group.consumers == ("pointwise",)
    assert group_of(runner, "pointwise").prunable
    assert slim.get_layer("dw").output.shape[-1] == 4 * multiplier


@pytest.mark.parametrize("separable, input_shape", [
    ("SeparableConv1D", (8, 3)),
    ("SeparableConv2D", (8, 8, 3)),
], ids=["1d", "2d"])
def test_separable_conv_with_depth_multiplier_consumes_and_produces(keras, separable,
                                                                   input_shape):
    L = keras.layers
    conv = conv_for(L, len(input_shape) + 1)
    inputs = keras.Input(input_shape)
    x = conv(8, 1, name="conv")(inputs)
    x = getattr(L, separable)(8, 3, depth_multiplier=2, padding="same", name="sep")(x)
    x = L.ReLU()(x)
    outputs = conv(2, 1, name="head")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "conv").prunable
    assert group_of(runner, "conv").consumers == ("sep",)
    assert group_of(runner, "sep").prunable
    assert group_of(runner, "sep").consumers == ("head",)
    assert slim.get_layer("sep").pointwise_kernel.shape == (*(1,) * (len(input_shape) - 1), 8, 4)


def test_grouped_conv_is_a_barrier_naming_it(keras):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    x = L.ReLU()(x)
    x = L.Conv2D(8, 1, name="conv")(x)
    x = L.Conv2D(8, 3, groups=2, padding="same", name="grouped")(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv"), "grouped", "groups=2")
    assert_blocked_by(group_named(runner, "grouped"), "grouped", "groups=2")
    assert slim.get_layer("grouped").filters == 8


# Dense ---------------------------------------------------------------------------

def test_dense_chain_prunes_hidden_units(keras):
    L = keras.layers
    inputs = keras.Input((6,))
    x = L.Dense(16, activation="relu", name="fc1")(inputs)
    x = L.Dense(12, activation="sigmoid", name="fc2")(x)
    outputs = L.Dense(3, name="logits")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "fc1").prunable and group_of(runner, "fc1").consumers == ("fc2",)
    assert group_of(runner, "fc2").prunable and group_of(runner, "fc2").consumers == ("logits",)
    assert_blocked_by(group_of(runner, "logits"), "logits")
    assert [slim.get_layer(n).units for n in ("fc1", "fc2", "logits")] == [8, 6, 3]


def test_dense_on_a_sequence_prunes_its_last_axis(keras):
    L = keras.layers
    inputs = keras.Input((5, 6))
    x = L.Dense(16, activation="tanh", name="fc1")(inputs)
    x = L.Dense(8, name="fc2")(x)
    outputs = L.Dense(3, name="logits")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "fc1").prunable
    assert group_of(runner, "fc2").prunable
    assert slim.output_shape == (None, 5, 3)


def test_dense_with_softmax_keeps_its_units(keras):
    L = keras.layers
    inputs = keras.Input((6,))
    x = L.Dense(8, activation="softmax", name="attention")(inputs)
    outputs = L.Dense(3, name="logits")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs), expect_smaller=False)

    assert_blocked_by(group_of(runner, "attention"), "attention", "softmax")


# Normalization ---------------------------------------------------------------------

def test_batch_norm_on_the_channel_axis_is_sliced_with_its_group(keras):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU()(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    group = group_of(runner, "conv")
    assert group.prunable and group.members == ("bn",)
    assert [w.shape for w in slim.get_layer("bn").weights] == [(4,)] * 4


def test_batch_norm_on_a_time_axis_passes_channels_through(keras):
    L = keras.layers
    inputs = keras.Input((6, 4))
    x = L.Conv1D(8, 3, padding="same", name="conv")(inputs)
    x = L.BatchNormalization(axis=1, name="bn_time")(x)
    outputs = L.Dense(3, name="logits")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    group = group_of(runner, "conv")
    assert group.prunable and group.members == ()
    assert [w.shape for w in slim.get_layer("bn_time").weights] == [(6,)] * 4


def test_layer_norm_over_channels_is_a_barrier(keras):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    x = L.Conv2D(8, 1, name="conv")(x)
    x = L.LayerNormalization(name="ln")(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv"), "LayerNormalization", "'ln'")


@pytest.mark.parametrize("groups", [-1, 8])
def test_group_norm_with_one_channel_per_group_is_prunable(keras, groups):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 1, name="conv")(inputs)
    x = L.GroupNormalization(groups=groups, name="gn")(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "conv").prunable
    assert group_of(runner, "conv").members == ("gn",)
    assert slim.get_layer("gn").groups == 4


def test_group_norm_with_several_channels_per_group_is_a_barrier(keras):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    x = L.Conv2D(8, 1, name="conv")(x)
    x = L.GroupNormalization(groups=2, name="gn")(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    assert_blocked_by(group_of(runner, "conv"), "GroupNormalization", "'gn'")


# Activations ---------------------------------------------------------------------

@pytest.mark.parametrize("make_layer, has_weights", [
    (lambda L: L.Activation("tanh", name="act"), False),
    (lambda L: L.Activation("sigmoid", name="act"), False),
    (lambda L: L.ReLU(name="act"), False),
    (lambda L: L.LeakyReLU(0.2, name="act"), False),
    (lambda L: L.ELU(name="act"), False),
    (lambda L: L.Softmax(axis=1, name="act"), False),
    (lambda L: L.PReLU(shared_axes=[1, 2], name="act"), True),
    (lambda L: L.PReLU(name="act"), True),
], ids=["tanh", "sigmoid", "relu", "leaky_relu", "elu", "softmax_axis1", "prelu_shared",
        "prelu_per_position"])
def test_activations_pass_channels_through(keras, make_layer, has_weights):
    L = keras.layers
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="conv")(inputs)
    x = make_layer(L)(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    group = group_of(runner, "conv")
    assert group.prunable
    assert group.members == (("act",) if has_weights else ())
    if has_weights:
        assert slim.get_layer("act").alpha.shape[-1] == 4


@pytest.mark.parametrize("make_layer", [
    lambda L: L.Softmax(name="act"),
    lambda L: L.Activation("softmax", name="act"),
], ids=["Softmax", "Activation"])
def test_softmax_on_the_channel_axis_is_a_barrier(keras, make_layer):
    L = keras.layers
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    x = L.Conv2D(8, 1, name="conv")(x)
    x = make_layer(L)(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv"), "softmax", "'act'")


@pytest.mark.parametrize("input_shape, producer, shared_axes", [
    ((4, 4, 3), lambda L: L.Conv2D(8, 1, name="conv"), [1, 2, 3]),
    ((6,), lambda L: L.Dense(8, name="conv"), [1]),
    ((5, 6), lambda L: L.Dense(8, name="conv"), [1, 2]),
], ids=["conv_all_axes", "dense", "dense_on_sequence"])
def test_prelu_with_alpha_shared_across_channels_has_no_per_channel_weight(
        keras, input_shape, producer, shared_axes):
    L = keras.layers
    inputs = keras.Input(input_shape)
    x = producer(L)(inputs)
    x = L.PReLU(shared_axes=shared_axes, name="act")(x)
    outputs = L.Dense(2, name="head")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    group = group_of(runner, "conv")
    assert group.prunable
    assert group.members == ()
    assert slim.get_layer("act").alpha.shape[-1] == 1


def _per_channel_scale_class(L, weight_shape):
    """A custom layer multiplying by a weight of `weight_shape(channels)`."""
    class Scale(L.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(name="scale", shape=weight_shape(input_shape[-1]),
                                         initializer="ones")

        def call(self, x):
            return x * tf.reduce_mean(self.scale)
    vot.register_layer(Scale, vot.LayerSpec.passthrough(per_channel_weights={"scale": -1},
                                                        flops=lambda *_: 0))
    return Scale


def test_weight_declared_per_channel_but_shared_is_not_sliced(keras):
    L = keras.layers
    scale = _per_channel_scale_class(L, lambda channels: (1,))
    runner, _, slim = prune_and_compare(_model_around(keras, scale(name="scale")))

    assert group_of(runner, "conv").prunable
    assert group_of(runner, "conv").members == ()
    assert slim.get_layer("scale").scale.shape == (1,)


def test_weight_declared_per_channel_with_another_width_blocks_its_group(keras):
    L = keras.layers
    scale = _per_channel_scale_class(L, lambda channels: (channels + 1,))
    runner, _, _ = prune_and_compare(_model_around(keras, scale(name="scale")))

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv"), "'scale'", "9 entries", "8")


# Shape-keeping layers --------------------------------------------------------------

@pytest.mark.parametrize("make_layer", [
    lambda L: L.MaxPooling2D(2, name="layer"),
    lambda L: L.AveragePooling2D(2, name="layer"),
    lambda L: L.Dropout(0.5, name="layer"),
    lambda L: L.SpatialDropout2D(0.5, name="layer"),
    lambda L: L.ZeroPadding2D(1, name="layer"),
    lambda L: L.Cropping2D(1, name="layer"),
    lambda L: L.UpSampling2D(name="layer"),
    lambda L: L.Rescaling(0.5, offset=0.1, name="layer"),
    lambda L: L.Normalization(name="layer"),
], ids=["MaxPooling2D", "AveragePooling2D", "Dropout", "SpatialDropout2D", "ZeroPadding2D",
        "Cropping2D", "UpSampling2D", "Rescaling", "Normalization"])
def test_spatial_layers_pass_channels_through(keras, make_layer):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = make_layer(L)(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    group = group_of(runner, "conv")
    assert group.prunable
    assert group.consumers == ("head",)


@pytest.mark.parametrize("make_layer", [
    lambda L: L.GlobalAveragePooling2D(name="pool"),
    lambda L: L.GlobalMaxPooling2D(name="pool"),
    lambda L: L.GlobalAveragePooling2D(keepdims=True, name="pool"),
], ids=["average", "max", "average_keepdims"])
def test_global_pooling_2d_feeds_a_dense_head(keras, make_layer):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, name="conv")(inputs)
    x = make_layer(L)(x)
    outputs = L.Dense(3, name="logits")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "conv").prunable
    assert group_of(runner, "conv").consumers == ("logits",)


@pytest.mark.parametrize("make_layer", [
    lambda L: L.MaxPooling1D(2, name="pool"),
    lambda L: L.AveragePooling1D(2, name="pool"),
    lambda L: L.GlobalAveragePooling1D(name="pool"),
    lambda L: L.GlobalMaxPooling1D(name="pool"),
], ids=["MaxPooling1D", "AveragePooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling1D"])
def test_pooling_1d_passes_channels_through(keras, make_layer):
    L = keras.layers
    inputs = keras.Input((8, 3))
    x = L.Conv1D(8, 3, name="conv")(inputs)
    x = make_layer(L)(x)
    outputs = L.Dense(3, name="logits")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "conv").prunable


# Flatten and Reshape ----------------------------------------------------------------

@pytest.mark.parametrize("make_layer", [
    lambda L: L.Flatten(name="flat"),
    lambda L: L.Reshape((-1,), name="flat"),
    lambda L: L.Reshape((4 * 4 * 8,), name="flat"),
], ids=["Flatten", "Reshape_minus_one", "Reshape_explicit"])
def test_flattened_channels_prune_the_dense_rows_of_every_position(keras, make_layer):
    L = keras.layers
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="conv")(inputs)
    x = make_layer(L)(x)
    x = L.Dense(8, activation="relu", name="fc")(x)
    outputs = L.Dense(3, name="logits")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "conv").prunable
    assert group_of(runner, "conv").consumers == ("fc",)
    assert group_of(runner, "fc").prunable
    assert slim.get_layer("fc").kernel.shape == (4 * 4 * 4, 4)


def test_squeeze_excite_with_reshape_and_sigmoid_stays_exact(keras):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
    se = L.GlobalAveragePooling2D(name="squeeze")(x)
    se = L.Reshape((1, 1, 8), name="se_reshape")(se)
    se = L.Conv2D(4, 1, activation="relu", name="se_reduce")(se)
    se = L.Conv2D(8, 1, activation="sigmoid", name="se_expand")(se)
    x = L.Multiply(name="excite")([x, se])
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    group = group_of(runner, "conv")
    assert group.prunable
    assert set(group.producers) == {"conv", "se_expand"}
    assert set(group.consumers) == {"se_reduce", "head"}
    assert group_of(runner, "se_reduce").prunable
    assert slim.get_layer("se_reshape").target_shape == (1, 1, 4)


def test_reshape_to_a_fixed_shape_is_a_barrier(keras):
    L = keras.layers
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    x = L.Conv2D(8, 1, name="conv")(x)
    x = L.Reshape((4, 32), name="fold")(x)
    outputs = L.Dense(3, name="logits")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv"), "Reshape", "'fold'")


# Merges and concatenation -----------------------------------------------------------

@pytest.mark.parametrize("merge", ["Add", "Multiply", "Average", "Maximum", "Minimum"])
def test_merge_of_three_branches_unites_them_in_one_group(keras, merge):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    branches = [L.Conv2D(8, 3, padding="same", name=f"branch_{i}")(inputs) for i in range(3)]
    x = getattr(L, merge)(name="merge")(branches)
    x = L.ReLU()(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    group = group_of(runner, "branch_0")
    assert group.prunable
    assert sorted(group.producers) == ["branch_0", "branch_1", "branch_2"]
    assert group.consumers == ("head",)


def test_subtract_unites_its_two_inputs(keras):
    L = keras.layers
    # Subtract is the one merge layer that takes exactly two inputs.
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, padding="same", name="branch_0")(inputs)
    b = L.Conv2D(8, 3, padding="same", name="branch_1")(inputs)
    x = L.Subtract(name="merge")([a, b])
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    assert sorted(group_of(runner, "branch_0").producers) == ["branch_0", "branch_1"]
    assert group_of(runner, "branch_0").prunable


def test_concatenate_on_channels_keeps_each_branch_its_own_group(keras):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", name="narrow")(inputs)
    b = L.Conv2D(6, 3, padding="same", name="wide")(inputs)
    x = L.Concatenate(name="concat")([a, b])
    x = L.BatchNormalization(name="bn")(x)
    x = L.Conv2D(8, 1, name="fuse")(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, slim = prune_and_compare(keras.Model(inputs, outputs))

    narrow, wide = group_of(runner, "narrow"), group_of(runner, "wide")
    assert narrow is not wide
    assert (narrow.width, wide.width) == (4, 6)
    assert narrow.prunable and wide.prunable
    assert narrow.consumers == wide.consumers == ("fuse",)
    assert narrow.members == wide.members == ("bn",)
    assert slim.get_layer("fuse").kernel.shape[-2] == 2 + 3


def test_concatenate_on_another_axis_merges_its_inputs(keras):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, padding="same", name="top")(inputs)
    b = L.Conv2D(8, 3, padding="same", name="bottom")(inputs)
    x = L.Concatenate(axis=1, name="stack")([a, b])
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    group = group_of(runner, "top")
    assert group.prunable
    assert sorted(group.producers) == ["bottom", "top"]

# Wrappers and keras.applications layers ---------------------------------------------

def test_time_distributed_layers_keep_the_wrapped_layers_channel_rules(keras):
    L = keras.layers
    inputs = keras.Input((3, 6, 6, 3))
    x = L.TimeDistributed(L.Conv2D(8, 3, padding="same"), name="conv")(inputs)
    x = L.TimeDistributed(L.BatchNormalization(), name="bn")(x)
    x = L.TimeDistributed(L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
                          name="dw")(x)
    x = L.TimeDistributed(L.Conv2D(6, 3, activation="relu"), name="conv_b")(x)
    x = L.TimeDistributed(L.GlobalAveragePooling2D(), name="pool")(x)
    outputs = L.Dense(2, name="head")(x)
    runner, _, sparse, slim = prune_and_compare(keras.Model(inputs, outputs),
                                                return_sparse=True)

    group = group_of(runner, "conv")
    assert group.prunable and group.members == ("bn", "dw") and group.consumers == ("conv_b",)
    assert group_of(runner, "conv_b").prunable
    assert slim.get_layer("conv").layer.filters == 4
    assert slim.get_layer("dw").output.shape[-1] == 8
    assert runner.spec_from_model(sparse).groups.keys() == {"conv", "conv_b"}


def test_time_distributed_flatten_is_a_barrier(keras):
    L = keras.layers
    inputs = keras.Input((3, 4, 4, 3))
    x = L.TimeDistributed(L.Conv2D(8, 1), name="stem")(inputs)
    x = L.TimeDistributed(L.Conv2D(8, 1), name="conv")(x)
    x = L.TimeDistributed(L.Flatten(), name="flat")(x)
    outputs = L.Dense(2, name="head")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv"), "TimeDistributed", "'flat'", "Flatten")


def test_convnext_layer_scale_is_sliced_with_its_channels(keras):
    L = keras.layers
    LayerScale = private_layer(keras, "LayerScale")

    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="conv")(inputs)
    x = LayerScale(0.5, 8, name="scale")(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("scale").gamma.assign(np.linspace(0.5, 1.5, 8, dtype="float32"))
    runner, _, slim = prune_and_compare(model)

    assert group_of(runner, "conv").prunable
    assert group_of(runner, "conv").members == ("scale",)
    assert slim.get_layer("scale").projection_dim == 4


def test_inception_resnet_scaled_add_merges_its_inputs(keras):
    L = keras.layers
    CustomScaleLayer = private_layer(keras, "CustomScaleLayer")

    inputs = keras.Input((4, 4, 3))
    a = L.Conv2D(8, 1, name="trunk")(inputs)
    b = L.Conv2D(8, 1, name="branch")(L.ReLU()(a))
    x = CustomScaleLayer(0.17, name="scaled_add")([a, b])
    outputs = L.Conv2D(2, 1, name="head")(x)
    runner, _, _ = prune_and_compare(keras.Model(inputs, outputs))

    group = group_of(runner, "trunk")
    assert group.prunable
    assert sorted(group.producers) == ["branch", "trunk"]
    assert group.consumers == ("branch", "head")


# Unknown and registered layers -----------------------------------------------------

def _model_around(keras, layer):
    L = keras.layers
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    x = L.Conv2D(8, 1, name="conv")(x)
    x = layer(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    return keras.Model(inputs, outputs)


def _scale_layer_class(L):
    """A fresh custom layer class, so registrations never leak between tests."""
    class DoubleIt(L.Layer):
        def call(self, x):
            return 2.0 * x
    return DoubleIt


def test_lambda_layer_is_a_barrier_naming_layer_and_class(keras):
    L = keras.layers
    runner, _, _ = prune_and_compare(
        _model_around(keras, L.Lambda(lambda t: t * 2.0, name="twice")))

    assert group_of(runner, "stem").prunable
    assert_blocked_by(group_of(runner, "conv"), "'twice'", "Lambda", "register_layer")


def test_custom_layer_is_a_barrier_naming_layer_and_class(keras):
    L = keras.layers
    layer_class = _scale_layer_class(L)
    runner, _, _ = prune_and_compare(_model_around(keras, layer_class(name="twice")))

    assert_blocked_by(group_of(runner, "conv"), "'twice'", "DoubleIt", "register_layer")


def test_registered_custom_layer_passes_channels_through(keras):
    L = keras.layers
    layer_class = _scale_layer_class(L)
    vot.register_layer(layer_class, vot.LayerSpec.passthrough())
    runner, _, slim = prune_and_compare(_model_around(keras, layer_class(name="twice")))

    assert group_of(runner, "conv").prunable
    assert group_of(runner, "conv").consumers == ("head",)
    assert isinstance(slim.get_layer("twice"), layer_class)
