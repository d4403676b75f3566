"""Specification: a sparse model keeps its pruned channels at zero through training.

No callback is needed. Whatever trains the sparse model (`fit` with SGD
momentum, Adam or AdamW weight decay, several steps per execution, XLA
(`jit_compile=True`), mixed precision, a `MirroredStrategy`, or a hand-written
`tf.GradientTape` loop), every pruned slice is still exactly zero afterwards,
and the slim model built from the trained weights computes the same outputs.
The masks survive `model.save` / `load_model` and `save_weights` /
`load_weights`. Every test runs on a tf_keras model and on a Keras 3 model
(the module's `keras` fixture), except the multi-worker one (tf_keras) and
the TF-checkpoint weights format, which Keras 3 does not write.

The zero slices are read from the weights through a table written by hand for
`gated_net` below, not through the library's own slice plan. The model has a
sigmoid before its consumers (sigmoid(0) = 0.5), so a pruned channel still
feeds a constant into `se_reduce` and `conv2`: their input slices get non-zero
gradients and would drift back without masks, which `TestControl` checks.
"""

import json
import os
import socket
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import tensorflow as tf

import vai_optimizer_tf as vot
from tests import model_utils
from tests.flavours import FLAVOURS, flavour_name
from vai_optimizer_tf.masks import keras3_channel_mask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIRRORED_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mirrored_worker.py")
MULTI_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "multi_worker_mirrored_worker.py")
TOLERANCE = 1e-5
SPARSITY = 0.5


@pytest.fixture(scope="module", params=list(FLAVOURS))
def keras(request):
    """The Keras flavour of the module's fixtures: tf_keras, then Keras 3."""
    return FLAVOURS[request.param]


