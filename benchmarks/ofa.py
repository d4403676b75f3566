"""Once-for-all against one-step pruning and a uniform cut, on a MobileNetV2-style net.

Fashion-MNIST (Debian's dataset-fashion-mnist), `fashion_models.mobilenet_v2`
(depthwise convs, inverted residual blocks: where channel pruning loses the
most), trained for `--epochs`. Then, at 30%, 50% and 70% fewer FLOPs
(counted by TensorFlow's profiler on the final models):

* uniform cut: every prunable group cut by the same fraction, fine-tuned
  `--finetune_epochs`;
* one-step: `OneStepPruningRunner.search` (`--num_subnets` candidates with
  adaptive BN), the best pruned, fine-tuned `--finetune_epochs`;
* OFA: one supernet (`OFAPruner.ofa_model`) trained `--ofa_epochs` with the
  sandwich rule and distillation, one evolutionary search for all targets,
  each target's subnet extracted with adaptive BN and *not* fine-tuned.

Equal training budget: every method starts from the same baseline, and the
supernet gets as many epochs as one-step fine-tunes over all targets
(`--ofa_epochs` defaults to `--finetune_epochs` x the number of targets); an
OFA epoch runs four subnets and the teacher, so it costs more time than a
fine-tuning epoch: the table reports the time of each method. Searches
score on held-out *training* images; only the final accuracies use the test
set.

Run: `python benchmarks/ofa.py` (several hours on 2 cores; see the
printed times), or `--quick` for a smoke run on a small subset.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tf_keras as keras  # noqa: E402

import vai_optimizer_tf as vot  # noqa: E402
from fashion_models import mobilenet_v2  # noqa: E402
from quality import Data, finish  # noqa: E402  (also puts tests/ on the path)
from profiler_flops import profiler_flops  # noqa: E402


def uniform(baseline, target, data, args, workspace, baseline_flops):
    runner = vot.IterativePruningRunner(baseline, workspace=workspace)
    widths = runner.plan_widths(target, channel_divisible=args.channel_divisible,
                                use_analysis=False)
    spec = runner.build_spec(widths, channel_divisible=args.channel_divisible)
    return finish(runner, spec, runner.get_sparse_model(spec), data, args.finetune_epochs,
                  args.finetune_lr, baseline_flops)


def one_step(baseline, target, data, args, workspace, baseline_flops):
    runner = vot.OneStepPruningRunner(baseline, workspace=workspace)
    runner.search(target, data.held_out_accuracy, data.x_fit,
                  calibration_steps=args.calibration_steps, batch_size=64,
                  num_subnets=args.num_subnets, channel_divisible=args.channel_divisible,
                  verbose=0)
    sparse = runner.prune()
    spec = vot.PruningSpec.load(runner.latest_spec_path())
    return finish(runner, spec, sparse, data, args.finetune_epochs, args.finetune_lr,
                  baseline_flops)


def once_for_all(baseline, targets, data, args, workspace, baseline_flops):
    """Trains one supernet, searches every target; returns (train s, search s, per target)."""
    start = time.time()
    pruner = vot.OFAPruner(baseline, workspace=workspace)
    supernet = pruner.ofa_model(expand_ratios=args.expand_ratios,
                                channel_divisible=args.channel_divisible,
                                search_space=args.search_space)
    print(f"  OFA search space: {supernet.space.describe().splitlines()[0]}")
    data.fit(supernet, args.ofa_epochs, args.ofa_lr)
    trained = time.time()
    front = pruner.search(data.held_out_accuracy, data.x_fit, flops_targets=targets,
                          population=args.population, generations=args.generations,
                          calibration_steps=args.calibration_steps, batch_size=64, verbose=0)
    searched = time.time()
    results = {}
    for target in targets:
        subnet = pruner.get_static_subnet(front[target], calibration_data=data.x_fit,
                                          calibration_steps=args.calibration_steps,
                                          batch_size=64)
        flops = profiler_flops(subnet, [(1, 28, 28, 1)])[0]
        results[target] = {"accuracy": data.test_accuracy(subnet),
                           "reduction": 1 - flops / baseline_flops,
                           "params": subnet.count_params(), "score": front[target].score}
    return trained - start, searched - trained, results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on a small subset")
    parser.add_argument("--epochs", type=int, default=10, help="baseline training epochs")
    parser.add_argument("--finetune_epochs", type=int, default=3,
                        help="fine-tuning epochs of uniform and one-step, per target")
    parser.add_argument("--ofa_epochs", type=int, default=None,
                        help="supernet epochs; defaults to finetune_epochs x targets")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--finetune_lr", type=float, default=5e-4)
    parser.add_argument("--ofa_lr", type=float, default=1e-3)
    parser.add_argument("--num_subnets", type=int, default=100)
    parser.add_argument("--population", type=int, default=30)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--calibration_steps", type=int, default=20)
    parser.add_argument("--channel_divisible", type=int, default=4)
    parser.add_argument("--expand_ratios", default="0.25,0.5,0.75,1.0")
    parser.add_argument("--search_space", default="auto", choices=("auto", "all", "spatial"))
    parser.add_argument("--targets", default="0.3,0.5,0.7")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.finetune_epochs, args.num_subnets = 2, 1, 4
        args.population, args.generations, args.calibration_steps = 6, 2, 4
    targets = [float(t) for t in args.targets.split(",")]
    args.expand_ratios = tuple(float(r) for r in args.expand_ratios.split(","))
    if args.ofa_epochs is None:
        args.ofa_epochs = args.finetune_epochs * len(targets)
    data = Data(args.quick)
    print(f"Fashion-MNIST: {len(data.x_fit)} fit / {len(data.x_hold)} held-out / "
          f"{len(data.x_test)} test; baseline {args.epochs} epochs; uniform and one-step "
          f"fine-tune {args.finetune_epochs} epochs per target; the OFA supernet trains "
          f"{args.ofa_epochs} epochs once for all targets")
    keras.utils.set_random_seed(0)
    start = time.time()
    baseline = data.fit(mobilenet_v2(), args.epochs, args.lr)
    base_acc = data.test_accuracy(baseline)
    baseline_flops = profiler_flops(baseline, [(1, 28, 28, 1)])[0]
    print(f"\nmobilenet_v2: baseline test accuracy {base_acc:.4f}, "
          f"{baseline_flops / 1e6:.2f} MFLOPs, {baseline.count_params():,} params, "
          f"{time.time() - start:.0f} s")
    rows = []
    with tempfile.TemporaryDirectory() as workspace:
        for target in targets:
            for name, method in (("uniform cut", uniform), ("one-step", one_step)):
                keras.utils.set_random_seed(1)
                start = time.time()
                r = method(baseline, target, data, args, workspace, baseline_flops)
                r["seconds"] = time.time() - start
                r["epochs"] = args.finetune_epochs
                rows.append((target, name, r))
                print(f"  {name:<12}{target:>5.0%}  FLOPs -{r['reduction']:.1%}  "
                      f"accuracy {r['accuracy']:.4f}  {r['seconds']:.0f} s", flush=True)
        keras.utils.set_random_seed(1)
        train_s, search_s, ofa = once_for_all(baseline, targets, data, args, workspace,
                                              baseline_flops)
        print(f"  OFA: supernet {args.ofa_epochs} epochs in {train_s:.0f} s, search of all "
              f"targets in {search_s:.0f} s")
        for target in targets:
            r = ofa[target]
            r["seconds"], r["epochs"] = (train_s + search_s) / len(targets), \
                args.ofa_epochs / len(targets)
            rows.append((target, "OFA", r))
    print(f"\n{'target':>7}  {'method':<12}{'FLOPs -':>9}{'accuracy':>10}{'vs base':>10}"
          f"{'params':>10}{'epochs':>8}{'time':>8}")
    for target, name, r in sorted(rows, key=lambda row: row[0]):
        print(f"{target:>7.0%}  {name:<12}{r['reduction']:>9.1%}{r['accuracy']:>10.4f}"
              f"{100 * (r['accuracy'] - base_acc):>+8.2f}pp{r['params']:>10,}"
              f"{r['epochs']:>8.1f}{r['seconds']:>7.0f}s")
    print("(OFA rows: the supernet's epochs and time, and the search's, shared by the "
          "targets)")
    gaps = []
    for target in targets:
        acc = {name: r["accuracy"] for t, name, r in rows if t == target}
        gaps.append(f"{target:.0%} {100 * (acc['OFA'] - acc['one-step']):+.2f}")
    print("OFA minus one-step (pp): " + ", ".join(gaps))


if __name__ == "__main__":
    main()
