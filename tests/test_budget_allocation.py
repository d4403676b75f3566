"""Specification of `BudgetAllocation` on synthetic cost models with known answers."""

import itertools

import numpy as np
import pytest

from vai_optimizer_tf.groups.channel_group import ChannelGroup
from vai_optimizer_tf.planning import budget_allocation
from vai_optimizer_tf.planning.budget_allocation import BudgetAllocation, staircase


def _group(gid, width):
    return ChannelGroup(id=gid, index=gid, name=f"g{gid}", width=width, producers=(f"g{gid}",),
                        consumers=(), members=())


class LinearCost:
    """Cost = sum over groups of cost_per_channel * width (+ a fixed part), like FLOPs of
    layers that each depend on one group."""

    def __init__(self, groups, per_channel, fixed=0.0):
        self.groups = groups
        self.per_channel = dict(zip([g.id for g in groups], per_channel))
        self.fixed = fixed
        self.baseline = self.total({})

    def per_node(self, kept):
        widths = [kept.get(g.id, g.width) for g in self.groups]
        return np.array([self.per_channel[g.id] * w for g, w in zip(self.groups, widths)]
                        + [self.fixed], dtype=float)

    def total(self, kept):
        return float(self.per_node(kept).sum())

    def total_after(self, per_node, kept, changed):
        return self.total(kept)


class ChainCost(LinearCost):
    """Conv chain: layer i costs width_{i-1} * width_i (a product, as real conv FLOPs)."""

    def per_node(self, kept):
        widths = [3] + [kept.get(g.id, g.width) for g in self.groups] + [10]
        return np.array([a * b for a, b in zip(widths, widths[1:])], dtype=float)


def _curve(drops_at_ratio):
    """A penalty fn from a linear-interpolated drop curve over ratios 0..0.9."""
    xs = np.linspace(0, 0.9, len(drops_at_ratio))

    def penalty(width, steps):
        return np.interp(1 - steps / width, xs, drops_at_ratio)
    return penalty


def _brute_force(groups, cost, losses_of, budget, divisible=1, max_ratio=0.9):
    """The exact minimum-loss plan by enumeration (small problems only)."""
    best = None
    stairs = [staircase(g.width, divisible, max_ratio) for g in groups]
    for widths in itertools.product(*stairs):
        kept = {g.id: int(w) for g, w in zip(groups, widths)}
        if cost.total(kept) > budget:
            continue
        loss = sum(losses_of[g.name](np.array([w]))[0] for g, w in zip(groups, widths))
        if best is None or loss < best[0] - 1e-12:
            best = (loss, {g.name: int(w) for g, w in zip(groups, widths)})
    return best


class TestStaircase:

    def test_multiples_of_the_divisor_and_the_full_width(self):
        np.testing.assert_array_equal(staircase(20, 8, 0.9), [8, 16, 20])

    def test_deepest_cut_respects_max_ratio(self):
        np.testing.assert_array_equal(staircase(10, 1, 0.5), [5, 6, 7, 8, 9, 10])

    def test_narrow_group_keeps_its_width(self):
        np.testing.assert_array_equal(staircase(6, 8, 0.9), [6])

    def test_upper_bound_caps_the_steps(self):
        np.testing.assert_array_equal(staircase(32, 8, 0.9, upper=16), [8, 16])


