"""Specification: `SparsePruner.sparse_model` builds an N:M block-sparse copy of a model.

In each block of consecutive input channels the smallest magnitudes are zero
and the others keep their values; the copy has the user's layer names and
configs (a constraint is the only addition); the user's model is untouched;
kernels that cannot take the pattern are listed with a reason; bad settings
fail with a clear error. Every test runs on a tf_keras model and on a Keras 3
model (the module's `keras` fixture), except the docstring examples.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

import vai_optimizer_tf as vot
from tests import nm_utils
from tests.flavours import FLAVOURS
from tests.nm_utils import SPARSE_KERNELS


@pytest.fixture(scope="module", params=list(FLAVOURS))
def keras(request):
    """The Keras flavour of the module's fixtures: tf_keras, then Keras 3."""
    return FLAVOURS[request.param]


@pytest.fixture(scope="module")
def model(keras):
    return nm_utils.nm_net(keras)


@pytest.fixture(scope="module")
def pruner(model):
    return vot.SparsePruner(model)


def blockwise(values, axis, block_size):
    """Blocks as rows, by explicit slicing (see nm_utils.block_zero_counts)."""
    moved = np.moveaxis(values, axis, -1)
    return np.concatenate([moved[..., s:s + block_size].reshape(-1, block_size)
                           for s in range(0, moved.shape[-1], block_size)])


class TestPattern:

    @pytest.mark.parametrize("w_sparsity,block_size", [(0.5, 4), (0.75, 16), (0.5, 8)],
                             ids=["2:4", "4:16", "4:8"])
    def test_smallest_magnitudes_of_every_block_are_zero_and_the_rest_unchanged(
            self, keras, model, pruner, w_sparsity, block_size):
        before = [w.copy() for w in model.get_weights()]
        sparse = pruner.sparse_model(w_sparsity=w_sparsity, block_size=block_size)

        zeros = int(w_sparsity * block_size)
        for layer, (attr, axis) in SPARSE_KERNELS.items():
            original = blockwise(nm_utils.kernel(model, layer, attr), axis, block_size)
            pruned = blockwise(nm_utils.kernel(sparse, layer, attr), axis, block_size)
            kept = pruned != 0
            assert np.all(kept.sum(axis=1) == block_size - zeros), layer
            np.testing.assert_array_equal(pruned[kept], original[kept])
            smallest_kept = np.where(kept, np.abs(original), np.inf).min(axis=1)
            largest_pruned = np.where(kept, -np.inf, np.abs(original)).max(axis=1)
            assert np.all(smallest_kept >= largest_pruned), layer
        for layer, attr in nm_utils.dense_kernels(keras):
            np.testing.assert_array_equal(nm_utils.kernel(sparse, layer, attr),
                                          nm_utils.kernel(model, layer, attr))
        for a, b in zip(model.get_weights(), before):  # the user's model is untouched
            np.testing.assert_array_equal(a, b)

    def test_names_and_configs_stay_the_users(self, model, pruner):
        sparse = pruner.sparse_model(0.5, 4)

        assert [layer.name for layer in sparse.layers] == [layer.name for layer in model.layers]
        for layer in model.layers:
            ours = sparse.get_layer(layer.name).get_config()
            theirs = layer.get_config()
            changed = {k for k in theirs if ours[k] != theirs[k]}
            expected = ({SPARSE_KERNELS[layer.name][0].replace("_kernel", "") + "_constraint"}
                        if layer.name in SPARSE_KERNELS else set())
            assert changed == expected, layer.name
        assert all(type(layer) is type(model.get_layer(layer.name)) for layer in sparse.layers)
        assert model.get_layer("conv").kernel.constraint is None

    def test_outputs_equal_the_dense_model_with_the_same_zeros(self, keras, model, pruner):
        sparse = pruner.sparse_model(0.75, 16)
        dense = keras.models.clone_model(model)
        dense.set_weights(sparse.get_weights())
        x, _ = nm_utils.training_data(8)

        np.testing.assert_array_equal(np.asarray(sparse(x)), np.asarray(dense(x)))


