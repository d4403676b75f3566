"""Runs sensitivity analysis in place on one built model.

Vitis rebuilds a model for each of its (groups x ratios + 2) evaluations. We
build one evaluation copy of the model, and for each step only overwrite the
weights of the layers the group touches with their masked values, call
`eval_fn`, and put the original values back. No cloning, recompiling or
`clear_session` per step, so a step costs one `eval_fn` call plus a few
weight assignments.

Any number of processes (on one machine, or on several machines sharing the
workspace) may run the same analysis at once: they claim steps before
evaluating them (`StepClaims`) and each writes its own file (`AnalysisStore`),
so no finished step is lost and no step is evaluated twice.
"""

import logging
import math
import numbers
import time

from tf_keras.utils import Progbar

from vai_optimizer_tf.analysis.sensitivity_cache import BASELINE, SensitivityCache, ratio_key
from vai_optimizer_tf.masks.slice_plan import SlicePlan
from vai_optimizer_tf.planning import importance
from vai_optimizer_tf.utils.claimed_work import run_claimed
from vai_optimizer_tf.utils.validation import check_shard  # noqa: F401  (re-exported)
from vai_optimizer_tf.utils.metrics import call_eval_fn
from vai_optimizer_tf.utils.step_claims import StepClaims

logger = logging.getLogger("vai_optimizer_tf")


def _where(group, ratio):
    return ("the baseline model" if group == BASELINE
            else f"group {group!r} pruned by {ratio:.0%}")


class SensitivityAnalysis:
    """One process's run over `steps`, coordinated with other processes.

    Before each step the run re-reads every process's file of the analysis,
    then claims the first step nobody has finished or claimed
    (`StepClaims`), evaluates it, and rewrites its own file atomically. Steps
    other live processes hold are waited for, so when `run` returns every
    step is finished (by this process or another) and no step was
    evaluated twice, unless a process died holding it.

    Args:
      adapter: The runner's `TfKerasAdapter`.
      deps: The `DependencyGraph` (excludes applied).
      store: The `AnalysisStore` of the analysis key.
      criterion: Importance criterion used to pick the pruned channels.
      verbose: 0 silent, 1 progress bar.
    """

    def __init__(self, adapter, deps, store, criterion="l1", verbose=1):
        self.adapter = adapter
        self.deps = deps
        self.store = store
        self.criterion = criterion
        self.verbose = verbose
        self.evaluations = 0
        self._weights = adapter.all_weights()
        self._scores = {}
        self._own = SensitivityCache(store.key)
        self._model = None

    def _kept(self, group, ratio):
        if group.name not in self._scores:
            self._scores[group.name] = importance.score_group(
                self.deps, group, self._weights, self.criterion)
        keep = importance.kept_count(group.width, ratio)
        return importance.select_channels(self._scores[group.name], keep)

    def _step_id(self, step):
        name, ratio = step
        if name == BASELINE:
            return "baseline"
        return f"g{self.deps.group(name).index}-{ratio_key(ratio)}"

    def run(self, steps, eval_fn, since=None):
        """Evaluates every step of `steps` that no process has finished (since `since`).

        Args:
          steps: `(group, ratio)` pairs, the baseline as `("__baseline__", 0.0)`.
          eval_fn: `fn(model) -> float`.
          since: Only records made at or after this time count as finished
            (`forced=True`). Defaults to any record.

        Returns:
          The merged `SensitivityCache` of every process.
        """
        steps = list(steps)
        claims = StepClaims(self.store.claims_folder, self.store.writer)
        progress = (Progbar(len(steps), unit_name="step", stateful_metrics=["ratio"])
                    if self.verbose else None)

        def do_step(step):
            if self._model is None:  # built only when this process has a step to do
                self._model = self.adapter.rebuild()
                self.adapter.compile_like_source(self._model)
            self._record(step, self._evaluate(self._model, *step, eval_fn))

        return run_claimed(steps, claims, self.store.read,
                           lambda merged, step: merged.has(*step, since=since),
                           self._step_id, do_step, progress, what="analysis steps")

    def _record(self, step, value):
        name, ratio = step
        index = None if name == BASELINE else self.deps.group(name).index
        self._own.record(name, ratio, value, index, time.time())
        self.store.save(self._own)
        self.evaluations += 1

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
        return call_eval_fn(eval_fn, model, _where(name, ratio), "call ana() again")


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


def check_ratios(ratios):
    """Validates the ratio grid; returns it sorted, rounded to 4 decimals, without duplicates."""
    expected = "a non-empty sequence of floats in (0, 1)"
    if isinstance(ratios, (str, bytes)) or not hasattr(ratios, "__iter__"):
        raise ValueError(f"Invalid `ratios`: expected {expected}. Received: ratios={ratios!r}")
    values = list(ratios)
    if not values:
        raise ValueError(f"Invalid `ratios`: expected {expected}. Received: ratios={ratios!r}")
    for r in values:
        if (isinstance(r, bool) or not isinstance(r, numbers.Real) or not math.isfinite(r)
                or not 0 < r < 1):
            raise ValueError(f"Invalid `ratios`: expected {expected}; {r!r} is not. "
                             f"Received: ratios={ratios!r}")
    rounded = sorted({round(float(r), 4) for r in values})
    if rounded[0] <= 0 or rounded[-1] >= 1:
        raise ValueError(f"Invalid `ratios`: expected {expected} that stay inside (0, 1) when "
                         f"rounded to 4 decimals. Received: ratios={ratios!r}")
    return rounded


def check_analysis_args(ratios, mode, criterion):
    """Validates the arguments `ana` and `merge_analysis` share; returns the ratio grid."""
    if mode not in ("max", "min"):
        raise ValueError(f"Invalid `mode`: expected 'max' (higher is better) or 'min'. "
                         f"Received: mode={mode!r}")
    ratios = check_ratios(ratios)
    importance.get_criterion(criterion)
    return ratios
