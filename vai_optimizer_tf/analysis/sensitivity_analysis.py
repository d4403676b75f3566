"""Runs sensitivity analysis in place on one built model.

Vitis rebuilds a model for each of its (groups x ratios + 2) evaluations. We
build one evaluation copy of the model, and for each step only overwrite the
weights of the layers the group touches with their masked values, call
`eval_fn`, and put the original values back. No cloning, recompiling or
`clear_session` per step, so a step costs one `eval_fn` call plus a few
weight assignments.
"""

import math
import numbers
import os

import numpy as np
from tf_keras.utils import Progbar

from vai_optimizer_tf import errors
from vai_optimizer_tf.analysis.sensitivity_cache import BASELINE, SensitivityCache
from vai_optimizer_tf.masks.slice_plan import SlicePlan
from vai_optimizer_tf.planning import importance


def as_metric(value, group, ratio):
    """Converts an `eval_fn` result to a float, or raises `AnalysisError`."""
    where = ("the baseline model" if group == BASELINE
             else f"group {group!r} pruned by {ratio:.0%}")
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
            "steps are saved; fix eval_fn and call ana() again to resume.")
    value = float(value)
    if not math.isfinite(value):
        raise errors.AnalysisError(
            f"eval_fn returned {value} for {where}. Finished steps are saved; fix eval_fn "
            "(or the data) and call ana() again to resume.")
    return value


class SensitivityAnalysis:
    """One analysis run over `steps`, saving after each.

    Args:
      adapter: The runner's `TfKerasAdapter`.
      deps: The `DependencyGraph` (excludes applied).
      cache: The `SensitivityCache` to fill (may hold finished steps).
      cache_path: Where to save it.
      criterion: Importance criterion used to pick the pruned channels.
      verbose: 0 silent, 1 progress bar.
    """

    def __init__(self, adapter, deps, cache, cache_path, criterion="l1", verbose=1):
        self.adapter = adapter
        self.deps = deps
        self.cache = cache
        self.cache_path = cache_path
        self.criterion = criterion
        self.verbose = verbose
        self._weights = adapter.all_weights()
        self._scores = {}

    def _kept(self, group, ratio):
        if group.name not in self._scores:
            self._scores[group.name] = importance.score_group(
                self.deps, group, self._weights, self.criterion)
        keep = importance.kept_count(group.width, ratio)
        return importance.select_channels(self._scores[group.name], keep)

    def run(self, steps, eval_fn):
        """Evaluates every step not yet in the cache; returns the cache."""
        todo = self.cache.missing_steps(steps)
        if not todo:
            return self.cache
        model = self.adapter.rebuild()
        self.adapter.compile_like_source(model)
        progress = (Progbar(len(todo), unit_name="step", stateful_metrics=["ratio"])
                    if self.verbose else None)
        for i, (name, ratio) in enumerate(todo):
            index = None if name == BASELINE else self.deps.group(name).index
            self.cache.record(name, ratio, self._evaluate(model, name, ratio, eval_fn), index)
            self.cache.save(self.cache_path)
            if progress is not None:
                progress.update(i + 1, values=None if name == BASELINE else [("ratio", ratio)])
        return self.cache

    def _evaluate(self, model, name, ratio, eval_fn):
        if name == BASELINE:
            return self._call(eval_fn, model, name, ratio)
        group = self.deps.group(name)
        plan = SlicePlan(self.deps, {group.id: self._kept(group, ratio)})
        masked = plan.masked_weights(self._weights)
        self.adapter.assign_weights(model, masked)
        try:
            return self._call(eval_fn, model, name, ratio)
        finally:
            self.adapter.assign_weights(model, {p: self._weights[p] for p in masked})

    @staticmethod
    def _call(eval_fn, model, name, ratio):
        try:
            value = eval_fn(model)
        except Exception as e:
            where = ("the baseline model" if name == BASELINE
                     else f"group {name!r} pruned by {ratio:.0%}")
            raise errors.AnalysisError(
                f"eval_fn raised {type(e).__name__}: {e} while evaluating {where}. Finished "
                "steps are saved; fix eval_fn and call ana() again to resume.") from e
        return as_metric(value, name, ratio)


def analysis_steps(group_names, ratios, shard=None):
    """The (group, ratio) steps, baseline first, optionally one shard's share.

    Shard i of n takes every n-th step starting at i; the baseline goes to
    shard 0.
    """
    steps = [(BASELINE, 0.0)] + [(g, r) for g in group_names for r in ratios]
    if shard is None:
        return steps
    i, n = shard
    return steps[i::n]


def check_shard(shard):
    if shard is None:
        return None
    if (not isinstance(shard, (tuple, list)) or len(shard) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in shard)
            or not 0 <= shard[0] < shard[1]):
        raise ValueError(f"Invalid `shard`: expected a pair (i, n) of ints with 0 <= i < n. "
                         f"Received: shard={shard!r}")
    return (int(shard[0]), int(shard[1]))


def check_ratios(ratios):
    try:
        values = sorted({round(float(r), 4) for r in ratios})
    except (TypeError, ValueError):
        raise ValueError(f"Invalid `ratios`: expected a sequence of floats in (0, 1). "
                         f"Received: ratios={ratios!r}") from None
    if not values or values[0] <= 0 or values[-1] >= 1:
        raise ValueError(f"Invalid `ratios`: expected a non-empty sequence of floats in (0, 1). "
                         f"Received: ratios={ratios!r}")
    return values


def cache_folder(workspace):
    return os.path.join(workspace, "ana")


def load_cache(workspace, key, shard, forced, log, deps):
    """The cache to continue for this process (its own file), and its path."""
    folder = cache_folder(workspace)
    path = os.path.join(folder, SensitivityCache.file_name(shard))
    if not forced and os.path.exists(path):
        cache = SensitivityCache.load(path)
        if cache.key == key:
            return cache.renamed(deps), path
        stale = path + f".stale-{cache.key.get('weights_digest', 'unknown')}"
        os.replace(path, stale)
        log(f"The sensitivity cache in {folder!r} was made for other weights, graph or ratios; "
            f"it was moved to {stale!r} and the analysis starts over.")
    elif forced and os.path.exists(path):
        os.remove(path)
    return SensitivityCache(key), path
