"""Uniform pruning of `applications` models of both Keras flavours, end to end.

For each zoo model (see zoo_models.py), ``uniform_spec(0.5, channel_divisible=1)`` must give a
slim model that computes what the sparse model computes, is really smaller
by TensorFlow's profiler (independent of our FLOP formulas), has the
parameter count ``runner.stat(spec)`` predicts, and keeps the original's
layer names and output shape.
"""

import numpy as np
import pytest

from model_utils import max_relative_difference, outputs, random_inputs
from zoo_models import ZOO_CASES, case_ids, zoo_profile, zoo_pruned, zoo_slim_profile

MAX_RELATIVE_DIFFERENCE = 1e-4
MIN_FLOPS_REDUCTION = 0.25


@pytest.mark.parametrize("flavour, name", ZOO_CASES, ids=case_ids(ZOO_CASES))
def test_uniform_spec_prunes_every_prunable_group(flavour, name):
    pruned = zoo_pruned(flavour, name)
    prunable = {g.name for g in pruned.runner.prunable_groups}
    assert prunable, f"{name}: no prunable group"
    assert set(pruned.spec.groups) == prunable


@pytest.mark.parametrize("flavour, name", ZOO_CASES, ids=case_ids(ZOO_CASES))
def test_sparse_model_zeroes_channels(flavour, name):
    # Guards the next test: the sparse model must differ from the original,
    # or "slim == sparse" would hold for a slim model that pruned nothing.
    pruned = zoo_pruned(flavour, name)
    x = random_inputs(pruned.model, batch=2, seed=0)
    assert pruned.sparse.count_params() == pruned.model.count_params()
    assert max_relative_difference(pruned.model, pruned.sparse, x) > 1e-3


@pytest.mark.parametrize("flavour, name", ZOO_CASES, ids=case_ids(ZOO_CASES))
def test_slim_model_matches_sparse_model(flavour, name):
    pruned = zoo_pruned(flavour, name)
    x = random_inputs(pruned.model, batch=2, seed=0)
    assert all(np.all(np.isfinite(y)) for y in outputs(pruned.sparse, x))
    difference = max_relative_difference(pruned.sparse, pruned.slim, x)
    assert difference <= MAX_RELATIVE_DIFFERENCE, (
        f"{name}: slim and sparse outputs differ by {difference:.3g} (relative)")


@pytest.mark.parametrize("flavour, name", ZOO_CASES, ids=case_ids(ZOO_CASES))
def test_slim_model_has_fewer_flops_by_profiler(flavour, name):
    before = zoo_profile(flavour, name)[0]
    after = zoo_slim_profile(flavour, name)[0]
    reduction = 1 - after / before
    assert reduction >= MIN_FLOPS_REDUCTION, (
        f"{name}: profiler FLOPs {before:,} -> {after:,}, only {reduction:.1%} fewer")


@pytest.mark.parametrize("flavour, name", ZOO_CASES, ids=case_ids(ZOO_CASES))
def test_slim_model_params_equal_runner_stat(flavour, name):
    pruned = zoo_pruned(flavour, name)
    assert pruned.slim.count_params() == pruned.runner.stat(pruned.spec).params
    assert pruned.slim.count_params() < pruned.model.count_params()


@pytest.mark.parametrize("flavour, name", ZOO_CASES, ids=case_ids(ZOO_CASES))
def test_slim_model_keeps_layer_names_and_output_shape(flavour, name):
    pruned = zoo_pruned(flavour, name)
    assert [layer.name for layer in pruned.slim.layers] == [
        layer.name for layer in pruned.model.layers]
    assert pruned.slim.output_shape == pruned.model.output_shape
    assert pruned.slim.input_shape == pruned.model.input_shape
