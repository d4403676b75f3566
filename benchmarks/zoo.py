"""Uniform channel pruning of `applications` models of tf_keras and Keras 3, one row each.

Every model is built with ``weights=None`` and logits outputs
(``classifier_activation=None``) at a small input size, gets random
BatchNormalization statistics, and is pruned with
``IterativePruningRunner.uniform_spec``. A row gives the channel groups found
and prunable, FLOPs and parameters before and after (analytic, from
``runner.stat``), the FLOP reduction measured by TensorFlow's profiler on the
built models, the error of ``vai_optimizer_tf.stat`` against that profiler,
the largest relative difference between the slim and the sparse model on
random inputs, and the seconds taken to build the slim model. A model that
raises gets its error in its row instead.

A model passes when the slim model matches the sparse one within 1e-4
(relative) and has at least 25% fewer FLOPs, and the sparse model differs
from the original (else the comparison proves nothing).

The *flavour* column says which Keras built the model: `tf_keras`
(`tf_keras.applications`) or `keras3` (Keras 3's `keras.applications`, which
is `tf.keras.applications` in TensorFlow 2.16+). Each model is run with every
flavour asked for that has the constructor.

Example:

```
python benchmarks/zoo.py                          # every constructor, both flavours
python benchmarks/zoo.py --models required        # the 8 models of the core issue
python benchmarks/zoo.py --flavours keras3 --models required
python benchmarks/zoo.py --models ResNet50 VGG19 --size 96 --channel_divisible 8
```
"""

import argparse
import collections
import datetime
import gc
import os
import platform
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import vai_optimizer_tf as vot  # noqa: E402

# The profiler wrapper, the flavours and BN randomization are the test suite's helpers.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from flavours import FLAVOURS  # noqa: E402
from model_utils import (max_relative_difference, random_inputs,  # noqa: E402
                         randomize_batch_norm)
from profiler_flops import profiler_flops  # noqa: E402

# The models of tests/test_zoo.py, first in every run.
REQUIRED = ("ResNet50", "MobileNet", "MobileNetV2", "VGG16", "DenseNet121", "InceptionV3",
            "Xception", "EfficientNetB0")

# Input sizes other than DEFAULT_SIZE: the smallest the constructors accept,
# or 32 for VGG, which has no BatchNormalization and is large otherwise.
SIZES = {"VGG16": 32, "VGG19": 32, "InceptionV3": 75, "InceptionResNetV2": 75,
         "Xception": 71}
DEFAULT_SIZE = 64

MAX_DIFFERENCE = 1e-4
MIN_REDUCTION = 0.25

COLUMNS = ("model", "flavour", "size", "groups", "prunable", "FLOPs before", "FLOPs after",
           "fewer FLOPs", "stat vs profiler", "params before", "params after",
           "max rel diff", "slim build s", "result")


def constructors(flavour):
    """Names of the model constructors in a flavour's `applications`."""
    applications = FLAVOURS[flavour].applications
    return {name for name in dir(applications)
            if name[:1].isupper() and callable(getattr(applications, name))}


def all_constructors(flavours):
    """Names of the model constructors of any of `flavours`, REQUIRED first."""
    names = sorted(set().union(*(constructors(f) for f in flavours)))
    return list(REQUIRED) + [n for n in names if n not in REQUIRED]


def _reason_kind(reason):
    """A group's blocking reason with layer names elided, to count alike reasons."""
    return re.sub(r"'[^']*'", "'…'", reason)


def _blocked_summary(runner, top=3):
    kinds = collections.Counter(_reason_kind(g.reasons[0]) for g in runner.groups
                                if not g.prunable)
    return "; ".join(f"{count}x {kind}" for kind, count in kinds.most_common(top))


def _input_shapes(model):
    return [(1,) + tuple(t.shape[1:]) for t in model.inputs]


def _short_error(error, limit=160):
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return f"{type(error).__name__}: {text}"


def run_model(name, flavour, size, sparsity, channel_divisible, profile):
    """Prunes one model of one flavour and returns its row as a dict (keys from COLUMNS).

    Errors are caught and put in the row's "result", prefixed by the step
    that raised, so one failing model never stops the run.
    """
    keras = FLAVOURS[flavour]
    row = {"model": name, "flavour": flavour, "size": size}
    step = "build"
    try:
        constructor = getattr(keras.applications, name)
        model = constructor(weights=None, input_shape=(size, size, 3),
                            classifier_activation=None)
        randomize_batch_norm(model, seed=0)
        step = "runner"
        runner = vot.IterativePruningRunner(model)
        row["groups"] = len(runner.groups)
        row["prunable"] = len(runner.prunable_groups)
        row["blocked"] = _blocked_summary(runner)
        step = "spec"
        spec = runner.uniform_spec(sparsity, criterion="l1",
                                   channel_divisible=channel_divisible)
        before, after = runner.stat(), runner.stat(spec)
        row.update({"FLOPs before": before.flops, "FLOPs after": after.flops,
                    "params before": before.params, "params after": after.params})
        step = "sparse model"
        sparse = runner.get_sparse_model(spec)
        step = "slim model"
        start = time.perf_counter()
        slim = runner.get_slim_model(spec)
        row["slim build s"] = time.perf_counter() - start
        step = "compare"
        x = random_inputs(model)
        row["max rel diff"] = max_relative_difference(sparse, slim, x)
        # "slim == sparse" says nothing if the sparse model equals the original.
        vacuous = max_relative_difference(model, sparse, x) <= 1e-3
        if slim.count_params() != after.params:
            raise AssertionError(f"slim.count_params()={slim.count_params():,} but "
                                 f"runner.stat(spec).params={after.params:,}")
        if profile:
            step = "profile"
            truth_before = profiler_flops(model, _input_shapes(model))[0]
            truth_after = profiler_flops(slim, _input_shapes(slim))[0]
            row["stat vs profiler"] = (before.flops - truth_before) / truth_before
            row["fewer FLOPs"] = 1 - truth_after / truth_before
        else:
            row["fewer FLOPs"] = 1 - after.flops / before.flops
        passed = (row["max rel diff"] <= MAX_DIFFERENCE
                  and row["fewer FLOPs"] >= MIN_REDUCTION and not vacuous)
        row["passed"] = passed
        row["result"] = ("pass" if passed else
                         "FAIL: sparse model computes what the original does" if vacuous else
                         "FAIL")
    except Exception as error:  # noqa: BLE001 -- one failing model must not stop the run.
        row["passed"] = False
        row["result"] = f"{step}: {_short_error(error)}"
    finally:
        keras.backend.clear_session()
        gc.collect()
    return row


