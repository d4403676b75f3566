"""Channel importance criteria, scored over a whole channel group.

A criterion sees every producer of the group, not only the first, so a
residual group's score reflects all the convs that write into it.
"""

import dataclasses
from typing import List, Tuple

import numpy as np

from vai_optimizer_tf.graph.registry import Role


@dataclasses.dataclass(frozen=True)
class GroupWeights:
    """The weights a criterion may look at, one row per channel of the group.

    Attributes:
      group: The `ChannelGroup`.
      kernels: `(layer_path, array)` for each producer's output weights,
        reshaped to `(width, -1)` (row c = every weight feeding channel c).
      gammas: `(layer_path, array)` for each BatchNormalization scale over the
        group, shape `(width,)`.
    """

    group: object
    kernels: Tuple[Tuple[str, np.ndarray], ...]
    gammas: Tuple[Tuple[str, np.ndarray], ...]


def l1_norm(weights):
    """Sum over producers of the L1 norm of each channel's weights."""
    return sum(np.abs(k).sum(axis=1) for _, k in weights.kernels)


def l2_norm(weights):
    """Sum over producers of the L2 norm of each channel's weights."""
    return sum(np.sqrt(np.square(k).sum(axis=1)) for _, k in weights.kernels)


def bn_gamma(weights):
    """Sum of |gamma| over the group's BatchNormalization layers.

    Groups without BatchNormalization fall back to `l1_norm`.
    """
    if not weights.gammas:
        return l1_norm(weights)
    return sum(np.abs(g) for _, g in weights.gammas)


CRITERIA = {"l1": l1_norm, "l2": l2_norm, "bn_gamma": bn_gamma}


def get_criterion(criterion):
    """Resolves a criterion name or callable.

    Args:
      criterion: `"l1"`, `"l2"`, `"bn_gamma"`, or a callable
        `GroupWeights -> array of shape (width,)`; higher means more important.

    Returns:
      `(name, callable)`.

    Raises:
      ValueError: for an unknown name or a non-callable object.
    """
    if callable(criterion):
        return getattr(criterion, "__name__", "custom"), criterion
    if isinstance(criterion, str) and criterion in CRITERIA:
        return criterion, CRITERIA[criterion]
    raise ValueError(f"Invalid `criterion`: expected one of {sorted(CRITERIA)} or a callable "
                     f"GroupWeights -> scores. Received: criterion={criterion!r}")


def collect_group_weights(deps, group, weights):
    """Gathers the per-channel weights of `group`.

    Args:
      deps: The `DependencyGraph`.
      group: A `ChannelGroup`.
      weights: Layer path -> list of numpy arrays (in `Node.weights` order).

    Returns:
      A `GroupWeights`.
    """
    kernels: List[Tuple[str, np.ndarray]] = []
    gammas: List[Tuple[str, np.ndarray]] = []
    graph = deps.graph
    for path in group.producers:
        node = graph.nodes_of_layer(path)[0]
        spec = deps.node_spec(node.name)
        for i, w in enumerate(node.weights):
            axis = spec.out_axes.get(w.name)
            if axis is None or w.name == "bias":
                continue
            value = np.moveaxis(weights[path][i], axis.index, 0)
            kernels.append((path, value.reshape(value.shape[0], -1)))
    for path in group.members:
        node = graph.nodes_of_layer(path)[0]
        spec = deps.node_spec(node.name)
        names = [w.name for w in node.weights]
        if spec.role is not Role.PASSTHROUGH or "gamma" not in spec.out_axes or "gamma" not in names:
            continue
        gids, chans = deps.tensor_layout(node.inputs[0]).index_map(deps.find)
        sel = gids == group.id
        gamma = np.asarray(weights[path][names.index("gamma")]).reshape(-1)
        total = np.zeros(group.width)
        count = np.zeros(group.width)
        np.add.at(total, chans[sel], gamma[np.nonzero(sel)[0]])
        np.add.at(count, chans[sel], 1)
        gammas.append((path, total / np.maximum(count, 1)))
    return GroupWeights(group, tuple(kernels), tuple(gammas))


def score_group(deps, group, weights, criterion):
    """Scores every channel of `group`; returns a float array of shape (width,)."""
    name, fn = get_criterion(criterion)
    scores = np.asarray(fn(collect_group_weights(deps, group, weights)), dtype=np.float64)
    if scores.shape != (group.width,):
        raise ValueError(f"Criterion {name!r} returned scores of shape {scores.shape} for group "
                         f"{group.name!r}; expected ({group.width},), one per channel.")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"Criterion {name!r} returned non-finite scores for group "
                         f"{group.name!r}; check the layer weights for NaN or inf.")
    return scores


def kept_count(width, ratio, channel_divisible=1):
    """Number of channels to keep when pruning `ratio` of `width`.

    The kept count is rounded to the nearest multiple of `channel_divisible`,
    never below one multiple (or 1) and never above `width`.
    """
    keep = width * (1.0 - ratio)
    d = channel_divisible
    if d > 1:
        if width <= d:
            return width
        keep = max(d, int(round(keep / d)) * d)
    else:
        keep = max(1, int(round(keep)))
    return min(width, keep)


def select_channels(scores, keep):
    """Indices of the `keep` highest scores, sorted; ties go to lower indices."""
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[:keep])
