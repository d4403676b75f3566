"""Layers whose FLOPs are unknown are shown, and a FLOPs target is refused while they exist.

A layer with no FLOP formula (a Lambda, an unregistered custom layer, a
`tf.*` call missing from the op tables) counts 0 in `stat`, which is not the
same as costing nothing: `stat` must say so, and `prune(ratio=...)` must not
measure a FLOPs reduction without it.
"""

import logging

import pytest
import tensorflow as tf
import tf_keras as keras

import vai_optimizer_tf as vot
from tests import model_utils
from vai_optimizer_tf.stats import formulas

L = keras.layers


def _custom_layer_class():
    """A fresh custom layer class, so registrations never leak between tests."""
    class Twice(L.Layer):
        def call(self, x):
            return 2.0 * x
    return Twice


def _model_around(*layers):
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="stem")(inputs)
    for layer in layers:
        x = layer(x)
    outputs = L.Conv2D(2, 1, name="head")(L.Conv2D(8, 1, name="conv")(x))
    return model_utils.randomize_weights(keras.Model(inputs, outputs, name="around"))


def test_stat_marks_and_warns_about_layers_whose_flops_are_unknown(caplog):
    model = _model_around(_custom_layer_class()(name="twice"),
                          L.Lambda(lambda t: t + 1.0, name="plus_one"))

    with caplog.at_level(logging.WARNING, logger="vai_optimizer_tf"):
        stats = vot.stat(model)

    assert stats.unknown_flops == ["twice", "plus_one"]
    assert not stats.layer("twice").flops_known and stats.layer("stem").flops_known
    assert "unknown" in stats.summary().splitlines()[2]
    assert "FLOPs unknown (not in the total) for: twice, plus_one" in stats.summary()
    assert "'twice' (Twice)" in caplog.text and "'plus_one' (Lambda)" in caplog.text


def test_tf_call_missing_from_the_op_tables_has_unknown_flops():
    stats = vot.stat(_model_around(lambda t: tf.math.cumsum(t, axis=1)))

    assert len(stats.unknown_flops) == 1 and "cumsum" in stats.unknown_flops[0]


def test_layers_known_to_cost_nothing_are_not_unknown():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1)(inputs)
    x = L.ReLU()(L.Dropout(0.5)(L.ZeroPadding2D()(x)))
    y = L.Reshape((6, 6, 8))(L.Permute((2, 1, 3))(x))
    x = L.Concatenate()([x, y])
    x = L.Flatten()(L.GlobalMaxPooling2D(keepdims=True)(x))
    stats = vot.stat(keras.Model(inputs, L.Dense(2)(x)))

    assert stats.unknown_flops == []


@pytest.fixture
def runner_with_unknown_flops(tmp_path):
    model = _model_around(_custom_layer_class()(name="twice"),
                          L.Lambda(lambda t: t + 1.0, name="plus_one"))
    return vot.IterativePruningRunner(model, workspace=str(tmp_path / "ws"))


def test_prune_to_a_flops_ratio_refuses_naming_the_unknown_layers(runner_with_unknown_flops):
    with pytest.raises(ValueError, match=r"ratio=0\.5.*'twice' \(Twice\), 'plus_one' \(Lambda\)"
                       r".*register_layer.*flops=fn.*return 0"):
        runner_with_unknown_flops.prune(ratio=0.5)


def test_plan_widths_refuses_naming_the_unknown_layers(runner_with_unknown_flops):
    with pytest.raises(ValueError, match=r"'twice' \(Twice\), 'plus_one' \(Lambda\)"):
        runner_with_unknown_flops.plan_widths(0.5, use_analysis=False)


def test_a_uniform_spec_needs_no_flops_target(runner_with_unknown_flops):
    spec = runner_with_unknown_flops.uniform_spec(0.5, channel_divisible=1)

    assert spec.groups


def test_registering_a_flop_formula_lifts_the_refusal(tmp_path):
    layer_class = _custom_layer_class()
    runner = vot.IterativePruningRunner(_model_around(layer_class(name="twice")),
                                        workspace=str(tmp_path / "ws"))
    with pytest.raises(ValueError, match="'twice'"):
        runner.plan_widths(0.3, use_analysis=False)

    vot.register_layer(layer_class, vot.LayerSpec.passthrough(flops=formulas.per_element(1)))
    runner = vot.IterativePruningRunner(_model_around(layer_class(name="twice")),
                                        workspace=str(tmp_path / "ws"))

    assert runner.stat().unknown_flops == []
    assert runner.stat().layer("twice").flops == 4 * 4 * 8
    assert runner.plan_widths(0.3, use_analysis=False, channel_divisible=1)
