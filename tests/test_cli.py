"""`vai_p_tf2`: every action end to end through subprocesses, and its error lines.

The end-to-end flow (ana -> prune -> finetune -> transform -> stat -> export)
runs once, one subprocess per action, on a tiny model saved once; each test
then checks one action's results against values computed here, in the test
process. Error handling is checked in-process through `main(argv)` (same
code, without the cost of a TensorFlow import per case), plus once through a
real subprocess for the exit status.
"""

import json
import os
import re
import subprocess
import sys

import keras as keras3
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import vai_optimizer_tf as vot
from vai_optimizer_tf import datasets
from vai_optimizer_tf.cli import loading, tf_logging
from vai_optimizer_tf.cli.main import main as cli_main
from vai_optimizer_tf.cli.flags import FLAGS

USER_FNS = '''
import numpy as np
import tf_keras as keras
from vai_optimizer_tf import datasets

(_x_train, _y_train), (_x_test, _y_test) = datasets.load_mnist_5k()


def train(model):
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(_x_train[:512], _y_train[:512], batch_size=64, epochs=1, verbose=0)
    return model


def calibration():
    return _x_train[:64]


def accuracy(model):
    return float(np.mean(np.argmax(model.predict(_x_test[:200], verbose=0), -1)
                         == _y_test[:200]))


def nothing(model):
    return None


NOT_A_FUNCTION = 3
'''