class TestGreedyAllocation:

    def test_matches_brute_force_on_convex_curves(self):
        groups = [_group(0, 8), _group(1, 8), _group(2, 8)]
        cost = LinearCost(groups, [1.0, 2.0, 4.0])
        curves = {"g0": _curve([0, .01, .03, .08, .2]), "g1": _curve([0, .02, .05, .1, .3]),
                  "g2": _curve([0, .005, .02, .06, .15])}
        penalties = {n: (lambda s, c=c: c(8, s)) for n, c in curves.items()}
        allocation = BudgetAllocation(groups, cost, penalties)
        losses = {g.name: (lambda s, n=g.name: allocation._losses[n][
            np.searchsorted(allocation.steps(n), s)]) for g in groups}
        for fraction in (0.8, 0.6, 0.45):
            budget = fraction * cost.baseline
            kept = allocation.for_budget(budget)
            assert allocation.total(kept) <= budget
            exact, _ = _brute_force(groups, cost, losses, budget)
            assert allocation.loss(kept) == pytest.approx(exact, abs=1e-9)

    def test_cheap_group_with_flat_curve_is_left_alone(self):
        # A Dense head: no measured drop, but it holds 0.1% of the cost. Cutting it buys
        # nothing, so the budget is met by the expensive groups alone.
        groups = [_group(0, 64), _group(1, 64), _group(2, 128)]
        cost = LinearCost(groups, [10.0, 10.0, 0.01])
        penalties = {"g0": lambda s: _curve([0, .01, .02, .05, .1])(64, s),
                     "g1": lambda s: _curve([0, .01, .02, .05, .1])(64, s),
                     "g2": lambda s: np.zeros(len(s))}
        kept = BudgetAllocation(groups, cost, penalties).for_budget(0.7 * cost.baseline)
        assert kept["g2"] == 128

    def test_no_group_is_cut_further_than_the_budget_needs(self):
        groups = [_group(0, 16), _group(1, 16)]
        cost = LinearCost(groups, [1.0, 1.0])
        flat = {"g0": lambda s: np.zeros(len(s)), "g1": lambda s: np.zeros(len(s))}
        allocation = BudgetAllocation(groups, cost, flat)
        kept = allocation.for_budget(28)  # 4 of 32 channels must go
        assert sum(kept.values()) == 28

    def test_products_of_widths_are_costed_exactly(self):
        groups = [_group(0, 16), _group(1, 16), _group(2, 16)]
        cost = ChainCost(groups, [0, 0, 0])
        penalties = {g.name: (lambda s: _curve([0, .01, .03, .06, .1])(16, s)) for g in groups}
        allocation = BudgetAllocation(groups, cost, penalties, channel_divisible=4)
        budget = 0.5 * cost.baseline
        kept = allocation.for_budget(budget)
        assert cost.total({g.id: kept[g.name] for g in groups}) <= budget
        assert all(w % 4 == 0 for w in kept.values())
        losses = {g.name: (lambda s, n=g.name: allocation._losses[n][
            np.searchsorted(allocation.steps(n), s)]) for g in groups}
        exact, _ = _brute_force(groups, cost, losses, budget, divisible=4)
        # Greedy on products is not guaranteed optimal; it must stay close.
        assert allocation.loss(kept) <= exact + 0.01

    def test_unreachable_budget_returns_the_cheapest_plan(self):
        groups = [_group(0, 10)]
        cost = LinearCost(groups, [1.0], fixed=100.0)
        kept = BudgetAllocation(groups, cost, max_ratio=0.5).for_budget(50)
        assert kept == {"g0": 5}

    def test_without_penalties_the_prior_spreads_cuts_by_cost(self):
        groups = [_group(0, 10), _group(1, 10)]
        cost = LinearCost(groups, [1.0, 3.0])
        kept = BudgetAllocation(groups, cost).for_budget(34)  # 6 units of cost must go
        assert kept == {"g0": 10, "g1": 8}
        assert budget_allocation.PRIOR_DROP > 0

    def test_step_over_is_the_cheapest_plan_above_the_budget(self):
        groups = [_group(0, 16), _group(1, 16)]
        cost = LinearCost(groups, [1.0, 2.0])
        allocation = BudgetAllocation(groups, cost, channel_divisible=8)
        under = allocation.for_budget(30)
        assert allocation.total(under) <= 30
        over = allocation.step_over(under, 30)
        assert allocation.total(over) > 30
        assert allocation.total(over) == min(
            allocation.total({**under, g.name: 16}) for g in groups if under[g.name] < 16)
