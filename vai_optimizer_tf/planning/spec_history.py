"""Which saved spec a model's weights belong to, for iterative pruning and backtracking."""

import logging

import numpy as np

from vai_optimizer_tf import errors
from vai_optimizer_tf.masks.slice_plan import SlicePlan
from vai_optimizer_tf.planning.spec import PruningSpec

logger = logging.getLogger("vai_optimizer_tf")


def holds_sparse_weights(deps, spec, weights):
    """Whether every channel `spec` prunes is zero in every producer of `weights`."""
    plan = SlicePlan(deps, spec.kept_by_group(deps))
    masked = plan.masked_weights(weights)
    producers = {p for name in spec.groups for p in deps.group(name).producers}
    return all(np.array_equal(a, b) for path in producers & set(masked)
               for a, b in zip(weights[path], masked[path]))


def find_previous_spec(spec_paths, deps, model_digest, weights):
    """The spec of `spec_paths` whose fine-tuned sparse weights `weights` are, or None.

    Every saved spec is a candidate, not only the latest, so loading the
    weights of an earlier iteration and pruning again (to back off after an
    accuracy collapse) continues from that iteration. Of several matching
    specs (the kept sets of iterative pruning are nested), the one pruning
    the most channels is the model's own; on a tie, the earliest in
    `spec_paths`.

    Args:
      spec_paths: Paths of saved specs, the preferred first.
      deps: The model's `DependencyGraph`.
      model_digest: The model's graph digest; specs of other graphs are skipped.
      weights: The model's weights, layer path -> list of arrays.

    Returns:
      The `PruningSpec`, with group names of `deps`, or None.
    """
    best, most = None, 0
    for path in spec_paths:
        try:
            spec = PruningSpec.load(path)
        except errors.SpecFormatError as e:
            logger.warning("Skipping unreadable spec %s: %s", path, e)
            continue
        if spec.model_digest != model_digest or not spec.groups:
            continue
        spec = spec.renamed(deps)
        pruned = sum(g.width - len(g.kept) for g in spec.groups.values())
        if pruned > most and holds_sparse_weights(deps, spec, weights):
            best, most = spec, pruned
    return best
