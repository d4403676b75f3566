"""From a FLOPs target or a metric-drop threshold to kept widths per group.

Sensitivity analysis gives, per group, the relative metric drop at each
analysed ratio. For a tolerance t, each group is pruned as far as its
(monotone, interpolated) drop curve stays within t. The FLOPs target is met by
bisecting on t with analytic FLOPs (`WidthFlops`), with `channel_divisible`
rounding applied *inside* the search, then a greedy pass gives channels back
to the most sensitive groups while the target still holds. So the achieved
reduction is the one of the final slim model, not of an unrounded plan.
"""

import logging
import math

import numpy as np

from vai_optimizer_tf import errors

from vai_optimizer_tf.planning.importance import kept_count

_BISECTION_STEPS = 40
_TOLERANCE = 0.005  # stop refining within half a percentage point of the target
_MAX_GIVE_BACK_STEPS = 500
# A tiny slope added to every curve makes flat stretches (groups whose metric
# does not move) strictly increasing, so bisection can stop anywhere on them.
_TIE_SLOPE = 1e-6


def unreachable_error(target, reachable, max_ratio, analysed, divisible):
    """The `ValueError` for a FLOPs target that even the deepest allowed cuts miss."""
    limit = (f"up to the largest analysed ratio, {max_ratio:g}," if analysed
             else f"by up to {max_ratio:g} of its channels,")
    rounding = (f" with widths rounded to multiples of channel_divisible={divisible} (groups "
                "no wider stay whole)" if divisible > 1 else "")
    fixes = ["lower the target"] + (["analyse larger ratios"] if analysed else []) + (
        ["use a smaller channel_divisible"] if divisible > 1 else []) + ["remove excludes"]
    return ValueError(
        f"A FLOPs reduction of {target:.1%} cannot be reached: pruning every prunable group "
        f"{limit}{rounding} gives {reachable:.1%}. To go further: {', '.join(fixes)}.")


class DropCurve:
    """A group's relative metric drop as a monotone function of its ratio."""

    def __init__(self, ratios, drops):
        self.xs = np.array([0.0] + list(ratios))
        ys = np.maximum.accumulate(np.maximum(np.array([0.0] + list(drops)), 0.0))
        self.ys = ys + _TIE_SLOPE * self.xs

    def ratio_within(self, tolerance):
        """The largest ratio whose interpolated drop is at most `tolerance`."""
        xs, ys = self.xs, self.ys
        if tolerance >= ys[-1]:
            return float(xs[-1])
        j = int(np.argmax(ys > tolerance))
        if j == 0:
            return 0.0
        y0, y1 = ys[j - 1], ys[j]
        frac = (tolerance - y0) / (y1 - y0) if y1 > y0 else 0.0
        return float(xs[j - 1] + frac * (xs[j] - xs[j - 1]))

    def drop_at(self, ratio):
        return float(np.interp(ratio, self.xs, self.ys))


def drop_curves(cache, deps):
    """Group name -> `DropCurve` from a `SensitivityCache`, for the prunable groups of `deps`.

    Each group's curve uses every ratio analysed for it (analyses over
    several grids merged), up to its largest.

    Raises:
      AnalysisCacheError: when the baseline or every group is missing.
    """
    curves, missing = {}, []
    for group in deps.prunable_groups:
        ratios = cache.ratios_of(group.name)
        if ratios:
            curves[group.name] = DropCurve(ratios, [cache.drop(group.name, r) for r in ratios])
        else:
            missing.append(group.name)
    if cache.baseline is None or (missing and len(missing) == len(deps.prunable_groups)):
        raise errors.AnalysisCacheError(
            "The sensitivity analysis is incomplete (baseline or every group missing). Finish "
            "it: run runner.ana(eval_fn) again, or run the remaining shards.")
    if missing:
        logging.getLogger("vai_optimizer_tf").warning(
            "Groups without complete analysis are left unpruned: %s", missing)
    return curves


