"""A sensitivity-analysis process for the kill/resume and shard tests.

Usage: python ana_worker.py WORKSPACE CALL_LOG SLEEP [SHARD_I SHARD_N]

Builds the same small model in every process (fixed seed), runs `ana`, and
appends one line to CALL_LOG per eval_fn call, so the parent test can count
the evaluations each process made.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from tests.small_models import small_resnet  # noqa: E402
import vai_optimizer_tf as vot  # noqa: E402


def main():
    workspace, call_log, sleep = sys.argv[1], sys.argv[2], float(sys.argv[3])
    shard = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else None
    model = small_resnet()
    x = np.random.RandomState(1).rand(16, 16, 16, 3).astype("float32")

    def eval_fn(m):
        with open(call_log, "a") as f:
            f.write("call\n")
        time.sleep(sleep)
        return float(np.mean(np.asarray(m(x, training=False)) ** 2))

    runner = vot.IterativePruningRunner(model, workspace=workspace)
    runner.ana(eval_fn, ratios=(0.25, 0.5, 0.75), shard=shard, verbose=0)


if __name__ == "__main__":
    main()
