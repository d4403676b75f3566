"""Checks the value an `eval_fn` returns."""

import math
import numbers

import numpy as np

from vai_optimizer_tf import errors


def as_metric(value, where, resume):
    """Converts an `eval_fn` result to a finite float, or raises `AnalysisError`.

    Args:
      value: What `eval_fn` returned (a number, a 0-d or 1-element array or
        tensor, or a 1-element list).
      where: What was evaluated, for the message ("the baseline model").
      resume: How to resume after fixing `eval_fn`, for the message
        ("call ana() again").

    Returns:
      The float.

    Raises:
      AnalysisError: for a non-number, NaN or infinity.
    """
    if hasattr(value, "numpy"):
        value = value.numpy()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise errors.AnalysisError(
            f"eval_fn returned {value!r} (type {type(value).__name__}) for {where}; it must "
            "return one number, e.g. `return model.evaluate(x, y, verbose=0)[1]`. Finished "
            f"work is saved; fix eval_fn and {resume} to resume.")
    value = float(value)
    if not math.isfinite(value):
        raise errors.AnalysisError(
            f"eval_fn returned {value} for {where}. Finished work is saved; fix eval_fn "
            f"(or the data) and {resume} to resume.")
    return value


def call_eval_fn(eval_fn, model, where, resume):
    """`eval_fn(model)` checked by `as_metric`; its exceptions become `AnalysisError`."""
    try:
        value = eval_fn(model)
    except Exception as e:  # the user's code may raise anything; the message keeps it
        raise errors.AnalysisError(
            f"eval_fn raised {type(e).__name__}: {e} while evaluating {where}. Finished work "
            f"is saved; fix eval_fn and {resume} to resume.") from e
    return as_metric(value, where, resume)
