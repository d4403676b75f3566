"""`CandidateScorer`: scores candidate subnets in place, with adaptive BN.

One calibration copy of the model is built for the whole search. For each
candidate, the weights of the layers its groups touch are overwritten with
their masked values (pruned channels zeroed, as in the sparse model), the
BatchNormalization statistics are re-estimated on the calibration batches,
and `eval_fn` scores the copy. No model is rebuilt, recompiled or cleared per
candidate, so a candidate costs the calibration forward passes, one
`eval_fn` call and a few weight assignments.
"""

from vai_optimizer_tf.masks.slice_plan import SlicePlan
from vai_optimizer_tf.planning import importance
from vai_optimizer_tf.utils.metrics import call_eval_fn


class CandidateScorer:
    """Scores kept widths on one calibration copy of the model.

    Args:
      adapter: The runner's adapter.
      deps: The `DependencyGraph` (excludes applied).
      make_calibration: `fn(model, calibrating) -> BatchNormCalibration` for
        the copy.
      eval_fn: `fn(model) -> float`.
      criterion: Importance criterion that picks the kept channels of each
        group.
    """

    def __init__(self, adapter, deps, make_calibration, eval_fn, criterion="l1"):
        self.adapter = adapter
        self.deps = deps
        self.eval_fn = eval_fn
        self.criterion = criterion
        self._weights = adapter.all_weights()
        self.model, calibrating = adapter.rebuild_for_calibration()
        adapter.compile_like_source(self.model)
        self.calibration = make_calibration(self.model, calibrating)
        self._scores = {}
        self._dirty = set()

    def kept_channels(self, kept_widths):
        """Group id -> kept channel indices for kept widths (group name -> width)."""
        out = {}
        for name, width in kept_widths.items():
            group = self.deps.group(name)
            if width >= group.width:
                continue
            if name not in self._scores:
                self._scores[name] = importance.score_group(self.deps, group, self._weights,
                                                            self.criterion)
            out[group.id] = importance.select_channels(self._scores[name], width)
        return out

    def apply(self, kept_widths):
        """Masks the copy's weights for `kept_widths` and re-estimates its BN statistics."""
        plan = SlicePlan(self.deps, self.kept_channels(kept_widths))
        masked = plan.masked_weights(self._weights)
        restore = {path: self._weights[path] for path in self._dirty - set(masked)}
        self.adapter.assign_weights(self.model, {**restore, **masked})
        self._dirty = set(masked)
        self.calibration.run()
        return self.model

    def __call__(self, kept_widths, where="a candidate"):
        """The `eval_fn` score of the copy pruned to `kept_widths`."""
        return call_eval_fn(self.eval_fn, self.apply(kept_widths), where,
                            "call search() again")
