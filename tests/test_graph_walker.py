"""The graph walker: which models are read, and what pruning does to the model as a whole.

Covers model kinds (Sequential, Functional, nested, shared layers, several
inputs and outputs), the models that are refused, and the promises the runner
makes about the models it returns: the user's model is untouched, the slim
model keeps layer names and input/output shapes, computes what the sparse model
computes, and saves and reloads as a plain model of its flavour. Also the
`excludes` and `channel_divisible` arguments of `uniform_spec`. Every test
runs on tf_keras and on Keras 3 (the `keras` fixture).
"""

import numpy as np
import pytest
import tensorflow as tf

import vai_optimizer_tf as vot
from tests import model_utils
from tests.flavours import flavour_name
from vai_optimizer_tf.groups.dependency_graph import DependencyGraph

TOLERANCE = 1e-5


def prune(model, sparsity=0.5, **spec_kwargs):
    """`(runner, spec, sparse, slim)` for a uniform spec, after checking slim == sparse."""
    return model_utils.prune_checked(model, sparsity, TOLERANCE, **spec_kwargs)


def group_of(runner, producer):
    matches = [g for g in runner.groups if producer in g.producers]
    assert len(matches) == 1, [g.describe() for g in runner.groups]
    return matches[0]


def layer_names(model):
    """Layer names, nested models expanded as `outer/inner`."""
    names = []
    for layer in model.layers:
        names.append(layer.name)
        if hasattr(layer, "layers"):
            names.extend(f"{layer.name}/{n}" for n in layer_names(layer))
    return names


def tensor_functions(keras):
    """`(reshape, relu)` called on Keras tensors: `tf.*` in tf_keras, `keras.ops` in Keras 3."""
    if flavour_name(keras) == "keras3":
        return keras.ops.reshape, keras.ops.relu
    return tf.reshape, tf.nn.relu


def conv_net(keras, name="net"):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv_a")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.Conv2D(8, 3, padding="same", name="conv_b")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(3, name="logits")(x)
    return model_utils.randomize_weights(keras.Model(inputs, outputs, name=name))


# Model kinds ---------------------------------------------------------------------

def test_sequential_model(keras):
    L = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        L.Conv2D(8, 3, padding="same", name="conv_a"),
        L.BatchNormalization(name="bn"),
        L.ReLU(name="relu"),
        L.Conv2D(8, 3, name="conv_b"),
        L.Flatten(name="flat"),
        L.Dense(3, name="logits"),
    ])
    model_utils.randomize_weights(model)
    runner, _, _, slim = prune(model)

    assert group_of(runner, "conv_a").prunable and group_of(runner, "conv_a").members == ("bn",)
    assert group_of(runner, "conv_b").prunable
    assert isinstance(slim, keras.Sequential)
    assert slim.count_params() < model.count_params()


def test_functional_model(keras):
    model = conv_net(keras)
    runner, _, _, slim = prune(model)

    assert [g.name for g in runner.groups if g.prunable] == ["conv_a", "conv_b"]
    assert not group_of(runner, "logits").prunable
    assert slim.get_layer("conv_a").filters == 4 and slim.get_layer("conv_b").filters == 4


