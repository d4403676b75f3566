"""Specification: every model, plot and export file is written atomically.

A writer killed at any moment leaves the previous file (or folder) or the
complete new one at the target path, never a truncated one:

* `kill -9` of a process saving over a good `.keras` file, or a SavedModel
  folder, at several moments: the target still loads, as the old model or
  the new one (checked by their outputs), in this process with plain Keras
  and TensorFlow loaders.
* Without `renameat2`, the worst moment (the previous folder moved aside, the
  new one not yet renamed in) leaves the previous folder at `NAME.old-*`,
  complete and loadable, as `vai_optimizer_tf.utils.atomic` documents.
* Every writer (`.keras`, `.h5`, SavedModel, frozen graph, TFLite,
  `export_model`, `SlimModelExport`, the sensitivity plot) leaves the previous
  file byte for byte when it is interrupted just before the rename.
* `overwrite=False` refuses existing paths before writing anything.
"""

import glob
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import vai_optimizer_tf as vot
from tests import save_loop_worker
from vai_optimizer_tf import export
from vai_optimizer_tf.analysis.sensitivity_cache import SensitivityCache
from vai_optimizer_tf.utils import atomic

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "save_loop_worker.py")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Seconds after the worker is ready: spread over several save cycles (a .keras save of the
# 17 MB model takes about 0.07 s here, a SavedModel about 0.4 s).
KILL_DELAYS = (0.13, 0.57, 1.3)


@pytest.fixture(scope="module")
def probe():
    return np.random.RandomState(0).rand(3, 64).astype("float32")


@pytest.fixture(scope="module")
def expected(probe):
    """Outputs of the previous (old) and the newly saved (new) model."""
    return {"old": save_loop_worker.build_model(save_loop_worker.OLD_SEED).predict(probe, verbose=0),
            "new": save_loop_worker.build_model(save_loop_worker.NEW_SEED).predict(probe, verbose=0)}


def which_model(outputs, expected):
    for label, values in expected.items():
        if np.allclose(outputs, values, rtol=1e-5, atol=1e-6):
            return label
    raise AssertionError("the file loads but holds neither the old nor the new model")


def run_and_kill(fmt, paths, modes=None):
    """One worker per path, saving over it in a loop; each is SIGKILLed at its own moment.

    The workers run side by side (each imports TensorFlow); worker `i` is killed
    `KILL_DELAYS[i]` seconds after it is ready.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    modes = modes or ["exchange"] * len(paths)
    workers = [subprocess.Popen([sys.executable, WORKER, fmt, path, mode], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for path, mode in zip(paths, modes)]
    try:
        ready = []
        for worker in workers:
            line = worker.stdout.readline()
            assert line.strip() == "ready", worker.communicate(timeout=60)[1][-3000:]
            ready.append(time.monotonic())
        kills = sorted((start + delay, i) for i, (start, delay)
                       in enumerate(zip(ready, KILL_DELAYS)))
        for moment, i in kills:
            time.sleep(max(0.0, moment - time.monotonic()))
            assert workers[i].poll() is None, workers[i].communicate()[1][-3000:]
            workers[i].send_signal(signal.SIGKILL)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.communicate(timeout=60)
    return [worker.returncode for worker in workers]


def leftovers(path):
    """What a killed write left next to `path` (temporaries, folders set aside)."""
    folder, base = os.path.split(path)
    root = os.path.splitext(base)[0]
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, f".{root}.tmp-*"))
                  + glob.glob(os.path.join(folder, f"{base}.old-*")))


class TestKilledWhileSaving:

    def test_keras_file_survives_sigkill_at_any_moment(self, tmp_path, probe, expected):
        old = save_loop_worker.build_model(save_loop_worker.OLD_SEED)
        paths = []
        for i in range(len(KILL_DELAYS)):
            paths.append(str(tmp_path / f"trial{i}" / "big.keras"))
            os.makedirs(os.path.dirname(paths[-1]))
            old.save(paths[-1])

        status = run_and_kill("keras", paths)

        assert status == [-signal.SIGKILL] * len(paths)
        seen = []
        for path in paths:
            seen.append(which_model(keras.models.load_model(path).predict(probe, verbose=0),
                                    expected))
            assert all(name.startswith(".big.tmp-") for name in leftovers(path))
        # The kills hit writes in progress (they left a temporary file) and finished ones.
        assert any(leftovers(path) for path in paths), seen
        assert "new" in seen

    def test_saved_model_folder_survives_sigkill_at_any_moment(self, tmp_path, probe, expected):
        old = save_loop_worker.build_model(save_loop_worker.OLD_SEED)
        paths = []
        modes = ["exchange", "two_renames", "exchange"]
        for i in range(len(modes)):
            paths.append(str(tmp_path / f"trial{i}" / "serving"))
            export.export_saved_model(old, paths[-1], print_fn=None)

        status = run_and_kill("saved_model", paths, modes)

        assert status == [-signal.SIGKILL] * len(paths)
        seen = []
        for path, mode in zip(paths, modes):
            set_aside = [name for name in leftovers(path) if name.startswith("serving.old-")]
            if mode == "exchange" or os.path.exists(path):
                assert not set_aside
                location = path
            else:  # killed between the two renames: the previous folder is complete, aside
                assert len(set_aside) == 1
                location = os.path.join(os.path.dirname(path), set_aside[0])
            serve = tf.saved_model.load(location).signatures["serving_default"]
            seen.append(which_model(serve(features=tf.constant(probe))["scores"].numpy(),
                                    expected))
        assert any(name.startswith(".serving.tmp-") for p in paths for name in leftovers(p))

    def test_worst_moment_without_exchange_leaves_the_previous_folder_aside(
            self, tmp_path, probe, expected):
        path = str(tmp_path / "serving")
        export.export_saved_model(save_loop_worker.build_model(save_loop_worker.OLD_SEED), path,
                                  print_fn=None)

        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, WORKER, "saved_model", path,
                               "die_between_renames"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)

        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
        assert not os.path.exists(path)
        aside = [n for n in leftovers(path) if n.startswith("serving.old-")]
        new = [n for n in leftovers(path) if n.startswith(".serving.tmp-")]
        assert len(aside) == 1 and len(new) == 1
        # The documented recovery: rename the previous folder back.
        os.rename(os.path.join(tmp_path, aside[0]), path)
        serve = tf.saved_model.load(path).signatures["serving_default"]
        assert which_model(serve(features=tf.constant(probe))["scores"].numpy(),
                           expected) == "old"
        # The new folder was complete too, only not renamed in yet.
        serve = tf.saved_model.load(os.path.join(tmp_path, new[0])).signatures["serving_default"]
        assert which_model(serve(features=tf.constant(probe))["scores"].numpy(),
                           expected) == "new"


@pytest.fixture(scope="module")
def tiny():
    return keras.Sequential([keras.Input((4,), name="features"),
                             keras.layers.Dense(2, name="scores")], name="tiny")


def _previous(path, directory=False):
    """Puts a recognisable previous version at `path`; returns a snapshot function."""
    if directory:
        os.makedirs(path)
        with open(os.path.join(path, "previous.txt"), "w") as f:
            f.write("previous")
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"previous")

    def snapshot():
        if directory:
            return {name: open(os.path.join(path, name), "rb").read()
                    for name in sorted(os.listdir(path))}
        return open(path, "rb").read()

    return snapshot


def interrupt_atomic_writes(monkeypatch):
    """Makes every atomic write fail after the writer finished, just before the rename."""

    def fail(path):
        raise RuntimeError(f"interrupted before renaming {os.path.basename(path)}")

    monkeypatch.setattr(atomic, "_fsync", fail, raising=False)  # raising=False: see the old code fail


@pytest.fixture()
def interrupt_before_rename(monkeypatch):
    interrupt_atomic_writes(monkeypatch)


def _sparse_runner(tmp_path):
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv2")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(x))
    runner = vot.IterativePruningRunner(model, workspace=str(tmp_path / "ws"))
    spec = runner.uniform_spec(0.5, channel_divisible=1)
    return runner, runner.get_sparse_model(spec)


# Writer -> (writes a folder, file name, call).
WRITERS = {
    "keras": (False, "m.keras", lambda model, path: export.save_keras(model, path)),
    "h5": (False, "m.h5", lambda model, path: export.save_keras(model, path)),
    "saved_model": (True, "serving", lambda model, path: export.export_saved_model(
        model, path, print_fn=None)),
    "frozen_graph": (False, "m.pb", lambda model, path: export.export_frozen_graph(
        model, path, print_fn=None)),
    "pbtxt": (False, "m.pbtxt", lambda model, path: export.export_frozen_graph(
        model, path[:-len("txt")], as_text=True, print_fn=None)),
    "tflite": (False, "m.tflite", lambda model, path: export.export_tflite(
        model, path, print_fn=None)),
    "export_model": (False, "tiny.tflite", lambda model, path: export.export_model(
        model, os.path.dirname(path), formats="tflite", print_fn=None)),
}


class TestInterruptedWritesKeepThePreviousFile:

    @pytest.mark.parametrize("writer", WRITERS)
    def test_export_writer(self, tiny, tmp_path, interrupt_before_rename, writer):
        directory, name, write = WRITERS[writer]
        path = str(tmp_path / "out" / name)
        snapshot = _previous(path, directory)
        before = snapshot()

        with pytest.raises(RuntimeError, match="interrupted before renaming"):
            write(tiny, path)

        assert snapshot() == before
        assert os.listdir(tmp_path / "out") == [name]  # no temporary file left behind

    @pytest.mark.parametrize("filename", ["slim.keras", "slim_saved_model"])
    def test_slim_model_export_callback(self, tmp_path, monkeypatch, filename):
        runner, sparse = _sparse_runner(tmp_path)
        path = str(tmp_path / "out" / filename)
        directory = not filename.endswith(".keras")
        snapshot = _previous(path, directory)
        before = snapshot()
        callback = vot.callbacks.SlimModelExport(runner, path)
        callback.set_model(sparse)
        interrupt_atomic_writes(monkeypatch)

        with pytest.raises(RuntimeError, match="interrupted before renaming"):
            callback.on_train_end()

        assert snapshot() == before
        assert os.listdir(tmp_path / "out") == [filename]

    def test_slim_model_export_callback_writes_loadable_models(self, tmp_path):
        runner, sparse = _sparse_runner(tmp_path)
        x = np.random.RandomState(0).rand(2, 8, 8, 3).astype("float32")
        for filename in ("slim.keras", "slim_saved_model"):
            path = str(tmp_path / "out" / filename)
            callback = vot.callbacks.SlimModelExport(runner, path)
            callback.set_model(sparse)
            callback.on_train_end()
            callback.on_train_end()  # again, over the first one
            loaded = keras.models.load_model(path)
            np.testing.assert_allclose(loaded.predict(x, verbose=0), sparse.predict(x, verbose=0),
                                       rtol=1e-5, atol=1e-6)
            assert os.path.isfile(path + ".spec.json")
        assert sorted(os.listdir(tmp_path / "out")) == [
            "slim.keras", "slim.keras.spec.json", "slim_saved_model",
            "slim_saved_model.spec.json"]

    def test_sensitivity_plot(self, tmp_path, interrupt_before_rename):
        cache = SensitivityCache({"ratios": [0.5], "mode": "max"}, baseline=0.9,
                                 results={"conv1": {"0.5000": 0.8}})
        path = str(tmp_path / "out" / "sensitivity.png")
        snapshot = _previous(path)

        with pytest.raises(RuntimeError, match="interrupted before renaming"):
            cache.plot(path, ["conv1"], "model")

        assert snapshot() == b"previous"
        assert os.listdir(tmp_path / "out") == ["sensitivity.png"]

    def test_sensitivity_plot_is_a_png(self, tmp_path):
        cache = SensitivityCache({"ratios": [0.5], "mode": "max"}, baseline=0.9,
                                 results={"conv1": {"0.5000": 0.8}})
        path = str(tmp_path / "sensitivity.png")
        assert cache.plot(path, ["conv1"], "model")
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.listdir(tmp_path) == ["sensitivity.png"]


class TestAtomicPath:

    def test_a_file_gets_the_umask_permissions_and_no_temporary_stays(self, tmp_path):
        previous = os.umask(0o027)
        try:
            atomic.write_text_atomic(tmp_path / "a.json", "{}")
        finally:
            os.umask(previous)
        assert os.stat(tmp_path / "a.json").st_mode & 0o777 == 0o640
        assert os.listdir(tmp_path) == ["a.json"]

    def test_the_temporary_name_keeps_the_extension_and_sits_next_to_the_target(self, tmp_path):
        with atomic.atomic_path(tmp_path / "model.keras") as tmp:
            assert os.path.dirname(tmp) == str(tmp_path)
            assert os.path.basename(tmp).startswith(".model.tmp-")
            assert tmp.endswith(".keras") and os.path.isfile(tmp)

    @pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two_renames"])
    def test_a_folder_replaces_the_previous_one_as_a_whole(self, tmp_path, monkeypatch,
                                                           exchange):
        monkeypatch.setattr(atomic, "_EXCHANGE_SUPPORTED", exchange)
        target = tmp_path / "serving"
        _previous(str(target), directory=True)
        with atomic.atomic_path(target, directory=True) as tmp:
            with open(os.path.join(tmp, "new.txt"), "w") as f:
                f.write("new")
        assert os.listdir(target) == ["new.txt"]
        assert os.listdir(tmp_path) == ["serving"]

    @pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two_renames"])
    def test_concurrent_writers_of_one_folder_leave_one_complete_version(self, tmp_path,
                                                                        monkeypatch, exchange):
        monkeypatch.setattr(atomic, "_EXCHANGE_SUPPORTED", exchange)
        target = tmp_path / "serving"

        def write(writer):
            for version in range(20):
                with atomic.atomic_path(target, directory=True) as tmp:
                    for part in ("a", "b"):
                        with open(os.path.join(tmp, part), "w") as f:
                            f.write(f"{writer}.{version}")

        threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert os.listdir(tmp_path) == ["serving"]
        assert sorted(os.listdir(target)) == ["a", "b"]
        assert (target / "a").read_text() == (target / "b").read_text()

    def test_a_failed_write_removes_its_temporary_folder(self, tmp_path):
        with pytest.raises(ValueError):
            with atomic.atomic_path(tmp_path / "serving", directory=True) as tmp:
                open(os.path.join(tmp, "half"), "w").close()
                raise ValueError("writer failed")
        assert os.listdir(tmp_path) == []

    def test_a_file_cannot_replace_a_folder(self, tmp_path):
        with pytest.raises(IsADirectoryError):
            with atomic.atomic_path(tmp_path):
                pass

    def test_a_folder_cannot_replace_a_file(self, tmp_path):
        (tmp_path / "m").write_text("x")
        with pytest.raises(NotADirectoryError):
            with atomic.atomic_path(tmp_path / "m", directory=True):
                pass


class TestOverwriteFalse:
    """`overwrite=False` raises `FileExistsError` naming the path, and writes nothing."""

    @pytest.mark.parametrize("call, name", [
        (lambda m, p: export.save_keras(m, p, overwrite=False), "m.keras"),
        (lambda m, p: export.export_saved_model(m, p, print_fn=None, overwrite=False), "sm"),
        (lambda m, p: export.export_frozen_graph(m, p, print_fn=None, overwrite=False), "m.pb"),
        (lambda m, p: export.export_tflite(m, p, print_fn=None, overwrite=False), "m.tflite"),
    ], ids=["save_keras", "export_saved_model", "export_frozen_graph", "export_tflite"])
    def test_single_format_writers(self, tiny, tmp_path, call, name):
        path = str(tmp_path / name)
        snapshot = _previous(path, directory=name == "sm")
        with pytest.raises(FileExistsError, match="already exists. Pass overwrite=True") as info:
            call(tiny, path)
        assert info.value.filename == path
        assert snapshot() == (b"previous" if name != "sm" else {"previous.txt": b"previous"})

    def test_export_model_checks_every_path_before_writing(self, tiny, tmp_path):
        (tmp_path / "tiny.tflite").write_bytes(b"previous")
        with pytest.raises(FileExistsError) as info:
            export.export_model(tiny, tmp_path, formats="keras,saved_model,tflite",
                                print_fn=None, overwrite=False)
        assert info.value.filename == str(tmp_path / "tiny.tflite")
        assert os.listdir(tmp_path) == ["tiny.tflite"]  # not even tiny.keras was written

    def test_the_default_replaces_as_model_save_does(self, tiny, tmp_path):
        (tmp_path / "tiny.keras").write_bytes(b"previous")
        paths = export.export_model(tiny, tmp_path, formats="keras", print_fn=None)
        assert keras.models.load_model(paths["keras"]).name == "tiny"

    def test_output_paths_lists_what_export_model_writes(self, tiny, tmp_path):
        formats = "keras,h5,saved_model,pbtxt,tflite,tflite_int8"
        planned = export.output_paths(tmp_path, formats, "tiny")
        x = np.random.RandomState(0).rand(8, 4).astype("float32")
        export.export_model(tiny, tmp_path, formats=formats, representative_data=x,
                            print_fn=None)
        assert sorted(planned) == sorted(str(p) for p in tmp_path.iterdir())
