"""CPU latency of slim models vs the baseline, side by side in one run.

For a ResNet-style model (tf_keras ResNet50) and a MobileNetV2-style model
(tf_keras MobileNetV2), the baseline and its slim versions at 30%, 50% and
70% FLOPs reduction are timed:

* at batch 1 and batch 32;
* in TensorFlow (a `tf.function`-compiled call, inference mode) and in the
  TFLite interpreter (float32, converted with `vai_optimizer_tf.export`).

Slim versions come from `runner.uniform_spec(s, channel_divisible=d)`, with
the sparsity `s` bisected on the analytic FLOPs (`runner.stat`) to hit each
target, for every `d` in `--divisible`. For contrast, TFMOT's magnitude
pruning (50% of the weights zeroed, then `strip_pruning`) is timed too: the
model stays dense, so it runs at the baseline's speed.

The measurement is interleaved: each round times every (model, runtime,
batch) configuration once, in a shuffled order, and each variant's speedup is
taken against the baseline's time of the same round; the median over rounds
is printed. So slow drifts of the machine's load cancel out.

Each cell shows the measured speedup, and in brackets the measured speedup
divided by the FLOPs speedup (1.00 means the latency fell as much as the
FLOPs). The last line is the key ratio: that quotient for the ResNet-style
model at batch 32 in TensorFlow with `channel_divisible=--key_divisible`
(default 16), the worst of the three reductions (target >= 0.8).

Run: python benchmarks/slim_speed.py [--resolution 224] [--rounds 9] [--divisible 1 8 16]
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

import vai_optimizer_tf as vot  # noqa: E402
from vai_optimizer_tf import export  # noqa: E402
from vai_optimizer_tf.planning import latency_timer  # noqa: E402

MODELS = {
    "resnet": ("ResNet50", lambda r: keras.applications.ResNet50(
        weights=None, input_shape=(r, r, 3), classes=100)),
    "mobilenet": ("MobileNetV2", lambda r: keras.applications.MobileNetV2(
        weights=None, input_shape=(r, r, 3), classes=100)),
}


def spec_for_reduction(runner, target, divisible, base_flops, steps=14):
    """The uniform spec whose analytic FLOPs reduction is closest to `target`."""
    low, high = 0.0, 0.95
    best = None
    for _ in range(steps):
        sparsity = (low + high) / 2
        spec = runner.uniform_spec(sparsity, channel_divisible=divisible)
        reduction = 1 - runner.stat(spec).flops / base_flops
        if best is None or abs(reduction - target) < abs(best[1] - target):
            best = (spec, reduction, sparsity)
        if reduction < target:
            low = sparsity
        else:
            high = sparsity
    return best


def tfmot_magnitude_pruned(model, sparsity=0.5):
    """TFMOT's unstructured magnitude pruning: same dense layers, half the weights zero."""
    import tensorflow_model_optimization as tfmot  # pylint: disable=import-outside-toplevel
    schedule = tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, frequency=1)
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    wrapped.compile(keras.optimizers.SGD(0.0), keras.losses.MeanSquaredError())
    shape = (2,) + tuple(model.input_shape[1:])
    targets = np.zeros((2,) + tuple(model.output_shape[1:]), "float32")
    wrapped.fit(np.random.rand(*shape).astype("float32"), targets, epochs=1, verbose=0,
                callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    kernels = [w for w in stripped.get_weights() if w.ndim == 4]
    zero = sum(int(np.sum(k == 0)) for k in kernels) / sum(k.size for k in kernels)
    return stripped, zero


def benchmark_family(key, args):
    title, build = MODELS[key]
    keras.utils.set_random_seed(0)
    baseline = build(args.resolution)
    runner = vot.IterativePruningRunner(baseline, workspace=tempfile.mkdtemp())
    base_flops = runner.stat().flops
    variants = [("baseline", baseline, 0.0, "")]
    for divisible in args.divisible:
        for target in args.reductions:
            spec, reduction, sparsity = spec_for_reduction(runner, target, divisible, base_flops)
            label = f"-{target:.0%} d={divisible}"
            note = f"uniform s={sparsity:.3f}"
            variants.append((label, runner.get_slim_model(spec), reduction, note))
    if key == "resnet" and not args.skip_tfmot:
        stripped, zero = tfmot_magnitude_pruned(baseline)
        variants.append(("TFMOT 50% unstructured", stripped, 0.0,
                         f"{zero:.0%} of conv weights zero"))
    print(f"\n{title} {args.resolution}x{args.resolution}: {len(runner.prunable_groups)} "
          f"prunable groups, baseline {base_flops / 1e9:.3f} GFLOPs, "
          f"{baseline.count_params():,} params", flush=True)

    runtimes = [("tf", b) for b in args.batch_sizes]
    if not args.skip_tflite:
        runtimes += [("tflite", b) for b in args.batch_sizes]
    keys, calls = [], []
    for label, model, _, _ in variants:
        content = export.convert_to_tflite(model) if not args.skip_tflite else None
        for runtime, batch in runtimes:
            keys.append((label, runtime, batch))
            calls.append(latency_timer.TfCall(model, batch) if runtime == "tf" else
                         latency_timer.TfliteCall(model, batch, args.threads, content=content))
    # seconds[k, r]: variant/runtime k in round r; a speedup is taken within a round.
    seconds = dict(zip(keys, latency_timer.time_rounds(calls, args.rounds, min_seconds=0.05)))
    speedups = {k: seconds[("baseline",) + k[1:]] / seconds[k] for k in keys}
    base_times = {r: seconds[("baseline",) + r] for r in runtimes}

    header = f"{'variant':<24}{'FLOPs red.':>11}{'FLOPs x':>9}"
    for runtime, batch in runtimes:
        header += f"{f'{runtime} b{batch}':>16}"
    print(header)
    line = f"{'baseline latency':<24}{'':>11}{'':>9}"
    for runtime, batch in runtimes:
        line += f"{np.median(base_times[(runtime, batch)]) * 1000:>13.1f} ms"
    print(line)
    results = {}
    for label, model, reduction, note in variants[1:]:
        flops_speedup = 1 / (1 - reduction)
        line = f"{label:<24}{reduction:>10.1%} {flops_speedup:>8.2f}x"
        for runtime, batch in runtimes:
            speedup = float(np.median(speedups[(label, runtime, batch)]))
            results[(label, runtime, batch)] = (speedup, flops_speedup)
            line += f"{speedup:>8.2f}x ({speedup / flops_speedup:.2f})"
        print(line + f"   {note}", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet", "mobilenet"],
                        choices=sorted(MODELS))
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--reductions", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--divisible", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--key_divisible", type=int, default=16)
    parser.add_argument("--skip_tflite", action="store_true")
    parser.add_argument("--skip_tfmot", action="store_true")
    args = parser.parse_args()

    start = time.time()
    print(f"{os.cpu_count()} CPUs, TF {tf.__version__}, {args.rounds} interleaved rounds, "
          f"load average at start {os.getloadavg()[0]:.2f}")
    print("cells: measured speedup vs baseline (measured / FLOPs speedup)")
    results = {key: benchmark_family(key, args) for key in args.models}
    print(f"\ntotal {time.time() - start:.0f} s, load average at end {os.getloadavg()[0]:.2f}")
    if "resnet" in results and 32 in args.batch_sizes:
        ratios = [results["resnet"][(f"-{t:.0%} d={args.key_divisible}", "tf", 32)]
                  for t in args.reductions if (f"-{t:.0%} d={args.key_divisible}", "tf", 32)
                  in results["resnet"]]
        if ratios:
            parts = ", ".join(f"{s:.2f}x/{f:.2f}x" for s, f in ratios)
            worst = min(s / f for s, f in ratios)
            print(f"ResNet50 batch 32 tf.function, channel_divisible={args.key_divisible}, "
                  f"measured/FLOPs speedup at "
                  f"{'/'.join(f'{t:.0%}' for t in args.reductions)}: {parts}; "
                  f"key ratio (worst) {worst:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
