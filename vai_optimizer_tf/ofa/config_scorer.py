"""Scoring supernet configurations: adaptive BN on one copy, claimed across processes.

`ConfigScorer` sets one calibration copy of the supernet to a configuration
and scores it; `ClaimedScoring` scores the configurations of a generation
that no process has scored yet, sharing the work with other processes
through the `ConfigStore` and step claims (`run_claimed`).
"""

from vai_optimizer_tf.ofa import config_store
from vai_optimizer_tf.search.candidate_scorer import AdaptiveBNScorer
from vai_optimizer_tf.utils.claimed_work import run_claimed
from vai_optimizer_tf.utils.step_claims import StepClaims


class ConfigScorer(AdaptiveBNScorer):
    """Sets a calibration copy of the supernet to each configuration, then re-estimates BN.

    The copy keeps the supernet's elastic layers and their variables, so a
    configuration is a handful of variable assignments: no weight is copied.

    Args:
      adapter: The supernet's adapter.
      space: The supernet's `ConfigSpace`.
      set_active: `fn(model, widths, kernels)` setting the elastic layers of
        a model (from the Keras flavour's elastic module).
      make_calibration: `fn(model, calibrating) -> BatchNormCalibration`.
      eval_fn: `fn(model) -> float`.
    """

    def __init__(self, adapter, space, set_active, make_calibration, eval_fn):
        super().__init__(adapter, make_calibration, eval_fn)
        self.space = space
        self.set_active = set_active

    def prepare(self, genes):
        """Sets the copy's elastic layers to the configuration of a gene vector."""
        widths, kernels = self.space.vectors(self.space.decode(genes))
        self.set_active(self.model, widths, kernels)


class ClaimedScoring:
    """Scores gene vectors not scored yet, claimed across processes; returns their scores.

    Args:
      store: The `ConfigStore` of the search key.
      flops: The `ConfigFlops` (recorded with each score).
      make_scorer: `fn() -> ConfigScorer`, called when this process first
        has a configuration to score (a search read back builds nothing).
    """

    def __init__(self, store, flops, make_scorer):
        self.store = store
        self.flops = flops
        self.make_scorer = make_scorer
        self._scorer = None
        self.scored = 0

    def _score(self, candidate_id, genes):
        if self._scorer is None:
            self._scorer = self.make_scorer()
        score = self._scorer(genes, where=f"subnet configuration {candidate_id}")
        self.store.add(candidate_id, {"genes": tuple(genes),
                                      "flops_reduction": self.flops.reduction(genes),
                                      "score": score})
        self.scored += 1

    def __call__(self, population):
        by_id = {config_store.config_id(g): tuple(g) for g in population}
        claims = StepClaims(self.store.claims_folder, self.store.writer)
        merged = run_claimed(list(by_id), claims, self.store.read, lambda done, i: i in done,
                             config_store.claim_id, lambda i: self._score(i, by_id[i]),
                             what="subnet configurations")
        return {genes: merged[i]["score"] for i, genes in by_id.items()}
