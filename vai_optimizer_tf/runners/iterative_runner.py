"""`IterativePruningRunner`: analyse, prune, fine-tune, repeat, transform."""

import logging
import numbers
import os
import time

from vai_optimizer_tf import errors
from vai_optimizer_tf.analysis import sensitivity_analysis as analysis_lib
from vai_optimizer_tf.analysis.analyzer import Analyzer
from vai_optimizer_tf.planning import importance, spec_history
from vai_optimizer_tf.planning.divisibility import (resolve_channel_divisible,
                                                    warn_if_groups_stay_whole)
from vai_optimizer_tf.planning.flops_plan import plan_flops_reduction
from vai_optimizer_tf.planning.budget_allocation import penalties_from_curves
from vai_optimizer_tf.planning.latency_plan import importance_penalties
from vai_optimizer_tf.planning.ratio_search import RatioSearch, drop_curves
from vai_optimizer_tf.planning.spec import PruningSpec
from vai_optimizer_tf.planning.spec_builder import build_spec
from vai_optimizer_tf.planning.width_flops import WidthFlops
from vai_optimizer_tf.runners.base_runner import PruningRunner
from vai_optimizer_tf.stats.model_stats import check_flops_known
from vai_optimizer_tf.utils import validation

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
logger = logging.getLogger("vai_optimizer_tf")


