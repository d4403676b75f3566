"""Specification of adaptive BN, checked against a numpy re-implementation.

The statistics and what changes are checked on tf_keras and on Keras 3 models
(the `keras` fixture); the argument errors, which do not depend on the
flavour, on tf_keras.
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import vai_optimizer_tf as vot
from tests import model_utils
from tests.flavours import flavour_name

DATA = np.random.RandomState(7).normal(0.5, 2.0, (70, 6, 6, 3)).astype("float32")
BATCHES = [DATA[0:32], DATA[32:64], DATA[64:70]]  # batch_size=32 gives a short last batch


def _net(keras=tf_keras, name="abn"):
    """conv -> BN -> ReLU -> Flatten -> Dropout -> Dense -> BN (4D fused and 2D BN)."""
    keras.utils.set_random_seed(1)
    x = inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn4d")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Dense(5, name="dense")(x)
    outputs = keras.layers.BatchNormalization(name="bn2d")(x)
    return model_utils.randomize_weights(keras.Model(inputs, outputs, name=name), seed=3)


def _numpy_statistics(keras, model, batches):
    """What adaptive BN must store: per-batch statistics averaged over the batches.

    In training mode BN normalizes with the batch mean and biased variance. In
    tf_keras the stored variance of a 4D input (fused kernel) carries Bessel's
    correction; that of a 2D input does not, nor does any in Keras 3 (no fused
    kernel); this is what each Keras layer stores with momentum 0.
    """
    bessel = flavour_name(keras) == "tf_keras"
    kernel, bias = model.get_layer("conv").get_weights()
    gamma, beta = model.get_layer("bn4d").get_weights()[:2]
    dense_w, dense_b = model.get_layer("dense").get_weights()
    eps4 = model.get_layer("bn4d").epsilon
    stats = {"bn4d": [], "bn2d": []}
    for x in batches:
        n = x.shape[0]
        conv = np.zeros((n, 4, 4, 4))
        for i in range(4):
            for j in range(4):
                patch = x[:, i:i + 3, j:j + 3, :].reshape(n, -1)
                conv[:, i, j, :] = patch @ kernel.reshape(-1, 4) + bias
        mean, var = conv.mean(axis=(0, 1, 2)), conv.var(axis=(0, 1, 2))
        count = conv.size / 4
        stats["bn4d"].append((mean, var * count / (count - 1) if bessel else var))
        h = np.maximum(gamma * (conv - mean) / np.sqrt(var + eps4) + beta, 0.0)
        dense = h.reshape(n, -1) @ dense_w + dense_b  # Dropout is off during calibration
        stats["bn2d"].append((dense.mean(axis=0), dense.var(axis=0)))
    return {name: (np.mean([m for m, _ in s], axis=0), np.mean([v for _, v in s], axis=0))
            for name, s in stats.items()}


class TestStatistics:

    def test_equal_the_numpy_average_of_batch_statistics(self, keras):
        model = _net(keras)
        expected = _numpy_statistics(keras, model, BATCHES)
        vot.adaptive_bn(model, DATA, steps=3, batch_size=32)
        for name, (mean, var) in expected.items():
            layer = model.get_layer(name)
            np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-4, atol=1e-5)

    def test_steps_limit_the_batches_read(self, keras):
        model = _net(keras)
        expected = _numpy_statistics(keras, model, BATCHES[:2])
        vot.adaptive_bn(model, DATA, steps=2, batch_size=32)
        np.testing.assert_allclose(model.get_layer("bn4d").moving_mean.numpy(),
                                   expected["bn4d"][0], rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("kind", ["dataset", "dataset_xy", "xy_tuple", "calibration_fn"])
    def test_every_calibration_data_kind_gives_the_same_statistics(self, keras, kind):
        model = _net(keras)
        expected = _numpy_statistics(keras, model, BATCHES)
        labels = np.zeros(len(DATA))
        data = {
            "dataset": tf.data.Dataset.from_tensor_slices(DATA).batch(32),
            "dataset_xy": tf.data.Dataset.from_tensor_slices((DATA, labels)).batch(32),
            "xy_tuple": (DATA, labels),
            "calibration_fn": lambda m: [m(b, training=True) for b in BATCHES],
        }[kind]
        vot.adaptive_bn(model, data, steps=3, batch_size=32)
        np.testing.assert_allclose(model.get_layer("bn2d").moving_variance.numpy(),
                                   expected["bn2d"][1], rtol=1e-4, atol=1e-5)


class TestWhatChanges:

    def test_only_moving_statistics_change(self, keras):
        model = _net(keras)
        before = {layer.name: layer.get_weights() for layer in model.layers}
        vot.adaptive_bn(model, DATA, steps=3)
        for layer in model.layers:
            for i, (old, new) in enumerate(zip(before[layer.name], layer.get_weights())):
                name = layer.weights[i].name
                if "moving_" in name:
                    assert not np.array_equal(old, new)
                else:
                    assert np.array_equal(old, new), name

    def test_nested_model_statistics_are_calibrated(self, keras):
        inner = _net(keras, "inner")
        expected = _numpy_statistics(keras, inner, BATCHES)
        x = keras.Input((6, 6, 3))
        outer = keras.Model(x, keras.layers.Dense(2, name="head")(inner(x)))
        vot.adaptive_bn(outer, DATA, steps=3)
        np.testing.assert_allclose(inner.get_layer("bn4d").moving_mean.numpy(),
                                   expected["bn4d"][0], rtol=1e-5, atol=1e-5)

    def test_sparse_model_keeps_pruned_channels_at_zero(self, keras):
        model = _net(keras)
        runner = vot.IterativePruningRunner(model)
        spec = runner.uniform_spec(0.5, channel_divisible=1)
        sparse = runner.get_sparse_model(spec)
        vot.adaptive_bn(sparse, DATA, steps=3)
        mean = sparse.get_layer("bn4d").moving_mean.numpy()
        kept = spec.groups["conv"].kept
        pruned = np.setdiff1d(np.arange(4), kept)
        assert np.all(mean[pruned] == 0) and np.all(mean[kept] != 0)
        slim = runner.get_slim_model(spec, weights_from=sparse)
        assert model_utils.max_relative_difference(sparse, slim, DATA[:8]) < 1e-5


class TestErrors:

    def test_calibration_fn_without_training_pass_is_refused(self):
        with pytest.raises(ValueError, match=r"training-mode forward pass.*training=True"):
            vot.adaptive_bn(_net(), lambda m: m(BATCHES[0], training=False))

    def test_empty_data_is_refused(self):
        with pytest.raises(ValueError, match="yields no batch"):
            vot.adaptive_bn(_net(), DATA[:0])

    def test_unsupported_data_is_refused(self):
        with pytest.raises(TypeError, match="Invalid `calibration_data`"):
            vot.adaptive_bn(_net(), "images/")

    def test_bad_steps_are_refused(self):
        with pytest.raises(ValueError, match="Invalid `steps`"):
            vot.adaptive_bn(_net(), DATA, steps=0)

    def test_model_without_batch_norm_is_left_unchanged(self, caplog):
        model = tf_keras.Sequential([tf_keras.Input((6, 6, 3)), tf_keras.layers.Conv2D(2, 3)])
        before = model.get_weights()
        vot.adaptive_bn(model, DATA)
        assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        assert "no BatchNormalization" in caplog.text
