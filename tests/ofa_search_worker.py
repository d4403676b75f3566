"""A once-for-all search process for the concurrency test.

Usage: python ofa_search_worker.py FLAVOUR WORKSPACE CALL_LOG OUT_JSON --barrier=PATH

Builds the same supernet of the Keras FLAVOUR (tf_keras or keras3) in every
process (fixed seeds), waits for PATH to
exist, runs `OFAPruner.search` on the shared workspace, appends one line per
eval_fn call to CALL_LOG and writes the result (target -> config, score) to
OUT_JSON.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import test_ofa_search as spec  # noqa: E402
from tests.flavours import FLAVOURS  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("flavour", choices=sorted(FLAVOURS))
    parser.add_argument("workspace")
    parser.add_argument("call_log")
    parser.add_argument("out")
    parser.add_argument("--barrier", required=True)
    args = parser.parse_args()

    def eval_fn(m):
        with open(args.call_log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.05)
        return spec.output_mean(m)

    pruner, _ = spec.build(args.workspace, FLAVOURS[args.flavour])
    with open(f"{args.barrier}.ready-{os.getpid()}", "w"):
        pass
    while not os.path.exists(args.barrier):
        time.sleep(0.01)
    front = spec.run_search(pruner, eval_fn)
    with open(args.out, "w") as f:
        json.dump({str(t): s.get_config() for t, s in front.items()}, f)


if __name__ == "__main__":
    main()