def _tiny_model(keras=keras):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="tiny")


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A folder with base.keras (trained for one epoch) and user_fns.py."""
    root = tmp_path_factory.mktemp("cli")
    (x_train, y_train), _ = datasets.load_mnist_5k()
    model = _tiny_model()
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train[:2000], y_train[:2000], batch_size=64, epochs=1, verbose=0)
    model.save(root / "base.keras")
    (root / "user_fns.py").write_text(USER_FNS)
    return root


def _cli(root, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "vai_optimizer_tf.cli", *args], cwd=root,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def flow(project):
    """Runs every action once, in Vitis order, and keeps each `CompletedProcess`."""
    common = ["--workspace=ws", "--output_dir=out"]
    steps = {
        "ana": ["--action=ana", "--model=base.keras", "--dataset=mnist_5k", "--eval_samples=200",
                "--ana_ratios=0.25,0.5"],
        "prune": ["--action=prune", "--model=base.keras", "--ratio=0.4",
                  "--channel_divisible=2", "--spec=ws/tiny_spec.json"],
        "finetune": ["--action=finetune", "--model=out/sparse.keras",
                     "--train_fn=user_fns.py:train"],
        "transform": ["--action=transform", "--model=out/finetuned.keras"],
        "stat": ["--action=stat", "--model=out/slim.keras"],
        "export": ["--action=export", "--model=out/slim.keras", "--output_dir=deploy",
                   "--formats=keras,saved_model,frozen_graph,tflite,tflite_int8",
                   "--representative_fn=user_fns:calibration", "--dataset=mnist_5k",
                   "--eval_samples=200"],
    }
    results = {}
    for action, args in steps.items():
        results[action] = _cli(project, *common, *args)
    return results


def _ok(flow, action):
    proc = flow[action]
    assert proc.returncode == 0, f"{action} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


class TestFlow:

    def test_ana_scores_the_baseline_with_the_dataset(self, flow, project):
        out = _ok(flow, "ana")
        _, (x_test, y_test) = datasets.load_mnist_5k()
        base = keras.models.load_model(project / "base.keras")
        baseline = _accuracy(base, x_test[:200], y_test[:200])
        table = out[out.index("baseline"):]
        assert re.search(rf"conv1\s+{baseline:.4f}", table)
        assert (project / "ws" / "ana" / "sensitivity.csv").exists()

    def test_prune_writes_the_sparse_model_and_the_spec(self, flow, project):
        _ok(flow, "prune")
        spec = json.loads((project / "ws" / "tiny_spec.json").read_text())
        latest = json.loads((project / "ws" / "latest_spec.json").read_text())
        assert os.path.samefile(latest["spec_path"], project / "ws" / "tiny_spec.json")
        sparse = keras.models.load_model(project / "out" / "sparse.keras")
        kernel = sparse.get_layer("conv1").get_weights()[0]
        zero = [c for c in range(16) if not np.any(kernel[..., c])]
        pruned = sorted(set(range(16)) - set(spec["groups"]["conv1"]["kept"]))
        assert zero == pruned and pruned
        assert all(len(g["kept"]) % 2 == 0 for g in spec["groups"].values())

    def test_finetune_trains_and_keeps_pruned_channels_zero(self, flow, project):
        _ok(flow, "finetune")
        sparse = keras.models.load_model(project / "out" / "sparse.keras")
        tuned = keras.models.load_model(project / "out" / "finetuned.keras")
        before, after = (m.get_layer("conv2").get_weights()[0] for m in (sparse, tuned))
        assert not np.allclose(before, after)
        assert np.array_equal(np.any(before, axis=(0, 1, 2)), np.any(after, axis=(0, 1, 2)))

    def test_transform_output_equals_the_fine_tuned_sparse_model(self, flow, project):
        _ok(flow, "transform")
        tuned = keras.models.load_model(project / "out" / "finetuned.keras")
        slim = keras.models.load_model(project / "out" / "slim.keras")
        x = np.random.RandomState(0).rand(8, 28, 28, 1).astype("float32")
        np.testing.assert_allclose(slim.predict(x, verbose=0), tuned.predict(x, verbose=0),
                                   rtol=1e-5, atol=1e-5)
        assert slim.count_params() < tuned.count_params()

    def test_stat_prints_the_slim_flops(self, flow, project):
        out = _ok(flow, "stat")
        slim = keras.models.load_model(project / "out" / "slim.keras")
        base = keras.models.load_model(project / "base.keras")

        def flops(m):  # by hand: 2 FLOPs per multiply-add, one per bias add and pooled value
            conv1, conv2 = m.get_layer("conv1"), m.get_layer("conv2")
            c1, c2 = conv1.filters, conv2.filters
            return ((2 * 9 * 1 + 1) * c1 * 13 * 13 + (2 * 9 * c1 + 1) * c2 * 6 * 6
                    + 6 * 6 * c2 + (2 * c2 + 1) * 10)

        assert f"total: {flops(slim):,} FLOPs" in out
        assert 0.3 <= 1 - flops(slim) / flops(base) <= 0.5

    def test_export_writes_every_format_and_reports_accuracy(self, flow, project):
        out = _ok(flow, "export")
        deploy = project / "deploy"
        for name in ("tiny.keras", "tiny_saved_model/saved_model.pb", "tiny.pb", "tiny.tflite",
                     "tiny_int8.tflite"):
            assert (deploy / name).exists(), name
        _, (x_test, y_test) = datasets.load_mnist_5k()
        slim = keras.models.load_model(project / "out" / "slim.keras")
        accuracy = _accuracy(slim, x_test[:200], y_test[:200])
        assert re.search(rf"keras\s+{accuracy:.4f}", out)
        assert re.search(r"tflite int8\s+\d\.\d{4}", out)
        assert "--output_nodes=logits" in out

    def test_no_action_printed_a_traceback(self, flow):
        for action, proc in flow.items():
            assert "Traceback" not in proc.stderr, action


# An absl / TensorFlow C++ log line, and the same line without its time stamp and thread id.
_NATIVE_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ (\S+:\d+\] .*)$")


def _native_lines(stderr):
    return {" ".join(m.groups()) for m in map(_NATIVE_LINE.match, stderr.splitlines()) if m}


@pytest.fixture(scope="module")
def real_runs(project):
    """`vai_p_tf2` in real processes, with TF_CPP_MIN_LOG_LEVEL unset, side by side.

    `control` is a bare `import tensorflow`: what TensorFlow prints by itself.
    """
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    cli = [sys.executable, "-m", "vai_optimizer_tf.cli"]
    commands = {
        "control": [sys.executable, "-c", "import tensorflow"],
        "help": cli + ["--help"],
        "help_verbose": cli + ["--help", "--verbosity=2"],
        "stat": cli + ["--action=stat", "--model=base.keras"],
        "no_model": cli + ["--action=stat"],
        "missing_file": cli + ["--action=stat", "--model=missing.keras"],
    }
    processes = {name: subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                 for name, command in commands.items()}
    results = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=600)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return results


class TestRealProcess:

    def test_tensorflow_prints_start_up_lines_by_itself(self, real_runs):
        assert _native_lines(real_runs["control"].stderr)  # what the CLI must hide

    def test_help_prints_no_tensorflow_log_lines(self, real_runs):
        run = real_runs["help"]
        assert run.returncode == 0
        assert run.stdout.startswith("vai_p_tf2: channel pruning of tf_keras and Keras 3 models")
        assert run.stderr == ""

    def test_an_action_prints_no_tensorflow_log_lines(self, real_runs):
        run = real_runs["stat"]
        assert run.returncode == 0, run.stderr
        assert "total: " in run.stdout
        assert run.stderr == ""

    def test_verbosity_2_shows_what_tensorflow_prints(self, real_runs):
        run = real_runs["help_verbose"]
        assert run.returncode == 0
        assert _native_lines(run.stderr) == _native_lines(real_runs["control"].stderr)

    def test_missing_model_flag_is_status_2_and_one_line(self, real_runs):
        run = real_runs["no_model"]
        assert run.returncode == 2
        assert run.stderr == ("vai_p_tf2: error: --model is required: a .keras or .h5 file, or a "
                              "Keras SavedModel folder. (see vai_p_tf2 --help)\n")

    def test_missing_model_file_is_status_1_and_one_line(self, real_runs):
        run = real_runs["missing_file"]
        assert run.returncode == 1
        assert run.stderr == ("vai_p_tf2: error: --model: no such file or folder: "
                              "'missing.keras'\n")


def _run(argv, capsys):
    status = cli_main(["vai_p_tf2", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_help_describes_every_action_and_flag(capsys):
    status, out, _ = _run(["--help"], capsys)
    assert status == 0
    for action in ("ana", "prune", "search", "finetune", "transform", "stat", "export"):
        assert re.search(rf"^  {action} ", out, re.M), action
    for name in FLAGS:
        if len(name) > 1:  # the short alias -v is listed with --verbosity
            assert f"--{name}" in out or f"--[no]{name}" in out, name


@pytest.mark.parametrize("argv, message", [
    (["--action=stat", "--model=nowhere.keras"], "--model: no such file or folder"),
    (["--action=stat", "--model=junk.keras"], "--model: cannot load 'junk.keras'"),
    (["--action=stat", "--model=user_fns.py"], "is neither a .keras/.h5 file"),
    (["--action=ana", "--model=base.keras", "--eval_fn=no_such_module:f"],
     "--eval_fn: cannot import 'no_such_module': ModuleNotFoundError"),
    (["--action=ana", "--model=base.keras", "--eval_fn=user_fns:missing"],
     "--eval_fn: module 'user_fns' has no attribute 'missing'"),
    (["--action=ana", "--model=base.keras", "--eval_fn=user_fns:NOT_A_FUNCTION"],
     "is a int, not a function"),
    (["--action=ana", "--model=base.keras", "--eval_fn=user_fns:nothing",
      "--workspace=ws_nothing"], "--eval_fn: nothing returned None"),
    (["--action=transform", "--model=base.keras", "--workspace=empty_ws"], "needs --spec"),
    (["--action=stat", "--model=base.keras", "--input_shape=1,28,28,1",
      "--input_shape=1,28,28,1"], "--input_shape: the model has 1 input(s) but 2 shape(s)"),
])
def test_user_errors_are_one_line_with_status_1(project, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(project)
    (project / "junk.keras").write_text("not a model")
    status, _, err = _run(argv, capsys)
    assert status == 1
    assert err.count("\n") == 1 and err.startswith("vai_p_tf2: error: "), err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    ([], "--action is required"),
    (["--action=shrink"], "flag --action=shrink: value should be one of"),
    (["--action=prune", "--ratio=1.5"], "flag --ratio=1.5"),
    (["--action=stat", "--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
    (["--action=stat", "stray"], "unexpected arguments ['stray']"),
    (["--action=stat"], "--model is required"),
    (["--action=ana", "--model=base.keras", "--eval_fn=user_fns"],
     "--eval_fn: expected module:function"),
    (["--action=finetune", "--model=base.keras", "--train_fn=train"],
     "--train_fn: expected module:function"),
    (["--action=ana", "--model=base.keras"], "needs --eval_fn=module:function or --dataset"),
    (["--action=ana", "--model=base.keras", "--dataset=mnist_5k", "--ana_ratios=0.5,1.5"],
     "--ana_ratios: expected comma-separated floats in (0, 1). Received: 0.5,1.5"),
    (["--action=prune", "--model=base.keras"], "needs --ratio"),
    (["--action=finetune", "--model=base.keras"], "needs --train_fn=module:function"),
    (["--action=export", "--model=base.keras", "--formats=onnx"], "--formats: expected names"),
    (["--action=export", "--model=base.keras", "--formats=tflite_int8"],
     "needs calibration data"),
    (["--action=stat", "--model=base.keras", "--input_shape=1,x,28,1"],
     "--input_shape: expected comma-separated positive integers"),
    (["--action=search", "--model=base.keras", "--dataset=mnist_5k"], "needs --ratio"),
    (["--action=search", "--model=base.keras", "--ratio=0.5", "--eval_fn=user_fns:accuracy"],
     "needs calibration data for adaptive BN"),
    (["--action=prune", "--mode=one_step", "--model=base.keras", "--ratio=0.5"],
     "needs --eval_fn=module:function or --dataset"),
    (["--action=search", "--model=base.keras", "--ratio=0.5", "--dataset=mnist_5k",
      "--calibration_fn=nofunction"], "--calibration_fn: expected module:function"),
])
def test_command_line_errors_are_one_line_with_status_2(project, monkeypatch, capsys, argv,
                                                        message):
    monkeypatch.chdir(project)
    status, _, err = _run(argv, capsys)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("vai_p_tf2: error: "), err
    assert message in err
    assert "(see vai_p_tf2 --help)" in err


def test_search_prunes_to_the_best_of_the_candidates(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    argv = ["--action=search", "--model=base.keras", "--ratio=0.5", "--dataset=mnist_5k",
            "--eval_samples=200", "--num_subnets=3", "--calibration_steps=2",
            "--channel_divisible=1",
            "--workspace=ws_search", "--output_dir=out_search"]
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    spec = vot.PruningSpec.load(json.loads((project / "ws_search" / "latest_spec.json")
                                           .read_text())["spec_path"])
    assert spec.metadata["method"] == "one_step" and spec.metadata["subnets_scored"] == 3
    assert f"best of 3 subnets: #{spec.metadata['subnet_index']}" in out
    sparse = keras.models.load_model(project / "out_search" / "sparse.keras")
    assert sparse.get_layer("conv1").kernel.shape == (3, 3, 1, 16)  # sparse: same shapes
    # A shard scores its share and says how to finish.
    status, out, _ = _run(argv[:-2] + ["--workspace=ws_shard", "--output_dir=out_shard",
                                       "--shard=1/2"], capsys)
    assert status == 0 and "shard 1/2 done: 1 of 3 candidates" in out
    assert not (project / "out_shard" / "sparse.keras").exists()


def test_verbosity_adds_the_traceback(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    status, _, err = _run(["--action=ana", "--model=base.keras", "--eval_fn=nope:f", "-v", "1"],
                          capsys)
    assert status == 1
    assert "Traceback" in err
    assert err.rstrip().splitlines()[-1].startswith("vai_p_tf2: error: --eval_fn")


def test_finetune_with_the_builtin_dataset(flow, project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    status, out, err = _run(["--action=finetune", "--model=out/sparse.keras", "--dataset=mnist_5k",
                             "--train_samples=256", "--output_dir=builtin"], capsys)
    assert status == 0, err
    sparse = keras.models.load_model(project / "out" / "sparse.keras")
    tuned = keras.models.load_model(project / "builtin" / "finetuned.keras")
    before, after = (m.get_layer("conv1").get_weights()[0] for m in (sparse, tuned))
    assert not np.allclose(before, after)
    assert np.array_equal(np.any(before, axis=(0, 1, 2)), np.any(after, axis=(0, 1, 2)))
    assert "fine-tuned model saved to builtin/finetuned.keras" in out


def test_stat_with_a_spec_shows_the_pruned_widths(flow, project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    status, out, err = _run(["--action=stat", "--model=base.keras", "--spec=ws/tiny_spec.json"],
                            capsys)
    assert status == 0, err
    spec = vot.PruningSpec.load(project / "ws" / "tiny_spec.json")
    kept = len(spec.groups["conv2"].kept)
    assert re.search(rf"conv2\s+16 ->\s+{kept}", out)


def test_export_refuses_to_replace_a_file_of_the_same_name(project, tmp_path, monkeypatch,
                                                            capsys):
    monkeypatch.chdir(tmp_path)
    baseline = (project / "base.keras").read_bytes()
    (tmp_path / "tiny.keras").write_bytes(baseline)   # the user's model; the slim one is "tiny" too
    argv = ["--action=export", "--model=tiny.keras", "--output_dir=.", "--formats=tflite,keras",
            "--workspace=ws"]

    status, _, err = _run(argv, capsys)

    assert status == 1
    assert err == ("vai_p_tf2: error: ./tiny.keras already exists; pass --overwrite to replace "
                   "it, or choose another --output_dir or --output_name.\n")
    assert (tmp_path / "tiny.keras").read_bytes() == baseline
    assert sorted(os.listdir(tmp_path)) == ["tiny.keras"]  # nothing written, not even tflite

    status, _, err = _run(argv + ["--overwrite"], capsys)

    assert status == 0, err
    assert keras.models.load_model(tmp_path / "tiny.keras").name == "tiny"
    assert (tmp_path / "tiny.tflite").exists()


def test_a_sparse_h5_model_loads(project, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runner = vot.IterativePruningRunner(keras.models.load_model(project / "base.keras"),
                                        workspace=str(tmp_path / "ws"))
    sparse = runner.get_sparse_model(runner.uniform_spec(0.5, channel_divisible=1))
    sparse.save(tmp_path / "sparse.h5")

    status, out, err = _run(["--action=stat", "--model=sparse.h5", "--workspace=ws"], capsys)

    assert status == 0, err
    assert f"total: {vot.stat(sparse).flops:,} FLOPs" in out


class _UnregisteredConstraint(keras.constraints.Constraint):
    def __call__(self, w):
        return w

    def get_config(self):
        return {}


def test_an_unknown_custom_class_is_one_short_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
        2, kernel_constraint=_UnregisteredConstraint())])
    model.save(tmp_path / "custom.h5")

    status, _, err = _run(["--action=stat", "--model=custom.h5"], capsys)

    assert status == 1
    assert err == ("vai_p_tf2: error: --model: cannot load 'custom.h5': Keras does not know the "
                   "custom constraint '_UnregisteredConstraint'. Register it with "
                   "keras.saving.register_keras_serializable in a module you pass as --eval_fn "
                   "or --train_fn (they are imported before the model).\n")


# Keras 3 models ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras3_flow(tmp_path_factory):
    """The Vitis flow in-process on a Keras 3 model saved by Keras 3: the CLI's outputs."""
    root = tmp_path_factory.mktemp("cli_keras3")
    (x_train, y_train), _ = datasets.load_mnist_5k()
    model = _tiny_model(keras3)
    model.compile(keras3.optimizers.Adam(3e-3),
                  keras3.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train[:1000], y_train[:1000], batch_size=64, epochs=1, verbose=0)
    model.save(root / "base.keras")
    common = ["--workspace=ws", "--output_dir=out"]
    steps = [
        ["--action=ana", "--model=base.keras", "--dataset=mnist_5k", "--eval_samples=200",
         "--ana_ratios=0.5"],
        ["--action=prune", "--model=base.keras", "--ratio=0.4", "--channel_divisible=2"],
        ["--action=finetune", "--model=out/sparse.keras", "--dataset=mnist_5k",
         "--train_samples=256"],
        ["--action=transform", "--model=out/finetuned.keras"],
        ["--action=export", "--model=out/slim.keras", "--output_dir=deploy",
         "--formats=keras,saved_model,tflite"],
    ]
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for argv in steps:
            status = cli_main(["vai_p_tf2", *common, *argv])
            assert status == 0, f"{argv[0]} failed with status {status}"
    finally:
        os.chdir(cwd)
    return root


