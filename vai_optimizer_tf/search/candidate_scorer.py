"""Candidate scorers: score candidate subnets in place, with adaptive BN.

One calibration copy of the model is built for the whole search. For each
candidate the copy is *prepared* (one-step pruning overwrites the weights of
the layers the candidate's groups touch with their masked values; the
once-for-all search sets the widths and kernel sizes of its elastic layers),
the BatchNormalization statistics are re-estimated on the calibration
batches, and `eval_fn` scores the copy. No model is rebuilt, recompiled or
cleared per candidate, so a candidate costs the calibration forward passes,
one `eval_fn` call and a few assignments.
"""

from vai_optimizer_tf.masks.slice_plan import SlicePlan
from vai_optimizer_tf.planning import importance
from vai_optimizer_tf.utils.metrics import call_eval_fn


class AdaptiveBNScorer:
    """Scores candidates on one calibration copy of a model; subclasses say how to prepare it.

    Args:
      adapter: The adapter of the model to copy.
      make_calibration: `fn(model, calibrating) -> BatchNormCalibration` for
        the copy.
      eval_fn: `fn(model) -> float`.
    """

    def __init__(self, adapter, make_calibration, eval_fn):
        self.adapter = adapter
        self.eval_fn = eval_fn
        self.model, calibrating = adapter.rebuild_for_calibration()
        adapter.compile_like_source(self.model)
        self.calibration = make_calibration(self.model, calibrating)

    def prepare(self, candidate):
        """Makes the copy compute `candidate` (before its statistics are re-estimated)."""
        raise NotImplementedError

    def apply(self, candidate):
        """Prepares the copy for `candidate` and re-estimates its BN statistics."""
        self.prepare(candidate)
        self.calibration.run()
        return self.model

    def __call__(self, candidate, where="a candidate"):
        """The `eval_fn` score of the copy prepared for `candidate`."""
        return call_eval_fn(self.eval_fn, self.apply(candidate), where, "call search() again")


class CandidateScorer(AdaptiveBNScorer):
    """Scores kept widths on one calibration copy of the model (one-step pruning).

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
        super().__init__(adapter, make_calibration, eval_fn)
        self.deps = deps
        self.criterion = criterion
        self._weights = adapter.all_weights()
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

    def prepare(self, kept_widths):
        """Masks the copy's weights for `kept_widths` (group name -> width)."""
        plan = SlicePlan(self.deps, self.kept_channels(kept_widths))
        masked = plan.masked_weights(self._weights)
        restore = {path: self._weights[path] for path in self._dirty - set(masked)}
        self.adapter.assign_weights(self.model, {**restore, **masked})
        self._dirty = set(masked)