class IterativePruningRunner(PruningRunner):
    """Analyses, prunes and slims a Keras model, one iteration at a time.

    The model is read once into channel groups. `ana` measures how much your
    metric drops when each group is pruned; `prune` turns a FLOPs-reduction
    target (or a metric-drop threshold) into per-group ratios, picks the
    channels, saves the `PruningSpec` in the workspace and returns the sparse
    model to fine-tune; `get_slim_model` removes the pruned channels. The
    model passed in is never modified.

    Args:
      model: A tf_keras or Keras 3 Sequential or Functional model, nested models and
        shared layers included.
      input_signature: Optional `tf.TensorSpec` (or list, one per input) for
        models whose input shape is not fully defined, e.g.
        `tf.TensorSpec((1, 224, 224, 3), tf.float32)`. Defaults to the model's
        own input shapes.
      workspace: Folder for the analysis cache, the specs and the
        `latest_spec.json` pointer. Defaults to `".vai"`.

    Raises:
      UnsupportedModelError: for subclassed or Keras 3 models.

    Example:

    ```python
    import numpy as np
    import tf_keras
    import vai_optimizer_tf as vot

    model = tf_keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3),
                                              classes=10)
    x = np.random.rand(64, 32, 32, 3).astype("float32")
    y = np.random.randint(0, 10, 64)

    def eval_fn(m):  # accuracy; a Vitis-style eval_fn may also compile and evaluate
        return float(np.mean(np.argmax(m(x, training=False), axis=-1) == y))

    runner = vot.IterativePruningRunner(model, workspace="ws")
    runner.ana(eval_fn, ratios=(0.3, 0.6), verbose=0)
    sparse = runner.prune(ratio=0.3)          # fine-tune this with model.fit
    slim = runner.get_slim_model()            # uses the spec prune() just saved
    ```
    """

    def __init__(self, model, input_signature=None, workspace=".vai"):
        super().__init__(model, input_signature, workspace)
        self._analyzer = Analyzer(self._adapter, self._deps, self._workspace)

    # Sensitivity analysis ---------------------------------------------------------

    def ana(self, eval_fn, excludes=None, forced=False, ratios=DEFAULT_RATIOS, shard=None,
            mode="max", criterion="l1", verbose=1):
        """Measures the metric with each prunable group pruned alone at each ratio.

        The baseline is evaluated once, then every (group, ratio) step, on one
        evaluation copy of the model whose weights are masked in place. Each
        step is stored under `<workspace>/ana/` as soon as it is measured, in
        a file only this process writes (atomically), so a killed run
        resumes. Results are keyed by the graph, the weights as they are now,
        the criterion and the mode, and stored per step: a new ratio grid
        reuses every step it shares with earlier runs, and nothing is
        overwritten. Several processes or machines may run `ana` on one
        workspace at once: steps are claimed before they are evaluated, so
        none is evaluated twice, and each call returns when its share is
        finished (see docs/user_guide.md).

        Args:
          eval_fn: `fn(model) -> float`. It receives a Keras model (compiled
            like yours when yours is compiled) and returns one number, e.g.
            accuracy on a validation set.
          excludes: Layers (names or objects) whose groups are not analysed.
            Defaults to none.
          forced: Recompute every step of this analysis (this grid) even when
            results exist; other analyses are kept, and unreadable result
            files of this analysis are moved aside. Defaults to `False`.
          ratios: Fractions of each group's channels to prune. Defaults to
            0.1, 0.2, ..., 0.9.
          shard: `(i, n)` to run only the i-th of n interleaved shares of the
            steps, so n processes (or machines with a shared workspace) split
            the work; `prune` merges the shards, and `merge_analysis` reports
            the steps still missing. Defaults to all steps.
          mode: `"max"` when a higher metric is better (accuracy), `"min"`
            when lower is better (loss, error). Defaults to `"max"`.
          criterion: Importance criterion that picks the pruned channels.
            Defaults to `"l1"`.
          verbose: 1 shows a progress bar and prints the table, 0 is silent.
            Defaults to `1`.

        Returns:
          The `SensitivityCache` of the analysis on this grid, with every
          step any process has finished (all of them, unless `shard` is
          given); `.table(...)` formats it and `.missing_steps()` lists the
          steps not finished yet.

        Raises:
          ValueError: for a bad argument, before any file is touched.
          AnalysisError: when `eval_fn` raises or returns NaN or a non-number;
            the message names the group and ratio. Finished steps are kept.
          AnalysisCacheError: when a result file is corrupted; the message
            names it and the fix.
        """
        if not callable(eval_fn):
            raise ValueError(f"Invalid `eval_fn`: expected a callable model -> float. "
                             f"Received: eval_fn={eval_fn!r}")
        ratios = analysis_lib.check_analysis_args(ratios, mode, criterion)
        shard = validation.check_shard(shard)
        return self._analyzer.run(self._deps_for(excludes), eval_fn, ratios, criterion, mode,
                                  shard, bool(forced), verbose)

    def merge_analysis(self, ratios=DEFAULT_RATIOS, excludes=None, mode="max", criterion="l1",
                       verbose=1):
        """Merges what every process or shard of `ana` stored, evaluating nothing.

        Use it after `ana(eval_fn, shard=(i, n))` ran on several processes or
        machines. When no step is missing, it writes `sensitivity.csv` (and
        `.png`) and prints the table.

        Args:
          ratios: The grid to check. Defaults to 0.1, 0.2, ..., 0.9.
          excludes: The `excludes` given to `ana`. Defaults to none.
          mode: The `mode` given to `ana`. Defaults to `"max"`.
          criterion: The `criterion` given to `ana`. Defaults to `"l1"`.
          verbose: 1 prints the table when complete. Defaults to `1`.

        Returns:
          The merged `SensitivityCache` on this grid; `missing_steps()` lists
          the `(group, ratio)` steps no process has finished.

        Raises:
          ValueError: for a bad argument.
          AnalysisCacheError: when a result file is corrupted.
        """
        ratios = analysis_lib.check_analysis_args(ratios, mode, criterion)
        return self._analyzer.merged(self._deps_for(excludes), ratios, criterion, mode, verbose)

    def sensitivity(self):
        """The sensitivity analysis `prune` would use (a `SensitivityCache`), or None.

        That is the analysis of the model's current weights (all ratios
        merged), or of the saved spec whose sparse weights the model holds.

        Raises:
          AnalysisCacheError: when only analyses of other weights exist, or a
            result file is corrupted.
        """
        weights = self._adapter.all_weights()
        return self._analyzer.find(self._analyzer.weights_digest(),
                                   self._previous_spec(weights))

    # Pruning ---------------------------------------------------------------------

    def prune(self, ratio=None, threshold=None, spec_path=None, excludes=None, criterion="l1",
              channel_divisible="auto", mode="sparse", latency=None, device="tf", batch_size=1,
              max_measurements=4, verbose=1):
        """Prunes to a FLOPs target, a measured latency target or a metric-drop threshold.

        Per-group widths come from the sensitivity analysis (`ana`), found in
        memory or in the workspace. For a `ratio`, the FLOPs that must go are
        taken where each FLOP costs the least predicted metric drop (a
        greedy knapsack over each group's width staircase), so a group whose
        channels buy few FLOPs is cut only when nothing cheaper is left, and
        no group is cut further than the target needs. FLOPs are counted
        analytically with the `channel_divisible` rounding applied, so the
        slim model's reduction is within one point of `ratio` whenever the
        rounding steps allow it; otherwise the closest plan is kept and a
        `UserWarning` names the reduction reached (see `summary()`).

        For a `latency`, the same knapsack spends a budget of *measured*
        latency on `device`: every conv, dense and other layer whose widths
        change is timed on this machine at the widths it may take (a
        benchmark with a progress bar, cached in `<workspace>/latency/`, keyed
        by device, batch size, TensorFlow version and CPU), the sum is
        calibrated on the measured baseline, and slim models of the plan are
        built and measured side by side with the baseline, re-planning with
        the corrected prediction, until one lands within 7% of the target
        (at most `max_measurements`). Without an analysis, a group's loss is
        the share of its importance (`criterion`) that is pruned.

        Iterative pruning: when this runner's model holds the fine-tuned
        weights of the sparse model of a spec saved in the workspace (the
        latest one, or an earlier one to back off after an accuracy
        collapse), the analysis of the original baseline is reused and the
        channels that spec pruned stay pruned.

        Args:
          ratio: FLOPs reduction to reach: the pruned model has
            `(1 - ratio) x` the baseline FLOPs. In (0, 1).
          threshold: Alternatively, the largest relative metric drop allowed
            for any group (e.g. 0.01 for 1%).
          spec_path: Where to save the spec. Defaults to
            `<workspace>/specs/<model>.<target>.json`. If it names an
            existing spec and no target is given, that spec is applied as is.
          excludes: Layers (names or objects) whose output channels must not
            shrink. Defaults to none.
          criterion: `"l1"`, `"l2"`, `"bn_gamma"` or a callable; picks the
            channels within each group. Defaults to `"l1"`.
          channel_divisible: Kept widths are multiples of this. `"auto"` is
            the multiple this CPU runs fastest (16 with AVX-512, else 8), so
            the pruned model is never slower than the baseline; 1 allows any
            width. Defaults to `"auto"`.
          mode: `"sparse"` returns the sparse model, `"slim"` the slim one.
            Defaults to `"sparse"`.
          latency: Alternatively, the latency to reach as a fraction of the
            baseline's measured latency, in (0, 1) (0.5: twice as fast).
          device: With `latency`: `"tf"` (a `tf.function` on this CPU) or
            `"tflite"` (the TFLite interpreter with XNNPACK). Defaults to
            `"tf"`.
          batch_size: With `latency`: the batch size timed. Defaults to `1`.
          max_measurements: With `latency`: slim models measured at most;
            0 trusts the prediction. Defaults to `4`.
          verbose: With `latency`: 1 shows the table's progress bar and one
            line per measurement, 0 is silent. Defaults to `1`.

        Returns:
          A new model of the runner's model's Keras flavour (uncompiled).

        Raises:
          ValueError: for bad arguments or an unreachable FLOPs target, or for
            a `ratio` when some layer's FLOPs are unknown (the message names
            them and how to register a formula).
          AnalysisCacheError: when no usable analysis exists (for `ratio` and
            `threshold`).
        """
        self._check_mode(mode)
        targets = {"ratio": ratio, "threshold": threshold, "latency": latency}
        given = [name for name, value in targets.items() if value is not None]
        if not given:
            if spec_path is not None and os.path.exists(spec_path):
                spec = PruningSpec.load(spec_path)
                model = self._build(spec, mode)  # checks the spec before any pointer moves
                self._workspace.set_latest_spec(spec_path)
                return model
            raise ValueError("Pass either `ratio` (the FLOPs reduction, e.g. ratio=0.5), "
                             "`latency` (a fraction of the baseline's latency, e.g. "
                             "latency=0.5) or `threshold` (the largest metric drop per group, "
                             "e.g. 0.01). Received: ratio=None, latency=None, threshold=None")
        if len(given) > 1:
            raise ValueError("Pass only one of `ratio`, `latency` and `threshold`. Received: "
                             + ", ".join(f"{n}={targets[n]!r}" for n in given))
        if ratio is not None:
            ratio = validation.check_ratio("ratio", ratio, low_inclusive=False)
        if latency is not None:
            latency = validation.check_ratio("latency", latency, low_inclusive=False)
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(
                threshold, numbers.Real) or not threshold >= 0):
            raise ValueError(f"Invalid `threshold`: expected a non-negative float. "
                             f"Received: threshold={threshold!r}")
        requested, channel_divisible = channel_divisible, resolve_channel_divisible(
            channel_divisible)
        criterion_name, _ = importance.get_criterion(criterion)
        start = time.time()
        deps = self._deps_for(excludes)
        warn_if_groups_stay_whole(requested, channel_divisible, deps.prunable_groups)
        if ratio is not None:
            check_flops_known(deps, f"prune to a FLOPs reduction (ratio={ratio})")
        weights = self._adapter.all_weights()
        previous = self._previous_spec(weights)
        cache = self._analyzer.find(self._analyzer.weights_digest(), previous, criterion)
        upper = {n: len(g.kept) for n, g in previous.groups.items()} if previous else None
        plan = None
        if latency is not None:
            if cache is not None:
                curves = drop_curves(cache, deps)
                penalties, max_ratio = penalties_from_curves(curves, deps.prunable_groups), \
                    max(cache.ratios)
            else:
                penalties = importance_penalties(deps, weights, deps.prunable_groups, criterion)
                max_ratio = 0.9
            plan, info = self._plan_latency(deps, latency, device, batch_size, channel_divisible,
                                            max_ratio, upper, penalties,
                                            max_measurements=max_measurements, verbose=verbose)
            kept = plan.kept
        elif cache is None:
            raise errors.AnalysisCacheError(
                f"No sensitivity analysis of this model in workspace {self.workspace!r}. Run "
                "runner.ana(eval_fn) first, build a spec without one with "
                "runner.uniform_spec(sparsity), or prune to a latency "
                "(prune(latency=...) ranks channels by importance without an analysis).")
        elif ratio is not None:
            curves = drop_curves(cache, deps)
            kept = plan_flops_reduction(deps.prunable_groups, WidthFlops(deps), ratio, curves,
                                        channel_divisible, max(cache.ratios), upper).kept
        else:
            curves = drop_curves(cache, deps)
            kept = RatioSearch(deps.prunable_groups, WidthFlops(deps), curves, channel_divisible,
                               max_ratio=max(cache.ratios),
                               upper_bounds=upper).for_threshold(float(threshold))
        spec = build_spec(deps, weights, kept, criterion, channel_divisible,
                          self.graph.name, self.model_digest, previous)
        self._record_metadata(spec, cache, ratio, threshold, time.time() - start)
        if plan is not None:
            spec.metadata.update(self._latency_metadata(plan, info))
        if spec_path is None:
            if ratio is not None:
                label = f"ratio-{ratio:.2f}"
            elif latency is not None:
                label = f"latency-{latency:.2f}-{info['device']}-b{info['batch_size']}"
            else:
                label = f"threshold-{threshold:g}"
            spec_path = self._workspace.spec_path(self.graph.name, label)
        return self._save_and_build(spec, spec_path, mode)

    def _record_metadata(self, spec, cache, ratio, threshold, seconds):
        baseline, pruned = self.stat(), self.stat(spec)
        spec.metadata.update({
            "target_flops_reduction": ratio, "threshold": threshold,
            "baseline_flops": baseline.flops, "pruned_flops": pruned.flops,
            "flops_reduction": round(1 - pruned.flops / max(baseline.flops, 1), 6),
            "baseline_params": baseline.params, "pruned_params": pruned.params,
            "analysis_key": cache.key if cache is not None else None,
            "search_seconds": round(seconds, 3),
        })

    def _previous_spec(self, weights):
        """The saved spec whose fine-tuned sparse weights this model holds, or None."""
        return spec_history.find_previous_spec(self._workspace.saved_spec_paths(), self._deps,
                                               self.model_digest, weights)

    def plan_widths(self, ratio, channel_divisible="auto", excludes=None, upper_bounds=None,
                    use_analysis=None, warn=True):
        """Kept widths per group for a FLOPs reduction `ratio`, without building anything.

        Args:
          ratio: FLOPs reduction to reach, in (0, 1).
          channel_divisible: Kept widths are multiples of this. Defaults to
            `"auto"` (see `prune`).
          excludes: Layers whose output channels must not shrink.
          upper_bounds: Group name -> largest allowed width (nested pruning).
          use_analysis: `True` to require the sensitivity analysis, `False` to
            prune all groups by the same fraction, `None` to use the analysis
            when the workspace has one for these weights. Defaults to `None`.
          warn: Whether to warn (`UserWarning`) when `channel_divisible` makes
            the target unreachable within one point. Defaults to `True`.

        Returns:
          Group name -> kept width.

        Raises:
          ValueError: if `ratio` cannot be reached (the message says how far
            pruning can go), or if some layer's FLOPs are unknown.
        """
        channel_divisible = resolve_channel_divisible(channel_divisible)
        deps = self._deps_for(excludes)
        check_flops_known(deps, f"plan widths for a FLOPs reduction (ratio={ratio})")
        curves, max_ratio = None, 0.9
        if use_analysis is not False:
            try:
                cache = self._analyzer.find(self._analyzer.weights_digest())
            except errors.AnalysisCacheError:
                if use_analysis:
                    raise
                cache = None
            if cache is None and use_analysis:
                raise errors.AnalysisCacheError(
                    f"No sensitivity analysis in workspace {self.workspace!r}; run "
                    "runner.ana(eval_fn) first or pass use_analysis=False.")
            if cache is not None:
                curves, max_ratio = drop_curves(cache, deps), max(cache.ratios)
        flops = self._width_flops() if deps is self._deps else WidthFlops(deps)
        return plan_flops_reduction(deps.prunable_groups, flops, ratio, curves, channel_divisible,
                                    max_ratio, upper_bounds, warn=warn).kept
