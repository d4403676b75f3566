"""Specification of the pruning callbacks: gradual pruning, TensorBoard summaries, slim export.

FLOPs reductions are measured with `vai_optimizer_tf.stat` on the slim model
built from the sparse model's masks (`runner.spec_from_model`), and that slim
model must compute the sparse model's outputs. Kept channels are also read
back from the weights: a pruned channel has an all-zero producer kernel.

The model is `small_resnet` (16x16 inputs) with four prunable groups: `stem`
(8 channels, shared by the residual adds), `b0_conv1` and `b1_conv1` (16) and
`expand` (32). 32 samples at batch 8 make 4 steps per epoch. The callbacks
are specified on tf_keras models; `TestKeras3Fit` checks that the same
callbacks drive Keras 3's `fit` too.
"""

import glob
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf
import keras as keras3
import tensorflow_model_optimization as tfmot
import tf_keras as keras

import vai_optimizer_tf as vot
from tests import model_utils
from tests.small_models import small_resnet

TOLERANCE = 1e-5
RATIO_POINTS = 0.02
PRODUCERS = ("stem", "b0_conv1", "b1_conv1", "expand")
STEPS_PER_EPOCH = 4


def polynomial(final=0.5, end_step=6):
    return tfmot.sparsity.keras.PolynomialDecay(0.0, final, begin_step=0, end_step=end_step,
                                                frequency=2)


@pytest.fixture(scope="module")
def data():
    rs = np.random.RandomState(1)
    return rs.uniform(-1, 1, (32, 16, 16, 3)).astype("float32"), rs.randint(0, 10, 32)


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """A runner whose workspace has no sensitivity analysis."""
    return vot.IterativePruningRunner(small_resnet(), workspace=str(tmp_path_factory.mktemp("ws")))


@pytest.fixture(scope="module")
def analysed_runner(tmp_path_factory):
    """A runner whose analysis says only pruning `expand` hurts the metric."""
    runner = vot.IterativePruningRunner(small_resnet(),
                                        workspace=str(tmp_path_factory.mktemp("ws_ana")))

    def eval_fn(model):  # 1 - the fraction of expand's filters that were zeroed
        kernel = model.get_layer("expand").kernel.numpy()
        return 1.0 - float(np.mean(np.all(kernel == 0, axis=(0, 1, 2))))

    runner.ana(eval_fn, ratios=(0.25, 0.5, 0.75), verbose=0)
    return runner


def unpruned_sparse_model(runner):
    sparse = runner.get_sparse_model(runner.uniform_spec(0.0, channel_divisible=1))
    sparse.compile(keras.optimizers.Adam(0.01),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return sparse


def fit(model, data, callbacks, epochs=2, **kwargs):
    x, y = data
    return model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
                     callbacks=callbacks, **kwargs)


def slim_of(runner, sparse):
    return runner.get_slim_model(runner.spec_from_model(sparse), weights_from=sparse)


def measured_reduction(runner, model):
    """FLOPs reduction of `model` (a slim model) against the runner's model."""
    return 1.0 - vot.stat(model).flops / vot.stat(runner.model).flops


def assert_slim_equals_sparse(slim, sparse, x):
    assert model_utils.max_relative_difference(sparse, slim, x) <= TOLERANCE


def alive_from_weights(model):
    """Producer -> indices of output channels whose kernel is not all zero."""
    alive = {}
    for name in PRODUCERS:
        kernel = model.get_layer(name).kernel.numpy()
        alive[name] = tuple(np.nonzero(np.any(kernel != 0, axis=(0, 1, 2)))[0])
    return alive


def kept_from_masks(runner, model):
    """Producer -> kept channel indices, as the model's masks say."""
    spec = runner.spec_from_model(model)
    width = {g.name: g.width for g in runner.prunable_groups}
    return {name: tuple(int(k) for k in spec.groups[name].kept) if name in spec.groups
            else tuple(range(width[name])) for name in PRODUCERS}


class Recorder(keras.callbacks.Callback):
    """Records the kept channels, from the masks and from the weights, as training goes."""

    def __init__(self, runner, every_batch=False):
        super().__init__()
        self.runner = runner
        self.every_batch = every_batch
        self.records = []

    def _record(self, when):
        self.records.append((when, kept_from_masks(self.runner, self.model),
                             alive_from_weights(self.model)))

    def on_train_begin(self, logs=None):
        self._record(("begin",))

    def on_train_batch_end(self, batch, logs=None):
        if self.every_batch:
            self._record(("batch", self._epoch, batch))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self._record(("epoch", epoch))