def test_keras3_files_are_pruned_with_keras3_and_stay_keras3(keras3_flow):
    root = keras3_flow
    tuned = keras3.models.load_model(root / "out" / "finetuned.keras")
    slim = keras3.models.load_model(root / "out" / "slim.keras")
    assert isinstance(tuned, keras3.Model) and isinstance(slim, keras3.Model)
    assert slim.count_params() < tuned.count_params()
    x = np.random.RandomState(0).rand(8, 28, 28, 1).astype("float32")
    np.testing.assert_allclose(slim.predict(x, verbose=0), tuned.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    serve = tf.saved_model.load(str(root / "deploy" / "tiny_saved_model")).signatures[
        "serving_default"]
    np.testing.assert_allclose(serve(image=tf.constant(x))["logits"].numpy(),
                               slim.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert (root / "deploy" / "tiny.tflite").exists()


def test_stat_reads_a_keras3_file(keras3_flow, monkeypatch, capsys):
    monkeypatch.chdir(keras3_flow)
    status, out, err = _run(["--action=stat", "--model=out/slim.keras"], capsys)
    assert status == 0, err
    slim = keras3.models.load_model(keras3_flow / "out" / "slim.keras")
    assert f"total: {vot.stat(slim).flops:,} FLOPs" in out


def test_the_flavour_of_each_saved_file_is_detected(project, keras3_flow, tmp_path):
    k3 = keras3.models.load_model(keras3_flow / "base.keras")
    k3.save(tmp_path / "k3.h5")
    tfk = keras.models.load_model(project / "base.keras")
    tfk.save(tmp_path / "tfk.h5")
    tfk.save(tmp_path / "tfk_saved_model", save_format="tf")
    assert [loading.saved_flavour(str(p)) for p in (
        project / "base.keras", tmp_path / "tfk.h5", tmp_path / "tfk_saved_model",
        keras3_flow / "base.keras", tmp_path / "k3.h5")] == [
            "tf_keras", "tf_keras", "tf_keras", "keras3", "keras3"]
    assert isinstance(loading.load_model(str(tmp_path / "k3.h5")), keras3.Model)
    assert isinstance(loading.load_model(str(tmp_path / "tfk.h5")), keras.Model)


def test_a_keras3_serving_export_is_refused_with_the_keras_file_to_pass(keras3_flow,
                                                                         monkeypatch, capsys):
    monkeypatch.chdir(keras3_flow)
    status, _, err = _run(["--action=stat", "--model=deploy/tiny_saved_model"], capsys)
    assert status == 1
    assert "SavedModel for serving" in err and "pass the model's .keras file" in err


class TestTensorFlowLogFilter:
    """`vai_optimizer_tf.cli.tf_logging`: which processes are quieted, and what is kept."""

    @pytest.mark.parametrize("argv, orig_argv, expected", [
        (["/venv/bin/vai_p_tf2", "--help"], ["/venv/bin/python", "/venv/bin/vai_p_tf2"], True),
        (["-m", "--help"], ["python", "-m", "vai_optimizer_tf.cli", "--help"], True),
        (["-m"], ["python", "-X", "dev", "-mvai_optimizer_tf.cli.main"], True),
        (["train.py"], ["python", "train.py"], False),
        (["-c"], ["python", "-c", "import vai_optimizer_tf"], False),
        (["-m"], ["python", "-m", "pytest", "tests"], False),
    ])
    def test_only_the_cli_is_quieted(self, argv, orig_argv, expected):
        assert tf_logging.running_as_cli(argv, orig_argv) is expected

    @pytest.mark.parametrize("args, level", [
        ([], 0), (["--verbosity=2"], 2), (["-v", "1"], 1), (["-v=3", "--action=stat"], 3),
        (["--verbosity", "2", "-v", "0"], 0), (["--verbosity=x"], 0),
    ])
    def test_verbosity_is_read_before_absl(self, args, level):
        assert tf_logging.verbosity(args) == level

    def test_filter_keeps_errors_and_python_output(self):
        text = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
                "STDERR\n"
                "I0000 00:00:1795987061.216409    6019 port.cc:153] oneDNN custom operations\n"
                "W0000 00:00:1795987061.216678    6019 cudart_stub.cc:31] Could not find cuda\n"
                "To enable the following instructions: AVX2 AVX512F, in other operations\n"
                "E0000 00:00:1795987062.786670    6019 cuda_platform.cc:52] failed call\n"
                "/site-packages/x.py:3: DeprecationWarning: old\n")
        assert tf_logging.without_native_logs(text) == (
            "E0000 00:00:1795987062.786670    6019 cuda_platform.cc:52] failed call\n"
            "/site-packages/x.py:3: DeprecationWarning: old\n")
