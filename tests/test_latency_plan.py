"""Specification of latency-targeted planning on synthetic latency tables (nothing is timed).

The unit curves, the knapsack over latency staircases and the closing loop
are checked against answers known by construction: times that are exact
functions of the widths, brute-force optima, and "measurements" that are an
affine distortion of the prediction (what overheads do).
"""

import itertools

import numpy as np
import pytest
import tf_keras as keras

from vai_optimizer_tf.graph.adapters import adapter_for
from vai_optimizer_tf.graph.tf_keras_adapter import TfKerasAdapter
from vai_optimizer_tf.groups.channel_group import ChannelGroup
from vai_optimizer_tf.groups.dependency_graph import DependencyGraph
from vai_optimizer_tf.planning.budget_allocation import BudgetAllocation, staircase
from vai_optimizer_tf.planning.latency_cost import (LatencyCost, UnitCurve, calibrate,
                                                    latency_requests)
from vai_optimizer_tf.planning.latency_plan import (LatencyPlanner, importance_penalties,
                                                    plan_latency, uniform_widths)
from vai_optimizer_tf.planning.latency_units import LatencyUnit, build_unit_model
from vai_optimizer_tf.planning.width_flops import WidthFlops


def _group(gid, width):
    return ChannelGroup(id=gid, index=gid, name=f"g{gid}", width=width, producers=(f"g{gid}",),
                        consumers=(), members=())


def _unit(in_varies, out_varies, in_width=64, out_width=64):
    return LatencyUnit(("u",), 0, 1, 1, in_varies, out_varies, in_width, out_width, "{}")


class StepCost:
    """A latency-like cost: per group, a function of its own width; not linear."""

    linear = False

    def __init__(self, groups, fns, fixed=0.0):
        self.groups, self.fns, self.fixed = groups, fns, fixed
        self.baseline = self.total({})

    def per_node(self, kept):
        return np.array([self.fns[g.name](kept.get(g.id, g.width)) for g in self.groups]
                        + [self.fixed], float)

    def total(self, kept):
        return float(self.per_node(kept).sum())

    def total_after(self, per_node, kept, changed):
        return self.total(kept)


def _linear_penalty(width, scale):
    return lambda steps: scale * (1.0 - np.asarray(steps, float) / width)


class TestUnitCurve:

    def test_one_width_is_interpolated_between_measured_widths(self):
        curve = UnitCurve(_unit(True, False), {(16, 64): 1.0, (32, 64): 2.0, (64, 64): 6.0})
        assert curve.at(24, 64) == pytest.approx(1.5)
        assert curve.at(48, 64) == pytest.approx(4.0)
        assert curve.at(64, 64) == pytest.approx(6.0)

    def test_the_cross_is_exact_for_a_fixed_cost_plus_a_product(self):
        c0, k = 0.3, 1e-3
        truth = lambda a, b: c0 + k * a * b  # noqa: E731
        widths = [16, 32, 48, 64]
        points = {(a, 64): truth(a, 64) for a in widths}
        points.update({(64, b): truth(64, b) for b in widths})
        curve = UnitCurve(_unit(True, True), points)
        for a, b in itertools.product(widths, widths):
            assert curve.at(a, b) == pytest.approx(truth(a, b), rel=1e-9)

    def test_a_unit_that_could_not_be_timed_is_a_constant(self):
        curve = UnitCurve(_unit(True, True), None)
        assert curve.at(16, 16) == curve.at(64, 64) == 0.0


class TestKnapsackOnLatencyStaircases:

    def test_a_cut_that_saves_nothing_is_not_taken_for_one_that_does(self):
        # g0 runs in blocks of 16 channels: 64 -> 56 saves nothing, 64 -> 48 saves one block.
        # g1 is linear but twice as sensitive. Priced one step at a time as FLOPs are, g0
        # would look free of gain and g1 would be cut; priced exactly, g0 goes to 48.
        groups = [_group(0, 64), _group(1, 64)]
        cost = StepCost(groups, {"g0": lambda w: float(np.ceil(w / 16)),
                                 "g1": lambda w: w / 16})
        penalties = {"g0": _linear_penalty(64, 1.0), "g1": _linear_penalty(64, 2.0)}
        allocation = BudgetAllocation(groups, cost, penalties, channel_divisible=8)
        kept = allocation.for_budget(cost.baseline - 1.0)
        assert kept == {"g0": 48, "g1": 64}

    @pytest.mark.parametrize("fraction", [0.8, 0.6, 0.45])
    def test_matches_brute_force_on_random_staircases(self, fraction):
        rng = np.random.RandomState(0)
        groups = [_group(i, 32) for i in range(3)]
        block = [8, 16, 4]
        fns = {f"g{i}": (lambda w, b=block[i], s=rng.uniform(0.5, 2): s * np.ceil(w / b))
               for i in range(3)}
        cost = StepCost(groups, fns, fixed=1.0)
        penalties = {f"g{i}": _linear_penalty(32, rng.uniform(0.5, 2)) for i in range(3)}
        allocation = BudgetAllocation(groups, cost, penalties, channel_divisible=4)
        budget = fraction * cost.baseline
        kept = allocation.for_budget(budget)
        assert allocation.total(kept) <= budget
        best = min(allocation.loss(dict(zip(["g0", "g1", "g2"], map(int, widths))))
                   for widths in itertools.product(*[staircase(32, 4, 0.9)] * 3)
                   if cost.total({i: int(w) for i, w in enumerate(widths)}) <= budget)
        assert allocation.loss(kept) == pytest.approx(best, abs=1e-9)