def _cell(column, value):
    if value is None:
        return "-"
    if column in ("FLOPs before", "FLOPs after"):
        return f"{value / 1e6:,.1f}M"
    if column in ("params before", "params after"):
        return f"{value / 1e6:,.2f}M"
    if column == "fewer FLOPs":
        return f"{value:.1%}"
    if column == "stat vs profiler":
        return f"{value:+.3%}"
    if column == "max rel diff":
        return f"{value:.1e}"
    if column == "slim build s":
        return f"{value:.1f}"
    return str(value).replace("|", "\\|")


def format_row(row):
    return "| " + " | ".join(_cell(c, row.get(c)) for c in COLUMNS) + " |"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["all"],
                        help="Model constructor names, or 'required' (the 8 models of the "
                             "core issue) or 'all' (every constructor). Defaults to all.")
    parser.add_argument("--flavours", nargs="+", default=list(FLAVOURS),
                        choices=list(FLAVOURS),
                        help="Keras flavours to build the models with. Defaults to both.")
    parser.add_argument("--size", type=int, default=None,
                        help="Square input size for every model. Defaults to "
                             f"{DEFAULT_SIZE}, or {SIZES} for those models.")
    parser.add_argument("--sparsity", type=float, default=0.5,
                        help="Fraction of each prunable group's channels to remove. "
                             "Defaults to 0.5.")
    parser.add_argument("--channel_divisible", type=int, default=1,
                        help="Kept widths are rounded to a multiple of this. Defaults to 1.")
    parser.add_argument("--no_profile", action="store_true",
                        help="Skip TensorFlow's profiler (faster); the FLOP reduction is "
                             "then the analytic one.")
    parser.add_argument("--reasons", action="store_true",
                        help="After the table, list each model's most common reasons "
                             "for unprunable groups.")
    args = parser.parse_args(argv)
    if not 0 <= args.sparsity < 1:
        parser.error(f"Invalid `--sparsity`: expected a float in [0, 1). "
                     f"Received: sparsity={args.sparsity}")
    if args.channel_divisible < 1:
        parser.error(f"Invalid `--channel_divisible`: expected a positive integer. "
                     f"Received: channel_divisible={args.channel_divisible}")
    if args.size is not None and args.size < 1:
        parser.error(f"Invalid `--size`: expected a positive integer. Received: size={args.size}")
    return args


def _selected_models(requested, flavours):
    names = []
    for item in requested:
        if item == "all":
            names.extend(all_constructors(flavours))
        elif item == "required":
            names.extend(REQUIRED)
        else:
            names.append(item)
    return list(dict.fromkeys(names))


def main(argv=None):
    args = parse_args(argv)
    tf.get_logger().setLevel("ERROR")
    names = _selected_models(args.models, args.flavours)
    versions = ", ".join(f"{f} {FLAVOURS[f].__version__}" for f in args.flavours)
    print(f"# vai_optimizer_tf {vot.__version__}, tensorflow {tf.__version__}, {versions}, "
          f"{datetime.date.today()}, {platform.machine()} {os.cpu_count()} CPU cores; "
          f"sparsity={args.sparsity}, channel_divisible={args.channel_divisible}, "
          f"FLOP reduction by {'analytic stat' if args.no_profile else 'TF profiler'}")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    rows = []
    for name in names:
        size = args.size or SIZES.get(name, DEFAULT_SIZE)
        for flavour in args.flavours:
            if name not in constructors(flavour):
                continue
            row = run_model(name, flavour, size, args.sparsity, args.channel_divisible,
                            profile=not args.no_profile)
            rows.append(row)
            print(format_row(row), flush=True)
    if args.reasons:
        print()
        for row in rows:
            if row.get("blocked"):
                print(f"- {row['model']} ({row['flavour']}): {row['blocked']}")
    for flavour in args.flavours:
        mine = [row for row in rows if row["flavour"] == flavour]
        passing = sum(row["passed"] for row in mine)
        print(f"{flavour}: models passing (diff<={MAX_DIFFERENCE:g}, >={MIN_REDUCTION:.0%} "
              f"fewer FLOPs): {passing}/{len(mine)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
