"""`SubnetSampler`: candidate subnets at a FLOPs-reduction target.

A candidate is a kept width per prunable group. Candidate 0 is the uniform
cut: every group pruned by the same fraction, the fraction chosen so the
FLOPs reduction is as close to the target as the rounding allows. Every other
candidate draws each group's pruning ratio uniformly from a window around that
fraction (Vitis samples "from a distribution around the target ratio"), then
is *repaired*: all its ratios are shifted together until the analytic FLOPs
reduction, after `channel_divisible` rounding, lands within the tolerance of
the target. Candidates that cannot be repaired, or that repeat an earlier
one, are rejected and drawn again. The sequence depends only on the seed, so
candidate i is the same whatever the number of candidates asked for.
"""

import numpy as np

from vai_optimizer_tf.planning.importance import kept_count

_BISECTION_STEPS = 30
_MAX_ATTEMPTS_PER_CANDIDATE = 200


class SubnetSampler:
    """Draws candidate widths whose FLOPs reduction is within a band of the target.

    Args:
      groups: The prunable `ChannelGroup`s.
      flops: The `WidthFlops` of the same dependency graph.
      target: FLOPs reduction to reach, in (0, 1).
      channel_divisible: Kept widths are multiples of this. Defaults to `1`.
      max_ratio: Largest fraction of a group that may be pruned. Defaults to
        `0.9`.
      tolerance: Largest distance of a candidate's reduction from the target.
        Defaults to `0.01` (one point).
      ratio_spread: Half-width of the window the per-group ratios are drawn
        from, around the uniform fraction. Defaults to `0.25`.
      seed: Seed of the draws. Defaults to `0`.
      metric: What `flops` costs, for messages. Defaults to `"FLOPs"`; a
        latency cost model (`runner.latency_cost`) can stand in its place.
    """

    def __init__(self, groups, flops, target, channel_divisible=1, max_ratio=0.9,
                 tolerance=0.01, ratio_spread=0.25, seed=0, metric="FLOPs"):
        self.groups = list(groups)
        self.flops = flops
        self.target = float(target)
        self.divisible = int(channel_divisible)
        self.max_ratio = float(max_ratio)
        self.tolerance = float(tolerance)
        self.spread = float(ratio_spread)
        self.seed = int(seed)
        self.metric = metric
        self.uniform_ratio, self._uniform = self._uniform_cut()
        self._drawn = [self._uniform]
        self._seen = {self._signature(self._uniform)}
        self._rng = np.random.RandomState(self.seed)
        self.rejected = 0

    # Plans --------------------------------------------------------------------------

    def widths(self, ratios):
        """Kept widths (group name -> width) for per-group pruning ratios."""
        return {g.name: kept_count(g.width, min(max(r, 0.0), self.max_ratio), self.divisible)
                for g, r in zip(self.groups, ratios)}

    def reduction(self, kept):
        """Analytic FLOPs reduction of kept widths."""
        counts = {g.id: kept[g.name] for g in self.groups}
        return 1.0 - self.flops.total(counts) / self.flops.baseline

    def _signature(self, kept):
        return tuple(kept[g.name] for g in self.groups)

    def _closest_shift(self, base):
        """Shifts all `base` ratios together to land closest to the target.

        Returns:
          `(kept widths, shift)`.
        """
        lo, hi = -1.0, 1.0
        hi_plan = self.widths(base + hi)
        if self.reduction(hi_plan) < self.target:
            return hi_plan, hi
        lo_plan = self.widths(base + lo)
        for _ in range(_BISECTION_STEPS):
            mid = (lo + hi) / 2
            plan = self.widths(base + mid)
            if self.reduction(plan) >= self.target:
                hi, hi_plan = mid, plan
            else:
                lo, lo_plan = mid, plan
        return min(((hi_plan, hi), (lo_plan, lo)),
                   key=lambda p: abs(self.reduction(p[0]) - self.target))

    def _uniform_cut(self):
        kept, shift = self._closest_shift(np.zeros(len(self.groups)))
        return min(max(shift, 0.0), self.max_ratio), kept

    def in_band(self, kept):
        return abs(self.reduction(kept) - self.target) <= self.tolerance + 1e-9

    # Candidates ---------------------------------------------------------------------

    def uniform(self):
        """Candidate 0: the uniform cut closest to the target."""
        return dict(self._uniform)

    def _draw(self):
        low = max(0.0, self.uniform_ratio - self.spread)
        high = min(self.max_ratio, self.uniform_ratio + self.spread)
        for _ in range(_MAX_ATTEMPTS_PER_CANDIDATE):
            ratios = self._rng.uniform(low, high, size=len(self.groups))
            kept, _ = self._closest_shift(ratios)
            signature = self._signature(kept)
            if self.in_band(kept) and signature not in self._seen:
                self._seen.add(signature)
                return kept
            self.rejected += 1
        raise ValueError(
            f"No new candidate within {self.tolerance:.1%} of a {self.target:.1%} {self.metric} "
            f"reduction after {_MAX_ATTEMPTS_PER_CANDIDATE} draws (channel_divisible="
            f"{self.divisible}, {len(self._drawn)} candidates so far). The rounding steps are "
            "too coarse for this model or the search space is exhausted: lower "
            "channel_divisible, ask for fewer subnets, or widen ratio_spread.")

    def candidate(self, index):
        """Candidate `index` (0 is the uniform cut): group name -> kept width."""
        while len(self._drawn) <= index:
            self._drawn.append(self._draw())
        return dict(self._drawn[index])

    def candidates(self, count):
        """The first `count` candidates."""
        return [self.candidate(i) for i in range(count)]