@pytest.mark.parametrize("inner_kind", ["sequential", "sequential_input_shape", "functional"])
def test_nested_model_whose_input_channels_are_pruned(keras, inner_kind):
    L = keras.layers
    if inner_kind == "sequential":
        inner = keras.Sequential([keras.Input((8, 8, 8)), L.Conv2D(6, 3, padding="same",
                                  name="inner_conv"), L.ReLU(name="inner_relu")], name="inner")
    elif inner_kind == "sequential_input_shape":
        inner = keras.Sequential([L.Conv2D(6, 3, padding="same", name="inner_conv",
                                           input_shape=(8, 8, 8)),
                                  L.ReLU(name="inner_relu")], name="inner")
    else:
        inner_in = keras.Input((8, 8, 8))
        y = L.Conv2D(6, 3, padding="same", name="inner_conv")(inner_in)
        inner = keras.Model(inner_in, L.ReLU(name="inner_relu")(y), name="inner")
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    x = inner(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    model = model_utils.randomize_weights(keras.Model(inputs, outputs))
    runner, _, _, slim = prune(model)

    stem = group_of(runner, "stem")
    assert stem.prunable and stem.consumers == ("inner/inner_conv",)
    assert group_of(runner, "inner/inner_conv").prunable
    slim_inner = slim.get_layer("inner")
    assert slim_inner.input_shape == (None, 8, 8, 4)
    assert slim_inner.get_layer("inner_conv").filters == 3
    assert layer_names(slim) == layer_names(model)


def test_shared_layer_unites_the_groups_of_its_calls(keras):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    left = L.Conv2D(8, 3, padding="same", name="left")(inputs)
    right = L.Conv2D(8, 1, name="right")(inputs)
    shared = L.Conv2D(6, 3, padding="same", name="shared")
    x = L.Concatenate(name="concat")([shared(left), shared(right)])
    outputs = L.Conv2D(2, 1, name="head")(x)
    model = model_utils.randomize_weights(keras.Model(inputs, outputs))
    runner, _, _, slim = prune(model)

    inputs_group = group_of(runner, "left")
    assert inputs_group is group_of(runner, "right")
    assert set(inputs_group.producers) == {"left", "right"}
    assert inputs_group.consumers == ("shared",)
    outputs_group = group_of(runner, "shared")
    assert outputs_group.prunable and outputs_group.width == 6
    assert slim.get_layer("head").kernel.shape[-2] == 2 * 3


def test_several_inputs_and_outputs(keras):
    L = keras.layers
    image = keras.Input((8, 8, 3), name="image")
    meta = keras.Input((5,), name="meta")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv")(image)
    features = L.GlobalAveragePooling2D(name="gap")(x)
    m = L.Dense(8, activation="relu", name="meta_fc")(meta)
    h = L.Dense(8, activation="relu", name="fc")(L.Concatenate(name="join")([features, m]))
    logits = L.Dense(3, name="logits")(h)
    segmentation = L.Conv2D(2, 1, name="seg")(x)
    model = model_utils.randomize_weights(keras.Model([image, meta], [logits, segmentation]))
    runner, _, _, slim = prune(model)

    assert set(group_of(runner, "conv").consumers) == {"fc", "seg"}
    assert all(group_of(runner, name).prunable for name in ("conv", "meta_fc", "fc"))
    assert not group_of(runner, "logits").prunable and not group_of(runner, "seg").prunable
    assert [g.name for g in runner.groups if not g.producers] == ["model input", "model input#1"]
    assert slim.input_shape == model.input_shape
    assert slim.output_shape == model.output_shape


# Refused models ------------------------------------------------------------------

def _subclassed(keras):
    class _Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(4)

        def call(self, x):
            return self.dense(x)
    return _Subclassed()


def test_subclassed_model_is_refused_with_the_supported_kinds(keras):
    model = _subclassed(keras)
    model(np.zeros((1, 3), "float32"))

    with pytest.raises(vot.UnsupportedModelError) as info:
        vot.IterativePruningRunner(model)
    message = str(info.value)
    assert "_Subclassed" in message
    assert "Sequential" in message and "Functional" in message


def test_unbuilt_sequential_is_refused_and_building_it_is_enough(keras):
    L = keras.layers
    model = keras.Sequential([L.Dense(8, name="fc"), L.Dense(3, name="logits")])

    with pytest.raises(vot.UnsupportedModelError, match="no defined input.*build"):
        vot.IterativePruningRunner(model)
    model.build((None, 5))
    runner, _, _, slim = prune(model)
    assert group_of(runner, "fc").prunable
    assert slim.get_layer("fc").units == 4


# What the runner promises about models ----------------------------------------------

def test_users_model_is_not_modified(keras):
    model = conv_net(keras)
    before = [w.copy() for w in model.get_weights()]
    config_before = model.get_config()
    x = model_utils.random_inputs(model)
    outputs_before = model_utils.outputs(model, x)

    runner = vot.IterativePruningRunner(model)
    spec = runner.uniform_spec(0.5, channel_divisible=1)
    runner.get_sparse_model(spec)
    runner.get_slim_model(spec)

    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert model.get_config() == config_before
    assert all(np.array_equal(a, b) for a, b in zip(outputs_before, model_utils.outputs(model, x)))


def test_slim_model_keeps_layer_names_and_io_shapes(keras):
    L = keras.layers
    inner_in = keras.Input((8, 8, 8))
    inner = keras.Model(inner_in, L.Conv2D(8, 3, padding="same", name="c")(inner_in), name="inner")
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 1, name="stem")(inputs)
    x = L.ReLU(name="relu")(inner(x))
    pooled = L.GlobalMaxPooling2D(name="gmp")(x)
    outputs = [L.Dense(3, name="logits")(pooled), L.Conv2D(1, 1, name="mask")(x)]
    model = model_utils.randomize_weights(keras.Model(inputs, outputs, name="two_heads"))
    _, _, sparse, slim = prune(model)

    assert layer_names(slim) == layer_names(model) == layer_names(sparse)
    assert slim.name == model.name
    assert slim.input_shape == model.input_shape
    assert slim.output_shape == model.output_shape
    assert slim.count_params() < model.count_params()


def test_slim_model_saves_and_reloads_without_custom_objects(keras, tmp_path):
    L = keras.layers
    reshape, relu = tensor_functions(keras)
    inner_in = keras.Input((4, 4, 8))
    flat = reshape(inner_in, (-1, 4 * 4 * 8))
    inner = keras.Model(inner_in, L.Dense(6, name="fc")(flat), name="inner")
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = relu(L.BatchNormalization(name="bn")(x))
    model = model_utils.randomize_weights(keras.Model(inputs, L.Dense(3, name="logits")(inner(x))))
    _, _, _, slim = prune(model)
    path = str(tmp_path / "slim.keras")

    slim.save(path)
    reloaded = keras.models.load_model(path, compile=False)

    x = model_utils.random_inputs(model)
    assert type(reloaded) is type(slim)
    assert reloaded.count_params() == slim.count_params()
    assert model_utils.max_relative_difference(slim, reloaded, x) < 1e-6