class RatioSearch:
    """Chooses kept widths for the prunable groups.

    Args:
      groups: The prunable `ChannelGroup`s.
      flops: A `WidthFlops` for the same dependency graph.
      curves: Group name -> `DropCurve`, or None to prune all groups alike.
      channel_divisible: Kept widths are multiples of this.
      max_ratio: Largest fraction of a group that may be pruned.
      upper_bounds: Group name -> largest allowed kept width (for nested
        iterative pruning). Defaults to none.
    """

    def __init__(self, groups, flops, curves=None, channel_divisible=1, max_ratio=0.9,
                 upper_bounds=None):
        self.groups = list(groups)
        self.flops = flops
        self.curves = curves
        self.divisible = channel_divisible
        self.max_ratio = max_ratio
        self.upper = dict(upper_bounds or {})

    def _max_ratio(self, name):
        """The largest ratio group `name` may reach: its analysed range, at most `max_ratio`."""
        if self.curves is not None and name in self.curves:
            return min(self.max_ratio, float(self.curves[name].xs[-1]))
        return self.max_ratio

    def _kept_for(self, ratios, round_up=False):
        kept = {}
        for g in self.groups:
            ratio = min(ratios[g.name], self._max_ratio(g.name))
            d = self.divisible
            if round_up and not (d > 1 and g.width <= d):  # never prune past `ratio`
                k = min(g.width, max(d, int(math.ceil(g.width * (1 - ratio) / d - 1e-9)) * d))
            else:
                k = kept_count(g.width, ratio, self.divisible)
            kept[g.name] = min(k, self.upper.get(g.name, g.width))
        return kept

    def reduction(self, kept):
        counts = {g.id: kept[g.name] for g in self.groups}
        return 1.0 - self.flops.total(counts) / self.flops.baseline

    def ratios_at(self, t):
        """Per-group ratios at tolerance `t` (or uniform ratio `t` without curves)."""
        if self.curves is None:
            return {g.name: t for g in self.groups}
        return {g.name: self.curves[g.name].ratio_within(t) if g.name in self.curves else 0.0
                for g in self.groups}

    def for_threshold(self, threshold):
        """Kept widths when every group may lose at most `threshold` of the metric.

        Kept widths are rounded up, so no group is pruned past the ratio
        whose (interpolated) drop is `threshold`.
        """
        return self._kept_for(self.ratios_at(threshold), round_up=True)

    def for_flops_reduction(self, target):
        """Kept widths whose FLOPs reduction is within about 1 point above `target`.

        Raises:
          ValueError: if `target` is out of reach even at the largest ratios.
        """
        hi = (self.max_ratio if self.curves is None else
              max([float(c.ys[-1]) for c in self.curves.values()] + [0.0]) + 1e-9)
        best = self._kept_for(self.ratios_at(hi))
        reachable = self.reduction(best)
        if reachable < target:
            raise unreachable_error(target, reachable, self.max_ratio,
                                    self.curves is not None, self.divisible)
        lo = 0.0
        for _ in range(_BISECTION_STEPS):
            mid = (lo + hi) / 2
            kept = self._kept_for(self.ratios_at(mid))
            if self.reduction(kept) >= target:
                hi, best = mid, kept
            else:
                lo = mid
        return self._give_back(best, target)

    def _sensitivity(self, name, kept, width):
        if self.curves is None or name not in self.curves:
            return 1.0 - kept / width
        return self.curves[name].drop_at(1.0 - kept / width)

    def _give_back(self, kept, target):
        """Moves one rounding step at a time towards the target.

        Bisection stops at the first plan that reaches the target, which can
        overshoot by more than one rounding step of a wide group. Single moves
        (give a step back to a group, or take one more) and, when those do not
        help, pairs of moves (one group gives, another takes) are tried,
        keeping whichever lands closest to the target. FLOPs are updated
        incrementally, only for the layers the moved groups touch.
        """
        kept = dict(kept)
        by_name = {g.name: g for g in self.groups}
        step = max(self.divisible, 1)
        counts = {g.id: kept[g.name] for g in self.groups}
        per_node = self.flops.per_node(counts)
        baseline = self.flops.baseline
        error = abs(1.0 - per_node.sum() / baseline - target)

        def moves_of(name):
            g = by_name[name]
            low = max(step if g.width > step else 1,
                      int(np.ceil(g.width * (1 - self._max_ratio(name)))))
            high = min(g.width, self.upper.get(name, g.width))
            out = []
            if kept[name] + step <= high:
                out.append((name, +step))
            if kept[name] - step >= low:
                out.append((name, -step))
            return out

        def evaluate(changes):
            trial = dict(counts)
            for name, delta in changes:
                trial[by_name[name].id] += delta
            total = self.flops.total_after(per_node, trial, [by_name[n].id for n, _ in changes])
            return abs(1.0 - total / baseline - target), trial

        for _ in range(_MAX_GIVE_BACK_STEPS):
            if error <= _TOLERANCE / 5:
                break
            singles = [m for name in kept for m in moves_of(name)]
            best = None
            for move in singles:
                err, trial = evaluate([move])
                # Ties favour giving channels back to the most sensitive group.
                rank = (err, -move[1] * self._sensitivity(move[0], kept[move[0]],
                                                           by_name[move[0]].width))
                if err < error - 1e-12 and (best is None or rank < best[0]):
                    best = (rank, [move], trial)
            if best is None:
                ups = [m for m in singles if m[1] > 0]
                downs = [m for m in singles if m[1] < 0]
                for up in ups:
                    for down in downs:
                        if up[0] == down[0]:
                            continue
                        err, trial = evaluate([up, down])
                        if err < error - 1e-12 and (best is None or err < best[0][0]):
                            best = ((err, 0.0), [up, down], trial)
            if best is None:
                break
            (error, _), changes, counts = best
            for name, delta in changes:
                kept[name] += delta
            per_node = self.flops.per_node(counts)
        return kept