class TestExclusions:

    def test_every_dense_kernel_is_reported_with_its_reason(self, keras, pruner):
        sparse = pruner.sparse_model(0.5, 4, excludes=["side"])
        report = vot.sparsity_report(sparse)

        reasons = {(e.layer, e.weight): e.reason for e in report.exclusions}
        dense = nm_utils.dense_kernels(keras)
        assert set(reasons) == set(dense) | {("side", "kernel")}
        for key, words in dense.items():
            assert words in reasons[key], reasons[key]
        assert "excludes" in reasons[("side", "kernel")]
        assert {(l.layer, l.weight) for l in report.layers} == {
            (layer, attr) for layer, (attr, _) in SPARSE_KERNELS.items() if layer != "side"}
        assert "stem.kernel: 3 input channels, not a multiple of block_size=4" in str(report)

    def test_layers_whose_channels_do_not_fit_the_block_stay_dense(self, keras):
        L = keras.layers
        inputs = keras.Input((8,))
        x = L.Dense(12, name="a")(inputs)             # 8 inputs: fits 4 and 8
        outputs = L.Dense(4, name="b")(x)             # 12 inputs: fits 4, not 8
        model = keras.Model(inputs, outputs)

        report = vot.sparsity_report(vot.SparsePruner(model).sparse_model(0.5, 8))

        assert [l.layer for l in report.layers] == ["a"]
        assert [e.describe() for e in report.exclusions] == [
            "b.kernel: 12 input channels, not a multiple of block_size=8"]

    def test_separable_conv_cannot_take_activation_sparsity(self, pruner):
        sparse = pruner.sparse_model(0.75, 16, a_sparsity=0.5)
        reasons = {(e.layer, e.weight): e.reason for e in vot.sparsity_report(sparse).exclusions}

        assert "made inside the layer" in reasons[("sep", "pointwise_kernel")]


class TestReport:

    def test_counts_match_an_independent_count(self, pruner):
        sparse = pruner.sparse_model(0.5, 4)
        kernel = sparse.get_layer("conv").kernel
        value = kernel.numpy()
        value[0, 0, :4, 0] = 1.0  # one block with no zero left
        kernel.assign(value)

        report = vot.sparsity_report(sparse)

        rows = {l.layer: l for l in report.layers}
        for layer, (attr, axis) in SPARSE_KERNELS.items():
            counts = nm_utils.block_zero_counts(nm_utils.kernel(sparse, layer, attr), axis, 4)
            values = nm_utils.kernel(sparse, layer, attr)
            assert rows[layer].blocks == counts.size
            assert rows[layer].violations == int(np.sum(counts < 2))
            assert rows[layer].sparsity == pytest.approx(np.mean(values == 0))
            assert rows[layer].pattern == "2:4"
        assert rows["conv"].violations == 1
        assert report.violations == 1 and not report.compliant
        assert json.loads(json.dumps(report.to_dict()))["layers"][0]["layer"] == "conv"

    def test_a_model_without_masks_is_refused(self, model):
        with pytest.raises(ValueError, match="no BlockSparseMask"):
            vot.sparsity_report(model)


