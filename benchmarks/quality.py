"""Accuracy after pruning and fine-tuning: uniform L1, iterative and one-step, side by side.

Fashion-MNIST (Debian's dataset-fashion-mnist), two architectures trained to
convergence, pruned to 50% and 70% fewer FLOPs (counted by TensorFlow's
profiler on the slim models). Every method gets the same fine-tuning budget
(at most 30% of the baseline's epochs) on the same data:

* uniform L1: every group cut by the same fraction (`plan_widths` without
  analysis), then fine-tuned;
* iterative: `ana` once, then `prune` in two steps (60% of the target, then
  the target), half of the budget after each;
* one-step: `OneStepPruningRunner.search` over candidate subnets with
  adaptive BN, `prune()` to the best, fine-tuned once;
* on the VGG-style net, also one-shot `ana` + `prune` with the previous
  allocation (prune every group as far as a common drop tolerance allows,
  `RatioSearch`) against the current one (least predicted drop per FLOP).

Analysis and search score candidates on held-out *training* images; only the
final accuracy, of the slim model rebuilt from the fine-tuned weights, uses
the test set.

Run: `python benchmarks/quality.py` (about two hours on 2 cores), or
`--quick` for a smoke run on a small subset.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402

import vai_optimizer_tf as vot  # noqa: E402
from vai_optimizer_tf import datasets  # noqa: E402
from vai_optimizer_tf.planning.ratio_search import RatioSearch, drop_curves  # noqa: E402
from vai_optimizer_tf.planning.width_flops import WidthFlops  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fashion_models import resnet20, vgg_dense_head  # noqa: E402
from profiler_flops import profiler_flops  # noqa: E402


def compile_for(model, lr, epochs, steps_per_epoch):
    schedule = keras.optimizers.schedules.CosineDecay(lr, max(epochs * steps_per_epoch, 1))
    model.compile(keras.optimizers.Adam(schedule),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


class Data:
    def __init__(self, quick):
        (x, y), (x_test, y_test) = datasets.load_fashion_mnist()
        rs = np.random.RandomState(0)
        order = rs.permutation(len(x))
        x, y = x[order], y[order]
        n_hold = 1000 if quick else 5000
        self.x_hold, self.y_hold = x[:n_hold], y[:n_hold]
        self.x_fit, self.y_fit = x[n_hold:], y[n_hold:]
        self.x_test, self.y_test = x_test, y_test
        if quick:
            self.x_fit, self.y_fit = self.x_fit[:3000], self.y_fit[:3000]
            self.x_test, self.y_test = x_test[:2000], y_test[:2000]
        self.batch = 128

    def steps(self):
        return -(-len(self.x_fit) // self.batch)

    def fit(self, model, epochs, lr):
        compile_for(model, lr, epochs, self.steps())
        model.fit(self.x_fit, self.y_fit, batch_size=self.batch, epochs=epochs, verbose=0,
                  shuffle=True)
        return model

    def held_out_accuracy(self, model):
        logits = model.predict(self.x_hold, batch_size=500, verbose=0)
        return float(np.mean(np.argmax(logits, -1) == self.y_hold))

    def test_accuracy(self, model):
        logits = model.predict(self.x_test, batch_size=500, verbose=0)
        return float(np.mean(np.argmax(logits, -1) == self.y_test))


def finish(runner, spec, sparse, data, epochs, lr, baseline_flops):
    """Fine-tunes `sparse`, rebuilds the slim model from its weights, scores it."""
    data.fit(sparse, epochs, lr)
    slim = runner.get_slim_model(spec, weights_from=sparse)
    flops = profiler_flops(slim, [(1, 28, 28, 1)])[0]
    return {"accuracy": data.test_accuracy(slim), "reduction": 1 - flops / baseline_flops,
            "params": slim.count_params()}


def uniform(baseline, target, data, args, workspace):
    runner = vot.IterativePruningRunner(baseline, workspace=workspace)
    spec = runner.build_spec(runner.plan_widths(target, use_analysis=False))
    return runner, spec, runner.get_sparse_model(spec)


def one_shot(baseline, target, data, args, workspace, old_allocation):
    runner = vot.IterativePruningRunner(baseline, workspace=workspace)
    if not old_allocation:
        sparse = runner.prune(ratio=target)
        return runner, vot.PruningSpec.load(runner.latest_spec_path()), sparse
    deps = runner._deps  # the previous allocation, as prune() did before
    cache = runner.sensitivity()
    kept = RatioSearch(deps.prunable_groups, WidthFlops(deps), drop_curves(cache, deps),
                       max_ratio=max(cache.ratios)).for_flops_reduction(target)
    spec = runner.build_spec(kept)
    return runner, spec, runner.get_sparse_model(spec)


def run_method(name, baseline, target, data, args, workspace, baseline_flops):
    start = time.time()
    epochs = args.finetune_epochs
    if name == "uniform L1":
        runner, spec, sparse = uniform(baseline, target, data, args, workspace)
        result = finish(runner, spec, sparse, data, epochs, args.finetune_lr, baseline_flops)
    elif name.startswith("one-shot"):
        runner, spec, sparse = one_shot(baseline, target, data, args, workspace,
                                        old_allocation="old" in name)
        result = finish(runner, spec, sparse, data, epochs, args.finetune_lr, baseline_flops)
    elif name == "iterative":
        model = keras.models.clone_model(baseline)
        model.set_weights(baseline.get_weights())
        steps = (round(0.6 * target, 2), target)
        for i, ratio in enumerate(steps):
            runner = vot.IterativePruningRunner(model, workspace=workspace)
            sparse = runner.prune(ratio=ratio)
            budget = epochs // 2 if i == 0 else epochs - epochs // 2
            data.fit(sparse, budget, args.finetune_lr)
            model.set_weights(sparse.get_weights())
        runner = vot.IterativePruningRunner(model, workspace=workspace)
        slim = runner.get_slim_model(weights_from=sparse)
        flops = profiler_flops(slim, [(1, 28, 28, 1)])[0]
        result = {"accuracy": data.test_accuracy(slim), "reduction": 1 - flops / baseline_flops,
                  "params": slim.count_params()}
    elif name == "one-step":
        runner = vot.OneStepPruningRunner(baseline, workspace=workspace)
        runner.search(target, data.held_out_accuracy, data.x_fit,
                      calibration_steps=args.calibration_steps, batch_size=64,
                      num_subnets=args.num_subnets, verbose=0)
        sparse = runner.prune()
        spec = vot.PruningSpec.load(runner.latest_spec_path())
        result = finish(runner, spec, sparse, data, epochs, args.finetune_lr, baseline_flops)
        result["subnet"] = spec.metadata["subnet_index"]
    else:
        raise ValueError(name)
    result["seconds"] = time.time() - start
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on a small subset")
    parser.add_argument("--epochs", type=int, default=20, help="baseline training epochs")
    parser.add_argument("--finetune_epochs", type=int, default=6,
                        help="fine-tuning budget of every method (<= 30%% of --epochs)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--finetune_lr", type=float, default=5e-4)
    parser.add_argument("--num_subnets", type=int, default=200)
    parser.add_argument("--calibration_steps", type=int, default=50)
    parser.add_argument("--models", default="vgg_dense_head,resnet20")
    parser.add_argument("--targets", default="0.5,0.7")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.finetune_epochs, args.num_subnets, args.calibration_steps = 7, 2, 6, 4
    if args.finetune_epochs > 0.3 * args.epochs + 1e-9:
        parser.error("--finetune_epochs must be at most 30% of --epochs")
    data = Data(args.quick)
    builders = {"vgg_dense_head": vgg_dense_head, "resnet20": resnet20}
    targets = [float(t) for t in args.targets.split(",")]
    summary = []
    print(f"Fashion-MNIST: {len(data.x_fit)} fit / {len(data.x_hold)} held-out / "
          f"{len(data.x_test)} test; baseline {args.epochs} epochs, fine-tuning "
          f"{args.finetune_epochs} epochs per method")
    for model_name in args.models.split(","):
        keras.utils.set_random_seed(0)
        baseline = data.fit(builders[model_name](), args.epochs, args.lr)
        base_acc = data.test_accuracy(baseline)
        baseline_flops = profiler_flops(baseline, [(1, 28, 28, 1)])[0]
        print(f"\n{model_name}: baseline test accuracy {base_acc:.4f}, "
              f"{baseline_flops / 1e6:.2f} MFLOPs, {baseline.count_params():,} params")
        with tempfile.TemporaryDirectory() as workspace:
            start = time.time()
            vot.IterativePruningRunner(baseline, workspace=workspace).ana(
                data.held_out_accuracy, verbose=0)
            print(f"  ana on {len(data.x_hold)} held-out images: {time.time() - start:.0f} s")
            methods = ["uniform L1", "iterative", "one-step"]
            if model_name == "vgg_dense_head":
                methods += ["one-shot ana+prune (old allocation)", "one-shot ana+prune"]
            print(f"  {'method':<38}{'target':>7}{'FLOPs -':>9}{'accuracy':>10}{'vs base':>9}"
                  f"{'params':>10}{'time':>7}")
            for target in targets:
                for method in methods:
                    keras.utils.set_random_seed(1)
                    r = run_method(method, baseline, target, data, args, workspace,
                                   baseline_flops)
                    delta = 100 * (r["accuracy"] - base_acc)
                    print(f"  {method:<38}{target:>7.0%}{r['reduction']:>9.1%}"
                          f"{r['accuracy']:>10.4f}{delta:>+8.2f}pp{r['params']:>10,}"
                          f"{r['seconds']:>6.0f}s", flush=True)
                    summary.append((model_name, target, method, r["accuracy"], base_acc))
    print("\none-step minus the best of uniform L1 and iterative (pp), per model and target:")
    keys = []
    for model_name in args.models.split(","):
        for target in targets:
            acc = {m: a for n, t, m, a, _ in summary if n == model_name and t == target}
            gap = 100 * (acc["one-step"] - max(acc["uniform L1"], acc["iterative"]))
            keys.append(f"{model_name}@{target:.0%} {gap:+.2f}")
    print("key: " + ", ".join(keys))


if __name__ == "__main__":
    main()
