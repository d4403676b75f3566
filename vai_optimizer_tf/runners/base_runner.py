"""`PruningRunner`: what every pruning method needs, shared by all runners.

Reading the model into channel groups, the workspace and its latest-spec
pointer, specs without analysis, the sparse and slim models, the masks of a
sparse model in training, and FLOPs reports. Each method (iterative,
one-step) adds its own analysis or search in its own module.
"""

import dataclasses
import logging
import os

from vai_optimizer_tf.graph import adapters
from vai_optimizer_tf.groups.dependency_graph import DependencyGraph
from vai_optimizer_tf.masks.mask_state import MaskState
from vai_optimizer_tf.masks.slice_plan import SlicePlan
from vai_optimizer_tf.masks.sparse_model import build_sparse_model
from vai_optimizer_tf.planning import importance
from vai_optimizer_tf.planning.divisibility import (resolve_channel_divisible,
                                                    warn_if_groups_stay_whole)
from vai_optimizer_tf.planning.latency_plan import LatencyPlanner, plan_latency
from vai_optimizer_tf.planning.latency_session import LatencySession
from vai_optimizer_tf.planning.latency_timer import check_device
from vai_optimizer_tf.planning.spec import GroupSpec, PruningSpec, as_spec
from vai_optimizer_tf.planning.spec_builder import build_spec
from vai_optimizer_tf.planning.width_flops import WidthFlops
from vai_optimizer_tf.stats.model_stats import LatencyStats, compute_stats
from vai_optimizer_tf.transform.slim_model import build_slim_model
from vai_optimizer_tf.utils import validation
from vai_optimizer_tf.workspace import Workspace

logger = logging.getLogger("vai_optimizer_tf")


