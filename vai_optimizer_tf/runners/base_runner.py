"""`PruningRunner`: what every pruning method needs, shared by all runners.

Reading the model into channel groups, the workspace and its latest-spec
pointer, specs without analysis, the sparse and slim models, the masks of a
sparse model in training, and FLOPs reports. Each method (iterative,
one-step) adds its own analysis or search in its own module.
"""

import logging
import os

from vai_optimizer_tf.graph import adapters
from vai_optimizer_tf.groups.dependency_graph import DependencyGraph
from vai_optimizer_tf.masks.mask_state import MaskState
from vai_optimizer_tf.masks.slice_plan import SlicePlan
from vai_optimizer_tf.masks.sparse_model import build_sparse_model
from vai_optimizer_tf.planning import importance
from vai_optimizer_tf.planning.spec import GroupSpec, PruningSpec, as_spec
from vai_optimizer_tf.planning.spec_builder import build_spec
from vai_optimizer_tf.planning.width_flops import WidthFlops
from vai_optimizer_tf.stats.model_stats import compute_stats
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
        target = spec.metadata.get("target_flops_reduction") if spec is not None else None
        if target is not None:
            reached = 1 - pruned.flops / max(base.flops, 1)
            note = ("" if abs(reached - target) <= 0.01 + 1e-9 else
                    f" (closest plan with channel_divisible={spec.channel_divisible})")
            lines.append(f"FLOPs reduction: target {target:.1%}, reached {reached:.1%}{note}")
        if spec is not None and spec.groups:
            width = max(len(n) for n in spec.groups)
            lines.append(f"{'group':<{width}}  {'width':>6} -> {'kept':>6}")
            for name, g in spec.groups.items():
                lines.append(f"{name:<{width}}  {g.width:>6} -> {len(g.kept):>6}")
        text = "\n".join(lines)
        print_fn(text)
        return text
