"""Latency-targeted vs FLOPs-targeted pruning, side by side in one run.

For each model (tf_keras ResNet50 and MobileNetV2 at `--resolution`), device
(`tf`: a tf.function on this CPU; `tflite`: the interpreter with XNNPACK) and
batch size, and each latency target (0.7, 0.5 and 0.35 of the baseline's):

1. **Latency plan**: `runner.prune(latency=t, device=..., batch_size=...)`
   with the defaults (`channel_divisible="auto"`, no sensitivity analysis:
   each group's loss is the share of its L1 importance pruned). Its predicted
   latency and the closing loop's measurements are reported.
2. **FLOPs plan at the same measured latency**: the same knapsack and the
   same importance penalties, but spending FLOPs (`WidthFlops`) instead of
   measured latency; its FLOPs target is searched (secant on measurements)
   until its measured latency equals the latency plan's.
3. Both slim models and the baseline are then timed once more side by side
   (interleaved rounds, fastest round; see `latency_timer.time_ratio`), and
   their kept FLOPs and params are compared: at equal latency, the latency
   plan should keep at least as many FLOPs (it spends the budget where the
   hardware pays for it).

Goals: |measured / target - 1| <= 7% everywhere; latency plan FLOPs >= FLOPs
plan FLOPs at equal measured latency; no pruned model slower than the
baseline (all measured latencies < 1).

The latency tables are cached in `--workspace` (keyed by device, batch size,
TensorFlow version and CPU), so a second run measures only the models.

Run: python benchmarks/latency.py [--resolution 128] [--quick]
"""

import argparse
import os
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

import vai_optimizer_tf as vot  # noqa: E402
from vai_optimizer_tf.planning import latency_cost  # noqa: E402
from vai_optimizer_tf.planning.budget_allocation import BudgetAllocation  # noqa: E402
from vai_optimizer_tf.planning.divisibility import auto_channel_divisible  # noqa: E402
from vai_optimizer_tf.planning.latency_plan import importance_penalties  # noqa: E402
from vai_optimizer_tf.planning.latency_timer import make_call, time_ratio  # noqa: E402

MODELS = {
    "resnet": ("ResNet50", lambda r: keras.applications.ResNet50(
        weights=None, input_shape=(r, r, 3), classes=100)),
    "mobilenet": ("MobileNetV2", lambda r: keras.applications.MobileNetV2(
        weights=None, input_shape=(r, r, 3), classes=100)),
}


def flops_plan_at(runner, penalties, divisible, measure, latency, steps):
    """The FLOPs-budget plan whose measured latency is `latency` (secant on the FLOPs target)."""
    deps = runner._deps  # pylint: disable=protected-access
    flops = runner._width_flops()  # pylint: disable=protected-access
    allocation = BudgetAllocation(deps.prunable_groups, flops, penalties, divisible)
    points = [(1.0, 1.0)]  # (FLOPs fraction, measured latency fraction)
    fraction = latency
    best = None
    for _ in range(steps):
        kept = allocation.for_budget(fraction * flops.baseline)
        measured = measure(kept)
        if best is None or abs(measured - latency) < abs(best[1] - latency):
            best = (kept, measured)
        points.append((fraction, measured))
        (f1, m1), (f2, m2) = sorted(sorted(points, key=lambda p: abs(p[1] - latency))[:2])
        slope = (m2 - m1) / (f2 - f1) if f2 != f1 else 0.0
        fraction = (f2 + (latency - m2) / slope) if slope > 0 else fraction * latency / measured
        fraction = float(np.clip(fraction, 0.05, 0.99))
    return best


