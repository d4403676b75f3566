"""Specification of `ana` run by several processes (or machines) on one workspace.

Every process writes only its own result file and claims each step before
evaluating it, so: a killed run resumes; concurrent runs, with the same grid
or different grids, never lose each other's steps and never evaluate a step
twice; shards are merged on read; a claim of a dead process does not block.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tf_keras as keras

import vai_optimizer_tf as vot
from tests import process_utils
from tests.small_models import small_resnet
from vai_optimizer_tf.utils import step_claims
from vai_optimizer_tf.analysis.analysis_store import AnalysisStore
from vai_optimizer_tf.analysis.sensitivity_cache import BASELINE, SensitivityCache
from vai_optimizer_tf.utils.step_claims import StepClaims
from vai_optimizer_tf.cli.main import main as cli_main

RATIOS = (0.25, 0.5, 0.75)
GROUPS = 4  # prunable groups of small_resnet()
N_STEPS = 1 + GROUPS * len(RATIOS)
WORKER = os.path.join(os.path.dirname(__file__), "ana_worker.py")
X = np.random.RandomState(1).rand(16, 16, 16, 3).astype("float32")


def output_energy(model):
    """The metric the worker processes use: mean squared output on fixed inputs."""
    return float(np.mean(np.asarray(model(X, training=False)) ** 2))


def CountingEval(fn=output_energy):  # noqa: N802  (reads as the class it returns)
    return process_utils.CountingEval(fn)


@pytest.fixture(scope="module")
def model():
    return small_resnet()


def result_files(workspace):
    folder = os.path.join(workspace, "ana")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.startswith("sensitivity-") and f.endswith(".json"))


def steps_in(path):
    with open(path) as f:
        saved = json.load(f)
    return (saved["baseline"] is not None) + sum(len(v) for v in saved["results"].values())


def _worker(workspace, log, sleep, shard=None, ratios=None, barrier=None):
    args = [sys.executable, WORKER, workspace, log, str(sleep)]
    if shard:
        args.append(f"--shard={shard[0]}/{shard[1]}")
    if ratios:
        args.append("--ratios=" + ",".join(str(r) for r in ratios))
    if barrier:
        args.append(f"--barrier={barrier}")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


_calls = process_utils.logged_calls


def _start_together(tmp_path, workspace, log, sleep, configs):
    """Starts one worker per config and releases them at once, when all are ready."""
    return process_utils.start_together(tmp_path, [
        (lambda barrier, c=config: _worker(workspace, log, sleep, barrier=barrier, **c))
        for config in configs], len(configs))


class TestProcesses:

    def test_sigkilled_run_resumes_without_repeating_finished_steps(self, tmp_path):
        workspace, log = str(tmp_path / "ws"), str(tmp_path / "calls.log")
        proc = _worker(workspace, log, sleep=0.3)
        deadline = time.time() + 120
        while len(_calls(log)) < 5 and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = len(_calls(log))
        assert 5 <= killed_at < N_STEPS
        (path,) = result_files(workspace)
        finished = steps_in(path)  # the file is whole: written atomically
        # The killed process's claim on the step in flight must not block the rerun.
        resumed = _worker(workspace, log, sleep=0.0)
        assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()[-2000:]
        # Only the step in flight when killed (if any) is repeated.
        assert len(_calls(log)) - killed_at == N_STEPS - finished
        assert finished >= killed_at - 1
        again = CountingEval()
        vot.IterativePruningRunner(small_resnet(), workspace=workspace).ana(
            again, ratios=RATIOS, verbose=0)
        assert again.calls == 0

    def test_two_processes_on_one_grid_evaluate_each_step_once(self, tmp_path):
        workspace, log = str(tmp_path / "ws"), str(tmp_path / "calls.log")
        _start_together(tmp_path, workspace, log, 0.2, [{}, {}])
        calls = _calls(log)
        assert len(calls) == N_STEPS
        assert len(set(calls)) == 2  # both processes did part of the work
        files = result_files(workspace)
        assert len(files) == 2 and sum(steps_in(f) for f in files) == N_STEPS

    def test_two_processes_with_different_grids_lose_nothing(self, model, tmp_path):
        workspace, log = str(tmp_path / "ws"), str(tmp_path / "calls.log")
        _start_together(tmp_path, workspace, log, 0.1,
                        [{"ratios": RATIOS}, {"ratios": (0.5, 0.6)}])
        # Baseline and the 0.5 steps are shared by both grids and evaluated once.
        assert len(_calls(log)) == 1 + GROUPS * 3 + GROUPS * 1
        runner = vot.IterativePruningRunner(model, workspace=workspace)
        for grid in (RATIOS, (0.5, 0.6), (0.25, 0.5, 0.6, 0.75)):
            again = CountingEval()
            cache = runner.ana(again, ratios=grid, verbose=0)
            assert again.calls == 0 and not cache.missing_steps()

    def test_two_shards_split_the_steps_and_prune_merges_them(self, model, tmp_path):
        workspace, log = str(tmp_path / "ws"), str(tmp_path / "calls.log")
        _start_together(tmp_path, workspace, log, 0.0,
                        [{"shard": (0, 2)}, {"shard": (1, 2)}])
        assert len(_calls(log)) == N_STEPS
        assert len(result_files(workspace)) == 2
        runner = vot.IterativePruningRunner(model, workspace=workspace)
        assert runner.merge_analysis(ratios=RATIOS, verbose=0).missing_steps() == []
        assert isinstance(runner.prune(ratio=0.3, channel_divisible=1), keras.Model)
        merged = CountingEval()
        runner.ana(merged, ratios=RATIOS, verbose=0)
        assert merged.calls == 0


class TestShardsInProcess:

    def test_merge_reports_the_steps_of_the_shard_that_did_not_run(self, model, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        share = runner.ana(output_energy, ratios=RATIOS, shard=(0, 2), verbose=0)
        names = [g.name for g in runner.prunable_groups]
        steps = [(BASELINE, 0.0)] + [(g, r) for g in names for r in RATIOS]
        assert share.missing_steps() == steps[1::2]
        assert runner.merge_analysis(ratios=RATIOS, verbose=0).missing_steps() == steps[1::2]
        assert not (tmp_path / "ana" / "sensitivity.csv").exists()
        runner.ana(output_energy, ratios=RATIOS, shard=(1, 2), verbose=0)
        merged = runner.merge_analysis(ratios=RATIOS, verbose=0)
        assert merged.missing_steps() == []
        with open(tmp_path / "ana" / "sensitivity.csv") as f:
            assert [line.split(",")[0] for line in f.read().split()][1:] == names


class TestClaims:

    def _claims(self, tmp_path, writer, host=None):
        claims = StepClaims(str(tmp_path / "claims"), writer)
        if host is not None:
            claims.host = host
        return claims

    def test_only_one_writer_gets_a_step(self, tmp_path):
        a, b = self._claims(tmp_path, "a"), self._claims(tmp_path, "b")
        assert a.try_claim("g0-0.5000")
        assert not b.try_claim("g0-0.5000")
        assert b.try_claim("g1-0.5000")

    def test_live_claim_of_another_host_blocks_until_it_times_out(self, tmp_path):
        other = self._claims(tmp_path, "elsewhere-1-abc", host="elsewhere")
        assert other.try_claim("baseline")
        mine = self._claims(tmp_path, "mine")
        assert not mine.try_claim("baseline")
        old = time.time() - step_claims.CLAIM_TIMEOUT - 60
        os.utime(other.held, (old, old))
        assert mine.try_claim("baseline")
        assert os.path.basename(mine.held) == "baseline.1.claim"
        assert os.path.exists(other.held)  # another process's claim is never deleted

    def test_claim_of_a_dead_process_on_this_host_is_stale_at_once(self, tmp_path):
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        folder = tmp_path / "claims"
        folder.mkdir()
        (folder / "baseline.0.claim").write_text(json.dumps(
            {"host": step_claims._this_host(), "pid": dead.pid, "writer": "dead"}))
        assert self._claims(tmp_path, "mine").try_claim("baseline")

    def test_heartbeat_releases_the_claim_on_exit(self, tmp_path):
        claims = self._claims(tmp_path, "a")
        with claims.heartbeat():
            assert claims.try_claim("baseline")
            path = claims.held
        assert not os.path.exists(path)


def test_a_step_another_process_holds_is_waited_for_not_repeated(model, tmp_path):
    runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
    key = runner._analyzer.key("l1", "max")
    other = AnalysisStore(str(tmp_path / "ana"), key, writer="elsewhere-7-abcdef")
    claims = StepClaims(other.claims_folder, other.writer)
    claims.host = "elsewhere"
    assert claims.try_claim("baseline")
    rest_done = threading.Event()

    def other_process():
        rest_done.wait(timeout=120)
        time.sleep(0.3)  # the waiting run polls meanwhile
        cache = SensitivityCache(key)
        cache.record(BASELINE, 0.0, 123.0, time=time.time())
        other.save(cache)
        claims.release()

    thread = threading.Thread(target=other_process)
    thread.start()

    def evaluate(m):
        evaluate.calls += 1
        if evaluate.calls == N_STEPS - 1:
            rest_done.set()
        return output_energy(m)

    evaluate.calls = 0
    cache = runner.ana(evaluate, ratios=RATIOS, verbose=0)
    thread.join()
    assert evaluate.calls == N_STEPS - 1
    assert cache.baseline == 123.0 and not cache.missing_steps()


def _tiny_model_file(folder):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="tiny")
    model.save(folder / "base.keras")


class TestCli:

    def _run(self, capsys, *args):
        status = cli_main(["vai_p_tf2", "--action=ana", "--model=base.keras", "--workspace=ws",
                           "--dataset=mnist_5k", "--eval_samples=64", "--ana_ratios=0.25,0.5",
                           *args])
        out, err = capsys.readouterr()
        return status, out, err

    def test_shards_then_merge(self, tmp_path, monkeypatch, capsys):
        monkeypatch.chdir(tmp_path)
        _tiny_model_file(tmp_path)
        status, out, err = self._run(capsys, "--shard=0/2")
        assert status == 0, err
        assert "3 of 5 steps" in out and "--merge" in out
        status, _, err = self._run(capsys, "--merge")
        assert status == 1
        assert "2 of 5 steps missing" in err and "conv1 at 25%" in err
        assert err.count("\n") == 1
        status, _, err = self._run(capsys, "--shard=1/2")
        assert status == 0, err
        status, out, err = self._run(capsys, "--merge")
        assert status == 0, err
        assert "conv2" in out and "-50%" in out
        assert (tmp_path / "ws" / "ana" / "sensitivity.csv").exists()

    @pytest.mark.parametrize("value", ["2/2", "1", "a/b", "-1/2", "0/0"])
    def test_bad_shard_is_a_flag_error(self, tmp_path, monkeypatch, capsys, value):
        monkeypatch.chdir(tmp_path)
        status, _, err = self._run(capsys, f"--shard={value}")
        assert status == 2
        assert "--shard" in err and "i/n" in err
