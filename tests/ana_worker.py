"""A sensitivity-analysis process for the kill/resume, shard and concurrency tests.

Usage: python ana_worker.py WORKSPACE CALL_LOG SLEEP [--shard=I/N] [--ratios=R1,R2,...]
                            [--barrier=PATH]

Builds the same small model in every process (fixed seed), runs `ana`, and
appends one line to CALL_LOG per eval_fn call, so the parent test can count
the evaluations each process made. With --barrier, the process creates
`PATH.ready-<pid>` once its model is built and waits for PATH to exist
before it starts `ana`, so the parent can start several analyses at once.
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workspace")
    parser.add_argument("call_log")
    parser.add_argument("sleep", type=float)
    parser.add_argument("--shard", default=None)
    parser.add_argument("--ratios", default="0.25,0.5,0.75")
    parser.add_argument("--barrier", default=None)
    args = parser.parse_args()
    shard = tuple(int(v) for v in args.shard.split("/")) if args.shard else None
    ratios = tuple(float(r) for r in args.ratios.split(","))
    model = small_resnet()
    x = np.random.RandomState(1).rand(16, 16, 16, 3).astype("float32")

    def eval_fn(m):
        with open(args.call_log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(args.sleep)
        return float(np.mean(np.asarray(m(x, training=False)) ** 2))

    runner = vot.IterativePruningRunner(model, workspace=args.workspace)
    if args.barrier:
        with open(f"{args.barrier}.ready-{os.getpid()}", "w"):
            pass
        while not os.path.exists(args.barrier):
            time.sleep(0.01)
    runner.ana(eval_fn, ratios=ratios, shard=shard, verbose=0)


if __name__ == "__main__":
    main()