class TestErrors:

    @pytest.mark.parametrize("kwargs,match", [
        (dict(w_sparsity=0.6), r"Invalid `w_sparsity`: expected one of \(0.5, 0.75\). "
                               r"Received: w_sparsity=0.6"),
        (dict(w_sparsity=0.0), "prunes nothing"),
        (dict(block_size=5), r"Invalid `block_size`: expected one of \(4, 8, 16\). "
                             "Received: block_size=5"),
        (dict(block_size=4.0), "Invalid `block_size`"),
        (dict(w_sparsity=0.75, a_sparsity=0.25), "Invalid `a_sparsity`"),
        (dict(w_sparsity=0.5, a_sparsity=0.5), r"a_sparsity=0.5 requires w_sparsity=0.75"),
        (dict(excludes=["nope"]), "No layer named 'nope'"),
    ])
    def test_bad_settings(self, pruner, kwargs, match):
        with pytest.raises(ValueError, match=match):
            pruner.sparse_model(**kwargs)

    def test_a_block_size_no_layer_can_take(self, keras):
        L = keras.layers
        inputs = keras.Input((8, 8, 3))
        x = L.Conv2D(6, 3, name="c1")(inputs)
        x = L.Conv2D(10, 3, name="c2")(x)
        model = keras.Model(inputs, L.Dense(2, name="d")(L.GlobalAveragePooling2D()(x)))

        with pytest.raises(ValueError, match=r"Invalid `block_size`: no layer .* blocks of 4 "
                                             r"input channels \(c1.kernel: 3 input channels"):
            vot.SparsePruner(model).sparse_model(0.5, 4)

    def test_excluding_every_layer(self, pruner):
        with pytest.raises(ValueError, match="Invalid `excludes`: no layer is left"):
            pruner.sparse_model(0.5, 4, excludes=list(SPARSE_KERNELS))

    def test_an_already_sparse_model(self, pruner):
        with pytest.raises(ValueError, match="already N:M sparse"):
            vot.SparsePruner(pruner.sparse_model(0.5, 4))


class TestSerializableObjects:

    def test_block_mask_config_round_trip(self, keras):
        mask_class = nm_utils.block_mask_class(keras)
        mask = mask_class((3, 3, 8, 4), axis=2, block_size=4, sparsity=0.75, zeros=1,
                          inner=keras.saving.serialize_keras_object(keras.constraints.NonNeg()))
        restored = keras.saving.deserialize_keras_object(
            json.loads(json.dumps(keras.saving.serialize_keras_object(mask))))

        assert type(restored) is mask_class
        assert restored.get_config() == mask.get_config()
        w = np.random.RandomState(0).normal(size=(3, 3, 8, 4)).astype("float32")
        restored.set_from_weights(np.abs(w))  # one zero per block: the smallest |w|
        out = np.asarray(restored(tf.constant(w)))
        counts = nm_utils.block_zero_counts(out, 2, 4)
        assert np.all(counts >= 1)
        np.testing.assert_array_equal(out[out != 0], np.maximum(w, 0)[out != 0])

    def test_activation_sparsity_config_round_trip(self, keras):
        layer_class = nm_utils.activation_sparsity_class(keras)
        layer = layer_class(block_size=8, sparsity=0.5, name="a")
        restored = keras.layers.deserialize(
            json.loads(json.dumps(keras.layers.serialize(layer))))

        assert type(restored) is layer_class
        assert restored.get_config() == layer.get_config()
        assert restored.block_size == 8 and restored.sparsity == 0.5


