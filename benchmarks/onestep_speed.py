"""One-step search speed: a candidate's cost against its unavoidable work.

A candidate of `OneStepPruningRunner.search` costs its calibration forward
passes (adaptive BN) plus one `eval_fn` call; everything else (masking the
weights, resetting and averaging the statistics, bookkeeping, the atomic
write of its result) is overhead. Side by side in one run, on the
ResNet-20-style Fashion-MNIST net:

* ours: one candidate scored by the search machinery (`CandidateScorer` and
  the result store), candidates taken in turn;
* bare: the same calibration batches through `model(x, training=True)` in a
  `tf.function`, then the same `eval_fn`, on a plain copy of the model.

Arms are interleaved, many short repeats each, and compared by their median
and minimum (the machine has fast and slow phases). The last line is the
key ratio, ours / bare (median). Also prints the wall time of a whole
200-candidate search.

Run: `python benchmarks/onestep_speed.py` (a few minutes on 2 cores).
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

import vai_optimizer_tf as vot  # noqa: E402
from vai_optimizer_tf import datasets  # noqa: E402
from vai_optimizer_tf.search.adaptive_bn import PreparedBatches, make_calibration  # noqa: E402
from vai_optimizer_tf.search.calibration_data import calibration_batches  # noqa: E402
from vai_optimizer_tf.search.candidate_scorer import CandidateScorer  # noqa: E402
from vai_optimizer_tf.search.subnet_sampler import SubnetSampler  # noqa: E402
from vai_optimizer_tf.search.subnet_store import SubnetStore  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fashion_models import resnet20  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calibration_steps", type=int, default=50)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--eval_images", type=int, default=5000)
    parser.add_argument("--num_subnets", type=int, default=200)
    args = parser.parse_args()

    (x, y), _ = datasets.load_fashion_mnist()
    x_eval, y_eval = x[:args.eval_images], y[:args.eval_images]
    keras.utils.set_random_seed(0)
    model = resnet20()
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[10000:20000], y[10000:20000], batch_size=128, epochs=1, verbose=0)

    def eval_fn(m):
        logits = m.predict(x_eval, batch_size=500, verbose=0)
        return float(np.mean(np.argmax(logits, -1) == y_eval))

    batches = PreparedBatches(calibration_batches(x[20000:], args.calibration_steps,
                                                  args.batch_size))
    runner = vot.IterativePruningRunner(model)
    deps = runner._deps
    sampler = SubnetSampler(deps.prunable_groups, runner._width_flops(), 0.5, seed=0)
    scorer = CandidateScorer(runner._adapter, deps,
                             lambda m, c: make_calibration(m, c, batches), eval_fn)
    store = SubnetStore(tempfile.mkdtemp(), {"weights_digest": "bench"})

    bare = keras.models.clone_model(model)
    bare.set_weights(model.get_weights())

    @tf.function(reduce_retracing=True)
    def forward(x_batch):
        bare(x_batch, training=True)

    def ours(index):
        kept = sampler.candidate(index)
        score = scorer(kept)
        store.record(index, {deps.group(n).index: w for n, w in kept.items()},
                     sampler.reduction(kept), score)

    def baseline(_):
        for batch in batches:
            forward(batch)
        eval_fn(bare)

    for warm in range(2):  # traces and caches
        ours(warm)
        baseline(warm)
    times = {"ours": [], "bare": []}
    for i in range(args.rounds):
        for name, fn in (("ours", ours), ("bare", baseline)) if i % 2 else \
                (("bare", baseline), ("ours", ours)):
            start = time.perf_counter()
            fn(2 + i)
            times[name].append(time.perf_counter() - start)
    med = {k: float(np.median(v)) for k, v in times.items()}
    low = {k: float(np.min(v)) for k, v in times.items()}
    print(f"ResNet-20-style net, {args.calibration_steps} calibration batches of "
          f"{args.batch_size}, eval_fn on {args.eval_images} images, {args.rounds} rounds")
    for name in ("ours", "bare"):
        print(f"  {name:<5} median {med[name]:.3f} s   min {low[name]:.3f} s")
    with tempfile.TemporaryDirectory() as workspace:
        search = vot.OneStepPruningRunner(model, workspace=workspace)
        start = time.perf_counter()
        search.search(0.5, eval_fn, x[20000:], calibration_steps=args.calibration_steps,
                      batch_size=args.batch_size, num_subnets=args.num_subnets,
                      channel_divisible=1, verbose=0)
        total = time.perf_counter() - start
    print(f"whole search of {args.num_subnets} candidates: {total:.0f} s "
          f"({total / args.num_subnets:.2f} s per candidate)")
    print(f"min ratio ours/bare: {low['ours'] / low['bare']:.3f}")
    print(f"median ratio ours/bare: {med['ours'] / med['bare']:.3f}")


if __name__ == "__main__":
    main()
