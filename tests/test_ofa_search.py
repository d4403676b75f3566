"""Specification of the once-for-all search (`OFAPruner.search`).

Every test runs on a tf_keras supernet and on a Keras 3 one (the module's
`keras` fixture), each searched once and shared.
"""

import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import vai_optimizer_tf as vot
from tests.flavours import FLAVOURS, flavour_name
from tests.process_utils import CountingEval, logged_calls, start_together
from tests.small_models import small_mobilenet

WORKER = os.path.join(os.path.dirname(__file__), "ofa_search_worker.py")
X = np.random.RandomState(2).rand(48, 12, 12, 3).astype("float32")
CALIBRATION = X[16:]
TARGETS = (0.3, 0.5, 0.7)
TOLERANCE = 0.02


def output_mean(model):
    """A deterministic score that differs between configurations."""
    return float(np.mean(np.asarray(model(X[:16], training=False))[:, 0]))


def build(workspace, keras):
    pruner = vot.OFAPruner(small_mobilenet(keras=keras), workspace=workspace)
    supernet = pruner.ofa_model(expand_ratios=(0.25, 0.5, 0.75, 1.0), kernel_sizes=(3,),
                                channel_divisible=4)
    return pruner, supernet


def run_search(pruner, eval_fn=output_mean, targets=TARGETS, **kwargs):
    kwargs.setdefault("population", 6)
    kwargs.setdefault("generations", 3)
    return pruner.search(eval_fn, CALIBRATION, flops_targets=targets, calibration_steps=2,
                         batch_size=16, tolerance=TOLERANCE, verbose=0, **kwargs)


@pytest.fixture(scope="module", params=list(FLAVOURS))
def keras(request):
    """The Keras flavour of the module's fixtures: tf_keras, then Keras 3."""
    return FLAVOURS[request.param]


@pytest.fixture(scope="module")
def searched(keras, tmp_path_factory):
    pruner, supernet = build(str(tmp_path_factory.mktemp("ws")), keras)
    counting = CountingEval(output_mean)
    return pruner, supernet, run_search(pruner, counting), counting


def _store_records(workspace):
    records = {}
    for path in glob.glob(os.path.join(workspace, "ofa", "configs-*.json")):
        with open(path) as f:
            records.update(json.load(f)["subnets"])
    return records


class TestResults:

    def test_results_respect_the_flops_bands(self, searched):
        pruner, supernet, front, _ = searched
        baseline = vot.stat(pruner.model).flops
        assert sorted(front) == list(TARGETS)
        for target, subnet in front.items():
            assert abs(subnet.flops_reduction - target) <= TOLERANCE
            static = pruner.get_static_subnet(subnet)
            assert 1 - vot.stat(static).flops / baseline == pytest.approx(
                subnet.flops_reduction, abs=1e-9)

    def test_scores_are_eval_fn_of_the_static_subnet_after_adaptive_bn(self, searched):
        pruner, _, front, _ = searched
        for subnet in front.values():
            static = pruner.get_static_subnet(subnet, calibration_data=CALIBRATION,
                                              calibration_steps=2, batch_size=16)
            assert output_mean(static) == pytest.approx(subnet.score, rel=1e-5)

    def test_each_result_is_the_best_scored_configuration_in_its_band(self, searched):
        pruner, supernet, front, _ = searched
        records = _store_records(pruner.workspace)
        for target, subnet in front.items():
            in_band = [r["score"] for r in records.values()
                       if abs(r["flops_reduction"] - target) <= TOLERANCE]
            assert subnet.score == max(in_band)

    def test_reports(self, searched):
        pruner, supernet, front, _ = searched
        [report] = glob.glob(os.path.join(pruner.workspace, "ofa", "report-*.csv"))
        with open(report) as f:
            rows = list(csv.DictReader(f))
        assert [float(r["target"]) for r in rows] == list(TARGETS)
        for row in rows:
            subnet = front[float(row["target"])]
            assert float(row["score"]) == subnet.score
            assert all(int(row[g.name]) == subnet.config.widths[g.name]
                       for g in supernet.space.groups)
        assert os.path.getsize(report[:-4] + ".png") > 0


class TestCaching:

    def test_every_configuration_is_scored_once(self, searched):
        pruner, _, _, counting = searched
        assert counting.calls == len(_store_records(pruner.workspace))

    def test_the_same_search_again_is_read_back(self, searched):
        pruner, _, front, _ = searched
        counting = CountingEval(output_mean)
        assert run_search(pruner, counting) == front
        assert counting.calls == 0

    def test_a_resumed_search_equals_an_uninterrupted_one(self, keras, searched, tmp_path):
        _, _, front, uninterrupted = searched
        pruner, _ = build(str(tmp_path), keras)

        def failing_after(count):
            calls = []

            def eval_fn(model):
                calls.append(1)
                if len(calls) > count:
                    raise RuntimeError("killed")
                return output_mean(model)
            return eval_fn, calls

        eval_fn, _ = failing_after(7)
        with pytest.raises(vot.AnalysisError, match="killed"):
            run_search(pruner, eval_fn)
        counting = CountingEval(output_mean)
        assert run_search(pruner, counting) == front
        assert counting.calls == uninterrupted.calls - 7

    def test_two_processes_share_one_search(self, keras, searched, tmp_path):
        _, _, front, uninterrupted = searched
        workspace, log = str(tmp_path / "ws"), str(tmp_path / "calls.log")
        outs = [str(tmp_path / f"out{i}.json") for i in range(2)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

        def start(out):
            return lambda barrier: subprocess.Popen(
                [sys.executable, WORKER, flavour_name(keras), workspace, log, out,
                 f"--barrier={barrier}"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        start_together(tmp_path, [start(out) for out in outs], 2)
        calls = logged_calls(log)
        assert len(calls) == uninterrupted.calls and len(set(calls)) == 2
        expected = {str(t): s.get_config() for t, s in front.items()}
        for out in outs:
            with open(out) as f:
                assert json.load(f) == expected


class TestErrors:

    def test_a_target_no_configuration_reaches(self, searched):
        pruner, _, _, _ = searched
        with pytest.raises(ValueError, match=r"Invalid FLOPs target 0.95: .* reduce FLOPs by "
                                             r"0.0% \(largest\) to"):
            run_search(pruner, targets=(0.95,))

    @pytest.mark.parametrize("kwargs, message", [
        ({"targets": ()}, "Invalid `flops_targets`"),
        ({"targets": (1.2,)}, "Invalid `flops_targets`"),
        ({"population": 0}, "Invalid `population`"),
        ({"generations": 0}, "Invalid `generations`"),
        ({"seed": -1}, "Invalid `seed`"),
        ({"mode": "avg"}, "Invalid `mode`"),
        ({"eval_fn": None}, "Invalid `eval_fn`"),
        ({"mutation_probability": 1.5}, "Invalid `mutation_probability`"),
    ])
    def test_bad_arguments(self, searched, kwargs, message):
        pruner, _, _, _ = searched
        with pytest.raises(ValueError, match=message):
            run_search(pruner, **kwargs)
