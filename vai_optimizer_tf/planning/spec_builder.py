"""Turns kept widths per group into a `PruningSpec` with kept channel indices."""

import numpy as np

from vai_optimizer_tf.planning import importance
from vai_optimizer_tf.planning.spec import GroupSpec, PruningSpec


def build_spec(deps, weights, kept_counts, criterion, channel_divisible, model_name,
               model_digest, previous=None):
    """Picks the channels each group keeps, by `criterion` over the whole group.

    Args:
      deps: The `DependencyGraph`.
      weights: Layer path -> arrays, the weights to score.
      kept_counts: Group name -> number of channels to keep.
      criterion: Criterion name or callable (see `importance.get_criterion`).
      channel_divisible: Recorded in the spec.
      model_name: Recorded in the spec.
      model_digest: Recorded in the spec.
      previous: Optional earlier `PruningSpec` of an iterative run, with its
        groups named as in `deps` (see `PruningSpec.renamed`). Channels it
        pruned stay pruned (the kept sets are nested), and groups it pruned
        but `kept_counts` omits keep its choice.

    Returns:
      A `PruningSpec`.
    """
    criterion_name, _ = importance.get_criterion(criterion)
    groups = {}
    for name, keep in kept_counts.items():
        group = deps.group(name)
        allowed = previous.groups[name].kept if previous and name in previous.groups else None
        if allowed is not None:
            keep = min(keep, len(allowed))
        if keep >= group.width:
            continue
        scores = importance.score_group(deps, group, weights, criterion)
        if allowed is not None:
            masked = np.full(group.width, -np.inf)
            masked[allowed] = scores[allowed]
            scores = masked
        groups[name] = GroupSpec(group.width, 1.0 - keep / group.width,
                                 importance.select_channels(scores, keep), group.index)
    if previous is not None:
        for name, g in previous.groups.items():
            groups.setdefault(name, g)
    return PruningSpec(model_name=model_name, model_digest=model_digest, groups=groups,
                       criterion=criterion_name, channel_divisible=channel_divisible)
