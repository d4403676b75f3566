"""vai_p_tf2: channel pruning of tf_keras and Keras 3 models from the command line.

Usage: vai_p_tf2 --action=ACTION --model=PATH [flags]

The Vitis AI Optimizer flow, one action per call, sharing --workspace:

  ana        Sensitivity analysis of --model, scored by --eval_fn (or --dataset).
             Resumable; cached in WORKSPACE/ana.
  prune      Per-group ratios for a FLOPs reduction --ratio (or a metric drop
             --threshold) from the analysis. Writes OUTPUT_DIR/sparse.keras and the
             spec (--spec, or WORKSPACE/specs/...; WORKSPACE/latest_spec.json
             points at it).
  search     One-step pruning: scores --num_subnets candidate subnets at the FLOPs
             reduction --ratio with adaptive BN (--calibration_fn or --dataset) and
             --eval_fn, then prunes to the best. Resumable; --shard splits it.
             Writes OUTPUT_DIR/sparse.keras and the spec, as prune does.
  finetune   Trains the sparse --model with --train_fn (or --dataset). Writes
             OUTPUT_DIR/finetuned.keras.
  transform  Removes the pruned channels of --model (the fine-tuned sparse
             model) using --spec (default: the latest spec). Writes
             OUTPUT_DIR/slim.keras.
  stat       FLOPs and parameters of --model, and with --spec of its slim version.
  export     Writes --model in each of --formats to OUTPUT_DIR: keras, h5,
             saved_model (TF Serving), frozen_graph, pbtxt, tflite, tflite_int8.

Example:
  vai_p_tf2 --action=ana --model=base.keras --eval_fn=my_eval:evaluate
  vai_p_tf2 --action=prune --model=base.keras --ratio=0.5 --output_dir=out
  vai_p_tf2 --action=finetune --model=out/sparse.keras --train_fn=my_train:train \\
      --output_dir=out
  vai_p_tf2 --action=transform --model=out/finetuned.keras --output_dir=out
  vai_p_tf2 --action=export --model=out/slim.keras --formats=saved_model,tflite \\
      --output_dir=deploy

User functions are given as module:function (the current folder is searched
first) or path/to/file.py:function:
  eval_fn(model) -> float    train_fn(model) -> model or None
  representative_fn() -> array of calibration inputs

export refuses to replace an existing file in OUTPUT_DIR unless --overwrite.

Exit status: 0 on success, 1 on an error, 2 on a wrong command line (an unknown,
missing or malformed flag). Errors are printed as one line; --verbosity=1 also
prints the Python traceback, --verbosity=2 also TensorFlow's own log lines.
"""

import sys
import traceback

from absl import flags as absl_flags

from vai_optimizer_tf.cli import tf_logging
from vai_optimizer_tf.cli.flags import FLAGS, check_usage
from vai_optimizer_tf.cli.loading import CliError, UsageError, one_line

PROGRAM = "vai_p_tf2"
_HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "--helpfull", "-?")


def usage():
    """The `--help` text: what each action does, then every flag with its help."""
    return f"{__doc__}\nFlags:\n{FLAGS.get_help(include_special_flags=False)}\n"


def _error(message, status):
    sys.stderr.write(f"{PROGRAM}: error: {message}\n")
    return status


def _cli_error(error):
    """The `CliError` behind `error` (raised inside library code, e.g. by an eval_fn), or None."""
    cause = error
    while cause is not None:
        if isinstance(cause, CliError):
            return cause
        cause = cause.__cause__
    return None


def _message(error):
    """One line for `error`; a `CliError` raised inside library code is shown as it is."""
    cli_error = _cli_error(error)
    if cli_error is not None:
        return one_line(cli_error)
    return f"{type(error).__name__}: {one_line(error)}"


def _quiet_tensorflow_python_logs(verbosity):
    """Below --verbosity=2, TensorFlow's Python-side warnings are hidden too."""
    if verbosity < tf_logging.SHOW_TENSORFLOW_LOGS:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        tf.get_logger().setLevel("ERROR")


def main(argv=None):
    """Runs one action. Returns the exit status; never raises for user errors.

    Args:
      argv: The command line, program name first. Defaults to `sys.argv`.

    Returns:
      0 on success, 1 on an error, 2 on a wrong command line.
    """
    argv = list(sys.argv if argv is None else argv)
    if any(arg in _HELP_FLAGS for arg in argv[1:]):
        sys.stdout.write(usage())
        return 0
    FLAGS.unparse_flags()
    try:
        rest = FLAGS(argv)
    except absl_flags.Error as e:
        return _error(f"{one_line(e)} (see {PROGRAM} --help)", 2)
    if len(rest) > 1:
        return _error(f"unexpected arguments {rest[1:]}; every option is a --flag "
                      f"(see {PROGRAM} --help)", 2)
    if FLAGS.action is None:
        return _error(f"--action is required: one of ana, prune, finetune, transform, stat, "
                      f"export (see {PROGRAM} --help)", 2)
    try:
        check_usage(FLAGS)
    except UsageError as e:
        return _error(f"{one_line(e)} (see {PROGRAM} --help)", e.status)
    _quiet_tensorflow_python_logs(FLAGS.verbosity)
    from vai_optimizer_tf.cli import actions  # pylint: disable=import-outside-toplevel
    try:
        actions.ACTIONS[FLAGS.action](FLAGS, print)
    except Exception as e:  # every failure becomes one line; --verbosity adds the traceback
        if FLAGS.verbosity > 0:
            traceback.print_exc()
        cli_error = _cli_error(e)
        return _error(_message(e), cli_error.status if cli_error is not None else 1)
    return 0


def run():
    """The `vai_p_tf2` console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
