"""The latency table's key, cache and reuse, and latency-targeted pruning on a cached table.

Nothing here is timed: tables are filled by a synthetic `measure` (a known
function of the widths), and any call into the timer fails the test.
"""

import json
import os

import numpy as np
import pytest
import tf_keras

import vai_optimizer_tf as vot
from vai_optimizer_tf import errors
from vai_optimizer_tf.planning import latency_timer
from vai_optimizer_tf.planning.divisibility import (auto_channel_divisible,
                                                    resolve_channel_divisible)
from vai_optimizer_tf.planning.latency_cost import latency_requests
from vai_optimizer_tf.planning.latency_table import LatencyTable, key_id, table_key


@pytest.fixture(autouse=True)
def _no_timing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test timed something")
    for name in ("time_calls", "time_ratio", "_measure"):
        monkeypatch.setattr(latency_timer, name, refuse)
    monkeypatch.setattr("vai_optimizer_tf.planning.latency_session.time_calls", refuse)
    monkeypatch.setattr("vai_optimizer_tf.planning.latency_session.time_ratio", refuse)


def _model(keras=tf_keras):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(64, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(128, 3, padding="same", name="c2")(x)
    x = keras.layers.ReLU(name="r2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="fc")(x))


class Synthetic:
    """Seconds = 10 us + 1 us per (input x output) channel pair; counts the points asked."""

    def __init__(self):
        self.asked = []

    def seconds(self, a, b):
        return 1e-5 + 1e-6 * a * b

    def __call__(self, unit, points):
        self.asked.extend((unit.nodes[0], p) for p in points)
        return [self.seconds(a, b) for a, b in points]


class TestKey:

    def test_every_part_of_the_key_separates_tables(self):
        base = dict(device="tf", batch_size=1, threads=2, tf_version="2.21.0", cpu="cpu A")
        ids = {key_id(table_key(**base))}
        for change in ({"device": "tflite"}, {"batch_size": 32}, {"threads": 4},
                       {"tf_version": "2.20.0"}, {"cpu": "cpu B"}):
            ids.add(key_id(table_key(**{**base, **change})))
        assert len(ids) == 6
        assert key_id(table_key(**base)) == key_id(table_key(**dict(base)))
        assert key_id(table_key(**base)).startswith("tf-b1-")

    def test_the_default_key_is_this_machine(self):
        import tensorflow as tf
        key = table_key("tflite", 8)
        assert key["tf_version"] == tf.__version__
        assert key["threads"] == os.cpu_count()
        assert key["cpu"]

    def test_bad_device_is_refused(self):
        with pytest.raises(ValueError, match="Invalid `device`"):
            table_key("gpu", 1)


class TestCache:

    @pytest.fixture()
    def setup(self, tmp_path):
        runner = vot.IterativePruningRunner(_model(), workspace=str(tmp_path))
        deps = runner._deps
        _, _, requests = latency_requests(deps, runner._width_flops(), deps.prunable_groups, 8)
        return tmp_path, requests

    def test_points_are_measured_once_and_reused_by_other_processes(self, setup):
        folder, requests = setup
        key = table_key("tf", 4, threads=2, tf_version="x", cpu="y")
        first = Synthetic()
        table = LatencyTable(folder / "latency", key)
        asked = sum(len(points) for _, points in table.missing(requests).values())
        assert table.fill(requests, first, verbose=0) == len(first.asked) > 0
        # A new process (another writer) of the same key measures nothing.
        again = Synthetic()
        other = LatencyTable(folder / "latency", key)
        assert other.fill(requests, again, verbose=0) == 0 and again.asked == []
        unit = next(iter(requests))
        point = requests[unit][0]
        assert other.get(unit.signature, point) == pytest.approx(first.seconds(*point))
        # Another key (batch size) is a table of its own.
        third = Synthetic()
        LatencyTable(folder / "latency", {**key, "batch_size": 8}).fill(requests, third,
                                                                         verbose=0)
        assert len(third.asked) == len(first.asked)
        assert asked == len(first.asked)

    def test_units_of_one_shape_are_measured_once(self, tmp_path):
        keras = tf_keras
        inputs = keras.Input((8, 8, 16))
        x = inputs
        for i in range(4):
            x = keras.layers.Conv2D(16, 3, padding="same", name=f"conv{i}")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(10)(x))
        runner = vot.IterativePruningRunner(model, workspace=str(tmp_path))
        deps = runner._deps
        _, _, requests = latency_requests(deps, runner._width_flops(), deps.prunable_groups, 4)
        measure = Synthetic()
        LatencyTable(tmp_path, table_key("tf", 1)).fill(requests, measure, verbose=0)
        heads = {head for head, _ in measure.asked}
        assert len(heads & {"conv1", "conv2", "conv3"}) == 1

    def test_concurrent_writers_merge_and_files_are_whole_json(self, setup):
        folder, requests = setup
        key = table_key("tflite", 1)
        units = list(requests)
        a, b = LatencyTable(folder / "latency", key), LatencyTable(folder / "latency", key)
        a.fill({units[0]: requests[units[0]]}, Synthetic(), verbose=0)
        b.fill({units[1]: requests[units[1]]}, Synthetic(), verbose=0)
        reader = LatencyTable(folder / "latency", key)
        assert reader.missing({u: requests[u] for u in units[:2]}) == {}
        files = os.listdir(reader.folder)
        assert sorted(files) == sorted([os.path.basename(a.own_path),
                                        os.path.basename(b.own_path)])
        for name in files:
            with open(os.path.join(reader.folder, name), encoding="utf-8") as f:
                assert json.load(f)["key"] == key

    def test_a_unit_that_cannot_be_timed_is_recorded_not_retried(self, setup):
        folder, requests = setup
        key = table_key("tf", 1)

        def broken(unit, points):
            raise ValueError("cannot rebuild")
        table = LatencyTable(folder / "latency", key)
        table.fill(requests, broken, verbose=0)
        assert table.missing(requests) == {}
        assert "cannot rebuild" in table.error(next(iter(requests)).signature)

    def test_a_corrupted_file_names_itself_and_the_fix(self, setup):
        folder, requests = setup
        key = table_key("tf", 1)
        table = LatencyTable(folder / "latency", key)
        os.makedirs(table.folder)
        bad = os.path.join(table.folder, "other-writer.json")
        with open(bad, "w", encoding="utf-8") as f:
            f.write("{not json")
        with pytest.raises(errors.AnalysisCacheError, match="other-writer.json.*Delete it"):
            table.fill(requests, Synthetic(), verbose=0)


def _prefill(runner, device, batch_size, divisible, overhead=1.1):
    """Fills the runner's latency table synthetically, as a benchmark would have.

    The baseline "measures" `overhead` x the sum of its units at full width.
    """
    session = runner.latency_session(device, batch_size, verbose=0)
    deps = runner._deps
    units, _, requests = latency_requests(deps, runner._width_flops(), deps.prunable_groups,
                                          divisible)
    measure = Synthetic()
    session.table.fill(requests, measure, verbose=0)
    baseline = overhead * sum(measure.seconds(u.in_width, u.out_width) for u in units)
    session.table.set_model_seconds(runner.model_digest, baseline)
    return baseline


class TestPruneToALatency:

    def test_prune_latency_without_analysis_meets_the_predicted_budget(self, keras, tmp_path):
        runner = vot.IterativePruningRunner(_model(keras), workspace=str(tmp_path))
        baseline = _prefill(runner, "tflite", 2, 8)
        sparse = runner.prune(latency=0.6, device="tflite", batch_size=2, channel_divisible=8,
                              max_measurements=0, verbose=0)
        spec = vot.PruningSpec.load(runner.latest_spec_path())
        meta = spec.metadata
        assert meta["target_latency"] == 0.6 and meta["measured_latency"] is None
        assert abs(meta["predicted_latency"] / 0.6 - 1) <= 0.07
        assert (meta["latency_device"], meta["latency_batch_size"]) == ("tflite", 2)
        assert all(len(g.kept) % 8 == 0 for g in spec.groups.values())
        assert spec.groups, "something was pruned"
        assert sparse.count_params() == runner.model.count_params()
        text = runner.summary(print_fn=lambda _: None)
        assert "Latency: target 60.0%, predicted" in text and "not measured" in text
        stats = runner.stat(spec)
        assert stats.latency.fraction == pytest.approx(meta["predicted_latency"])
        assert stats.latency.seconds == pytest.approx(baseline * meta["predicted_latency"])

    def test_uniform_spec_latency_prunes_every_group_alike(self, tmp_path):
        runner = vot.IterativePruningRunner(_model(), workspace=str(tmp_path))
        _prefill(runner, "tf", 1, 8)
        spec = runner.uniform_spec(latency=0.7, channel_divisible=8, max_measurements=0,
                                   verbose=0)
        ratios = {round(1 - len(g.kept) / g.width, 6) for g in spec.groups.values()}
        assert abs(spec.metadata["predicted_latency"] / 0.7 - 1) <= 0.07
        assert len(spec.groups) == len(runner.prunable_groups)
        assert len(ratios) <= 2   # one fraction, rounded to multiples of 8 per width

    def test_stat_predicts_any_spec_from_the_cached_table(self, tmp_path):
        runner = vot.IterativePruningRunner(_model(), workspace=str(tmp_path))
        _prefill(runner, "tf", 1, 8)
        spec = runner.uniform_spec(0.5, channel_divisible=8)
        stats = runner.stat(spec, device="tf", batch_size=1)
        assert 0 < stats.latency.fraction < 1
        assert runner.stat(device="tf").latency.fraction == pytest.approx(1.0)
        assert "latency" in repr(stats)

    def test_arguments_are_checked_first(self, tmp_path):
        runner = vot.IterativePruningRunner(_model(), workspace=str(tmp_path))
        with pytest.raises(ValueError, match="Invalid `latency`"):
            runner.prune(latency=1.5)
        with pytest.raises(ValueError, match="only one of"):
            runner.prune(ratio=0.5, latency=0.5)
        with pytest.raises(ValueError, match="Invalid `device`"):
            runner.prune(latency=0.5, device="gpu")
        with pytest.raises(ValueError, match="only one of `sparsity` and `latency`"):
            runner.uniform_spec(0.5, latency=0.5)
        assert not os.path.exists(tmp_path / "latency")


class TestAutoDivisible:

    def test_auto_is_16_with_avx512_and_8_elsewhere(self):
        assert auto_channel_divisible({"avx2", "avx512f"}) == 16
        assert auto_channel_divisible({"avx2", "fma"}) == 8
        assert auto_channel_divisible(set()) == 8
        assert resolve_channel_divisible("auto") == auto_channel_divisible()
        assert resolve_channel_divisible(4) == 4

    @pytest.mark.parametrize("value", [0, -8, 2.5, "16", True, None])
    def test_bad_values_are_refused(self, value):
        with pytest.raises(ValueError, match="positive integer or 'auto'"):
            resolve_channel_divisible(value)

    def test_the_default_rounds_to_the_cpu_multiple(self, tmp_path):
        runner = vot.IterativePruningRunner(_model(), workspace=str(tmp_path))
        spec = runner.uniform_spec(0.5)
        multiple = auto_channel_divisible()
        assert spec.channel_divisible == multiple
        assert all(len(g.kept) % multiple == 0 for g in spec.groups.values())
        assert np.all([len(g.kept) < g.width for g in spec.groups.values()])


class TestOneStepToALatency:

    def test_every_candidate_is_within_one_point_of_the_latency_target(self, tmp_path):
        model = _model()
        runner = vot.OneStepPruningRunner(model, workspace=str(tmp_path))
        _prefill(runner, "tflite", 1, 8)
        x = np.random.RandomState(0).rand(32, 8, 8, 3).astype("float32")
        subnets = runner.search(latency=0.6, device="tflite", latency_batch_size=1,
                                eval_fn=lambda m: float(np.mean(np.asarray(m(x)) ** 2)),
                                calibration_data=x, calibration_steps=1, num_subnets=4,
                                channel_divisible=8, verbose=0)
        cost = runner.latency_cost("tflite", 1, channel_divisible=8, verbose=0)
        deps = runner._deps
        for s in subnets[1:]:
            predicted = cost.total({deps.group(n).id: w for n, w in s.widths.items()}) \
                / cost.baseline
            assert s.latency == pytest.approx(predicted)
            assert abs(predicted - 0.6) <= 0.01
            slim = runner.get_slim_model(runner.build_spec(s.widths, channel_divisible=8))
            assert s.flops_reduction == pytest.approx(
                1 - vot.stat(slim).flops / vot.stat(model).flops, abs=1e-9)
        runner.prune(index=2)
        meta = vot.PruningSpec.load(runner.latest_spec_path()).metadata
        assert meta["target_latency"] == 0.6 and meta["target_flops_reduction"] is None
        assert meta["predicted_latency"] == pytest.approx(subnets[2].latency, abs=1e-6)
        assert runner.latest_spec_path().endswith("one-step-latency-0.60.json")

    def test_exactly_one_target(self, tmp_path):
        runner = vot.OneStepPruningRunner(_model(), workspace=str(tmp_path))
        with pytest.raises(ValueError, match="Pass exactly one target"):
            runner.search(ratio=0.5, latency=0.5, eval_fn=lambda m: 0.0,
                          calibration_data=np.zeros((4, 8, 8, 3), "float32"))
