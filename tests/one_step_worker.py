"""A one-step search process for the kill/resume and concurrency tests.

Usage: python one_step_worker.py WORKSPACE CALL_LOG SLEEP NUM_SUBNETS [--shard=I/N]
                                 [--barrier=PATH]

Builds the same small model and data in every process (fixed seeds), runs
`OneStepPruningRunner.search`, and appends one line per eval_fn call to
CALL_LOG, so the parent test can count the candidates each process scored.
With --barrier, it waits for PATH to exist before searching.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from tests.small_models import small_resnet  # noqa: E402
import vai_optimizer_tf as vot  # noqa: E402

X = np.random.RandomState(1).rand(64, 16, 16, 3).astype("float32")


def output_energy(model):
    """A deterministic score: mean squared output on fixed inputs."""
    return float(np.mean(np.asarray(model(X[:16], training=False)) ** 2))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workspace")
    parser.add_argument("call_log")
    parser.add_argument("sleep", type=float)
    parser.add_argument("num_subnets", type=int)
    parser.add_argument("--shard", default=None)
    parser.add_argument("--barrier", default=None)
    args = parser.parse_args()
    shard = tuple(int(v) for v in args.shard.split("/")) if args.shard else None

    def eval_fn(m):
        with open(args.call_log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(args.sleep)
        return output_energy(m)

    runner = vot.OneStepPruningRunner(small_resnet(), workspace=args.workspace)
    if args.barrier:
        with open(f"{args.barrier}.ready-{os.getpid()}", "w"):
            pass
        while not os.path.exists(args.barrier):
            time.sleep(0.01)
    runner.search(0.5, eval_fn, X[16:], calibration_steps=2, batch_size=16,
                  num_subnets=args.num_subnets, shard=shard, channel_divisible=1, verbose=0)


if __name__ == "__main__":
    main()