class TestComposition:

    def test_slim_model_of_channel_pruning_takes_the_pattern(self, keras, model, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        slim = runner.get_slim_model(runner.uniform_spec(0.5, channel_divisible=4))
        assert slim.count_params() < model.count_params()

        sparse = vot.SparsePruner(slim).sparse_model(0.5, 4)
        sparse.compile(keras.optimizers.Adam(0.01), nm_utils.loss_fn(keras))
        before = nm_utils.kernels(sparse)
        x, y = nm_utils.training_data()
        sparse.fit(x, y, batch_size=8, epochs=1, verbose=0)

        widths = {layer: sparse.get_layer(layer).get_config().get("filters") for layer in
                  ("conv", "sep", "up")}
        assert widths == {"conv": 16, "sep": 16, "up": 8}  # half of 32, 32, 16
        nm_utils.assert_trained(sparse, before)
        nm_utils.assert_pattern(sparse, 4, 2)
        assert vot.sparsity_report(sparse).compliant


class TestModelKinds:

    def test_nested_model_with_a_shared_layer_and_activation_sparsity(self, keras):
        L = keras.layers
        keras.utils.set_random_seed(2)
        inner_in = keras.Input((16,))
        shared = L.Dense(16, activation="relu", name="shared")
        inner = keras.Model(inner_in, shared(shared(inner_in)), name="inner")
        inputs = keras.Input((16,))
        outputs = L.Dense(4, name="head")(inner(inputs))
        model = keras.Model(inputs, outputs)

        sparse = vot.SparsePruner(model).sparse_model(0.75, 16, a_sparsity=0.5)

        nested = sparse.get_layer("inner")
        assert [layer.name for layer in nested.layers][1:] == ["shared_input_sparsity", "shared"]
        assert [layer.name for layer in sparse.layers][-2:] == ["head_input_sparsity", "head"]
        # By hand: the same computation with the library's layer inserted by the Functional API.
        act = nm_utils.activation_sparsity_class(keras)(16, 0.5)
        kernel, bias = nested.get_layer("shared").get_weights()
        head_kernel, head_bias = sparse.get_layer("head").get_weights()
        x = np.random.RandomState(0).normal(size=(5, 16)).astype("float32")
        h = x
        for _ in range(2):
            h = np.maximum(np.asarray(act(h)) @ kernel + bias, 0)
        expected = np.asarray(act(h)) @ head_kernel + head_bias
        np.testing.assert_allclose(np.asarray(sparse(x)), expected, rtol=1e-5, atol=1e-5)
        assert vot.sparsity_report(sparse).compliant

    def test_sequential_model(self, keras):
        L = keras.layers
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((8, 8, 4)), L.Conv2D(16, 3, name="a"),
                                  L.Conv2D(16, 3, name="b"), L.Flatten(name="flatten"),
                                  L.Dense(2, name="c")])

        sparse = vot.SparsePruner(model).sparse_model(0.75, 4, a_sparsity=0.5)

        assert isinstance(sparse, keras.Sequential)
        assert [layer.name for layer in sparse.layers] == [
            "a_input_sparsity", "a", "b_input_sparsity", "b", "flatten", "c_input_sparsity", "c"]
        assert sparse.count_params() == model.count_params()
        assert vot.sparsity_report(sparse).compliant

    def test_a_channel_sparse_model_is_refused(self, model, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        with pytest.raises(ValueError, match="Pass its slim model"):
            vot.SparsePruner(runner.get_sparse_model(
                runner.uniform_spec(0.5, channel_divisible=1)))


def test_docstring_examples_run(tmp_path, monkeypatch):
    import re

    import tf_keras

    from vai_optimizer_tf.callbacks.gradual_sparsity import GradualSparsity
    from vai_optimizer_tf.sparsity import (ActivationSparsity, BlockPattern, BlockSparseMask,
                                           check_sparsity_config, export_sparse_model,
                                           keras3_activation_sparsity, keras3_block_mask,
                                           sparsity_report)

    monkeypatch.chdir(tmp_path)
    namespace = {"np": np, "tf": tf, "tf_keras": tf_keras, "vot": vot,
                 "BlockSparseMask": BlockSparseMask, "ActivationSparsity": ActivationSparsity,
                 "BlockPattern": BlockPattern, "check_sparsity_config": check_sparsity_config}
    objects = [vot.SparsePruner, BlockSparseMask, ActivationSparsity, BlockPattern,
               check_sparsity_config, sparsity_report, export_sparse_model, GradualSparsity,
               keras3_block_mask.BlockSparseMask, keras3_activation_sparsity.ActivationSparsity]
    for obj in objects:
        blocks = re.findall(r"```python\n(.*?)```", obj.__doc__.replace("\n    ", "\n"), re.S)
        assert blocks, f"{obj.__name__} has no example"
        if obj is GradualSparsity:  # the pruner of the SparsePruner example
            namespace.update(x=np.random.rand(32, 16, 16, 3), y=np.random.randint(0, 10, 32))
        for block in blocks:
            exec(compile(block, f"{obj.__module__}.{obj.__name__} docstring", "exec"), namespace)