def _planner(uniform=False, fixed=2.0):
    groups = [_group(0, 64), _group(1, 64)]
    cost = StepCost(groups, {"g0": lambda w: w / 16, "g1": lambda w: w / 8}, fixed=fixed)
    cost.sum_units = lambda counts: cost.total(counts) - cost.fixed
    cost.calibrated = lambda alpha, beta: _Calibrated(cost, alpha, beta)
    cost.beta = fixed
    penalties = {g.name: _linear_penalty(64, 1.0) for g in groups}
    return LatencyPlanner(groups, cost, cost.baseline, penalties, channel_divisible=4,
                          uniform=uniform)


class _Calibrated(StepCost):
    """alpha * units + beta over a `StepCost` (what `LatencyCost.calibrated` does)."""

    def __init__(self, base, alpha, beta):
        self.base, self.alpha, self.beta = base, alpha, beta
        self.groups = base.groups
        self.baseline = self.total({})

    def per_node(self, kept):
        units = self.base.per_node(kept)[:-1]
        return np.append(self.alpha * units, self.beta)

    def sum_units(self, counts):
        return float(self.base.per_node(counts)[:-1].sum())

    def calibrated(self, alpha, beta):
        return _Calibrated(self.base, alpha, beta)


class TestClosingLoop:

    def test_without_measurements_the_prediction_is_the_plan(self):
        planner = _planner()
        plan = plan_latency(planner, 0.6, measure=None)
        assert plan.measured is None and plan.history == []
        assert plan.predicted == pytest.approx(planner.predicted(plan.kept))
        assert abs(plan.predicted / 0.6 - 1) <= 0.07

    def test_no_group_is_cut_further_than_the_budget_needs(self):
        planner = _planner()
        budget = 0.6 * planner.baseline_seconds
        kept = planner.allocation.for_budget(budget)
        assert planner.cost.total(planner.counts(kept)) <= budget
        for g in planner.groups:   # one step back up breaks the budget
            steps = list(planner.allocation.steps(g.name))
            i = steps.index(kept[g.name])
            if i + 1 < len(steps):
                assert planner.predicted({**kept, g.name: steps[i + 1]}) > 0.6

    def test_an_affine_measurement_error_is_corrected_by_one_refit(self):
        # The machine's truth: the layers take 30% longer than the table says, and the
        # fixed part is smaller. A line through the baseline and one measurement is exact,
        # so the second plan is predicted exactly what it measures.
        planner = _planner()
        truth = _planner().cost.calibrated(1.3, 0.5)
        baseline = truth.total({})

        def measure(kept):
            return truth.total({g.id: kept[g.name] for g in planner.groups}) / baseline

        plan = plan_latency(planner, 0.5, measure=measure)
        first, second = plan.history[:2]
        assert first[0] != pytest.approx(first[1], rel=0.01)   # the table alone was off
        assert second[0] == pytest.approx(second[1], rel=1e-9)
        assert abs(plan.measured / 0.5 - 1) <= 0.07
        assert plan.measured == pytest.approx(measure(plan.kept))

    def test_the_closest_measured_plan_is_kept_and_an_off_target_one_warns(self):
        planner = _planner()
        with pytest.warns(UserWarning, match="not reached within 7%"):
            plan = plan_latency(planner, 0.5, measure=lambda kept: 0.9, max_measurements=3)
        assert plan.measured == 0.9

    def test_uniform_plans_prune_every_group_by_one_fraction(self):
        planner = _planner(uniform=True)
        plan = plan_latency(planner, 0.6, measure=None)
        assert plan.kept["g0"] == plan.kept["g1"]
        assert plan.kept == uniform_widths(planner.groups, 1 - plan.kept["g0"] / 64, 4)
        assert plan.predicted <= 0.6 + 1e-9


def test_importance_prior_is_the_share_of_importance_pruned():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    model.get_layer("hidden").set_weights([np.diag([4.0, 1.0, 3.0, 2.0]), np.zeros(4)])
    deps = DependencyGraph(TfKerasAdapter(model).graph)
    group = deps.group("hidden")
    weights = TfKerasAdapter(model).all_weights()
    penalty = importance_penalties(deps, weights, [group])["hidden"]
    # L1 scores 4, 1, 3, 2: keeping the best two (4 + 3) of 10 loses 0.3.
    np.testing.assert_allclose(penalty(np.array([1, 2, 3, 4])), [0.6, 0.3, 0.1, 0.0])


