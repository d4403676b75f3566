"""Saves one model over and over with the library's writers, until it is killed.

Usage: python save_loop_worker.py FORMAT PATH [MODE]

FORMAT is `keras` (`export.save_keras`) or `saved_model`
(`export.export_saved_model`). The model is `build_model(NEW_SEED)`. The
worker prints `ready` once TensorFlow is up and the model is built, then saves
to PATH in a loop; `tests/test_atomic_writes.py` SIGKILLs it at chosen
moments and checks what PATH holds. MODE is for folders only:

* `exchange` (default): folders are swapped in atomically (Linux).
* `two_renames`: as on systems without `renameat2`: the previous folder is
  moved aside, then the new one renamed in.
* `die_between_renames`: `two_renames`, and the process kills itself right
  after moving the previous folder aside, the worst moment.
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tf_keras as keras  # noqa: E402

OLD_SEED, NEW_SEED = 0, 1


def build_model(seed):
    """About 4.3M parameters (17 MB), so a save takes long enough to be interrupted."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,), name="features")
    x = keras.layers.Dense(2048, activation="relu", name="hidden1")(inputs)
    x = keras.layers.Dense(2048, activation="relu", name="hidden2")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="scores")(x), name="big")


def main():
    fmt, path = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "exchange"
    from vai_optimizer_tf import export  # pylint: disable=import-outside-toplevel
    from vai_optimizer_tf.utils import atomic  # pylint: disable=import-outside-toplevel

    if mode in ("two_renames", "die_between_renames"):
        atomic._EXCHANGE_SUPPORTED = False  # pylint: disable=protected-access
    if mode == "die_between_renames":
        move = atomic._rename_to_new_sibling  # pylint: disable=protected-access

        def move_then_die(src, target, mark):
            moved = move(src, target, mark)
            if mark == atomic._OLD_MARK:  # pylint: disable=protected-access
                os.kill(os.getpid(), signal.SIGKILL)
            return moved

        atomic._rename_to_new_sibling = move_then_die  # pylint: disable=protected-access
    model = build_model(NEW_SEED)
    print("ready", flush=True)
    while True:
        if fmt == "keras":
            export.save_keras(model, path)
        else:
            export.export_saved_model(model, path, print_fn=None)


if __name__ == "__main__":
    main()
