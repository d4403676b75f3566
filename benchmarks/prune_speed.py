"""Planning speed: `prune(ratio=0.5)` on ResNet50 at 224x224, after `ana`.

Side by side in one run:

* ours: the wall time of `runner.prune(ratio=0.5, channel_divisible=8)`,
  which searches per-group ratios with analytic FLOPs and builds the sparse
  model once;
* reference: the wall time of one slim-model build, the unit of work a
  bisection over slim builds (Vitis: up to 100 of them) repeats.

The analysis uses a cheap eval_fn (mean output on one image), since only the
planning after it is measured. Prints the achieved FLOPs reduction of the
slim model, and last the key figure: prune seconds (target < 5 s).

Run: python benchmarks/prune_speed.py
"""

import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402

import vai_optimizer_tf as vot  # noqa: E402


def main():
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
    x = np.random.RandomState(0).rand(1, 224, 224, 3).astype("float32")

    def eval_fn(m):
        return float(np.mean(m(x, training=False)))

    workspace = tempfile.mkdtemp()
    try:
        runner = vot.IterativePruningRunner(model, workspace=workspace)
        start = time.perf_counter()
        runner.ana(eval_fn, verbose=0)
        ana_seconds = time.perf_counter() - start

        start = time.perf_counter()
        runner.prune(ratio=0.5, channel_divisible=8)
        prune_seconds = time.perf_counter() - start

        start = time.perf_counter()
        slim = runner.get_slim_model()
        slim_seconds = time.perf_counter() - start
        reduction = 1 - vot.stat(slim).flops / vot.stat(model).flops
    finally:
        shutil.rmtree(workspace)

    print(f"ResNet50 224x224: {len(runner.prunable_groups)} prunable groups, ana {ana_seconds:.0f} s")
    print(f"slim model FLOPs reduction: {reduction:.4f} (target 0.5000, channel_divisible=8)")
    print(f"one slim build (reference unit): {slim_seconds:.2f} s")
    print(f"prune(ratio=0.5): {prune_seconds:.2f} s = {prune_seconds / slim_seconds:.2f}x one slim build")
    print(f"prune seconds: {prune_seconds:.2f} (target < 5)")


if __name__ == "__main__":
    main()