def _block_model():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    y = keras.layers.Conv2D(64, 3, padding="same", name="c2")(x)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    y = keras.layers.ReLU(name="r2")(y)
    y = keras.layers.Conv2D(32, 1, name="c3")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="fc")(x))


class TestUnitsOfAModel:

    @pytest.fixture(scope="class")
    @classmethod
    def deps(cls):
        return DependencyGraph(TfKerasAdapter(_block_model()).graph)

    def test_fused_followers_and_the_widths_each_unit_depends_on(self, deps):
        flops = WidthFlops(deps)
        units, untimed, requests = latency_requests(deps, flops, deps.prunable_groups, 8)
        assert untimed == []
        by_head = {u.nodes[0]: u for u in units}
        assert by_head["c1"].nodes == ("c1", "bn1", "r1")
        assert by_head["c2"].nodes == ("c2", "bn2", "r2")
        assert by_head["c1"].axes == ("out",)         # its input is the image
        assert by_head["c2"].axes == ("in", "out")
        assert by_head["dw"].axes == ("in",)          # its output follows its input
        assert by_head["add"].axes == ("in",)
        assert by_head["fc"].axes == ("in",)          # 10 classes stay
        # A cross of widths through the full ones, multiples of 8 only.
        assert sorted(requests[by_head["c2"]]) == sorted(
            {(a, 64) for a in (8, 16, 24, 32)} | {(32, b) for b in range(8, 65, 8)})

    def test_a_unit_is_rebuilt_alone_at_any_widths(self, deps):
        units, _, _ = latency_requests(deps, WidthFlops(deps), deps.prunable_groups, 8)
        unit = next(u for u in units if u.nodes[0] == "c2")
        model = build_unit_model(deps, unit, 24, 40, batch_size=3)
        assert model.input_shape == (3, 16, 16, 24)
        assert model.output_shape == (3, 16, 16, 40)
        assert [type(layer).__name__ for layer in model.layers[1:]] == [
            "Conv2D", "BatchNormalization", "ReLU"]

    def test_a_keras3_unit_is_rebuilt_as_a_keras3_model(self):
        import keras as keras3
        inputs = keras3.Input((16, 16, 3))
        x = keras3.layers.Conv2D(32, 3, padding="same", name="c1")(inputs)
        x = keras3.layers.Conv2D(64, 3, padding="same", name="c2")(x)
        x = keras3.layers.GlobalAveragePooling2D(name="gap")(x)
        model = keras3.Model(inputs, keras3.layers.Dense(10, name="fc")(x))
        deps = DependencyGraph(adapter_for(model).graph)
        units, _, _ = latency_requests(deps, WidthFlops(deps), deps.prunable_groups, 8)
        unit = next(u for u in units if u.nodes[0] == "c2")
        built = build_unit_model(deps, unit, 24, 40, batch_size=3)
        assert isinstance(built, keras3.Model)
        assert tuple(built.input_shape) == (3, 16, 16, 24)
        assert tuple(built.output_shape) == (3, 16, 16, 40)

    def test_repeated_shapes_share_one_signature(self):
        inputs = keras.Input((8, 8, 16))
        x = inputs
        for i in range(4):
            x = keras.layers.Conv2D(16, 3, padding="same", name=f"conv{i}")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(10)(x))
        deps = DependencyGraph(TfKerasAdapter(model).graph)
        units, _, _ = latency_requests(deps, WidthFlops(deps), deps.prunable_groups, 4)
        signatures = {u.nodes[0]: u.signature for u in units}
        assert signatures["conv1"] == signatures["conv2"] == signatures["conv3"]
        # conv0 reads the image, whose width is fixed: another unit.
        assert signatures["conv0"] != signatures["conv1"]


def test_calibration_puts_what_the_units_miss_in_a_constant():
    flops_units = [_unit(True, False)]

    class _Flops:
        def tensor_coefficients(self, tid):
            return {0: 1.0}

        def tensor_width(self, tid, counts):
            return counts.get(0, 64)

    curve = UnitCurve(flops_units[0], {(16, 64): 1.0, (64, 64): 4.0})
    cost = LatencyCost(_Flops(), flops_units, [curve])
    calibrated = calibrate(cost, 10.0)
    assert (calibrated.alpha, calibrated.beta) == (1.0, 6.0)
    assert calibrated.total({0: 16}) == pytest.approx(7.0)
    # Units summing to more than the whole model ran in parallel in it: scaled down.
    scaled = calibrate(cost, 2.0)
    assert (scaled.alpha, scaled.beta) == (0.5, 0.0)
