"""Specification of sensitivity analysis (`ana`) and target-driven pruning (`prune`)."""

import json
import math
import os

import numpy as np
import pytest
import tf_keras as keras

import vai_optimizer_tf as vot
from tests import model_utils
from tests.small_models import small_resnet
from vai_optimizer_tf.analysis.sensitivity_cache import BASELINE, SensitivityCache

RATIOS = (0.25, 0.5, 0.75)
N_STEPS = 1 + 4 * len(RATIOS)  # baseline + 4 prunable groups x 3 ratios
X = np.random.RandomState(1).rand(16, 16, 16, 3).astype("float32")


def output_energy(model):
    """A deterministic metric: mean squared output on fixed inputs."""
    return float(np.mean(np.asarray(model(X, training=False)) ** 2))


class CountingEval:
    def __init__(self, fn=output_energy):
        self.fn = fn
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        return self.fn(model)


@pytest.fixture(scope="module")
def model():
    return small_resnet()


def result_files(workspace):
    """The analysis result files in a workspace: one per process that evaluated steps."""
    folder = os.path.join(workspace, "ana")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.startswith("sensitivity-") and f.endswith(".json"))


def snapshot(folder):
    """Every file under `folder` with its bytes, to check that nothing was touched."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), folder)] = f.read()
    return out


class TestAnalysis:

    def test_records_the_baseline_and_every_group_at_every_ratio(self, model, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        evaluate = CountingEval()
        cache = runner.ana(evaluate, ratios=RATIOS, verbose=0)
        assert evaluate.calls == N_STEPS
        assert cache.baseline == pytest.approx(output_energy(model), rel=1e-6)
        for group in runner.prunable_groups:
            for r in RATIOS:
                assert math.isfinite(cache.metric(group.name, r))

    def test_each_step_equals_evaluating_that_group_pruned_alone(self, model, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        cache = runner.ana(output_energy, ratios=RATIOS, verbose=0)
        kernel = model.get_layer("expand").get_weights()[0].reshape(-1, 32)
        keep = np.sort(np.argsort(-np.abs(kernel).sum(0), kind="stable")[:16])
        spec = vot.PruningSpec(model.name, runner.model_digest,
                               {"expand": vot.GroupSpec(32, 0.5, keep)})
        expected = output_energy(runner.get_sparse_model(spec))
        assert cache.metric("expand", 0.5) == pytest.approx(expected, rel=1e-5)

    def test_users_model_is_untouched(self, model, tmp_path):
        before = [w.copy() for w in model.get_weights()]
        vot.IterativePruningRunner(model, workspace=str(tmp_path)).ana(
            output_energy, ratios=RATIOS, verbose=0)
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, b)

    def test_reports_are_written(self, model, tmp_path, capsys):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        runner.ana(output_energy, ratios=RATIOS, verbose=1)
        table = capsys.readouterr().out
        assert "baseline" in table and "-50%" in table and "expand" in table
        with open(tmp_path / "ana" / "sensitivity.csv") as f:
            header = f.readline().strip().split(",")
        assert header == ["group", "baseline", "0.25", "0.5", "0.75"]

    def test_second_call_reuses_every_finished_step(self, model, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        runner.ana(output_energy, ratios=RATIOS, verbose=0)
        again = CountingEval()
        vot.IterativePruningRunner(model, workspace=str(tmp_path)).ana(
            again, ratios=RATIOS, verbose=0)
        assert again.calls == 0

    def test_forced_recomputes_everything(self, model, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        runner.ana(output_energy, ratios=RATIOS, verbose=0)
        again = CountingEval()
        runner.ana(again, ratios=RATIOS, forced=True, verbose=0)
        assert again.calls == N_STEPS

    def test_analyses_of_other_weights_are_kept_side_by_side(self, model, tmp_path):
        vot.IterativePruningRunner(model, workspace=str(tmp_path)).ana(
            output_energy, ratios=RATIOS, verbose=0)
        evaluate = CountingEval()
        vot.IterativePruningRunner(small_resnet(seed=1), workspace=str(tmp_path)).ana(
            evaluate, ratios=RATIOS, verbose=0)
        assert evaluate.calls == N_STEPS
        again = CountingEval()
        vot.IterativePruningRunner(model, workspace=str(tmp_path)).ana(
            again, ratios=RATIOS, verbose=0)
        assert again.calls == 0

    def test_a_new_grid_evaluates_only_its_new_ratios(self, model, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        runner.ana(output_energy, ratios=RATIOS, verbose=0)
        evaluate = CountingEval()
        cache = runner.ana(evaluate, ratios=(0.5, 0.6), verbose=0)
        assert evaluate.calls == 4  # 0.6 for each of the 4 groups; baseline and 0.5 reused
        assert cache.ratios == [0.5, 0.6] and not cache.missing_steps()

    def test_changing_the_grid_again_and_again_loses_nothing(self, model, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        for grid in ((0.5,), (0.3,), (0.7,)):
            runner.ana(output_energy, ratios=grid, verbose=0)
        evaluate = CountingEval()
        cache = vot.IterativePruningRunner(model, workspace=str(tmp_path)).ana(
            evaluate, ratios=(0.3, 0.5, 0.7), verbose=0)
        assert evaluate.calls == 0
        assert cache.metric("expand", 0.5) == pytest.approx(
            runner.ana(output_energy, ratios=(0.5,), forced=True, verbose=0).metric(
                "expand", 0.5), rel=1e-6)

    def test_ana_after_training_analyses_the_new_weights(self, tmp_path):
        trained = small_resnet()
        runner = vot.IterativePruningRunner(trained, workspace=str(tmp_path))
        before = runner.ana(output_energy, ratios=RATIOS, verbose=0)
        y = np.random.RandomState(2).randint(0, 10, len(X))
        trained.compile(optimizer=keras.optimizers.SGD(0.05),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        trained.fit(X, y, epochs=2, batch_size=8, verbose=0)
        evaluate = CountingEval()
        after = runner.ana(evaluate, ratios=RATIOS, verbose=0)
        assert evaluate.calls == N_STEPS
        assert after.baseline == pytest.approx(output_energy(trained), rel=1e-6)
        assert after.baseline != pytest.approx(before.baseline, rel=1e-3)

    def test_prune_after_training_does_not_use_the_old_analysis(self, tmp_path):
        trained = small_resnet()
        runner = vot.IterativePruningRunner(trained, workspace=str(tmp_path))
        runner.ana(output_energy, ratios=RATIOS, verbose=0)
        trained.set_weights([w * 1.5 for w in trained.get_weights()])
        with pytest.raises(vot.AnalysisCacheError, match="other weights"):
            runner.prune(ratio=0.3, channel_divisible=1)
        with pytest.raises(vot.AnalysisCacheError, match="other weights"):
            runner.sensitivity()

    def test_forced_recomputation_supersedes_and_keeps_other_grids(self, model, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        first = runner.ana(output_energy, ratios=(0.25, 0.5), verbose=0)
        shifted = CountingEval(lambda m: output_energy(m) + 1.0)
        runner.ana(shifted, ratios=(0.5,), forced=True, verbose=0)
        assert shifted.calls == 1 + 4
        merged = runner.ana(CountingEval(), ratios=(0.25, 0.5), verbose=0)
        assert merged.baseline == first.baseline + 1.0
        assert merged.metric("expand", 0.5) == first.metric("expand", 0.5) + 1.0
        assert merged.metric("expand", 0.25) == first.metric("expand", 0.25)  # kept as it was

    def test_corrupted_shard_file_gets_a_clear_error_and_forced_fixes_it(self, model,
                                                                          tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        runner.ana(output_energy, ratios=RATIOS, shard=(0, 2), verbose=0)
        runner.ana(output_energy, ratios=RATIOS, shard=(1, 2), verbose=0)
        first, path = result_files(str(tmp_path))
        with open(path, "w") as f:
            f.write('{"format": "vai_optimizer_tf.sensi')
        with pytest.raises(vot.AnalysisCacheError, match="corrupted.*forced=True") as info:
            runner.ana(output_energy, ratios=RATIOS, verbose=0)
        assert repr(path) in str(info.value)
        with pytest.raises(vot.AnalysisCacheError, match="corrupted") as info:
            runner.prune(ratio=0.3, channel_divisible=1)
        assert repr(path) in str(info.value)
        evaluate = CountingEval()
        runner.ana(evaluate, ratios=RATIOS, forced=True, verbose=0)
        assert evaluate.calls == N_STEPS
        assert os.path.exists(path + ".corrupted") and os.path.exists(first)
        assert isinstance(runner.prune(ratio=0.3, channel_divisible=1), keras.Model)

    @pytest.mark.parametrize("edit, problem", [
        (lambda d: d["results"].update(expand="oops"), "results\\['expand'\\] must be an object"),
        (lambda d: d["results"]["expand"].update({"0.5000": "0.9"}), "must be a finite number"),
        (lambda d: d["results"]["expand"].update({"half": 0.9}), "has ratio 'half'"),
        (lambda d: d.update(baseline="high"), "\"baseline\" must be a finite number"),
        (lambda d: d.update(results=[1, 2]), "'results' must be an object"),
        (lambda d: d["key"].pop("weights_digest"), "key field 'weights_digest'"),
        (lambda d: d["indices"].update(expand="7"), "indices\\['expand'\\]"),
        (lambda d: d.clear(), "\"format\" is None"),
    ])
    def test_hand_edited_file_with_wrong_types_gets_a_clear_error(self, model, tmp_path, edit,
                                                                  problem):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        runner.ana(output_energy, ratios=RATIOS, verbose=0)
        (path,) = result_files(str(tmp_path))
        with open(path) as f:
            data = json.load(f)
        edit(data)
        with open(path, "w") as f:
            json.dump(data, f)
        for call in (lambda: runner.ana(output_energy, ratios=RATIOS, verbose=0),
                     runner.sensitivity, lambda: runner.prune(ratio=0.3, channel_divisible=1)):
            with pytest.raises(vot.AnalysisCacheError, match=problem) as info:
                call()
            assert repr(path) in str(info.value) and "Delete" in str(info.value)
        os.remove(path)  # the first fix the message gives
        evaluate = CountingEval()
        runner.ana(evaluate, ratios=RATIOS, verbose=0)
        assert evaluate.calls == N_STEPS


class TestSensitivityCache:

    KEY = {"graph_digest": "g", "weights_digest": "w", "criterion": "l1", "mode": "max"}

    def test_json_round_trip(self):
        cache = SensitivityCache(self.KEY)
        cache.record(BASELINE, 0.0, 0.9, time=10.0)
        cache.record("conv1", 0.25, 0.8, index=3, time=11.0)
        cache.record("conv1", 0.5, 0.6, index=3, time=12.0)
        again = SensitivityCache.from_json(json.loads(json.dumps(cache.to_json())))
        assert again.to_json() == cache.to_json()
        assert again.ratios == [0.25, 0.5] and again.groups == ["conv1"]
        assert again.time_of("conv1", 0.5) == 12.0 and again.indices == {"conv1": 3}

    def test_merge_keeps_the_later_record_of_a_step_and_every_other_step(self):
        old, new = SensitivityCache(self.KEY), SensitivityCache(self.KEY)
        old.record(BASELINE, 0.0, 0.9, time=1.0)
        old.record("conv1", 0.25, 0.8, time=1.0)
        old.record("conv1", 0.5, 0.6, time=1.0)
        new.record(BASELINE, 0.0, 0.95, time=2.0)
        new.record("conv1", 0.5, 0.7, time=2.0)
        for first, second in ((old, new), (new, old)):
            merged = SensitivityCache(self.KEY)
            merged.merge(first)
            merged.merge(second)
            assert merged.baseline == 0.95
            assert merged.metric("conv1", 0.5) == 0.7 and merged.metric("conv1", 0.25) == 0.8

    def test_older_keys_with_a_grid_still_load(self):
        cache = SensitivityCache(dict(self.KEY, ratios=[0.5, 0.25]))
        assert cache.key == self.KEY and cache.ratios == [0.25, 0.5]


class TestBadEvalFn:

    @pytest.mark.parametrize("bad_value, message", [
        (float("nan"), "returned nan"),
        ("0.9", "must return one number"),
        (None, "must return one number"),
    ])
    def test_bad_value_names_group_and_ratio_and_keeps_finished_steps(
            self, model, tmp_path, bad_value, message):
        calls = []

        def flaky(m):
            calls.append(1)
            return bad_value if len(calls) == 3 else output_energy(m)

        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        with pytest.raises(vot.AnalysisError, match="group 'stem' pruned by 50%") as info:
            runner.ana(flaky, ratios=RATIOS, verbose=0)
        assert message in str(info.value)
        (path,) = result_files(str(tmp_path))
        with open(path) as f:
            saved = json.load(f)
        assert saved["baseline"] is not None
        assert list(saved["results"]["stem"]) == ["0.2500"]
        resumed = CountingEval()
        runner.ana(resumed, ratios=RATIOS, verbose=0)
        assert resumed.calls == N_STEPS - 2

    def test_exception_in_eval_fn_names_group_and_ratio(self, model, tmp_path):
        def broken(m):
            raise RuntimeError("dataset exhausted")

        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        with pytest.raises(vot.AnalysisError, match="dataset exhausted.*baseline"):
            runner.ana(broken, ratios=RATIOS, verbose=0)

    @pytest.mark.parametrize("kwargs, message", [
        ({"ratios": (0.5, 1.0)}, "Invalid `ratios`"),
        ({"ratios": ()}, "Invalid `ratios`"),
        ({"ratios": (float("nan"),)}, "Invalid `ratios`.*nan"),
        ({"ratios": (0.5, float("inf"))}, "Invalid `ratios`.*inf"),
        ({"ratios": (True,)}, "Invalid `ratios`"),
        ({"ratios": 0.5}, "Invalid `ratios`"),
        ({"ratios": "0.5"}, "Invalid `ratios`"),
        ({"ratios": (0.00001,)}, "Invalid `ratios`.*rounded"),
        ({"shard": (2, 2)}, "Invalid `shard`"),
        ({"mode": "best"}, "Invalid `mode`"),
        ({"criterion": "l3"}, "Invalid `criterion`"),
    ])
    def test_bad_arguments_touch_no_file(self, model, tmp_path, kwargs, message):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        runner.ana(output_energy, ratios=RATIOS, verbose=0)
        before = snapshot(str(tmp_path))
        with pytest.raises(ValueError, match=message):
            runner.ana(output_energy, verbose=0, **kwargs)
        assert snapshot(str(tmp_path)) == before
        again = CountingEval()
        runner.ana(again, ratios=RATIOS, verbose=0)
        assert again.calls == 0

    def test_eval_fn_must_be_callable(self, model, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        with pytest.raises(ValueError, match="Invalid `eval_fn`"):
            runner.ana(0.5)


@pytest.fixture(scope="module")
def analysed(model, tmp_path_factory):
    workspace = str(tmp_path_factory.mktemp("analysed"))
    vot.IterativePruningRunner(model, workspace=workspace).ana(
        output_energy, ratios=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), verbose=0)
    return workspace


@pytest.fixture(scope="module")
def wide_model():
    return small_resnet(width=32, blocks=3, name="wide_resnet")


@pytest.fixture(scope="module")
def wide_analysed(wide_model, tmp_path_factory):
    workspace = str(tmp_path_factory.mktemp("wide"))
    vot.IterativePruningRunner(wide_model, workspace=workspace).ana(
        output_energy, ratios=(0.2, 0.4, 0.6, 0.8), verbose=0)
    return workspace


class TestPrune:

    @pytest.mark.parametrize("target", [0.2, 0.45, 0.7])
    @pytest.mark.parametrize("divisible", [1, 4, 8])
    def test_slim_model_reaches_the_flops_target_after_rounding(
            self, wide_model, wide_analysed, target, divisible):
        runner = vot.IterativePruningRunner(wide_model, workspace=wide_analysed)
        slim = runner.prune(ratio=target, channel_divisible=divisible, mode="slim")
        reduction = 1 - vot.stat(slim).flops / vot.stat(wide_model).flops
        assert abs(reduction - target) <= 0.01
        for layer in slim.layers:
            if isinstance(layer, keras.layers.Conv2D):
                original = wide_model.get_layer(layer.name).filters
                assert layer.filters == original or layer.filters % divisible == 0

    def test_prune_returns_sparse_model_equal_to_its_slim_model(self, model, analysed):
        runner = vot.IterativePruningRunner(model, workspace=analysed)
        sparse = runner.prune(ratio=0.4, channel_divisible=1)
        slim = runner.get_slim_model()
        assert model_utils.max_relative_difference(sparse, slim, X) < 1e-5
        assert slim.count_params() < model.count_params()

    def test_spec_file_and_latest_pointer(self, model, analysed):
        runner = vot.IterativePruningRunner(model, workspace=analysed)
        runner.prune(ratio=0.4, channel_divisible=2, criterion="l2")
        path = runner.latest_spec_path()
        with open(path) as f:
            data = json.load(f)
        assert data["criterion"] == "l2" and data["channel_divisible"] == 2
        assert abs(data["metadata"]["flops_reduction"] - 0.4) <= 0.01
        assert data["model_digest"] == runner.model_digest
        for group in data["groups"].values():
            assert len(group["kept"]) % 2 == 0 or len(group["kept"]) == group["width"]

    @pytest.mark.parametrize("threshold", [0.01, 0.02, 0.05, 0.2])
    def test_threshold_keeps_every_group_within_its_analysed_drop(self, model, analysed,
                                                                  threshold):
        runner = vot.IterativePruningRunner(model, workspace=analysed)
        cache = runner.sensitivity()
        runner.prune(threshold=threshold, channel_divisible=1)
        spec = vot.PruningSpec.load(runner.latest_spec_path())
        assert spec.groups  # something was pruned
        for name, group in spec.groups.items():
            ratio = 1 - len(group.kept) / group.width
            # Every analysed ratio up to the one actually pruned, that one included ...
            for r in cache.ratios:
                if r <= ratio + 1e-9:
                    assert cache.drop(name, r) <= threshold, (name, r, ratio)
            # ... and the pruned ratio itself, on the monotone piecewise-linear drop curve.
            drops = np.maximum.accumulate([0.0] + [max(cache.drop(name, r), 0.0)
                                                   for r in cache.ratios])
            assert np.interp(ratio, [0.0] + cache.ratios, drops) <= threshold + 1e-6

    def test_without_analysis_prune_says_what_to_do(self, model, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        with pytest.raises(vot.AnalysisCacheError, match=r"Run runner.ana\(eval_fn\) first"):
            runner.prune(ratio=0.3, channel_divisible=1)

    def test_analysis_of_other_weights_is_refused(self, analysed):
        runner = vot.IterativePruningRunner(small_resnet(seed=3), workspace=analysed)
        with pytest.raises(vot.AnalysisCacheError, match="other weights"):
            runner.prune(ratio=0.3, channel_divisible=1)

    def test_unreachable_target_says_how_far_it_can_go(self, model, analysed):
        runner = vot.IterativePruningRunner(model, workspace=analysed)
        with pytest.raises(ValueError, match="cannot be reached"):
            runner.prune(ratio=0.99, channel_divisible=1)

    @pytest.mark.parametrize("kwargs, message", [
        ({}, "Pass either `ratio`"),
        ({"ratio": 0.3, "threshold": 0.1}, "only one of"),
        ({"ratio": 0.0}, "Invalid `ratio`"),
        ({"ratio": 0.3, "mode": "dense"}, "Invalid `mode`"),
        ({"threshold": -1}, "Invalid `threshold`"),
    ])
    def test_bad_arguments(self, model, analysed, kwargs, message):
        runner = vot.IterativePruningRunner(model, workspace=analysed)
        with pytest.raises(ValueError, match=message):
            runner.prune(**kwargs)

    def test_summary_shows_flops_params_and_widths(self, model, analysed):
        runner = vot.IterativePruningRunner(model, workspace=analysed)
        runner.prune(ratio=0.4, channel_divisible=1)
        lines = []
        runner.summary(print_fn=lines.append)
        text = "\n".join(lines)
        spec = vot.PruningSpec.load(runner.latest_spec_path())
        assert "FLOPs" in text and "params" in text and "->" in text
        for name, group in spec.groups.items():
            assert f"{name:<{max(map(len, spec.groups))}}  {group.width:>6} -> " \
                   f"{len(group.kept):>6}" in text

    def test_existing_spec_path_is_applied(self, model, analysed, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=analysed)
        path = str(tmp_path / "mine.json")
        first = runner.prune(ratio=0.4, spec_path=path, channel_divisible=1)
        again = runner.prune(spec_path=path, channel_divisible=1)
        assert model_utils.max_relative_difference(first, again, X) == 0.0


class TestIterativePruning:

    def test_vitis_flow_keeps_nested_channels_and_slim_matches_fine_tuned_sparse(
            self, analysed, tmp_path):
        import shutil
        workspace = str(tmp_path / "ws")
        shutil.copytree(analysed, workspace)
        baseline = small_resnet()
        y = np.random.RandomState(2).randint(0, 10, len(X))

        def fine_tune(m):
            m.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            m.fit(X, y, epochs=2, batch_size=8, verbose=0)
            return m

        step1 = fine_tune(vot.IterativePruningRunner(baseline, workspace=workspace)
                          .prune(ratio=0.3, channel_divisible=1))
        spec1 = vot.PruningSpec.load(
            vot.IterativePruningRunner(baseline, workspace=workspace).latest_spec_path())

        model2 = small_resnet()           # the Vitis flow: load the weights into the baseline
        model2.set_weights(step1.get_weights())
        runner2 = vot.IterativePruningRunner(model2, workspace=workspace)
        never = CountingEval()
        step2 = fine_tune(runner2.prune(ratio=0.5, channel_divisible=1))
        spec2 = vot.PruningSpec.load(runner2.latest_spec_path())
        assert never.calls == 0  # the baseline analysis was reused, not redone
        assert abs(spec2.metadata["flops_reduction"] - 0.5) <= 0.01
        for name, g in spec1.groups.items():
            assert set(spec2.groups[name].kept) <= set(g.kept)
        slim = runner2.get_slim_model(weights_from=step2)
        assert model_utils.max_relative_difference(step2, slim, X) < 1e-5

    @pytest.mark.parametrize("same_runner", [True, False])
    def test_backtracking_to_an_earlier_iteration_prunes_from_its_weights(
            self, analysed, tmp_path, same_runner):
        import shutil
        workspace = str(tmp_path / "ws")
        shutil.copytree(analysed, workspace)
        y = np.random.RandomState(2).randint(0, 10, len(X))

        def fine_tune(m):
            m.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            m.fit(X, y, epochs=1, batch_size=8, verbose=0)
            return m

        first = vot.IterativePruningRunner(small_resnet(), workspace=workspace)
        weights1 = fine_tune(first.prune(ratio=0.3, channel_divisible=1)).get_weights()
        spec1 = vot.PruningSpec.load(first.latest_spec_path())
        model = small_resnet()
        model.set_weights(weights1)
        runner = vot.IterativePruningRunner(model, workspace=workspace)
        fine_tune(runner.prune(ratio=0.7,
                               channel_divisible=1))      # a step too far: say accuracy collapsed

        model.set_weights(weights1)             # back to the first iteration's weights
        if not same_runner:
            runner = vot.IterativePruningRunner(model, workspace=workspace)
        sparse = runner.prune(ratio=0.5, channel_divisible=1)        # and a smaller step from there
        spec3 = vot.PruningSpec.load(runner.latest_spec_path())
        assert abs(spec3.metadata["flops_reduction"] - 0.5) <= 0.01
        assert spec3.metadata["analysis_key"] == spec1.metadata["analysis_key"]
        for name, g in spec1.groups.items():
            assert set(spec3.groups[name].kept) <= set(g.kept)
        slim = runner.get_slim_model(weights_from=sparse)
        assert model_utils.max_relative_difference(sparse, slim, X) < 1e-5
