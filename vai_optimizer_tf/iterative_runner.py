"""`IterativePruningRunner`: analyse, prune, fine-tune, repeat, transform."""

import logging
import numbers
import os
import time

import numpy as np

from vai_optimizer_tf import errors
from vai_optimizer_tf.analysis import sensitivity_analysis as analysis_lib
from vai_optimizer_tf.analysis.analyzer import Analyzer
from vai_optimizer_tf.graph.tf_keras_adapter import TfKerasAdapter
from vai_optimizer_tf.groups.dependency_graph import DependencyGraph
from vai_optimizer_tf.masks.mask_state import MaskState
from vai_optimizer_tf.masks.slice_plan import SlicePlan
from vai_optimizer_tf.masks.sparse_model import build_sparse_model
from vai_optimizer_tf.planning import importance
from vai_optimizer_tf.planning.ratio_search import RatioSearch, drop_curves
from vai_optimizer_tf.planning.spec import GroupSpec, PruningSpec, as_spec
from vai_optimizer_tf.planning.spec_builder import build_spec
from vai_optimizer_tf.planning.width_flops import WidthFlops
from vai_optimizer_tf.stats.model_stats import check_flops_known, compute_stats
from vai_optimizer_tf.transform.slim_model import build_slim_model
from vai_optimizer_tf.utils import validation
from vai_optimizer_tf.workspace import Workspace

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
logger = logging.getLogger("vai_optimizer_tf")


