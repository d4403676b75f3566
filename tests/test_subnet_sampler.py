"""Specification of candidate sampling for one-step pruning."""

import numpy as np
import pytest

import vai_optimizer_tf as vot
from tests.small_models import small_resnet
from vai_optimizer_tf.groups.dependency_graph import DependencyGraph
from vai_optimizer_tf.graph.tf_keras_adapter import TfKerasAdapter
from vai_optimizer_tf.planning.importance import kept_count
from vai_optimizer_tf.planning.width_flops import WidthFlops
from vai_optimizer_tf.search.subnet_sampler import SubnetSampler


@pytest.fixture(scope="module")
def model():
    return small_resnet(width=16, blocks=3, name="sampler_resnet")


@pytest.fixture(scope="module")
def deps(model):
    return DependencyGraph(TfKerasAdapter(model).graph)


def _sampler(deps, target=0.5, divisible=1, seed=0):
    return SubnetSampler(deps.prunable_groups, WidthFlops(deps), target, divisible, seed=seed)


def _profiled_reduction(model, kept):
    """FLOPs reduction of the slim model built with these widths, counted by vot.stat."""
    runner = vot.IterativePruningRunner(model)
    slim = runner.get_slim_model(runner.build_spec(kept))
    return 1 - vot.stat(slim).flops / vot.stat(model).flops


class TestCandidates:

    @pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
    @pytest.mark.parametrize("divisible", [1, 4])
    def test_every_candidate_is_within_one_point_of_the_target(self, deps, target, divisible):
        sampler = _sampler(deps, target, divisible)
        for kept in sampler.candidates(12)[1:]:
            assert abs(sampler.reduction(kept) - target) <= 0.01
            assert all(w % divisible == 0 or w == deps.group(n).width for n, w in kept.items())

    def test_reduction_is_that_of_the_slim_model(self, model, deps):
        sampler = _sampler(deps, 0.5)
        for kept in sampler.candidates(3):
            assert _profiled_reduction(model, kept) == pytest.approx(sampler.reduction(kept),
                                                                     abs=1e-9)

    def test_candidate_zero_prunes_every_group_by_the_same_fraction(self, deps):
        sampler = _sampler(deps, 0.5)
        uniform = sampler.candidate(0)
        fraction = sampler.uniform_ratio
        assert uniform == {g.name: kept_count(g.width, fraction) for g in deps.prunable_groups}
        assert abs(sampler.reduction(uniform) - 0.5) <= 0.01

    def test_candidates_differ(self, deps):
        candidates = _sampler(deps, 0.5).candidates(20)
        assert len({tuple(sorted(k.items())) for k in candidates}) == 20

    def test_sequence_depends_only_on_the_seed(self, deps):
        first = _sampler(deps, 0.5, seed=3).candidates(8)
        assert _sampler(deps, 0.5, seed=3).candidate(7) == first[7]
        assert _sampler(deps, 0.5, seed=4).candidates(8)[1:] != first[1:]

    def test_per_group_ratios_vary_around_the_uniform_one(self, deps):
        sampler = _sampler(deps, 0.5)
        ratios = np.array([[1 - k[g.name] / g.width for g in deps.prunable_groups]
                           for k in sampler.candidates(30)[1:]])
        assert ratios.std(axis=0).min() > 0.03

    def test_too_coarse_rounding_is_reported(self, deps):
        sampler = _sampler(deps, 0.5, divisible=16)
        with pytest.raises(ValueError, match="No new candidate within 1.0%.*lower channel_divisible"):
            sampler.candidates(50)
