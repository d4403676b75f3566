"""`Analyzer`: runs, stores and finds the sensitivity analyses of one model."""

import logging
import os

from vai_optimizer_tf import errors
from vai_optimizer_tf.analysis import sensitivity_analysis as analysis_lib
from vai_optimizer_tf.analysis.sensitivity_cache import SensitivityCache
from vai_optimizer_tf.planning import importance
from vai_optimizer_tf.utils import atomic

logger = logging.getLogger("vai_optimizer_tf")


class Analyzer:
    """The analyses of one runner's model in one workspace.

    Args:
      adapter: The runner's `TfKerasAdapter`.
      deps: The runner's `DependencyGraph` without excludes (for group names).
      workspace: A `Workspace`.
    """

    def __init__(self, adapter, deps, workspace):
        self.adapter = adapter
        self.deps = deps
        self.workspace = workspace
        self.graph_digest = deps.graph.digest()
        self._weights_digest = None
        self.latest = None

    @property
    def weights_digest(self):
        if self._weights_digest is None:
            self._weights_digest = self.adapter.weights_digest()
        return self._weights_digest

    def key(self, ratios, criterion, mode):
        """What an analysis depends on: graph, weights, ratio grid, criterion, mode."""
        return {"graph_digest": self.graph_digest, "weights_digest": self.weights_digest,
                "ratios": list(ratios), "criterion": criterion, "mode": mode}

    def run(self, deps, eval_fn, ratios, criterion, mode, shard, forced, verbose):
        """Runs the missing steps of this process's share; returns its cache."""
        key = self.key(ratios, importance.get_criterion(criterion)[0], mode)
        folder = self.workspace.analysis_folder
        log = print if verbose else logger.info
        cache, path = analysis_lib.load_cache(self.workspace.path, key, shard, forced, log, deps)
        if shard is None and not forced:
            others, _ = SensitivityCache.merged_from(folder, key)
            if others is not None:
                cache.merge(others.renamed(deps))
        names = [g.name for g in deps.prunable_groups]
        analysis_lib.SensitivityAnalysis(self.adapter, deps, cache, path, criterion,
                                         verbose).run(
            analysis_lib.analysis_steps(names, ratios, shard), eval_fn)
        merged, _ = SensitivityCache.merged_from(folder, key)
        self.latest = merged.renamed(self.deps)
        if not self.latest.missing_steps(analysis_lib.analysis_steps(names, ratios)):
            self._write_reports(self.latest, names, verbose)
        return cache

    def _write_reports(self, cache, names, verbose):
        folder = self.workspace.analysis_folder
        atomic.write_text_atomic(os.path.join(folder, "sensitivity.csv"), cache.to_csv(names))
        cache.plot(os.path.join(folder, "sensitivity.png"), names, self.deps.graph.name)
        if verbose:
            print(cache.table(self.deps.graph.name, names))

    def find(self, previous=None):
        """The analysis `prune` may use, or None when there is none at all.

        It must be of these weights, or the analysis the `previous` spec (of
        an iterative run whose sparse weights this model holds) was made with.

        Raises:
          AnalysisCacheError: when only analyses of other weights exist.
        """
        if self.latest is not None:
            return self.latest
        candidates = self.workspace.analyses(self.graph_digest)
        if not candidates:
            return None
        wanted = previous.metadata.get("analysis_key") if previous is not None else None
        for cache in candidates:
            if cache.key["weights_digest"] == self.weights_digest or cache.key == wanted:
                return cache.renamed(self.deps)
        raise errors.AnalysisCacheError(
            f"The sensitivity analysis in {self.workspace.analysis_folder!r} was made for "
            "other weights of this model, and this model is not the fine-tuned sparse model "
            "of the latest spec. Run runner.ana(eval_fn) again for these weights.")