def gated_net(keras, seed=0):
    """conv1 -> BN -> sigmoid -> squeeze-excite -> conv2 -> BN -> ReLU -> head.

    Groups: `conv1` (producers conv1 and se_expand, carried by bn1, consumed by
    se_reduce and conv2), `se_reduce`, and `conv2` (carried by bn2, consumed by
    head).

    Args:
      keras: The flavour's `keras` module (`tf_keras` or Keras 3's `keras`).
      seed: Seeds the initial weights.
    """
    L = keras.layers
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Activation("sigmoid", name="gate")(x)
    se = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    se = L.Conv2D(4, 1, activation="relu", name="se_reduce")(se)
    se = L.Conv2D(8, 1, activation="sigmoid", name="se_expand")(se)
    x = L.Multiply(name="excite")([x, se])
    x = L.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(name="relu2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(4, name="head")(x)
    return model_utils.randomize_batch_norm(keras.Model(inputs, outputs, name="gated"), seed)


# Layer -> (weight attribute, axis, group whose pruned channels are zero along it).
PRUNED_SLICES = {
    "conv1": [("kernel", 3, "conv1"), ("bias", 0, "conv1")],
    "bn1": [("gamma", 0, "conv1"), ("beta", 0, "conv1"),
            ("moving_mean", 0, "conv1"), ("moving_variance", 0, "conv1")],
    "se_reduce": [("kernel", 2, "conv1"), ("kernel", 3, "se_reduce"), ("bias", 0, "se_reduce")],
    "se_expand": [("kernel", 2, "se_reduce"), ("kernel", 3, "conv1"), ("bias", 0, "conv1")],
    "conv2": [("kernel", 2, "conv1"), ("kernel", 3, "conv2"), ("bias", 0, "conv2")],
    "bn2": [("gamma", 0, "conv2"), ("beta", 0, "conv2"),
            ("moving_mean", 0, "conv2"), ("moving_variance", 0, "conv2")],
    "head": [("kernel", 0, "conv2")],
}
# Consumers' input slices: (layer, weight attribute, axis, group).
CONSUMER_SLICES = [("se_reduce", "kernel", 2, "conv1"), ("conv2", "kernel", 2, "conv1"),
                   ("head", "kernel", 0, "conv2")]
OPTIMIZERS = {
    "sgd_momentum": lambda keras: keras.optimizers.SGD(0.1, momentum=0.9),
    "adam": lambda keras: keras.optimizers.Adam(0.01),
    "adamw_weight_decay": lambda keras: keras.optimizers.AdamW(0.01, weight_decay=0.1),
}


def pruned_channels(spec):
    """Group name -> pruned channel indices, from the spec's kept lists."""
    return {name: sorted(set(range(g.width)) - {int(k) for k in g.kept})
            for name, g in spec.groups.items()}


def slices(model, spec, which):
    """`(label, values)` for each slice of `model`: `"pruned"` or `"kept"` channels."""
    out = []
    pruned = pruned_channels(spec)
    for layer_name, entries in PRUNED_SLICES.items():
        layer = model.get_layer(layer_name)
        for attr, axis, group in entries:
            value = np.asarray(getattr(layer, attr).numpy(), dtype=np.float64)
            if which == "pruned":
                index = pruned[group]
            else:
                index = sorted(set(range(value.shape[axis])) - set(pruned[group]))
            out.append((f"{layer_name}.{attr}[axis {axis}]", np.take(value, index, axis=axis)))
    return out


def assert_pruned_slices_zero(model, spec):
    nonzero = {label: float(np.max(np.abs(v))) for label, v in slices(model, spec, "pruned")
               if np.any(v != 0)}
    assert not nonzero, f"pruned slices are not exactly zero: {nonzero}"


def assert_trained(model, before, spec):
    """The kept slices moved: training really happened."""
    after = dict(slices(model, spec, "kept"))
    moved = [label for label, v in before if "moving" not in label
             and not np.array_equal(v, after[label])]
    assert len(moved) >= 10, f"training barely changed the kept weights: {moved}"


def assert_slim_equals_sparse(runner, spec, sparse, x):
    slim = runner.get_slim_model(spec, weights_from=sparse)
    assert slim.count_params() < sparse.count_params()
    assert model_utils.max_relative_difference(sparse, slim, x) <= TOLERANCE


def training_data(n=32, seed=1):
    rs = np.random.RandomState(seed)
    return rs.uniform(-1, 1, (n, 8, 8, 3)).astype("float32"), rs.randint(0, 4, n)


def loss_fn(keras):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def runner(keras, tmp_path_factory):
    return vot.IterativePruningRunner(gated_net(keras),
                                      workspace=str(tmp_path_factory.mktemp("ws")))


@pytest.fixture(scope="module")
def spec(runner):
    spec = runner.uniform_spec(SPARSITY, channel_divisible=1)
    assert set(spec.groups) == {"conv1", "se_reduce", "conv2"}
    return spec


@pytest.fixture(scope="module")
def data():
    return training_data()


def fit_sparse(keras, runner, spec, data, optimizer, epochs=2, **compile_kwargs):
    """Builds the sparse model, trains it with plain `fit`, checks it was really trained."""
    sparse = runner.get_sparse_model(spec)
    assert_pruned_slices_zero(sparse, spec)
    before = slices(sparse, spec, "kept")
    sparse.compile(optimizer, loss_fn(keras), **compile_kwargs)
    x, y = data
    sparse.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0)
    assert_trained(sparse, before, spec)
    return sparse