class PruningRunner:
    """Base class of the pruning runners: the model's groups, specs and models.

    Subclasses add how per-group widths are chosen (`IterativePruningRunner`:
    sensitivity analysis; `OneStepPruningRunner`: a subnet search). The model
    passed in is never modified.

    Args:
      model: A tf_keras or Keras 3 Sequential or Functional model, nested models and
        shared layers included.
      input_signature: Optional `tf.TensorSpec` (or list, one per input) for
        models whose input shape is not fully defined, e.g.
        `tf.TensorSpec((1, 224, 224, 3), tf.float32)`. Only used to count
        FLOPs: the sparse and slim models keep the model's own input shapes.
        Defaults to the model's own input shapes.
      workspace: Folder for analyses, searches, specs and the
        `latest_spec.json` pointer. Defaults to `".vai"`.

    Raises:
      UnsupportedModelError: for models no adapter reads (subclassed models).
    """

    def __init__(self, model, input_signature=None, workspace=".vai"):
        self.model = model
        self._adapter = adapters.adapter_for(model, input_signature)
        self.graph = self._adapter.graph
        self.model_digest = self._adapter.source_digest()
        self.workspace = os.fspath(workspace)
        self._workspace = Workspace(workspace)
        self._deps_by_excludes = {}
        self._deps = self._dependency_graph(frozenset())
        self._baseline_stats = None
        self._flops_model = None
        self._other_model = (None, None)
        self._latency_sessions = {}

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

    def _deps_for(self, excludes):
        return self._dependency_graph(self._adapter.resolve_layers(excludes))

    def latest_spec_path(self):
        """Path of the spec `prune` saved last in this workspace, or None."""
        return self._workspace.latest_spec_path()

    def _save_and_build(self, spec, spec_path, mode):
        """Builds the model of `spec`, then saves the spec and points the workspace at it.

        Building first means a spec that cannot be applied never becomes the
        latest one.
        """
        model = self._build(spec, mode)
        spec.save(spec_path)
        self._workspace.set_latest_spec(spec_path)
        logger.info("Pruning spec saved to %s (FLOPs reduction %.2f%%)", spec_path,
                    100 * spec.metadata.get("flops_reduction", 0.0))
        return model

    @staticmethod
    def _check_mode(mode):
        if mode not in ("sparse", "slim"):
            raise ValueError(f"Invalid `mode`: expected 'sparse' or 'slim'. "
                             f"Received: mode={mode!r}")

    # Specs without analysis ---------------------------------------------------------

    def uniform_spec(self, sparsity=None, criterion="l1", channel_divisible="auto", excludes=None,
                     latency=None, device="tf", batch_size=1, max_measurements=4, verbose=1):
        """A spec that prunes every prunable group by the same fraction.

        The fraction is `sparsity`, or with `latency` the one whose slim model
        runs at `latency` x the baseline's measured latency on `device` (see
        `IterativePruningRunner.prune` for how latency is measured).

        Args:
          sparsity: Fraction of each group's channels to remove, in [0, 1).
          criterion: `"l1"`, `"l2"`, `"bn_gamma"`, or a callable
            `GroupWeights -> scores` (one score per channel, higher is more
            important). Scores are taken over the whole group: every producer
            contributes. Defaults to `"l1"`.
          channel_divisible: Kept widths are rounded to a multiple of this.
            `"auto"` is the multiple this CPU runs fastest (16 with AVX-512,
            else 8; see docs/deployment.md); 1 allows any width. Defaults to
            `"auto"`.
          excludes: Layers (names or objects) whose output channels must not
            shrink. Defaults to none.
          latency: Instead of `sparsity`, the latency to reach as a fraction of
            the baseline's, in (0, 1).
          device: With `latency`: `"tf"` (TensorFlow on this CPU) or
            `"tflite"` (the TFLite interpreter with XNNPACK). Defaults to
            `"tf"`.
          batch_size: With `latency`: the batch size timed. Defaults to `1`.
          max_measurements: With `latency`: slim models measured at most
            while closing in on the target. Defaults to `4`.
          verbose: With `latency`: 1 shows progress, 0 is silent. Defaults
            to `1`.

        Returns:
          A `PruningSpec`.

        Raises:
          ValueError: for an out-of-range `sparsity` or `latency`, both or
            neither of them, a bad `channel_divisible`, an unknown criterion
            or an unknown layer in `excludes`.
        """
        if sparsity is None and latency is None:
            raise ValueError("Invalid `sparsity`: expected a float in [0, 1), or pass `latency` "
                             "(a fraction of the baseline's latency) instead. Received: "
                             "sparsity=None")
        if sparsity is not None and latency is not None:
            raise ValueError("Pass only one of `sparsity` and `latency`. Received: "
                             f"sparsity={sparsity!r}, latency={latency!r}")
        requested, channel_divisible = channel_divisible, resolve_channel_divisible(
            channel_divisible)
        deps = self._deps_for(excludes)
        warn_if_groups_stay_whole(requested, channel_divisible, deps.prunable_groups)
        if latency is not None:
            latency = validation.check_ratio("latency", latency, low_inclusive=False)
            plan, info = self._plan_latency(deps, latency, device, batch_size, channel_divisible,
                                            uniform=True, max_measurements=max_measurements,
                                            verbose=verbose)
            kept = plan.kept
        else:
            sparsity = validation.check_ratio("sparsity", sparsity)
            kept = {g.name: importance.kept_count(g.width, sparsity, channel_divisible)
                    for g in deps.prunable_groups}
        spec = build_spec(deps, self._adapter.all_weights(), kept, criterion, channel_divisible,
                          self.graph.name, self.model_digest)
        if sparsity is not None:
            for g in spec.groups.values():
                g.ratio = sparsity
        baseline, pruned = self.stat(), self.stat(spec)
        spec.metadata.update({
            "baseline_flops": baseline.flops, "pruned_flops": pruned.flops,
            "flops_reduction": round(1 - pruned.flops / max(baseline.flops, 1), 6),
            "baseline_params": baseline.params, "pruned_params": pruned.params,
        })
        if latency is not None:
            spec.metadata.update(self._latency_metadata(plan, info))
        return spec

    # Latency ------------------------------------------------------------------------

    def latency_session(self, device="tf", batch_size=1, verbose=1):
        """The `LatencySession` of this model on `device` at `batch_size`.

        It owns the workspace's latency table for this machine
        (`<workspace>/latency/`), the measured baseline and the side-by-side
        measurement of slim models.
        """
        key = (check_device(device), validation.check_positive_int("batch_size", batch_size))
        sessions = self._latency_sessions
        if key not in sessions:
            sessions[key] = LatencySession(
                self.model, self.model_digest, self.workspace,
                lambda kept: self.get_slim_model(self.build_spec(kept)), device=key[0],
                batch_size=key[1], verbose=verbose)
        sessions[key].verbose = verbose
        return sessions[key]

    def latency_cost(self, device="tf", batch_size=1, channel_divisible="auto", excludes=None,
                     max_ratio=0.9, upper_bounds=None, verbose=1):
        """The predicted latency of any kept widths, as a cost model like `WidthFlops`.

        Builds the latency table where it is missing (a benchmark on this
        machine, with a progress bar; cached in the workspace), measures the
        baseline once, and calibrates the sum of the measured layers on it.
        Use it to check or score candidate widths against a latency budget
        without building models: with `counts` = group id -> kept width,
        `cost.total(counts) / cost.baseline` is the predicted fraction of the
        baseline's latency. It can stand where a `WidthFlops` goes
        (`BudgetAllocation`, a subnet sampler): `baseline`, `total`,
        `per_node` and `total_after` mean seconds instead of FLOPs.

        Args:
          device: `"tf"` or `"tflite"`. Defaults to `"tf"`.
          batch_size: The batch size timed. Defaults to `1`.
          channel_divisible: Widths timed are multiples of this. Defaults to
            `"auto"`.
          excludes: Layers whose output channels must not shrink.
          max_ratio: Deepest cut of a group that will be asked about.
            Defaults to `0.9`.
          upper_bounds: Group name -> largest width. Defaults to none.
          verbose: 1 shows the table's progress bar. Defaults to `1`.

        Returns:
          A calibrated `LatencyCost`.

        Example:

        ```python
        cost = runner.latency_cost(device="tflite", batch_size=1)
        counts = {runner.prunable_groups[0].id: 16}
        print(cost.total(counts) / cost.baseline)     # predicted latency fraction
        ```
        """
        deps = self._deps_for(excludes)
        cost, _ = self.latency_session(device, batch_size, verbose).cost(
            deps, self._flops_for(deps), resolve_channel_divisible(channel_divisible),
            max_ratio, upper_bounds)
        return cost

    def _flops_for(self, deps):
        return self._width_flops() if deps is self._deps else WidthFlops(deps)

    def _plan_latency(self, deps, target, device, batch_size, channel_divisible, max_ratio=0.9,
                      upper_bounds=None, penalties=None, uniform=False, max_measurements=4,
                      verbose=1):
        """Plans kept widths for a latency target (see `latency_plan`); returns `(plan, info)`."""
        max_measurements = int(max_measurements)
        if max_measurements < 0:
            raise ValueError(f"Invalid `max_measurements`: expected an integer >= 0. "
                             f"Received: max_measurements={max_measurements!r}")
        session = self.latency_session(device, batch_size, verbose)
        cost, baseline = session.cost(deps, self._flops_for(deps), channel_divisible, max_ratio,
                                      upper_bounds)
        planner = LatencyPlanner(deps.prunable_groups, cost, baseline, penalties,
                                 channel_divisible, max_ratio, upper_bounds, uniform=uniform)
        plan = plan_latency(planner, target, session.measure if max_measurements else None,
                            max_measurements, log=print if verbose else None)
        return plan, {"device": session.device, "batch_size": session.batch_size,
                      "baseline_seconds": baseline}

    @staticmethod
    def _latency_metadata(plan, info):
        return {
            "target_latency": plan.target, "latency_device": info["device"],
            "latency_batch_size": info["batch_size"],
            "baseline_latency_seconds": info["baseline_seconds"],
            "predicted_latency": round(plan.predicted, 6),
            "measured_latency": None if plan.measured is None else round(plan.measured, 6),
            "latency_measurements": [[round(p, 6), round(m, 6)] for p, m in plan.history],
        }

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
        """An adapter of another model, reused while it is the same model."""
        cached_model, adapter = self._other_model
        if cached_model is not model:
            adapter = adapters.adapter_for(model)
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
          A new model of the runner's model's Keras flavour (uncompiled).

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
          A new model of the runner's model's Keras flavour (uncompiled).

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

    def build_spec(self, kept_widths, weights_from=None, criterion="l1", channel_divisible="auto",
                   previous=None):
        """A spec keeping `kept_widths` channels per group, picked by `criterion`.

        Args:
          kept_widths: Group name -> kept width (e.g. from `plan_widths`).
          weights_from: Model whose weights are scored. Defaults to the
            runner's model.
          criterion: Importance criterion. Defaults to `"l1"`.
          channel_divisible: Recorded in the spec. Defaults to `"auto"`.
          previous: Optional spec whose pruned channels stay pruned.
        """
        weights = self._weights_from(weights_from) or self._adapter.all_weights()
        return build_spec(self._deps, weights, kept_widths, criterion,
                          resolve_channel_divisible(channel_divisible), self.graph.name,
                          self.model_digest, previous)

    # Reports ------------------------------------------------------------------------

    def stat(self, spec=None, device=None, batch_size=1):
        """Analytic FLOPs and params of the model, or of its slim version under `spec`.

        Nothing is built. One multiply-add counts as 2 FLOPs. The returned
        stats carry a `latency` (`LatencyStats`) when `device` is given (the
        prediction of the workspace's latency table, measured first where it
        is missing), or when `spec` was planned for a latency target (its
        prediction as recorded).

        Args:
          spec: A spec or its path. Defaults to the baseline.
          device: `"tf"` or `"tflite"` to predict the latency. Defaults to
            none.
          batch_size: With `device`, the batch size. Defaults to `1`.

        Returns:
          A `ModelStats`.
        """
        if spec is None:
            if self._baseline_stats is None:
                self._baseline_stats = compute_stats(self._deps)
            stats = self._baseline_stats
        else:
            spec = as_spec(spec)
            stats = compute_stats(self._deps, self._plan(spec))
        latency = None
        if device is not None:
            cost = self.latency_cost(device, batch_size, verbose=0)
            counts = {}
            if spec is not None:
                counts = {gid: len(kept) for gid, kept in spec.kept_by_group(self._deps).items()}
            latency = LatencyStats(cost.total(counts), device, int(batch_size),
                                   cost.total(counts) / cost.baseline)
        elif spec is not None and spec.metadata.get("latency_device"):
            meta = spec.metadata
            latency = LatencyStats(meta["predicted_latency"] * meta["baseline_latency_seconds"],
                                   meta["latency_device"], int(meta["latency_batch_size"]),
                                   meta["predicted_latency"], meta.get("measured_latency"))
        return stats if latency is None else dataclasses.replace(stats, latency=latency)

    def summary(self, spec=None, print_fn=print, device=None, batch_size=1):
        """Prints baseline vs pruned FLOPs, params, latency and per-group widths.

        The latency row shows the prediction recorded in a latency-targeted
        spec, or, with `device`, the latency table's prediction for any spec.

        Args:
          spec: A spec or its path. Defaults to the latest spec, if any.
          print_fn: Where the lines go. Defaults to `print`.
          device: `"tf"` or `"tflite"` to show the predicted latency.
            Defaults to the device a latency-targeted spec was planned for.
          batch_size: With `device`, the batch size. Defaults to `1`.

        Returns:
          The printed text.
        """
        if spec is None:
            spec = self.latest_spec_path()
        spec = as_spec(spec) if spec is not None else None
        base = self.stat()
        pruned = self.stat(spec, device, batch_size) if spec is not None else base
        lines = [f"Model {self.graph.name!r}: {len(self.groups)} channel groups, "
                 f"{len(self.prunable_groups)} prunable"]
        lines.append(f"{'':<10}{'baseline':>16}{'pruned':>16}{'ratio':>8}")
        for label, a, b in (("FLOPs", base.flops, pruned.flops),
                            ("params", base.params, pruned.params)):
            lines.append(f"{label:<10}{a:>16,}{b:>16,}{b / max(a, 1):>8.3f}")
        latency = pruned.latency if spec is not None else None
        if latency is not None:
            base_ms = 1000 * latency.seconds / max(latency.fraction, 1e-12)
            lines.append(f"{'latency':<10}{base_ms:>13.3f} ms{1000 * latency.seconds:>13.3f} ms"
                         f"{latency.fraction:>8.3f}   predicted, {latency.device} batch "
                         f"{latency.batch_size}")
        target = spec.metadata.get("target_flops_reduction") if spec is not None else None
        if target is not None:
            reached = 1 - pruned.flops / max(base.flops, 1)
            note = ("" if abs(reached - target) <= 0.01 + 1e-9 else
                    f" (closest plan with channel_divisible={spec.channel_divisible})")
            lines.append(f"FLOPs reduction: target {target:.1%}, reached {reached:.1%}{note}")
        target = spec.metadata.get("target_latency") if spec is not None else None
        if target is not None:
            measured = spec.metadata.get("measured_latency")
            meas = "not measured" if measured is None else f"measured {measured:.1%}"
            lines.append(f"Latency: target {target:.1%}, predicted "
                         f"{spec.metadata['predicted_latency']:.1%}, {meas} of the baseline's "
                         f"({spec.metadata['latency_device']}, batch "
                         f"{spec.metadata['latency_batch_size']})")
        if spec is not None and spec.groups:
            width = max(len(n) for n in spec.groups)
            lines.append(f"{'group':<{width}}  {'width':>6} -> {'kept':>6}")
            for name, g in spec.groups.items():
                lines.append(f"{name:<{width}}  {g.width:>6} -> {len(g.kept):>6}")
        text = "\n".join(lines)
        print_fn(text)
        return text
