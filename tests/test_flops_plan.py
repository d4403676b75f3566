"""Specification of FLOPs-targeted planning: least loss per FLOP, honest targets."""

import numpy as np
import pytest
import tf_keras as keras

import vai_optimizer_tf as vot
from tests import model_utils

X = np.random.RandomState(3).rand(32, 16, 16, 3).astype("float32")


def _vgg_with_dense_head():
    """Two convs, then Flatten -> Dense(128) -> Dense(10): the hidden Dense is ~0.1% of FLOPs."""
    keras.utils.set_random_seed(4)
    x = inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(8, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(10, name="head")(x)
    return keras.Model(inputs, outputs, name="vgg_dense_head")


def _feature_energy(model):
    """A metric that only the convs move: the hidden Dense looks free to prune."""
    features = keras.Model(model.inputs, model.get_layer("pool").output)
    return float(np.mean(np.asarray(features(X, training=False)) ** 2))


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    model = _vgg_with_dense_head()
    workspace = str(tmp_path_factory.mktemp("ws"))
    vot.IterativePruningRunner(model, workspace=workspace).ana(
        _feature_energy, ratios=(0.2, 0.4, 0.6, 0.8), verbose=0)
    return model, workspace


class TestLeastLossPerFlop:

    def test_a_group_that_buys_no_flops_is_not_cut(self, analysed):
        model, workspace = analysed
        runner = vot.IterativePruningRunner(model, workspace=workspace)
        runner.prune(ratio=0.3, channel_divisible=1)
        spec = vot.PruningSpec.load(runner.latest_spec_path())
        stats = runner.stat()
        share = sum(layer.flops for layer in stats.layers if layer.name == "hidden") / stats.flops
        assert share < 0.01
        assert "hidden" not in spec.groups  # zero measured drop, yet nothing to gain
        assert spec.metadata["flops_reduction"] == pytest.approx(0.3, abs=0.01)

    def test_sparse_and_slim_models_agree(self, analysed):
        model, workspace = analysed
        runner = vot.IterativePruningRunner(model, workspace=workspace)
        sparse = runner.prune(ratio=0.5, channel_divisible=1)
        slim = runner.get_slim_model()
        assert model_utils.max_relative_difference(sparse, slim, X) < 1e-5


class TestUnreachableTarget:

    def test_closest_plan_is_kept_with_a_warning_naming_the_reduction(self, analysed):
        model, workspace = analysed
        runner = vot.IterativePruningRunner(model, workspace=workspace)
        # Two 32-wide convs rounded to 16: the staircase has 25% and ~56% steps.
        with pytest.warns(UserWarning, match=r"cannot be reached within one point with "
                                             r"channel_divisible=16: the closest plan reaches"):
            slim = runner.prune(ratio=0.4, channel_divisible=16, mode="slim")
        spec = vot.PruningSpec.load(runner.latest_spec_path())
        reached = 1 - vot.stat(slim).flops / vot.stat(model).flops
        assert spec.metadata["flops_reduction"] == pytest.approx(reached, abs=1e-6)
        assert abs(reached - 0.4) > 0.01
        text = runner.summary(print_fn=lambda _: None)
        assert f"target 40.0%, reached {reached:.1%} (closest plan with channel_divisible=16)" \
            in text

    def test_reachable_target_gives_no_warning(self, analysed, recwarn):
        model, workspace = analysed
        runner = vot.IterativePruningRunner(model, workspace=workspace)
        runner.prune(ratio=0.4, channel_divisible=1)
        assert not [w for w in recwarn if "cannot be reached" in str(w.message)]
        text = runner.summary(print_fn=lambda _: None)
        assert "FLOPs reduction: target 40.0%, reached 4" in text
        assert "closest plan" not in text