class TestMasksHoldWithoutCallbacks:

    @pytest.mark.parametrize("optimizer", OPTIMIZERS)
    def test_optimizer_keeps_pruned_slices_zero_and_slim_equal(self, keras, runner, spec, data,
                                                               optimizer):
        sparse = fit_sparse(keras, runner, spec, data, OPTIMIZERS[optimizer](keras))

        assert sparse.optimizer.iterations.numpy() == 8
        assert_pruned_slices_zero(sparse, spec)
        assert_slim_equals_sparse(runner, spec, sparse, data[0])

    def test_xla_jit_compile_with_steps_per_execution(self, keras, runner, spec, data):
        sparse = fit_sparse(keras, runner, spec, data, keras.optimizers.Adam(0.01),
                            jit_compile=True, steps_per_execution=4)

        assert sparse.jit_compile is True
        assert sparse.optimizer.iterations.numpy() == 8
        assert_pruned_slices_zero(sparse, spec)
        assert_slim_equals_sparse(runner, spec, sparse, data[0])

    def test_steps_per_execution(self, keras, runner, spec, data):
        steps = []
        record = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: steps.append(batch))
        sparse = runner.get_sparse_model(spec)
        sparse.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss_fn(keras),
                       steps_per_execution=4)
        x, y = data
        sparse.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[record])

        assert sparse.optimizer.iterations.numpy() == 8
        assert len(steps) == 2  # Python saw one batch end per 4 steps
        assert_pruned_slices_zero(sparse, spec)
        assert_slim_equals_sparse(runner, spec, sparse, x)

    def test_custom_gradient_tape_loop_needs_no_helper(self, keras, runner, spec, data):
        sparse = runner.get_sparse_model(spec)
        before = slices(sparse, spec, "kept")
        optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        model_utils.train_with_gradient_tape(sparse, optimizer, loss_fn(keras), data, epochs=2)

        assert optimizer.iterations.numpy() == 8
        assert_trained(sparse, before, spec)
        assert_pruned_slices_zero(sparse, spec)
        assert_slim_equals_sparse(runner, spec, sparse, data[0])

    def test_mixed_float16_policy(self, keras, runner, spec, data, tmp_path):
        keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            mixed_runner = vot.IterativePruningRunner(gated_net(keras), workspace=str(tmp_path))
            mixed_spec = mixed_runner.uniform_spec(SPARSITY, channel_divisible=1)
            sparse = fit_sparse(keras, mixed_runner, mixed_spec, data,
                                keras.optimizers.Adam(0.01))
        finally:
            keras.mixed_precision.set_global_policy("float32")

        assert sparse.get_layer("conv2").compute_dtype == "float16"
        assert isinstance(sparse.optimizer, keras.mixed_precision.LossScaleOptimizer)
        assert_pruned_slices_zero(sparse, mixed_spec)
        # Slim equivalence at float32: the trained weights in the float32 sparse model.
        assert pruned_channels(mixed_spec) == pruned_channels(spec)
        sparse32 = runner.get_sparse_model(spec)
        sparse32.set_weights(sparse.get_weights())
        assert_slim_equals_sparse(runner, spec, sparse32, data[0])

    def test_mirrored_strategy_on_two_logical_cpus(self, keras, runner, spec, data, tmp_path):
        spec_path = spec.save(tmp_path / "spec.json")
        weights_path = str(tmp_path / "trained.weights.h5")
        result = subprocess.run([sys.executable, MIRRORED_WORKER, flavour_name(keras),
                                 str(spec_path), weights_path],
                                capture_output=True, text=True, timeout=300, cwd=REPO)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])

        assert report == {"replicas": 2, "iterations": 8}
        trained = runner.get_sparse_model(spec)
        before = slices(trained, spec, "kept")
        trained.load_weights(weights_path)
        assert_trained(trained, before, spec)
        assert_pruned_slices_zero(trained, spec)
        assert_slim_equals_sparse(runner, spec, trained, data[0])

    @pytest.mark.parametrize("keras", ["tf_keras"], indirect=True)
    def test_multi_worker_mirrored_strategy_on_two_local_processes(self, runner, spec, data,
                                                                   tmp_path):
        spec_path = spec.save(tmp_path / "spec.json")
        weights_path = str(tmp_path / "trained.weights.h5")
        cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}

        reports = run_workers([[sys.executable, MULTI_WORKER, str(spec_path), weights_path]] * 2,
                              [{"TF_CONFIG": json.dumps({"cluster": cluster,
                                                         "task": {"type": "worker", "index": i}})}
                               for i in range(2)])

        assert [(r["task"], r["replicas"], r["iterations"]) for r in reports] == [
            (0, 2, 8), (1, 2, 8)]
        assert reports[0]["weights_sha256"] == reports[1]["weights_sha256"]  # in sync
        assert "trained.weights.h5" in os.listdir(tmp_path)  # the chief's file only
        assert not [name for name in os.listdir(tmp_path) if "worker" in name]
        trained = runner.get_sparse_model(spec)
        before = slices(trained, spec, "kept")
        trained.load_weights(weights_path)
        assert_trained(trained, before, spec)
        assert_pruned_slices_zero(trained, spec)
        assert_slim_equals_sparse(runner, spec, trained, data[0])


