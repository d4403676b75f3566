"""Sensitivity-analysis speed: one `ana` step vs a bare `eval_fn` call.

Measured side by side in one run, on a ResNet-style model with at least 20
channel groups (tf_keras ResNet50 on 32x32 inputs, 37 prunable groups):

* bare: `eval_fn(baseline_model)`, the cost of evaluating at all;
* ours: the mean wall time of one `runner.ana` step (in-place masking), the
  whole analysis (evaluation model build included) divided by its steps;
* reference: what Vitis does per step, rebuilding a masked clone of the model
  and evaluating it (which also retraces the evaluation function).

The last line is the key ratio: ours / bare (target <= 1.10).

Run: python benchmarks/ana_speed.py [--samples 512] [--ratios 0.3 0.6]
"""

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

import vai_optimizer_tf as vot  # noqa: E402
from vai_optimizer_tf.masks.slice_plan import SlicePlan  # noqa: E402
from vai_optimizer_tf.planning import importance  # noqa: E402


def make_eval_fn(x, y, batch_size=128):
    """An accuracy eval_fn that traces one tf.function per model it sees."""
    functions = {}

    def eval_fn(model):
        fn = functions.get(id(model))
        if fn is None:
            fn = functions[id(model)] = tf.function(lambda b: model(b, training=False))
        correct = 0
        for i in range(0, len(x), batch_size):
            logits = fn(tf.constant(x[i:i + batch_size]))
            correct += int(np.sum(np.argmax(logits, axis=-1) == y[i:i + batch_size]))
        return correct / len(x)

    return eval_fn


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.6])
    parser.add_argument("--reference_steps", type=int, default=8)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)
    x = np.random.RandomState(0).rand(args.samples, 32, 32, 3).astype("float32")
    y = np.random.RandomState(1).randint(0, 10, args.samples)
    eval_fn = make_eval_fn(x, y)

    eval_fn(model)  # trace once, as ana's first (baseline) step also does
    bare = timed(lambda: eval_fn(model), 5)

    workspace = tempfile.mkdtemp()
    try:
        runner = vot.IterativePruningRunner(model, workspace=workspace)
        groups = runner.prunable_groups
        steps = 1 + len(groups) * len(args.ratios)
        start = time.perf_counter()
        runner.ana(eval_fn, ratios=args.ratios, verbose=0)
        ours = (time.perf_counter() - start) / steps
    finally:
        shutil.rmtree(workspace)

    # Vitis-style reference: a fresh masked model per step.
    deps = runner._deps
    adapter = runner._adapter
    weights = adapter.all_weights()
    reference_times = []
    for group in groups[:args.reference_steps]:
        scores = importance.score_group(deps, group, weights, "l1")
        keep = importance.kept_count(group.width, args.ratios[0])
        start = time.perf_counter()
        plan = SlicePlan(deps, {group.id: importance.select_channels(scores, keep)})
        masked = {**weights, **plan.masked_weights(weights)}
        clone = adapter.rebuild(layer_weights=masked)
        eval_fn(clone)
        reference_times.append(time.perf_counter() - start)
    reference = float(np.mean(reference_times))

    print(f"model: ResNet50 32x32, {len(groups)} prunable groups, {steps} analysis steps, "
          f"{args.samples} eval samples")
    print(f"bare eval_fn(baseline):        {bare * 1000:8.1f} ms")
    print(f"ours, mean analysis step:      {ours * 1000:8.1f} ms  ({ours / bare:.3f}x bare)")
    print(f"rebuild-per-step reference:    {reference * 1000:8.1f} ms  ({reference / bare:.3f}x bare)")
    print(f"reference / ours: {reference / ours:.2f}x")
    print(f"ana step / bare eval_fn: {ours / bare:.3f}x (target <= 1.10)")


if __name__ == "__main__":
    main()