def assert_nested(before, after):
    for name in PRODUCERS:
        assert set(after[name]) <= set(before[name]), f"{name}: a pruned channel came back"


class TestGradualChannelPruning:

    @pytest.mark.parametrize("make_schedule, frequency", [
        (lambda: polynomial(0.5, end_step=6), 100),
        (lambda: tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=4), 100),
        (lambda: (lambda step: min(0.5, step / 12)), 2),
    ], ids=["tfmot_polynomial_decay", "tfmot_constant_sparsity", "plain_callable"])
    def test_schedule_reaches_its_final_ratio(self, runner, data, make_schedule, frequency):
        sparse = unpruned_sparse_model(runner)
        pruning = vot.callbacks.GradualChannelPruning(runner, make_schedule(),
                                                      frequency=frequency, channel_divisible=1)
        fit(sparse, data, [pruning])

        slim = slim_of(runner, sparse)
        assert abs(measured_reduction(runner, slim) - 0.5) <= RATIO_POINTS
        assert_slim_equals_sparse(slim, sparse, data[0])

    @pytest.mark.parametrize("make_schedule, frequency", [
        (lambda: tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=9,
                                                      frequency=3), 100),
        (lambda: (lambda step: min(0.5, step / 18)), 3),
    ], ids=["tfmot_polynomial_decay", "plain_callable"])
    def test_steps_per_execution_does_not_skip_pruning_steps(self, runner, data, make_schedule,
                                                             frequency):
        # Python sees steps 4, 8, 12 and 16 only; the pruning steps are 3, 6, 9 (12, 15).
        sparse = unpruned_sparse_model(runner)
        sparse.compile(keras.optimizers.Adam(0.01),
                       keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       steps_per_execution=4)
        recorder = Recorder(runner)
        fit(sparse, data, [vot.callbacks.GradualChannelPruning(runner, make_schedule(),
                                                               frequency=frequency,
                                                               channel_divisible=1), recorder],
            epochs=4)

        sizes = [sum(len(k) for k in masks.values()) for _, masks, _ in recorder.records]
        assert sizes[1] < sizes[0], "nothing pruned in the first execution"
        slim = slim_of(runner, sparse)
        assert abs(measured_reduction(runner, slim) - 0.5) <= RATIO_POINTS
        assert_slim_equals_sparse(slim, sparse, data[0])

    def test_kept_sets_are_nested(self, runner, data):
        sparse = unpruned_sparse_model(runner)
        recorder = Recorder(runner)
        fit(sparse, data, [vot.callbacks.GradualChannelPruning(runner, polynomial(0.6, 14),
                                                               channel_divisible=1),
                           recorder], epochs=4)

        states = [masks for _, masks, _ in recorder.records]
        for (_, masks, alive) in recorder.records:
            assert masks == alive  # what the masks drop is exactly what is zero
        for before, after in zip(states, states[1:]):
            assert_nested(before, after)
        sizes = [sum(len(k) for k in state.values()) for state in states]
        assert sizes[0] == 8 + 16 + 16 + 32
        assert len(set(sizes)) == len(sizes), f"not pruned further each epoch: {sizes}"
        assert abs(measured_reduction(runner, slim_of(runner, sparse)) - 0.6) <= RATIO_POINTS

    def test_update_freq_epoch_prunes_only_at_epoch_ends(self, runner, data):
        sparse = unpruned_sparse_model(runner)
        recorder = Recorder(runner, every_batch=True)
        pruning = vot.callbacks.GradualChannelPruning(
            runner, lambda step: min(0.5, step / 24), frequency=1, update_freq="epoch",
            channel_divisible=1)
        fit(sparse, data, [pruning, recorder], epochs=3)

        by_epoch = {}
        for when, masks, alive in recorder.records:
            assert masks == alive
            if when[0] == "batch":
                by_epoch.setdefault(when[1], set()).add(tuple(sorted(masks.items())))
        assert all(len(states) == 1 for states in by_epoch.values()), "pruned within an epoch"
        per_epoch = [dict(next(iter(by_epoch[e]))) for e in range(3)]
        for before, after in zip(per_epoch, per_epoch[1:]):
            assert_nested(before, after)
            assert before != after
        # Schedule values at the epoch ends (steps 4, 8, 12): 1/6, 1/3, then 1/2.
        assert abs(measured_reduction(runner, slim_of(runner, sparse)) - 0.5) <= RATIO_POINTS

    def test_with_and_without_analysis(self, runner, analysed_runner, data):
        slims = {}
        for label, r in (("uniform", runner), ("analysed", analysed_runner)):
            sparse = unpruned_sparse_model(r)
            fit(sparse, data, [vot.callbacks.GradualChannelPruning(r, polynomial(0.5),
                                                                   channel_divisible=1)])
            slims[label] = slim_of(r, sparse)
            assert abs(measured_reduction(r, slims[label]) - 0.5) <= RATIO_POINTS
            assert_slim_equals_sparse(slims[label], sparse, data[0])

        widths = {label: {name: slim.get_layer(name).filters / runner.model.get_layer(name).filters
                          for name in PRODUCERS} for label, slim in slims.items()}
        assert widths["analysed"] != widths["uniform"]
        # Only pruning `expand` costs metric in the analysis: it keeps the largest share.
        analysed = widths["analysed"]
        assert all(analysed["expand"] > analysed[name] for name in PRODUCERS if name != "expand")
        assert analysed["expand"] > widths["uniform"]["expand"]

    def test_resume_from_checkpoint_continues_schedule_with_same_masks(self, runner, data,
                                                                       tmp_path):
        # PolynomialDecay to 0.5 at step 8: 0.4375 at step 4, where training stops.
        checkpoint = str(tmp_path / "ckpt" / "weights")
        first = unpruned_sparse_model(runner)
        fit(first, data, [vot.callbacks.GradualChannelPruning(runner, polynomial(0.5, 8),
                                                              channel_divisible=1),
                          keras.callbacks.ModelCheckpoint(checkpoint, save_weights_only=True)],
            epochs=1)
        masks_at_stop = kept_from_masks(runner, first)
        assert measured_reduction(runner, slim_of(runner, first)) < 0.5 - 2 * RATIO_POINTS

        resumed = unpruned_sparse_model(runner)
        resumed.load_weights(checkpoint)
        assert resumed.optimizer.iterations.numpy() == STEPS_PER_EPOCH
        recorder = Recorder(runner)
        fit(resumed, data, [vot.callbacks.GradualChannelPruning(runner, polynomial(0.5, 8),
                                                                channel_divisible=1),
                            recorder], epochs=2, initial_epoch=1)

        _, masks_at_start, alive_at_start = recorder.records[0]
        assert masks_at_start == masks_at_stop
        assert alive_at_start == masks_at_stop
        assert resumed.optimizer.iterations.numpy() == 2 * STEPS_PER_EPOCH
        assert_nested(masks_at_stop, kept_from_masks(runner, resumed))
        slim = slim_of(runner, resumed)
        assert abs(measured_reduction(runner, slim) - 0.5) <= RATIO_POINTS
        assert_slim_equals_sparse(slim, resumed, data[0])