def free_ports(count):
    """`count` TCP ports that are free on localhost now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_workers(commands, extra_envs, timeout=300):
    """Runs the commands side by side; returns each one's last stdout line, parsed as JSON."""
    processes = [subprocess.Popen(command, cwd=REPO, env=dict(os.environ, **extra),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for command, extra in zip(commands, extra_envs)]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=timeout))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    failed = [f"process {i} (status {p.returncode}):\n{err[-3000:]}"
              for i, (p, (_, err)) in enumerate(zip(processes, outputs)) if p.returncode != 0]
    assert not failed, "\n".join(failed)
    return [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]


# Each flavour's constraint class, registered as `vai_optimizer_tf>ChannelMask` in its Keras.
MASK_CLASSES = {"tf_keras": vot.ChannelMask, "keras3": keras3_channel_mask.ChannelMask}


class TestChannelMask:

    def test_config_round_trip_keeps_kept_channels_and_inner_constraint(self, keras):
        mask_class = MASK_CLASSES[flavour_name(keras)]
        mask = mask_class((3, 3, 4, 6), [[3, [0, 2, 5]], [2, [1, 3]]],
                          inner=keras.saving.serialize_keras_object(keras.constraints.NonNeg()))
        serialized = keras.saving.serialize_keras_object(mask)
        restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))

        assert serialized["registered_name"] == "vai_optimizer_tf>ChannelMask"
        assert isinstance(restored, mask_class)
        assert restored.get_config() == mask.get_config()
        w = np.random.RandomState(0).normal(size=(3, 3, 4, 6)).astype("float32")
        expected = np.maximum(w, 0)
        expected[..., [1, 3, 4]] = 0
        expected[:, :, [0, 2], :] = 0
        np.testing.assert_array_equal(restored(tf.constant(w)).numpy(), expected)


class TestControl:
    """Without masks the same training brings the pruned slices back: the tests have teeth."""

    @pytest.mark.parametrize("optimizer", OPTIMIZERS)
    def test_plain_model_with_zeroed_weights_drifts(self, keras, runner, spec, data, optimizer):
        plain = gated_net(keras)
        plain.set_weights(runner.get_sparse_model(spec).get_weights())
        assert all(getattr(v, "constraint", None) is None for v in plain.weights)
        assert_pruned_slices_zero(plain, spec)
        plain.compile(OPTIMIZERS[optimizer](keras), loss_fn(keras))
        x, y = data
        plain.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)

        pruned = pruned_channels(spec)
        drifted = [name for name, attr, axis, group in CONSUMER_SLICES
                   if np.any(np.take(getattr(plain.get_layer(name), attr).numpy(),
                                     pruned[group], axis=axis) != 0)]
        # After the sigmoid a pruned channel is 0.5, not 0: its consumers learn from it.
        assert drifted == ["se_reduce", "conv2"]
        assert model_utils.max_relative_difference(
            plain, runner.get_slim_model(spec, weights_from=plain), x) > 1e-3


def train_more(model, data, epochs=1):
    x, y = data
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0)


@pytest.fixture(scope="module")
def trained(keras, runner, spec, data):
    """A sparse model trained for one epoch (4 steps) with Adam."""
    return fit_sparse(keras, runner, spec, data, keras.optimizers.Adam(0.01), epochs=1)