def run_config(key, device, batch, args):
    title, build = MODELS[key]
    keras.utils.set_random_seed(0)
    model = build(args.resolution)
    workspace = os.path.join(args.workspace, f"{key}-{args.resolution}")
    runner = vot.IterativePruningRunner(model, workspace=workspace)
    base = runner.stat()
    print(f"\n{title} {args.resolution}x{args.resolution}, {device}, batch {batch}: "
          f"{len(runner.prunable_groups)} prunable groups", flush=True)
    deps = runner._deps  # pylint: disable=protected-access
    penalties = importance_penalties(deps, runner._adapter.all_weights(),  # pylint: disable=protected-access
                                     deps.prunable_groups)
    session = runner.latency_session(device, batch, verbose=args.verbose)
    rows = []
    for target in args.targets:
        start = time.time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            slim = runner.prune(latency=target, device=device, batch_size=batch, mode="slim",
                                max_measurements=args.max_measurements, verbose=args.verbose)
        spec = vot.PruningSpec.load(runner.latest_spec_path())
        meta = spec.metadata
        plan_seconds = time.time() - start
        flops_kept, flops_measured = flops_plan_at(runner, penalties, spec.channel_divisible,
                                                   session.measure, meta["measured_latency"]
                                                   or meta["predicted_latency"],
                                                   args.flops_steps)
        flops_slim = runner.get_slim_model(runner.build_spec(flops_kept))
        # The final side-by-side: both slim models against the same baseline call.
        base_call = session._baseline_call()  # pylint: disable=protected-access
        lat_ratio, base_s, _ = time_ratio(base_call, make_call(slim, device, batch),
                                          repeats=args.rounds)
        flo_ratio, _, _ = time_ratio(base_call, make_call(flops_slim, device, batch),
                                     repeats=args.rounds)
        flops_stats = runner.stat(runner.build_spec(flops_kept))
        rows.append((target, meta["predicted_latency"], meta["measured_latency"], lat_ratio,
                     spec.metadata["pruned_flops"] / base.flops,
                     spec.metadata["pruned_params"] / base.params, flo_ratio,
                     flops_stats.flops / base.flops, flops_stats.params / base.params,
                     plan_seconds, len(caught), base_s, flops_measured))
    print(f"baseline {1000 * rows[0][11]:.2f} ms (fastest round), "
          f"{base.flops / 1e9:.3f} GFLOPs, {base.params:,} params")
    print(f"{'target':>7}{'pred':>7}{'loop':>7}{'final':>7}{'err':>7}{'FLOPs':>7}{'params':>7}"
          f"   | FLOPs plan:{'final':>7}{'FLOPs':>7}{'params':>7}   {'plan s':>7}")
    for (t, pred, loop, final, fl, pa, f_final, f_fl, f_pa, secs, warned, _, _) in rows:
        loop_text = f"{loop:>7.3f}" if loop is not None else f"{'-':>7}"
        print(f"{t:>7.2f}{pred:>7.3f}{loop_text}{final:>7.3f}{final / t - 1:>+7.1%}{fl:>7.3f}"
              f"{pa:>7.3f}   |            {f_final:>7.3f}{f_fl:>7.3f}{f_pa:>7.3f}   "
              f"{secs:>7.1f}" + ("  (warned)" if warned else ""), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet", "mobilenet"],
                        choices=sorted(MODELS))
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--devices", nargs="+", default=["tf", "tflite"])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.7, 0.5, 0.35])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--max_measurements", type=int, default=4)
    parser.add_argument("--flops_steps", type=int, default=4)
    parser.add_argument("--max_points", type=int, default=latency_cost.MAX_POINTS,
                        help="widths timed per layer axis (the rest is interpolated)")
    parser.add_argument("--workspace", default=os.path.join(tempfile.gettempdir(),
                                                            "vai_latency_benchmark"))
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="MobileNetV2 at 96x96, tf, batch 1, target 0.5, 4 points per axis")
    args = parser.parse_args()
    if args.quick:
        args.models, args.resolution, args.devices = ["mobilenet"], 96, ["tf"]
        args.batch_sizes, args.targets, args.max_points = [1], [0.5], 4
        args.rounds, args.max_measurements, args.flops_steps = 5, 3, 3
    latency_cost.MAX_POINTS = args.max_points
    start = time.time()
    print(f"{os.cpu_count()} CPUs, TF {tf.__version__}, load average at start "
          f"{os.getloadavg()[0]:.2f}, channel_divisible='auto' = "
          f"{auto_channel_divisible()}")
    print("pred: predicted latency / baseline; loop: measured by prune's closing loop; final: "
          "measured again side by side with the FLOPs plan; err: final / target - 1; FLOPs, "
          "params: kept fractions")
    results = []
    for key in args.models:
        for device in args.devices:
            for batch in args.batch_sizes:
                results += run_config(key, device, batch, args)
    errors = [abs(r[3] / r[0] - 1) for r in results]
    wins = sum(r[4] >= r[7] for r in results)
    print(f"\ntotal {time.time() - start:.0f} s, load average at end {os.getloadavg()[0]:.2f}")
    print(f"worst |measured/target - 1|: {max(errors):.1%} (goal <= 7%); latency plan keeps >= "
          f"the FLOPs plan's FLOPs in {wins}/{len(results)}; slowest pruned model: "
          f"{max(max(r[3], r[6]) for r in results):.3f} x the baseline (goal < 1)")


if __name__ == "__main__":
    main()