def read_scalars(log_dir):
    """Tag -> list of (step, value), from every event file under `log_dir`."""
    scalars = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"),
                                 recursive=True)):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                number = (float(tf.make_ndarray(value.tensor)) if value.HasField("tensor")
                          else value.simple_value)
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


class TestChannelPruningSummaries:

    @pytest.mark.parametrize("update_freq, steps_per_execution, steps", [
        ("epoch", 1, [4, 8]), (2, 1, [2, 4, 6, 8]), (3, 4, [4, 8])],
        ids=["epoch", "every_2_steps", "every_3_steps_with_4_steps_per_execution"])
    def test_writes_flops_reduction_params_and_group_widths(self, runner, data, tmp_path,
                                                            update_freq, steps_per_execution,
                                                            steps):
        log_dir = str(tmp_path / "logs")
        sparse = unpruned_sparse_model(runner)
        sparse.compile(sparse.optimizer, sparse.loss, steps_per_execution=steps_per_execution)
        fit(sparse, data, [vot.callbacks.GradualChannelPruning(runner, polynomial(0.5),
                                                               channel_divisible=1),
                           vot.callbacks.ChannelPruningSummaries(runner, log_dir,
                                                                 update_freq=update_freq)])

        scalars = read_scalars(log_dir)
        widths = {f"pruning/width/{name}" for name in PRODUCERS}
        assert set(scalars) == {"pruning/flops_reduction", "pruning/params"} | widths
        for tag, values in scalars.items():
            assert [step for step, _ in values] == steps, tag
        reductions = [value for _, value in scalars["pruning/flops_reduction"]]
        assert reductions == sorted(reductions) and reductions[0] > 0
        slim = slim_of(runner, sparse)
        assert scalars["pruning/flops_reduction"][-1][1] == pytest.approx(
            measured_reduction(runner, slim), abs=1e-5)
        assert scalars["pruning/params"][-1][1] == vot.stat(slim).params
        for name in PRODUCERS:
            assert scalars[f"pruning/width/{name}"][-1][1] == slim.get_layer(name).filters