def _fully_convolutional(keras, nested=False):
    """A model with input (None, None, 3); `nested` puts the middle in a nested model."""
    L = keras.layers

    def body(x):
        x = L.Conv2D(8, 3, padding="same", name="conv_b")(x)
        return L.ReLU(name="relu")(L.BatchNormalization(name="bn")(x))
    inputs = keras.Input((None, None, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", name="conv_a")(inputs)
    if nested:
        inner_in = keras.Input((None, None, 8))
        x = keras.Model(inner_in, body(inner_in), name="inner")(x)
    else:
        x = body(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    return model_utils.randomize_weights(keras.Model(inputs, outputs, name="fcn"))


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_input_signature_is_only_for_counting(keras, nested):
    model = _fully_convolutional(keras, nested)
    runner = vot.IterativePruningRunner(model, input_signature=tf.TensorSpec((1, 16, 16, 3)))
    spec = runner.uniform_spec(0.5, channel_divisible=1)
    sparse = runner.get_sparse_model(spec)
    slim = runner.get_slim_model(spec)

    assert runner.stat(spec).flops < runner.stat().flops  # counted at 16 x 16
    assert sparse.input_shape == slim.input_shape == model.input_shape == (None, None, None, 3)
    x = np.random.RandomState(0).uniform(-1, 1, (2, 12, 20, 3)).astype("float32")
    assert model_utils.outputs(slim, x)[0].shape == (2, 12, 20, 2)
    assert model_utils.max_relative_difference(sparse, slim, x) < TOLERANCE
    assert slim.count_params() < model.count_params()
    # The sparse model is recognised as this runner's model (same architecture).
    assert runner.spec_from_model(sparse).groups.keys() == spec.groups.keys()


def test_nested_model_with_undefined_input_inside_a_defined_model_is_counted(keras):
    L = keras.layers
    inner_in = keras.Input((None, None, 8))
    x = L.ReLU(name="relu")(L.Conv2D(8, 3, padding="same", name="conv_b")(inner_in))
    backbone = keras.Model(inner_in, x, name="backbone")
    inputs = keras.Input((12, 12, 3))
    outputs = L.Conv2D(2, 1, name="head")(backbone(L.Conv2D(8, 1, name="conv_a")(inputs)))
    model = model_utils.randomize_weights(keras.Model(inputs, outputs))
    runner, spec, _, slim = prune(model)

    # conv_b: 12 x 12 positions, 8 filters of 3 x 3 x 8 multiply-adds, plus its bias.
    assert vot.stat(model).layer("backbone/conv_b").flops == 12 * 12 * 8 * (2 * 72 + 1)
    assert runner.stat(spec).flops < runner.stat().flops
    assert slim.get_layer("backbone").input_shape == (None, None, None, 4)


# Excludes and channel_divisible ---------------------------------------------------

@pytest.mark.parametrize("by", ["name", "layer"])
def test_excluded_layer_keeps_its_channels(keras, by):
    model = conv_net(keras)
    exclude = "conv_a" if by == "name" else model.get_layer("conv_a")
    runner, spec, _, slim = prune(model, excludes=[exclude])

    assert set(spec.groups) == {"conv_b"}
    assert slim.get_layer("conv_a").filters == 8
    assert slim.get_layer("conv_b").filters == 4


def test_excluded_group_says_so(keras):
    runner = vot.IterativePruningRunner(conv_net(keras))
    deps = DependencyGraph(runner.graph, excludes={"conv_a"})

    group = deps.group("conv_a")
    assert not group.prunable
    assert any("excluded by the user" in r and "conv_a" in r for r in group.reasons)
    assert deps.group("conv_b").prunable
    assert group_of(runner, "conv_a").prunable  # the runner's own groups are unaffected


def test_unknown_exclude_suggests_close_names(keras):
    runner = vot.IterativePruningRunner(conv_net(keras))

    with pytest.raises(ValueError, match=r"conv_c.*did you mean.*conv_a"):
        runner.uniform_spec(0.5, excludes=["conv_c"], channel_divisible=1)


def test_channel_divisible_rounds_kept_widths_to_multiples(keras):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 1, name="c16")(inputs)
    x = L.Conv2D(24, 1, name="c24")(x)
    x = L.Conv2D(40, 1, name="c40")(x)
    outputs = L.Conv2D(2, 1, name="head")(x)
    model = model_utils.randomize_weights(keras.Model(inputs, outputs))
    _, spec, _, slim = prune(model, channel_divisible=8)

    assert set(spec.groups) == {"c16", "c24", "c40"}
    for name, group in spec.groups.items():
        kept = slim.get_layer(name).filters
        assert kept == len(group.kept)
        assert kept % 8 == 0 and 0 < kept < group.width
        assert abs(kept - group.width / 2) <= 4
