"""Specification of one-step pruning (`OneStepPruningRunner`)."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import keras as keras3
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import vai_optimizer_tf as vot
from tests import model_utils
from tests.one_step_worker import X, output_energy
from tests.process_utils import CountingEval, logged_calls, start_together
from tests.small_models import small_resnet
from vai_optimizer_tf.planning.importance import kept_count

WORKER = os.path.join(os.path.dirname(__file__), "one_step_worker.py")
CALIBRATION = X[16:]
N = 8


def _search(runner, evaluate=output_energy, num_subnets=N, **kwargs):
    kwargs.setdefault("calibration_steps", 2)
    kwargs.setdefault("batch_size", 16)
    kwargs.setdefault("channel_divisible", 1)  # the test nets are 8 and 16 channels wide
    return runner.search(0.5, evaluate, CALIBRATION, num_subnets=num_subnets, verbose=0,
                         **kwargs)


@pytest.fixture(scope="module")
def model():
    return small_resnet()


@pytest.fixture(scope="module")
def searched(model, tmp_path_factory):
    """A finished search of N subnets, and its runner."""
    runner = vot.OneStepPruningRunner(model, workspace=str(tmp_path_factory.mktemp("ws")))
    return runner, _search(runner)


def _files(workspace):
    return sorted(glob.glob(os.path.join(workspace, "one_step", "subnets-*.json")))


class TestCandidates:

    def test_every_candidate_is_within_one_point_of_the_target_by_stat(self, model, searched):
        runner, subnets = searched
        assert [s.index for s in subnets] == list(range(N))
        for s in subnets:
            slim = runner.get_slim_model(runner.build_spec(s.widths))
            reduction = 1 - vot.stat(slim).flops / vot.stat(model).flops
            assert reduction == pytest.approx(s.flops_reduction, abs=1e-9)
            if s.index:
                assert abs(reduction - 0.5) <= 0.01

    def test_candidate_zero_is_the_uniform_cut(self, searched):
        runner, subnets = searched
        widths = subnets[0].widths
        assert len(widths) == len(runner.prunable_groups)
        # Some single fraction, rounded per group, gives every group's width.
        groups = {g.name: g.width for g in runner.prunable_groups}
        assert any(all(kept_count(groups[n], u) == w for n, w in widths.items())
                   for u in np.linspace(0, 0.9, 9001))

    def test_score_is_eval_fn_of_the_sparse_model_after_adaptive_bn(self, model, searched):
        # Independent path: the public API builds the candidate's sparse model,
        # vot.adaptive_bn re-estimates its statistics on the same batches, eval_fn scores.
        runner, subnets = searched
        for s in subnets[:3]:
            sparse = runner.get_sparse_model(runner.build_spec(s.widths))
            vot.adaptive_bn(sparse, CALIBRATION, steps=2, batch_size=16)
            assert output_energy(sparse) == pytest.approx(s.score, rel=1e-5)

    def test_the_model_is_bit_identical_after_the_search(self, tmp_path):
        model = small_resnet()
        before = [w.copy() for w in model.get_weights()]
        _search(vot.OneStepPruningRunner(model, workspace=str(tmp_path)))
        assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


class TestKeras3:
    """The same search on the Keras 3 build of the model: scores, candidates and prune."""

    def test_search_scores_and_prune_on_a_keras3_model(self, tmp_path):
        model = small_resnet(keras=keras3)
        before = [w.copy() for w in model.get_weights()]
        runner = vot.OneStepPruningRunner(model, workspace=str(tmp_path))
        subnets = _search(runner, num_subnets=4)

        assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        for s in subnets:
            sparse = runner.get_sparse_model(runner.build_spec(s.widths))
            vot.adaptive_bn(sparse, CALIBRATION, steps=2, batch_size=16)
            assert output_energy(sparse) == pytest.approx(s.score, rel=1e-5)
            if s.index:
                slim = runner.get_slim_model(runner.build_spec(s.widths))
                assert abs(1 - vot.stat(slim).flops / vot.stat(model).flops - 0.5) <= 0.01
        sparse = runner.prune(index=2)
        assert isinstance(sparse, keras3.Model)
        assert output_energy(sparse) == pytest.approx(subnets[2].score, rel=1e-5)
        slim = runner.get_slim_model(weights_from=sparse)
        assert model_utils.max_relative_difference(sparse, slim, X[:8]) < 1e-5


class TestPrune:

    def test_prune_index_builds_exactly_that_candidate(self, searched):
        runner, subnets = searched
        chosen = subnets[3]
        sparse = runner.prune(index=3)
        spec = vot.PruningSpec.load(runner.latest_spec_path())
        assert {n: len(g.kept) for n, g in spec.groups.items()} == chosen.widths
        assert spec.metadata["subnet_index"] == 3 and spec.metadata["method"] == "one_step"
        slim = runner.get_slim_model(weights_from=sparse)
        assert model_utils.max_relative_difference(sparse, slim, X[:8]) < 1e-5

    def test_prune_defaults_to_the_best_score(self, searched):
        runner, subnets = searched
        runner.prune()
        best = max(subnets, key=lambda s: (s.score, -s.index))
        assert vot.PruningSpec.load(runner.latest_spec_path()).metadata["subnet_index"] == \
            best.index

    def test_returned_model_scores_what_its_candidate_scored(self, searched):
        runner, subnets = searched
        sparse = runner.prune(index=2)
        assert output_energy(sparse) == pytest.approx(subnets[2].score, rel=1e-5)

    def test_slim_mode(self, model, searched):
        runner, subnets = searched
        slim = runner.prune(index=1, mode="slim")
        assert vot.stat(slim).flops == pytest.approx(
            (1 - subnets[1].flops_reduction) * vot.stat(model).flops, rel=1e-9)


class TestCache:

    def test_a_finished_search_is_read_back_without_scoring(self, model, searched):
        runner, subnets = searched
        again = vot.OneStepPruningRunner(model, workspace=runner.workspace)
        evaluate = CountingEval(output_energy)
        assert _search(again, evaluate) == subnets
        assert evaluate.calls == 0

    def test_more_subnets_score_only_the_new_ones(self, model, searched, tmp_path):
        runner, subnets = searched
        evaluate = CountingEval(output_energy)
        more = _search(vot.OneStepPruningRunner(model, workspace=runner.workspace), evaluate,
                       num_subnets=N + 2)
        assert evaluate.calls == 2 and more[:N] == subnets

    def test_results_of_other_weights_are_not_used(self, tmp_path):
        model = small_resnet()
        workspace = str(tmp_path)
        _search(vot.OneStepPruningRunner(model, workspace=workspace))
        model.get_layer("head").set_weights([w + 1 for w in model.get_layer("head").get_weights()])
        evaluate = CountingEval(output_energy)
        _search(vot.OneStepPruningRunner(model, workspace=workspace), evaluate)
        assert evaluate.calls == N
        assert len(_files(workspace)) == 2  # the first search's file is kept, untouched

    @pytest.mark.parametrize("change", [{"seed": 1}, {"channel_divisible": 2},
                                        {"calibration_steps": 1}])
    def test_other_search_settings_are_separate_searches(self, model, searched, change):
        runner, _ = searched
        evaluate = CountingEval(output_energy)
        _search(vot.OneStepPruningRunner(model, workspace=runner.workspace), evaluate,
                num_subnets=2, **change)
        assert evaluate.calls == 2

    def test_corrupted_file_is_named_with_the_fix(self, tmp_path):
        workspace = str(tmp_path)
        runner = vot.OneStepPruningRunner(small_resnet(), workspace=workspace)
        _search(runner, num_subnets=2)
        (path,) = _files(workspace)
        data = json.load(open(path))
        data["subnets"]["0"]["score"] = "oops"
        open(path, "w").write(json.dumps(data))
        with pytest.raises(vot.AnalysisCacheError, match="malformed `score`.*Delete"):
            _search(runner, num_subnets=2)
        os.remove(path)
        assert len(_search(runner, num_subnets=2)) == 2

    def test_shards_split_the_candidates_and_merge(self, model, tmp_path):
        workspace = str(tmp_path)
        first, second = CountingEval(output_energy), CountingEval(output_energy)
        part = _search(vot.OneStepPruningRunner(model, workspace=workspace), first,
                       shard=(0, 2))
        assert [s.index for s in part] == [0, 2, 4, 6]
        _search(vot.OneStepPruningRunner(model, workspace=workspace), second, shard=(1, 2))
        merged = _search(vot.OneStepPruningRunner(model, workspace=workspace), CountingEval(output_energy))
        assert first.calls == second.calls == N // 2 and len(merged) == N


def _worker(workspace, log, sleep, num_subnets, shard=None, barrier=None):
    args = [sys.executable, WORKER, workspace, log, str(sleep), str(num_subnets)]
    if shard:
        args.append(f"--shard={shard[0]}/{shard[1]}")
    if barrier:
        args.append(f"--barrier={barrier}")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class TestProcesses:

    def test_killed_search_resumes_and_equals_an_uninterrupted_one(self, model, searched,
                                                                  tmp_path):
        workspace, log = str(tmp_path / "ws"), str(tmp_path / "calls.log")
        proc = _worker(workspace, log, 0.3, N)
        deadline = time.time() + 120
        while len(logged_calls(log)) < 3 and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = len(logged_calls(log))
        assert 3 <= killed_at < N
        resumed = _worker(workspace, log, 0.0, N)
        assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()[-2000:]
        assert len(logged_calls(log)) - killed_at <= N - killed_at + 1  # at most the one in flight
        runner, uninterrupted = searched
        result = _search(vot.OneStepPruningRunner(model, workspace=workspace), CountingEval(output_energy))
        assert [(s.index, s.widths, s.flops_reduction) for s in result] == \
            [(s.index, s.widths, s.flops_reduction) for s in uninterrupted]
        np.testing.assert_allclose([s.score for s in result],
                                   [s.score for s in uninterrupted], rtol=1e-5)

    def test_two_processes_score_each_candidate_once(self, tmp_path):
        workspace, log = str(tmp_path / "ws"), str(tmp_path / "calls.log")
        start_together(tmp_path, lambda barrier: _worker(workspace, log, 0.2, N,
                                                         barrier=barrier), 2)
        calls = logged_calls(log)
        assert len(calls) == N and len(set(calls)) == 2


@pytest.fixture(scope="module")
def runner(model, tmp_path_factory):
    return vot.OneStepPruningRunner(model, workspace=str(tmp_path_factory.mktemp("ws")))


class TestErrors:

    @pytest.mark.parametrize("kwargs, message", [
        ({"ratio": 1.5}, "Invalid `ratio`"),
        ({"ratio": 0.0}, "Invalid `ratio`"),
        ({"eval_fn": None}, "Invalid `eval_fn`"),
        ({"num_subnets": 0}, "Invalid `num_subnets`"),
        ({"calibration_steps": -1}, "Invalid `calibration_steps`"),
        ({"seed": -2}, "Invalid `seed`"),
        ({"shard": (2, 2)}, "Invalid `shard`"),
        ({"mode": "up"}, "Invalid `mode`"),
        ({"channel_divisible": 0}, "Invalid `channel_divisible`"),
        ({"channel_divisible": "fast"}, "Invalid `channel_divisible`"),
        ({"criterion": "l7"}, "Invalid `criterion`"),
        ({"excludes": ["nope"]}, "No layer named 'nope'"),
    ])
    def test_bad_arguments_are_named_and_nothing_is_written(self, runner, kwargs, message):
        args = {"ratio": 0.5, "eval_fn": output_energy, "calibration_data": CALIBRATION,
                "num_subnets": 2, "verbose": 0, **kwargs}
        with pytest.raises(ValueError, match=message):
            runner.search(**args)
        assert not os.path.exists(os.path.join(runner.workspace, "one_step"))

    def test_prune_before_search_says_what_to_do(self, runner):
        with pytest.raises(ValueError, match=r"call runner.search\("):
            runner.prune()

    def test_unscored_index_is_refused(self, searched):
        runner, _ = searched
        with pytest.raises(ValueError, match=f"Invalid `index`.*0 to {N - 1}"):
            runner.prune(index=N + 5)

    def test_eval_fn_error_keeps_finished_candidates(self, tmp_path):
        runner = vot.OneStepPruningRunner(small_resnet(), workspace=str(tmp_path))
        calls = []

        def flaky(m):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("data loader died")
            return output_energy(m)

        with pytest.raises(vot.AnalysisError, match="data loader died.*candidate subnet 2"):
            _search(runner, flaky, num_subnets=4)
        evaluate = CountingEval(output_energy)
        assert len(_search(runner, evaluate, num_subnets=4)) == 4 and evaluate.calls == 2

    def test_dataset_and_calibration_fn_inputs(self, model, tmp_path):
        runner = vot.OneStepPruningRunner(model, workspace=str(tmp_path))
        dataset = tf.data.Dataset.from_tensor_slices((CALIBRATION, np.zeros(48))).batch(16)
        a = runner.search(0.5, output_energy, dataset, calibration_steps=2, num_subnets=2,
                          channel_divisible=1, verbose=0)
        b = runner.search(0.5, output_energy,
                          lambda m: [m(CALIBRATION[i:i + 16], training=True) for i in (0, 16)],
                          num_subnets=2, channel_divisible=1, verbose=0)
        np.testing.assert_allclose([s.score for s in a], [s.score for s in b], rtol=1e-5)

    def test_model_without_prunable_groups_is_refused(self, tmp_path):
        x = keras.Input((4,))
        runner = vot.OneStepPruningRunner(keras.Model(x, keras.layers.Dense(2)(x)),
                                          workspace=str(tmp_path))
        with pytest.raises(ValueError, match="no prunable channel group"):
            runner.search(0.5, lambda m: 0.0, np.zeros((4, 4), "float32"), verbose=0)
