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

import numpy as np
import pytest
import tf_keras as keras

import vai_optimizer_tf as vot
from vai_optimizer_tf import datasets
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


def _tiny_model():
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


def test_error_in_a_real_process_is_one_line_with_status_1(project):
    proc = _cli(project, "--action=stat", "--model=missing.keras")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "vai_p_tf2" in line]
    assert errors == ["vai_p_tf2: error: --model: no such file or folder: 'missing.keras'"]
    assert "Traceback" not in proc.stderr


def _run(argv, capsys):
    status = cli_main(["vai_p_tf2", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_help_describes_every_action_and_flag(capsys):
    status, out, _ = _run(["--help"], capsys)
    assert status == 0
    for action in ("ana", "prune", "finetune", "transform", "stat", "export"):
        assert re.search(rf"^  {action} ", out, re.M), action
    for name in FLAGS:
        if len(name) > 1:  # the short alias -v is listed with --verbosity
            assert f"--{name}" in out or f"--[no]{name}" in out, name


@pytest.mark.parametrize("argv, message", [
    (["--action=stat", "--model=nowhere.keras"], "--model: no such file or folder"),
    (["--action=stat", "--model=junk.keras"], "--model: cannot load 'junk.keras'"),
    (["--action=stat", "--model=user_fns.py"], "is neither a .keras/.h5 file"),
    (["--action=ana", "--model=base.keras", "--eval_fn=user_fns"],
     "--eval_fn: expected module:function"),
    (["--action=ana", "--model=base.keras", "--eval_fn=no_such_module:f"],
     "--eval_fn: cannot import 'no_such_module': ModuleNotFoundError"),
    (["--action=ana", "--model=base.keras", "--eval_fn=user_fns:missing"],
     "--eval_fn: module 'user_fns' has no attribute 'missing'"),
    (["--action=ana", "--model=base.keras", "--eval_fn=user_fns:NOT_A_FUNCTION"],
     "is a int, not a function"),
    (["--action=ana", "--model=base.keras", "--eval_fn=user_fns:nothing",
      "--workspace=ws_nothing"], "--eval_fn: nothing returned None"),
    (["--action=ana", "--model=base.keras"], "needs --eval_fn=module:function or --dataset"),
    (["--action=prune", "--model=base.keras"], "needs --ratio"),
    (["--action=transform", "--model=base.keras", "--workspace=empty_ws"], "needs --spec"),
    (["--action=export", "--model=base.keras", "--formats=onnx"], "--formats: expected names"),
    (["--action=export", "--model=base.keras", "--formats=tflite_int8"],
     "needs calibration data"),
    (["--action=stat", "--model=base.keras", "--input_shape=1,x,28,1"],
     "--input_shape: expected comma-separated positive integers"),
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
])
def test_bad_flags_are_one_line_with_status_2(capsys, argv, message):
    status, _, err = _run(argv, capsys)
    assert status == 2
    assert err.count("\n") == 1 and message in err, err


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
