"""`IterativePruningRunner`: the entry point of the channel-pruning flow."""

import numbers

from vai_optimizer_tf.graph.tf_keras_adapter import TfKerasAdapter
from vai_optimizer_tf.groups.dependency_graph import DependencyGraph
from vai_optimizer_tf.masks.slice_plan import SlicePlan
from vai_optimizer_tf.masks.sparse_model import build_sparse_model
from vai_optimizer_tf.planning import importance
from vai_optimizer_tf.planning.spec import GroupSpec, PruningSpec, as_spec
from vai_optimizer_tf.stats.model_stats import compute_stats
from vai_optimizer_tf.transform.slim_model import build_slim_model
from vai_optimizer_tf.utils import validation


class IterativePruningRunner:
    """Finds channel groups in a Keras model and builds sparse and slim models.

    The model is read once into a graph of channel groups. A `PruningSpec`
    says which channels each group keeps; from it the runner builds the
    *sparse* model (same architecture, pruned channels zeroed, for
    fine-tuning) and the *slim* model (pruned channels removed). The model
    passed in is never modified.

    Args:
      model: A tf_keras Sequential or Functional model, nested models and
        shared layers included.
      input_signature: Optional `tf.TensorSpec` (or list, one per input) for
        models whose input shape is not fully defined, e.g.
        `tf.TensorSpec((1, 224, 224, 3), tf.float32)`. Defaults to the model's
        own input shapes.

    Raises:
      UnsupportedModelError: for subclassed or Keras 3 models.

    Example:

    ```python
    import tf_keras
    import vai_optimizer_tf as vot

    model = tf_keras.applications.ResNet50(weights=None, input_shape=(96, 96, 3))
    runner = vot.IterativePruningRunner(model)
    spec = runner.uniform_spec(0.5, channel_divisible=8)
    sparse = runner.get_sparse_model(spec)   # fine-tune this with model.fit
    slim = runner.get_slim_model(spec)       # same outputs as `sparse`, fewer FLOPs
    ```
    """

    def __init__(self, model, input_signature=None):
        self.model = model
        self._adapter = TfKerasAdapter(model, input_signature)
        self.graph = self._adapter.graph
        self.model_digest = self.graph.digest()
        self._deps_by_excludes = {}
        self._deps = self._dependency_graph(frozenset())
        self._baseline_stats = None

    # Groups -----------------------------------------------------------------

    @property
    def groups(self):
        """All `ChannelGroup`s of the model, prunable or not, in graph order."""
        return list(self._deps.groups)

    @property
    def prunable_groups(self):
        return self._deps.prunable_groups

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

    def describe_groups(self):
        """Every group's `describe()`, one after another."""
        return "\n".join(g.describe() for g in self._deps.groups)

    # Specs ------------------------------------------------------------------

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
        return self._make_spec({g.name: sparsity for g in
                                self._dependency_graph(self._resolve_excludes(excludes))
                                .prunable_groups},
                               criterion, channel_divisible, excludes)

    def _make_spec(self, ratios, criterion, channel_divisible, excludes):
        channel_divisible = validation.check_positive_int("channel_divisible", channel_divisible)
        criterion_name, _ = importance.get_criterion(criterion)
        deps = self._dependency_graph(self._resolve_excludes(excludes))
        weights = self._adapter.all_weights()
        groups = {}
        for name, ratio in ratios.items():
            group = deps.group(name)
            if not group.prunable:
                raise ValueError(f"Group {name!r} is not prunable: {group.reasons[0]}.")
            if not isinstance(ratio, numbers.Real) or not 0 <= ratio < 1:
                raise ValueError(f"Invalid ratio for group {name!r}: expected a float in [0, 1). "
                                 f"Received: {ratio!r}")
            keep = importance.kept_count(group.width, ratio, channel_divisible)
            if keep >= group.width:
                continue
            scores = importance.score_group(deps, group, weights, criterion)
            groups[name] = GroupSpec(group.width, ratio, importance.select_channels(scores, keep))
        spec = PruningSpec(model_name=self.graph.name, model_digest=self.model_digest,
                           groups=groups, criterion=criterion_name,
                           channel_divisible=channel_divisible)
        pruned = self.stat(spec)
        baseline = self.stat()
        spec.metadata.update({
            "baseline_flops": baseline.flops, "pruned_flops": pruned.flops,
            "flops_reduction": round(1 - pruned.flops / max(baseline.flops, 1), 6),
            "baseline_params": baseline.params, "pruned_params": pruned.params,
        })
        return spec

    def _plan(self, spec):
        spec = as_spec(spec)
        spec.check_model(self._deps, self.model_digest, self.graph.name)
        return SlicePlan(self._deps, spec.kept_by_group(self._deps))

    # Models -----------------------------------------------------------------

    def _weights_from(self, model):
        if model is None:
            return None
        other = TfKerasAdapter(model)
        if other.graph.digest() != self.model_digest:
            raise ValueError(
                f"Invalid `weights_from`: model {model.name!r} does not have the architecture "
                f"of the runner's model {self.graph.name!r}. Pass the sparse model built by "
                "this runner (or a model with the same layers and shapes).")
        return other.all_weights()

    def get_sparse_model(self, spec, weights_from=None):
        """Builds the sparse model: the original architecture, pruned channels zeroed.

        Args:
          spec: A `PruningSpec` or the path of a saved one.
          weights_from: Optional model of the same architecture whose weights
            are used instead of the runner's model's. Defaults to `None`.

        Returns:
          A new tf_keras model (uncompiled).

        Raises:
          SpecMismatchError: if the spec was made for another model.
        """
        return build_sparse_model(self._adapter, self._plan(spec), self._weights_from(weights_from))

    def get_slim_model(self, spec, weights_from=None):
        """Builds the slim model: pruned channels physically removed.

        Its outputs equal the sparse model's; layer names, inputs and outputs
        are those of the original.

        Args:
          spec: A `PruningSpec` or the path of a saved one.
          weights_from: Optional model of the same architecture (typically the
            fine-tuned sparse model) whose weights are sliced. Defaults to the
            runner's model.

        Returns:
          A new tf_keras model (uncompiled).

        Raises:
          SpecMismatchError: if the spec was made for another model.
        """
        return build_slim_model(self._adapter, self._plan(spec), self._weights_from(weights_from))

    def stat(self, spec=None):
        """Analytic FLOPs and params of the model, or of its slim version under `spec`.

        Nothing is built. One multiply-add counts as 2 FLOPs.
        """
        if spec is None:
            if self._baseline_stats is None:
                self._baseline_stats = compute_stats(self._deps)
            return self._baseline_stats
        return compute_stats(self._deps, self._plan(spec))