class IterativePruningRunner:
    """Analyses, prunes and slims a Keras model, one iteration at a time.

    The model is read once into channel groups. `ana` measures how much your
    metric drops when each group is pruned; `prune` turns a FLOPs-reduction
    target (or a metric-drop threshold) into per-group ratios, picks the
    channels, saves the `PruningSpec` in the workspace and returns the sparse
    model to fine-tune; `get_slim_model` removes the pruned channels. The
    model passed in is never modified.

    Args:
      model: A tf_keras Sequential or Functional model, nested models and
        shared layers included.
      input_signature: Optional `tf.TensorSpec` (or list, one per input) for
        models whose input shape is not fully defined, e.g.
        `tf.TensorSpec((1, 224, 224, 3), tf.float32)`. Only used to count
        FLOPs: the sparse and slim models keep the model's own input shapes.
        Defaults to the model's own input shapes.
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
        self.model = model
        self._adapter = TfKerasAdapter(model, input_signature)
        self.graph = self._adapter.graph
        self.model_digest = self._adapter.source_digest()
        self.workspace = os.fspath(workspace)
        self._workspace = Workspace(workspace)
        self._deps_by_excludes = {}
        self._deps = self._dependency_graph(frozenset())
        self._baseline_stats = None
        self._analyzer = Analyzer(self._adapter, self._deps, self._workspace)
        self._flops_model = None
        self._other_model = (None, None)

    # Groups -----------------------------------------------------------------

    @property
    def groups(self):
        """All `ChannelGroup`s of the model, prunable or not, in graph order."""
        return list(self._deps.groups)

    @property
    def prunable_groups(self):
        return self._deps.prunable_groups

    def describe_groups(self):
        """Every group's `describe()`, one after another."""
        return "\n".join(g.describe() for g in self._deps.groups)

    def _dependency_graph(self, excludes):
        if excludes not in self._deps_by_excludes:
            self._deps_by_excludes[excludes] = DependencyGraph(self.graph, excludes=excludes)
        return self._deps_by_excludes[excludes]

    def _resolve_excludes(self, excludes):
        if excludes is None:
            return frozenset()
        if isinstance(excludes, str) or not hasattr(excludes, "__iter__"):
            excludes = [excludes]
        return frozenset(self._adapter.resolve_layer(e) for e in excludes)

    def _deps_for(self, excludes):
        return self._dependency_graph(self._resolve_excludes(excludes))

    # Sensitivity analysis ---------------------------------------------------------

    def ana(self, eval_fn, excludes=None, forced=False, ratios=DEFAULT_RATIOS, shard=None,
            mode="max", criterion="l1", verbose=1):
        """Measures the metric with each prunable group pruned alone at each ratio.

        The baseline is evaluated once, then every (group, ratio) step, on one
        evaluation copy of the model whose weights are masked in place. After
        every step the results are written atomically to
        `<workspace>/ana/sensitivity.json`, so a killed run resumes where it
        stopped. Results are keyed by the graph, the weights, the ratio grid,
        the criterion and the mode: an analysis of other weights is never
        reused.

        Args:
          eval_fn: `fn(model) -> float`. It receives a Keras model (compiled
            like yours when yours is compiled) and returns one number, e.g.
            accuracy on a validation set.
          excludes: Layers (names or objects) whose groups are not analysed.
            Defaults to none.
          forced: Recompute every step even when cached results exist.
            Defaults to `False`.
          ratios: Fractions of each group's channels to prune. Defaults to
            0.1, 0.2, ..., 0.9.
          shard: `(i, n)` to run only the i-th of n interleaved shares of the
            steps, so n processes (or machines with a shared workspace) split
            the work; `prune` merges the shards. Defaults to all steps.
          mode: `"max"` when a higher metric is better (accuracy), `"min"`
            when lower is better (loss, error). Defaults to `"max"`.
          criterion: Importance criterion that picks the pruned channels.
            Defaults to `"l1"`.
          verbose: 1 shows a progress bar and prints the table, 0 is silent.
            Defaults to `1`.

        Returns:
          The `SensitivityCache` of this process's steps (all steps when not
          sharded); `.table(...)` formats it.

        Raises:
          AnalysisError: when `eval_fn` raises or returns NaN or a non-number;
            the message names the group and ratio. Finished steps are kept.
          AnalysisCacheError: when a cache file is corrupted.
        """
        if not callable(eval_fn):
            raise ValueError(f"Invalid `eval_fn`: expected a callable model -> float. "
                             f"Received: eval_fn={eval_fn!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"Invalid `mode`: expected 'max' (higher is better) or 'min'. "
                             f"Received: mode={mode!r}")
        ratios = analysis_lib.check_ratios(ratios)
        shard = analysis_lib.check_shard(shard)
        importance.get_criterion(criterion)
        return self._analyzer.run(self._deps_for(excludes), eval_fn, ratios, criterion, mode,
                                  shard, forced, verbose)

    def sensitivity(self):
        """The sensitivity analysis `prune` would use (a `SensitivityCache`), or None.

        Raises:
          AnalysisCacheError: when the workspace only holds analyses of other
            weights of this model.
        """
        return self._analyzer.find(self._previous_spec())

    # Pruning ---------------------------------------------------------------------

    def prune(self, ratio=None, threshold=None, spec_path=None, excludes=None, criterion="l1",
              channel_divisible=1, mode="sparse"):
        """Prunes to a FLOPs target or a metric-drop threshold, and saves the spec.

        Per-group ratios come from the sensitivity analysis (`ana`), found in
        memory or in the workspace. FLOPs are counted analytically, with the
        `channel_divisible` rounding applied inside the search, so the slim
        model's reduction is within about one percentage point of `ratio`.
        Iterative pruning: when this runner's model holds the fine-tuned
        weights of the latest spec's sparse model, the analysis of the
        original baseline is reused and the channels pruned before stay
        pruned.

        Args:
          ratio: FLOPs reduction to reach: the pruned model has
            `(1 - ratio) x` the baseline FLOPs. In (0, 1).
          threshold: Alternatively, the largest relative metric drop allowed
            for any group (e.g. 0.01 for 1%).
          spec_path: Where to save the spec. Defaults to
            `<workspace>/specs/<model>.ratio-<ratio>.json`. If it names an
            existing spec and neither `ratio` nor `threshold` is given, that
            spec is applied as is.
          excludes: Layers (names or objects) whose output channels must not
            shrink. Defaults to none.
          criterion: `"l1"`, `"l2"`, `"bn_gamma"` or a callable; picks the
            channels within each group. Defaults to `"l1"`.
          channel_divisible: Kept widths are multiples of this. Defaults to `1`.
          mode: `"sparse"` returns the sparse model, `"slim"` the slim one.
            Defaults to `"sparse"`.

        Returns:
          A new tf_keras model (uncompiled).

        Raises:
          ValueError: for bad arguments or an unreachable target, or for a
            `ratio` when some layer's FLOPs are unknown (the message names
            them and how to register a formula).
          AnalysisCacheError: when no usable analysis exists.
        """
        if mode not in ("sparse", "slim"):
            raise ValueError(f"Invalid `mode`: expected 'sparse' or 'slim'. Received: mode={mode!r}")
        if ratio is None and threshold is None:
            if spec_path is not None and os.path.exists(spec_path):
                spec = PruningSpec.load(spec_path)
                model = self._build(spec, mode)  # checks the spec before any pointer moves
                self._workspace.set_latest_spec(spec_path)
                return model
            raise ValueError("Pass either `ratio` (the FLOPs reduction, e.g. ratio=0.5) or "
                             "`threshold` (the largest metric drop per group, e.g. 0.01). "
                             "Received: ratio=None, threshold=None")
        if ratio is not None and threshold is not None:
            raise ValueError("Pass only one of `ratio` and `threshold`. Received: "
                             f"ratio={ratio!r}, threshold={threshold!r}")
        if ratio is not None:
            ratio = validation.check_ratio("ratio", ratio, low_inclusive=False)
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(
                threshold, numbers.Real) or not threshold >= 0):
            raise ValueError(f"Invalid `threshold`: expected a non-negative float. "
                             f"Received: threshold={threshold!r}")
        channel_divisible = validation.check_positive_int("channel_divisible", channel_divisible)
        criterion_name, _ = importance.get_criterion(criterion)
        start = time.time()
        deps = self._deps_for(excludes)
        if ratio is not None:
            check_flops_known(deps, f"prune to a FLOPs reduction (ratio={ratio})")
        previous = self._previous_spec()
        cache = self._analyzer.find(previous)
        if cache is None:
            raise errors.AnalysisCacheError(
                f"No sensitivity analysis of this model in workspace {self.workspace!r}. Run "
                "runner.ana(eval_fn) first, or build a spec without one with "
                "runner.uniform_spec(sparsity).")
        curves = drop_curves(cache, deps)
        upper = {n: len(g.kept) for n, g in previous.groups.items()} if previous else None
        search = RatioSearch(deps.prunable_groups, WidthFlops(deps), curves, channel_divisible,
                             max_ratio=max(cache.ratios), upper_bounds=upper)
        kept = (search.for_flops_reduction(ratio) if ratio is not None
                else search.for_threshold(float(threshold)))
        spec = build_spec(deps, self._adapter.all_weights(), kept, criterion, channel_divisible,
                          self.graph.name, self.model_digest, previous)
        self._record_metadata(spec, cache, ratio, threshold, time.time() - start)
        if spec_path is None:
            label = f"ratio-{ratio:.2f}" if ratio is not None else f"threshold-{threshold:g}"
            spec_path = self._workspace.spec_path(self.graph.name, label)
        model = self._build(spec, mode)
        spec.save(spec_path)
        self._workspace.set_latest_spec(spec_path)
        logger.info("Pruning spec saved to %s (FLOPs reduction %.2f%%)", spec_path,
                    100 * spec.metadata["flops_reduction"])
        return model

    def _record_metadata(self, spec, cache, ratio, threshold, seconds):
        baseline, pruned = self.stat(), self.stat(spec)
        spec.metadata.update({
            "target_flops_reduction": ratio, "threshold": threshold,
            "baseline_flops": baseline.flops, "pruned_flops": pruned.flops,
            "flops_reduction": round(1 - pruned.flops / max(baseline.flops, 1), 6),
            "baseline_params": baseline.params, "pruned_params": pruned.params,
            "analysis_key": cache.key, "search_seconds": round(seconds, 3),
        })

    def latest_spec_path(self):
        """Path of the spec `prune` saved last in this workspace, or None."""
        return self._workspace.latest_spec_path()

    def _previous_spec(self):
        """The latest spec, if this model holds that spec's sparse weights."""
        path = self.latest_spec_path()
        if path is None or not os.path.exists(path):
            return None
        spec = PruningSpec.load(path)
        if spec.model_digest != self.model_digest or not spec.groups:
            return None
        spec = spec.renamed(self._deps)
        plan = SlicePlan(self._deps, spec.kept_by_group(self._deps))
        weights = self._adapter.all_weights()
        masked = plan.masked_weights(weights)
        producers = {p for name in spec.groups for p in self._deps.group(name).producers}
        for path in producers & set(masked):
            if not all(np.array_equal(a, b) for a, b in zip(weights[path], masked[path])):
                return None
        return spec

    # Specs without analysis ---------------------------------------------------------

    def uniform_spec(self, sparsity, criterion="l1", channel_divisible=1, excludes=None):
        """A spec that prunes every prunable group by the same fraction.

        Args:
          sparsity: Fraction of each group's channels to remove, in [0, 1).
          criterion: `"l1"`, `"l2"`, `"bn_gamma"`, or a callable
            `GroupWeights -> scores` (one score per channel, higher is more
            important). Scores are taken over the whole group: every producer
            contributes. Defaults to `"l1"`.
          channel_divisible: Kept widths are rounded to a multiple of this
            (8 suits most accelerators). Defaults to `1`.
          excludes: Layers (names or objects) whose output channels must not
            shrink. Defaults to none.

        Returns:
          A `PruningSpec`.

        Raises:
          ValueError: for an out-of-range `sparsity`, a bad
            `channel_divisible`, an unknown criterion or an unknown layer in
            `excludes`.
        """
        sparsity = validation.check_ratio("sparsity", sparsity)
        channel_divisible = validation.check_positive_int("channel_divisible", channel_divisible)
        deps = self._deps_for(excludes)
        kept = {g.name: importance.kept_count(g.width, sparsity, channel_divisible)
                for g in deps.prunable_groups}
        spec = build_spec(deps, self._adapter.all_weights(), kept, criterion, channel_divisible,
                          self.graph.name, self.model_digest)
        for g in spec.groups.values():
            g.ratio = sparsity
        baseline, pruned = self.stat(), self.stat(spec)
        spec.metadata.update({
            "baseline_flops": baseline.flops, "pruned_flops": pruned.flops,
            "flops_reduction": round(1 - pruned.flops / max(baseline.flops, 1), 6),
            "baseline_params": baseline.params, "pruned_params": pruned.params,
        })
        return spec

    # Models -----------------------------------------------------------------

    def _plan(self, spec):
        spec = as_spec(spec)
        spec.check_model(self._deps, self.model_digest, self.graph.name)
        return SlicePlan(self._deps, spec.kept_by_group(self._deps))

    def _resolve_spec(self, spec, spec_path=None):
        spec = spec if spec is not None else spec_path
        if spec is None:
            spec = self.latest_spec_path()
            if spec is None:
                raise ValueError(f"No spec given and no latest spec in workspace "
                                 f"{self.workspace!r}. Pass a spec (or its path), or run "
                                 "runner.prune() first.")
        return spec

    def _adapter_of(self, model):
        """A `TfKerasAdapter` of another model, reused while it is the same model."""
        cached_model, adapter = self._other_model
        if cached_model is not model:
            adapter = TfKerasAdapter(model)
            self._other_model = (model, adapter)
        return adapter

    def _weights_from(self, model):
        if model is None:
            return None
        other = self._adapter_of(model)
        if other.graph.digest() != self.model_digest:
            raise ValueError(
                f"Invalid `weights_from`: model {model.name!r} does not have the architecture "
                f"of the runner's model {self.graph.name!r}. Pass the sparse model built by "
                "this runner (or a model with the same layers and shapes).")
        # Same digest means the same layers in the same order, whatever their names.
        theirs = other.all_weights()
        return {ours: theirs[path] for ours, path in
                zip(self.graph.layer_paths(), other.graph.layer_paths()) if path in theirs}

    def _build(self, spec, mode):
        return self.get_slim_model(spec) if mode == "slim" else self.get_sparse_model(spec)

    def get_sparse_model(self, spec=None, weights_from=None):
        """Builds the sparse model: the original architecture, pruned channels zeroed.

        Args:
          spec: A `PruningSpec` or the path of a saved one. Defaults to the
            latest spec saved by `prune` in the workspace.
          weights_from: Optional model of the same architecture whose weights
            are used instead of the runner's model's. Defaults to `None`.

        Returns:
          A new tf_keras model (uncompiled).

        Raises:
          SpecMismatchError: if the spec was made for another model.
        """
        return build_sparse_model(self._adapter, self._plan(self._resolve_spec(spec)),
                                  self._weights_from(weights_from))

    def get_slim_model(self, spec=None, weights_from=None, spec_path=None):
        """Builds the slim model: pruned channels physically removed.

        Its outputs equal the sparse model's; layer names, inputs and outputs
        are those of the original.

        Args:
          spec: A `PruningSpec` or the path of a saved one. Defaults to the
            latest spec saved by `prune` in the workspace.
          weights_from: Optional model of the same architecture (typically the
            fine-tuned sparse model) whose weights are sliced. Defaults to the
            runner's model.
          spec_path: Vitis-style alias of `spec`.

        Returns:
          A new tf_keras model (uncompiled).

        Raises:
          SpecMismatchError: if the spec was made for another model.
        """
        return build_slim_model(self._adapter, self._plan(self._resolve_spec(spec, spec_path)),
                                self._weights_from(weights_from))

    # Training -------------------------------------------------------------------

    def mask_state(self, model):
        """The `MaskState` of a sparse model built by this runner.

        Raises:
          ValueError: if `model` is not a sparse model of this runner's model.
        """
        other = self._adapter_of(model)
        if other.graph.digest() != self.model_digest:
            raise ValueError(
                f"Model {model.name!r} is not a sparse model of {self.graph.name!r}: its "
                "architecture differs. Train the model returned by runner.get_sparse_model() "
                "or runner.prune().")
        return MaskState(self._deps, other, model)

    def restore_masks(self, model):
        """Sets a sparse model's masks from its zero weights, and returns its spec.

        Masks live in the model's config, not in weight files: after
        `load_weights` into a sparse model built from another spec (or from
        `uniform_spec(0.0)`), call this so the pruned channels are held at
        zero again. A channel is pruned when all its producers' weights are
        zero.
        """
        state = self.mask_state(model)
        state.apply(state.kept_from_zero_weights())
        return self.spec_from_state(state)

    def spec_from_model(self, model):
        """The `PruningSpec` a sparse model currently applies, read from its masks."""
        return self.spec_from_state(self.mask_state(model))

    def spec_from_state(self, state):
        """The `PruningSpec` of a `MaskState` (see `mask_state`)."""
        kept = state.kept_by_group()
        groups = {}
        for gid, channels in kept.items():
            group = self._deps.group(gid)
            if len(channels) < group.width:
                groups[group.name] = GroupSpec(group.width, 1 - len(channels) / group.width,
                                               channels, group.index)
        spec = PruningSpec(self.graph.name, self.model_digest, groups)
        counts = {gid: len(channels) for gid, channels in kept.items()}
        flops = self._width_flops()
        spec.metadata["flops_reduction"] = round(1 - flops.total(counts) / flops.baseline, 6)
        return spec

    def _width_flops(self):
        if self._flops_model is None:
            self._flops_model = WidthFlops(self._deps)
        return self._flops_model

    def plan_widths(self, ratio, channel_divisible=1, excludes=None, upper_bounds=None,
                    use_analysis=None):
        """Kept widths per group for a FLOPs reduction `ratio`, without building anything.

        Args:
          ratio: FLOPs reduction to reach, in (0, 1).
          channel_divisible: Kept widths are multiples of this. Defaults to `1`.
          excludes: Layers whose output channels must not shrink.
          upper_bounds: Group name -> largest allowed width (nested pruning).
          use_analysis: `True` to require the sensitivity analysis, `False` to
            prune all groups by the same fraction, `None` to use the analysis
            when the workspace has one for these weights. Defaults to `None`.

        Returns:
          Group name -> kept width.

        Raises:
          ValueError: if `ratio` cannot be reached (the message says how far
            pruning can go), or if some layer's FLOPs are unknown.
        """
        deps = self._deps_for(excludes)
        check_flops_known(deps, f"plan widths for a FLOPs reduction (ratio={ratio})")
        curves, max_ratio = None, 0.9
        if use_analysis is not False:
            try:
                cache = self._analyzer.find(None)
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
        search = RatioSearch(deps.prunable_groups, flops, curves, channel_divisible,
                             max_ratio=max_ratio, upper_bounds=upper_bounds)
        return search.for_flops_reduction(ratio)

    def build_spec(self, kept_widths, weights_from=None, criterion="l1", channel_divisible=1,
                   previous=None):
        """A spec keeping `kept_widths` channels per group, picked by `criterion`.

        Args:
          kept_widths: Group name -> kept width (e.g. from `plan_widths`).
          weights_from: Model whose weights are scored. Defaults to the
            runner's model.
          criterion: Importance criterion. Defaults to `"l1"`.
          channel_divisible: Recorded in the spec. Defaults to `1`.
          previous: Optional spec whose pruned channels stay pruned.
        """
        weights = self._weights_from(weights_from) or self._adapter.all_weights()
        return build_spec(self._deps, weights, kept_widths, criterion, channel_divisible,
                          self.graph.name, self.model_digest, previous)

    # Reports ------------------------------------------------------------------------

    def stat(self, spec=None):
        """Analytic FLOPs and params of the model, or of its slim version under `spec`.

        Nothing is built. One multiply-add counts as 2 FLOPs.
        """
        if spec is None:
            if self._baseline_stats is None:
                self._baseline_stats = compute_stats(self._deps)
            return self._baseline_stats
        return compute_stats(self._deps, self._plan(spec))

    def summary(self, spec=None, print_fn=print):
        """Prints baseline vs pruned FLOPs, params and per-group widths.

        Args:
          spec: A spec or its path. Defaults to the latest spec, if any.
          print_fn: Where the lines go. Defaults to `print`.

        Returns:
          The printed text.
        """
        if spec is None:
            spec = self.latest_spec_path()
        spec = as_spec(spec) if spec is not None else None
        base = self.stat()
        pruned = self.stat(spec) if spec is not None else base
        lines = [f"Model {self.graph.name!r}: {len(self.groups)} channel groups, "
                 f"{len(self.prunable_groups)} prunable"]
        lines.append(f"{'':<10}{'baseline':>16}{'pruned':>16}{'ratio':>8}")
        for label, a, b in (("FLOPs", base.flops, pruned.flops),
                            ("params", base.params, pruned.params)):
            lines.append(f"{label:<10}{a:>16,}{b:>16,}{b / max(a, 1):>8.3f}")
        if spec is not None and spec.groups:
            width = max(len(n) for n in spec.groups)
            lines.append(f"{'group':<{width}}  {'width':>6} -> {'kept':>6}")
            for name, g in spec.groups.items():
                lines.append(f"{name:<{width}}  {g.width:>6} -> {len(g.kept):>6}")
        text = "\n".join(lines)
        print_fn(text)
        return text