class TestSaveAndReload:

    def test_keras_file_keeps_masks_through_more_training(self, keras, runner, spec, data,
                                                          trained, tmp_path):
        path = str(tmp_path / "sparse.keras")
        trained.save(path)
        loaded = keras.models.load_model(path)
        for a, b in zip(loaded.get_weights(), trained.get_weights()):
            np.testing.assert_array_equal(a, b)
        before = slices(loaded, spec, "kept")

        train_more(loaded, data)  # compiled state comes back with the file

        assert loaded.optimizer.iterations.numpy() == 8
        assert_trained(loaded, before, spec)
        assert_pruned_slices_zero(loaded, spec)
        assert_slim_equals_sparse(runner, spec, loaded, data[0])

    def test_weights_into_fresh_sparse_model_keep_masks(self, keras, runner, spec, data,
                                                        trained, tmp_path):
        self._check_weights_file(keras, runner, spec, data, trained,
                                 str(tmp_path / "sparse.weights.h5"))

    @pytest.mark.parametrize("keras", ["tf_keras"], indirect=True)  # Keras 3 writes no TF checkpoint
    def test_tf_checkpoint_into_fresh_sparse_model_keeps_masks(self, keras, runner, spec, data,
                                                               trained, tmp_path):
        self._check_weights_file(keras, runner, spec, data, trained,
                                 str(tmp_path / "ckpt" / "weights"))

    @staticmethod
    def _check_weights_file(keras, runner, spec, data, trained, path):
        trained.save_weights(path)
        fresh = runner.get_sparse_model(spec)
        fresh.load_weights(path)
        for a, b in zip(fresh.get_weights(), trained.get_weights()):
            np.testing.assert_array_equal(a, b)
        before = slices(fresh, spec, "kept")
        fresh.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss_fn(keras))

        train_more(fresh, data)

        assert_trained(fresh, before, spec)
        assert_pruned_slices_zero(fresh, spec)
        assert_slim_equals_sparse(runner, spec, fresh, data[0])

    def test_weights_into_a_sparse_model_of_another_spec_need_restore_masks(
            self, keras, runner, spec, data, trained, tmp_path):
        path = str(tmp_path / "sparse.weights.h5")
        trained.save_weights(path)
        unpruned = runner.get_sparse_model(runner.uniform_spec(0.0, channel_divisible=1))
        unpruned.load_weights(path)
        assert runner.spec_from_model(unpruned).groups == {}  # masks are not in weight files

        restored = runner.restore_masks(unpruned)

        for name, group in spec.groups.items():
            np.testing.assert_array_equal(restored.groups[name].kept, group.kept)
        unpruned.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss_fn(keras))
        train_more(unpruned, data)
        assert_pruned_slices_zero(unpruned, spec)
        assert_slim_equals_sparse(runner, spec, unpruned, data[0])

    def test_fresh_process_needs_the_library_imported(self, keras, trained, data, tmp_path):
        # Both formats in one pair of processes (each imports TensorFlow): one without
        # the library, where each load must fail on the unknown ChannelMask, one with it.
        paths = [str(tmp_path / name) for name in ("sparse.keras", "sparse.h5")]
        for path in paths:
            trained.save(path)
        with zipfile.ZipFile(paths[0]) as archive:
            assert "ChannelMask" in archive.read("config.json").decode()
        with h5py.File(paths[1]) as archive:
            assert "ChannelMask" in archive.attrs["model_config"]
        x_path = str(tmp_path / "x.npy")
        np.save(x_path, data[0])

        module = keras.__name__  # the flavour's own loader: tf_keras, or keras
        outputs = [str(tmp_path / f"y{i}.npy") for i in range(len(paths))]
        without, with_library = _run_python_scripts(  # in parallel
            f"import json, {module}\n"
            "errors = []\n"
            f"for path in {paths!r}:\n"
            "    try:\n"
            f"        {module}.models.load_model(path)\n"
            "        errors.append(None)\n"
            "    except Exception as e:\n"
            "        errors.append(str(e))\n"
            "print(json.dumps(errors))",
            f"import numpy as np, {module}, vai_optimizer_tf\n"
            f"for path, out in zip({paths!r}, {outputs!r}):\n"
            f"    m = {module}.models.load_model(path)\n"
            f"    np.save(out, m(np.load({x_path!r}), training=False).numpy())\n"
            "    print(type(m.get_layer('conv2').kernel.constraint).__name__)")

        assert without.returncode == 0, without.stderr[-3000:]
        errors = json.loads(without.stdout.strip().splitlines()[-1])
        assert all(error is not None and "ChannelMask" in error for error in errors), errors
        assert with_library.returncode == 0, with_library.stderr[-3000:]
        assert with_library.stdout.split()[-2:] == ["ChannelMask", "ChannelMask"]
        for out in outputs:
            np.testing.assert_allclose(np.load(out), model_utils.outputs(trained, data[0])[0],
                                       rtol=0, atol=1e-6)


def _run_python_scripts(*scripts):
    """Runs each script in its own fresh Python process, all at once; returns their results."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    processes = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
                 for code in scripts]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(process.args, process.returncode,
                                                   stdout, stderr))
    return results
