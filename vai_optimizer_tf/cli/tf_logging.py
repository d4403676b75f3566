"""Quiets TensorFlow's native log lines in `vai_p_tf2`, before TensorFlow is imported.

Importing TensorFlow prints C++ log lines on stderr (the oneDNN notice, "could
not find cuda drivers", the AVX instructions notice, ...), some of them before
TensorFlow reads `TF_CPP_MIN_LOG_LEVEL`. `vai_p_tf2` hides them unless
`--verbosity=2` (or more) asks for them:

* `TF_CPP_MIN_LOG_LEVEL` defaults to `3` (a value set in the environment is
  kept), which silences TensorFlow's C++ logging once it is loaded;
* TensorFlow is imported with stderr captured, and the captured text is
  written back without its INFO and WARNING log lines; anything else
  (errors, Python warnings) still reaches stderr.

`vai_optimizer_tf/__init__.py` calls `quiet_tensorflow_for_cli()` first, since
importing any part of the package imports TensorFlow. The call does nothing
in other programs: only `vai_p_tf2` and `python -m vai_optimizer_tf.cli`
are affected.
"""

import os
import re
import sys
import tempfile

PROGRAM = "vai_p_tf2"
CLI_MODULES = ("vai_optimizer_tf.cli", "vai_optimizer_tf.cli.main")
VERBOSITY_FLAGS = ("--verbosity", "-verbosity", "--v", "-v")
SHOW_TENSORFLOW_LOGS = 2  # --verbosity from which TensorFlow's own log lines are shown
# An absl / TensorFlow C++ log line: "I0000 00:00:1795987061.216409    6019 port.cc:153] ..."
_NATIVE_LOG_LINE = re.compile(r"^[IW]\d{4} [\d:.]+\s+\d+ [^\]\s]+:\d+\] ")
_NATIVE_NOISE = ("WARNING: All log messages before absl::InitializeLog() is called are written "
                 "to STDERR",
                 "To enable the following instructions:")  # second line of the AVX notice


def running_as_cli(argv=None, orig_argv=None):
    """Whether this process is `vai_p_tf2` or `python -m vai_optimizer_tf.cli`.

    Args:
      argv: The process arguments. Defaults to `sys.argv`.
      orig_argv: The interpreter's command line. Defaults to `sys.orig_argv`.

    Returns:
      `True` for the console script and for `-m vai_optimizer_tf.cli[.main]`.
    """
    argv = sys.argv if argv is None else argv
    orig_argv = getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv
    script = os.path.basename(argv[0]) if argv else ""
    if re.sub(r"(-script\.pyw?|\.exe)$", "", script) == PROGRAM:
        return True
    i = 1
    while i < len(orig_argv):
        arg = orig_argv[i]
        if arg in ("-W", "-X"):  # interpreter options that take a value
            i += 2
        elif arg == "-m":
            return i + 1 < len(orig_argv) and orig_argv[i + 1] in CLI_MODULES
        elif arg.startswith("-m"):
            return arg[2:] in CLI_MODULES
        elif arg.startswith("-") and arg != "-":
            i += 1
        else:
            return False  # a script path or a -c command
    return False


def verbosity(args):
    """The `--verbosity` (`-v`) value in command-line arguments, read before absl parses them.

    Args:
      args: The arguments after the program name.

    Returns:
      The last value given, or 0.
    """
    level = 0
    for i, arg in enumerate(args):
        for name in VERBOSITY_FLAGS:
            if arg == name and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(name + "="):
                value = arg[len(name) + 1:]
            else:
                continue
            try:
                level = int(value)
            except ValueError:
                pass  # absl reports the bad value when it parses the flags
    return level


def without_native_logs(text):
    """`text` without TensorFlow's INFO and WARNING start-up log lines."""
    kept = [line for line in text.splitlines(keepends=True)
            if not _NATIVE_LOG_LINE.match(line) and not line.startswith(_NATIVE_NOISE)]
    return "".join(kept)


def import_tensorflow_quietly():
    """Imports TensorFlow with its start-up log lines filtered out of stderr (file descriptor 2)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = without_native_logs(capture.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()


def quiet_tensorflow_for_cli():
    """In `vai_p_tf2` below `--verbosity=2`, hides TensorFlow's native log lines.

    Does nothing in any other program, or once TensorFlow is imported.
    """
    if "tensorflow" in sys.modules or not running_as_cli():
        return
    if verbosity(sys.argv[1:]) >= SHOW_TENSORFLOW_LOGS:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import_tensorflow_quietly()