class TestSlimModelExport:

    def test_saves_a_slim_model_that_reloads_without_custom_objects(self, runner, data,
                                                                      tmp_path):
        path = str(tmp_path / "export" / "slim.keras")
        sparse = unpruned_sparse_model(runner)
        fit(sparse, data, [vot.callbacks.GradualChannelPruning(runner, polynomial(0.5),
                                                               channel_divisible=1),
                           vot.callbacks.SlimModelExport(runner, path)])

        with zipfile.ZipFile(path) as archive:
            config = archive.read("config.json").decode()
        assert "ChannelMask" not in config and "vai_optimizer_tf" not in config
        slim = keras.models.load_model(path)
        assert abs(measured_reduction(runner, slim) - 0.5) <= RATIO_POINTS
        assert_slim_equals_sparse(slim, sparse, data[0])

        # A fresh process that never imports vai_optimizer_tf loads it too.
        x_path, y_path = str(tmp_path / "x.npy"), str(tmp_path / "y.npy")
        np.save(x_path, data[0])
        result = subprocess.run([sys.executable, "-c", (
            "import sys, numpy as np, tf_keras\n"
            f"m = tf_keras.models.load_model({path!r})\n"
            f"np.save({y_path!r}, m(np.load({x_path!r}), training=False).numpy())\n"
            "print('vai_optimizer_tf' in sys.modules)")],
            capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.split()[-1] == "False"
        expected = model_utils.outputs(sparse, data[0])[0]
        assert np.max(np.abs(np.load(y_path) - expected)) <= TOLERANCE * np.max(np.abs(expected))
        saved = vot.PruningSpec.load(path + ".spec.json")
        assert {n: list(g.kept) for n, g in saved.groups.items()} == {
            n: list(g.kept) for n, g in runner.spec_from_model(sparse).groups.items()}


class TestErrors:

    @pytest.mark.parametrize("make_callback", [
        lambda runner, tmp: vot.callbacks.GradualChannelPruning(runner, polynomial(),
                                                                channel_divisible=1),
        lambda runner, tmp: vot.callbacks.ChannelPruningSummaries(runner, str(tmp / "logs")),
        lambda runner, tmp: vot.callbacks.SlimModelExport(runner, str(tmp / "slim.keras")),
    ], ids=["GradualChannelPruning", "ChannelPruningSummaries", "SlimModelExport"])
    @pytest.mark.parametrize("make_model", [
        lambda: small_resnet(),
        lambda: small_resnet(width=4, blocks=1),
    ], ids=["same_architecture", "other_architecture"])
    def test_plain_model_is_refused_at_fit_start(self, runner, data, tmp_path, make_callback,
                                                 make_model):
        plain = make_model()
        plain.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        with pytest.raises(ValueError, match="get_sparse_model"):
            fit(plain, data, [make_callback(runner, tmp_path)])
        assert plain.optimizer.iterations.numpy() == 0

    def test_unreachable_final_ratio_says_how_far_pruning_goes(self, runner, data):
        sparse = unpruned_sparse_model(runner)
        pruning = vot.callbacks.GradualChannelPruning(
            runner, tfmot.sparsity.keras.ConstantSparsity(0.99, begin_step=0), channel_divisible=1)
        with pytest.raises(ValueError, match=r"99\.0% cannot be reached") as error:
            fit(sparse, data, [pruning])
        assert sparse.optimizer.iterations.numpy() == 0
        reachable = float(re.search(r"gives (\d+\.\d)%", str(error.value)).group(1)) / 100
        assert 0.5 < reachable < 0.99

        # The limit is real: a schedule just below it is followed.
        target = round(reachable - 0.03, 2)
        fit(sparse, data, [vot.callbacks.GradualChannelPruning(
            runner, tfmot.sparsity.keras.ConstantSparsity(target, begin_step=0, frequency=2),
            channel_divisible=1)],
            epochs=1)
        assert abs(measured_reduction(runner, slim_of(runner, sparse)) - target) <= RATIO_POINTS

    def test_too_many_excludes_says_how_far_pruning_goes(self, runner, data):
        excludes = ["stem", "b0_conv1", "b1_conv1"]
        sparse = unpruned_sparse_model(runner)
        pruning = vot.callbacks.GradualChannelPruning(runner, polynomial(0.5), excludes=excludes,
                                                      channel_divisible=1)
        with pytest.raises(ValueError, match=r"50\.0% cannot be reached") as error:
            fit(sparse, data, [pruning])
        reachable = float(re.search(r"gives (\d+\.\d)%", str(error.value)).group(1)) / 100
        # Pruning only `expand`, as far as allowed (90%), gives that much.
        slim = runner.get_slim_model(runner.uniform_spec(0.9, excludes=excludes,
                                                         channel_divisible=1))
        assert [slim.get_layer(n).filters for n in PRODUCERS[:3]] == [8, 16, 16]
        assert slim.get_layer("expand").filters <= 32 // 10 + 1
        assert reachable == pytest.approx(measured_reduction(runner, slim), abs=0.001)

    def test_excluded_layers_keep_their_width(self, runner, data):
        sparse = unpruned_sparse_model(runner)
        fit(sparse, data, [vot.callbacks.GradualChannelPruning(
            runner, polynomial(0.3), excludes=["stem", "expand"], channel_divisible=1)])

        slim = slim_of(runner, sparse)
        assert slim.get_layer("stem").filters == 8 and slim.get_layer("expand").filters == 32
        assert abs(measured_reduction(runner, slim) - 0.3) <= RATIO_POINTS

    @pytest.mark.parametrize("kwargs, message", [
        ({"update_freq": "batch"}, "Invalid `update_freq`.*Received: update_freq='batch'"),
        ({"frequency": 0}, "Invalid `frequency`.*Received: frequency=0"),
        ({"frequency": 2.5}, "Invalid `frequency`.*Received: frequency=2.5"),
        ({"channel_divisible": 0}, "Invalid `channel_divisible`"),
        ({"schedule": 0.5}, "Invalid `schedule`.*Received: schedule=0.5"),
        ({"runner": "runner"}, "Invalid `runner`"),
    ], ids=["update_freq", "frequency_zero", "frequency_float", "channel_divisible",
            "schedule_not_callable", "runner"])
    def test_gradual_pruning_checks_its_arguments(self, runner, kwargs, message):
        arguments = {"runner": runner, "schedule": polynomial()}
        arguments.update(kwargs)
        with pytest.raises(ValueError, match=message):
            vot.callbacks.GradualChannelPruning(**arguments)

    @pytest.mark.parametrize("schedule, message", [
        (lambda step: 1.0, r"final ratio must be a float in \[0, 1\)"),
        (lambda step: "half", "must return the FLOPs reduction"),
    ], ids=["final_ratio_one", "not_a_number"])
    def test_callable_schedule_with_bad_values_is_refused_at_fit_start(self, runner, data,
                                                                       schedule, message):
        sparse = unpruned_sparse_model(runner)
        with pytest.raises(ValueError, match=message):
            fit(sparse, data, [vot.callbacks.GradualChannelPruning(runner, schedule,
                                                                   channel_divisible=1)])
        assert sparse.optimizer.iterations.numpy() == 0

    @pytest.mark.parametrize("make_callback, message", [
        (lambda r: vot.callbacks.ChannelPruningSummaries(r, "logs", update_freq="batch"),
         "Invalid `update_freq`.*Received: update_freq='batch'"),
        (lambda r: vot.callbacks.ChannelPruningSummaries(r, "logs", update_freq=0),
         "Invalid `update_freq`.*Received: update_freq=0"),
        (lambda r: vot.callbacks.SlimModelExport(r, None), "Invalid `filepath`"),
        (lambda r: vot.callbacks.SlimModelExport(r, ""), "Invalid `filepath`"),
    ], ids=["summaries_update_freq", "summaries_zero_steps", "export_none", "export_empty"])
    def test_other_callbacks_check_their_arguments(self, runner, make_callback, message):
        with pytest.raises(ValueError, match=message):
            make_callback(runner)


class LogTypes(keras.callbacks.Callback):
    """Records the type of the loss each batch hook receives (tensors, unless fit synced)."""

    def __init__(self):
        super().__init__()
        self._supports_tf_logs = True
        self.types = set()

    def on_train_batch_end(self, batch, logs=None):
        self.types.add(type(logs["loss"]))


class TestTfKerasFit:

    def test_callbacks_do_not_make_fit_sync_the_logs_every_batch(self, runner, data, tmp_path):
        # tf_keras' fit converts the logs to numpy after each batch when a
        # callback with batch hooks does not take tensors; that sync costs
        # wall time on every step.
        spy = LogTypes()
        fit(unpruned_sparse_model(runner), data,
            [vot.callbacks.GradualChannelPruning(runner, polynomial(), channel_divisible=1),
             vot.callbacks.ChannelPruningSummaries(runner, str(tmp_path), update_freq=2),
             vot.callbacks.SlimModelExport(runner, str(tmp_path / "slim.keras")), spy])

        assert spy.types and all(issubclass(t, tf.Tensor) for t in spy.types), spy.types


@pytest.fixture(scope="module")
def keras3_runner(tmp_path_factory):
    """A runner of the Keras 3 build of `small_resnet`."""
    return vot.IterativePruningRunner(small_resnet(keras=keras3),
                                      workspace=str(tmp_path_factory.mktemp("ws_keras3")))


class TestKeras3Fit:
    """The same callback classes in Keras 3's `fit`."""

    def test_callbacks_are_callbacks_of_both_flavours(self, keras3_runner, tmp_path):
        for callback in (vot.callbacks.GradualChannelPruning(keras3_runner, polynomial()),
                         vot.callbacks.ChannelPruningSummaries(keras3_runner, str(tmp_path)),
                         vot.callbacks.SlimModelExport(keras3_runner, str(tmp_path / "s.keras"))):
            assert isinstance(callback, keras3.callbacks.Callback)
            assert isinstance(callback, keras.callbacks.Callback)

    def test_gradual_pruning_summaries_and_export_in_keras3_fit(self, keras3_runner, data,
                                                                  tmp_path):
        runner = keras3_runner
        sparse = runner.get_sparse_model(runner.uniform_spec(0.0, channel_divisible=1))
        sparse.compile(keras3.optimizers.Adam(0.01),
                       keras3.losses.SparseCategoricalCrossentropy(from_logits=True),
                       steps_per_execution=2)
        path, log_dir = str(tmp_path / "slim.keras"), str(tmp_path / "logs")
        seen = []
        record = keras3.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: seen.append(kept_from_masks(runner, sparse)))
        fit(sparse, data, [vot.callbacks.GradualChannelPruning(runner, polynomial(0.5, 6),
                                                                 channel_divisible=1),
                           vot.callbacks.ChannelPruningSummaries(runner, log_dir,
                                                                 update_freq=2),
                           vot.callbacks.SlimModelExport(runner, path), record], epochs=3)

        assert int(sparse.optimizer.iterations.numpy()) == 12
        for before, after in zip(seen, seen[1:]):
            assert_nested(before, after)
        assert kept_from_masks(runner, sparse) == alive_from_weights(sparse)
        slim = keras3.models.load_model(path)
        assert abs(measured_reduction(runner, slim) - 0.5) <= RATIO_POINTS
        assert_slim_equals_sparse(slim, sparse, data[0])
        scalars = read_scalars(log_dir)
        assert scalars["pruning/flops_reduction"][-1][1] == pytest.approx(
            measured_reduction(runner, slim), abs=1e-5)
        assert [step for step, _ in scalars["pruning/params"]] == [2, 4, 6, 8, 10, 12]
