"""`SubnetSearch`: scores a range of candidate subnets, shared with other processes.

Candidates come from a `SubnetSampler` (deterministic by seed), scores from a
`CandidateScorer` (masks plus adaptive BN on one calibration copy), and
results go to a `SubnetStore` after every candidate. Processes searching the
same key claim candidates before scoring them (`run_claimed`), so shards,
concurrent runs and resumed runs never score a candidate twice or lose one.
"""

from tf_keras.utils import Progbar

from vai_optimizer_tf.utils.claimed_work import run_claimed
from vai_optimizer_tf.utils.step_claims import StepClaims


class SubnetSearch:
    """One process's run over candidate indices.

    Args:
      deps: The `DependencyGraph` (excludes applied).
      sampler: The `SubnetSampler`.
      make_scorer: `fn() -> CandidateScorer`, called when this process has a
        candidate to score (a resumed, finished search builds nothing).
      store: The `SubnetStore` of the search key.
      verbose: 0 silent, 1 progress bar.
      flops_reduction: `fn(kept widths) -> float` recorded with each
        candidate. Defaults to the sampler's reduction (when its cost is
        FLOPs).
    """

    def __init__(self, deps, sampler, make_scorer, store, verbose=1, flops_reduction=None):
        self.deps = deps
        self.sampler = sampler
        self.make_scorer = make_scorer
        self.store = store
        self.verbose = verbose
        self.flops_reduction = flops_reduction or sampler.reduction
        self.scored = 0
        self._scorer = None

    def _score(self, index):
        kept = self.sampler.candidate(index)
        if self._scorer is None:
            self._scorer = self.make_scorer()
        score = self._scorer(kept, where=f"candidate subnet {index}")
        widths = {self.deps.group(name).index: width for name, width in kept.items()}
        self.store.record(index, widths, self.flops_reduction(kept), score)
        self.scored += 1

    def run(self, indices):
        """Scores every index no process has scored yet; returns index -> record of all."""
        indices = list(indices)
        claims = StepClaims(self.store.claims_folder, self.store.writer)
        progress = Progbar(len(indices), unit_name="subnet") if self.verbose else None
        merged = run_claimed(indices, claims, self.store.read, lambda done, i: i in done,
                             lambda i: f"subnet-{i}", self._score, progress,
                             what="candidate subnets")
        return {i: merged[i] for i in indices}
