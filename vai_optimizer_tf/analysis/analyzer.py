"""`Analyzer`: runs, stores and finds the sensitivity analyses of one model."""

import logging
import os
import time

from vai_optimizer_tf import errors
from vai_optimizer_tf.analysis import analysis_store
from vai_optimizer_tf.analysis import sensitivity_analysis as analysis_lib
from vai_optimizer_tf.analysis.analysis_store import AnalysisStore
from vai_optimizer_tf.analysis.sensitivity_cache import KEY_FIELDS, normalize_key
from vai_optimizer_tf.planning import importance
from vai_optimizer_tf.utils import atomic

logger = logging.getLogger("vai_optimizer_tf")


class Analyzer:
    """The analyses of one runner's model in one workspace.

    An analysis is keyed by what its values depend on: the graph digest, the
    weights digest, the criterion and the mode. The weights digest is
    computed afresh by every call, so an analysis never outlives a change of
    the model's weights (`model.fit`, `set_weights`).

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
        self._last_key = None

    def weights_digest(self):
        """The digest of the model's weights as they are now."""
        return self.adapter.weights_digest()

    def key(self, criterion, mode, weights_digest=None):
        """What an analysis's values depend on: graph, weights, criterion, mode."""
        if weights_digest is None:
            weights_digest = self.weights_digest()
        return {"graph_digest": self.graph_digest, "weights_digest": weights_digest,
                "criterion": criterion, "mode": mode}

    def _store(self, criterion, mode):
        key = self.key(importance.get_criterion(criterion)[0], mode)
        return AnalysisStore(self.workspace.analysis_folder, key)

    def run(self, deps, eval_fn, ratios, criterion, mode, shard, forced, verbose):
        """Runs the steps of this process's share that no process has finished.

        Returns:
          The merged `SensitivityCache` of every process, viewed on `ratios`.
        """
        store = self._store(criterion, mode)
        log = print if verbose else logger.info
        since = None
        if forced:
            since = time.time()
            for path in store.quarantine_corrupted():
                log(f"Unreadable sensitivity cache moved aside to {path!r}.")
        names = [g.name for g in deps.prunable_groups]
        analysis = analysis_lib.SensitivityAnalysis(self.adapter, deps, store, criterion,
                                                    verbose)
        analysis.run(analysis_lib.analysis_steps(names, ratios, shard), eval_fn, since)
        self._last_key = store.key
        return self._report(store, names, ratios, verbose)

    def merged(self, deps, ratios, criterion, mode, verbose):
        """The analysis every process wrote for these weights, viewed on `ratios`."""
        store = self._store(criterion, mode)
        return self._report(store, [g.name for g in deps.prunable_groups], ratios, verbose)

    def _report(self, store, names, ratios, verbose):
        cache = store.read().renamed(self.deps).view(ratios, names)
        if not cache.missing_steps():
            folder = self.workspace.analysis_folder
            atomic.write_text_atomic(os.path.join(folder, "sensitivity.csv"),
                                     cache.to_csv(names))
            cache.plot(os.path.join(folder, "sensitivity.png"), names, self.deps.graph.name)
            if verbose:
                print(cache.table(self.deps.graph.name, names))
        return cache

    def find(self, weights_digest, previous=None, criterion=None):
        """The analysis `prune` may use, or None when there is none at all.

        It is an analysis of these weights (every ratio any run measured,
        merged; the key this runner analysed last, else one made with
        `criterion`, else the newest), or else the analysis the `previous`
        spec was made with: `previous` is a spec whose fine-tuned sparse
        weights this model holds.

        Raises:
          AnalysisCacheError: when only analyses of other weights exist, or
            a file is corrupted.
        """
        folder = self.workspace.analysis_folder
        keys = analysis_store.analysis_keys(folder, self.graph_digest, weights_digest)
        if keys:
            name = importance.get_criterion(criterion)[0] if criterion is not None else None
            chosen = next((k for k in keys if k == self._last_key),
                          next((k for k in keys if k["criterion"] == name), keys[0]))
            return AnalysisStore(folder, chosen).read().renamed(self.deps)
        wanted = previous.metadata.get("analysis_key") if previous is not None else None
        if (isinstance(wanted, dict) and all(isinstance(wanted.get(f), str) for f in KEY_FIELDS)
                and wanted["graph_digest"] == self.graph_digest):
            cache = AnalysisStore(folder, normalize_key(wanted)).read()
            if cache.baseline is not None or cache.results:
                return cache.renamed(self.deps)
        if self.graph_digest not in analysis_store.graph_digests(folder):
            return None
        raise errors.AnalysisCacheError(
            f"The sensitivity analyses in {folder!r} were made for other weights of this "
            "model, and this model holds the fine-tuned sparse weights of none of the specs "
            "saved in the workspace (the weights change with model.fit or set_weights). Run "
            "runner.ana(eval_fn) again for these weights, or load the weights of an earlier "
            "iteration.")
