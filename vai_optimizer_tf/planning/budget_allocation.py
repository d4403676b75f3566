"""`BudgetAllocation`: per-group widths that lose the least for a cost budget.

Each group can keep any width on its *staircase*: the multiples of
`channel_divisible` between the deepest allowed cut and its full width. A cost
model (analytic FLOPs, or a measured latency table) says what a set of widths
costs, and a penalty per group says what each width loses (the sensitivity
analysis's drop curve, or a prior when there is none). The allocation is a
greedy multiple-choice knapsack, in the spirit of HALP and NetAdapt: while the
cost is over budget, take the cut (any group, to any lower step) with the
smallest predicted loss per unit of cost saved; then give steps back, most
valuable first, while the budget still holds. So a group whose channels buy
almost nothing (a small Dense head) is only cut when nothing cheaper is left,
and no group is cut further than the budget needs.

Cost models need `baseline`, `per_node(kept)` and `total_after(per_node,
kept, changed_groups)` (see `WidthFlops`); kept widths are keyed by group id.
A cost model whose saving is not proportional to the channels cut (a
measured latency, `LatencyCost`) says so with `linear = False`, and every
cut is then priced exactly.
"""

import math

import numpy as np

# Pruning a channel is never entirely free, even when the analysis measured
# no drop (the metric has a resolution, and fine-tuning recovers less from
# deep cuts). Every group's predicted loss therefore grows by this much per
# fraction of its channels pruned; it only decides between cuts whose
# measured drops are equal.
PRIOR_DROP = 0.01
_MAX_EXCHANGES = 200
_PAIR_CHECKS = 20
_NONLINEAR_WINDOW = 8
_EXCHANGE_REACH = 8


def staircase(width, channel_divisible, max_ratio, upper=None):
    """The widths a group may keep, ascending.

    Multiples of `channel_divisible` from the smallest that prunes at most
    `max_ratio` of the group, up to `upper` (default: the full width, which
    is always allowed).
    """
    d = max(int(channel_divisible), 1)
    upper = width if upper is None else min(int(upper), width)
    if d > 1 and width <= d:
        return np.array([width])
    low = max(1, math.ceil(width * (1.0 - max_ratio) - 1e-9))
    low = max(d, math.ceil(low / d) * d) if d > 1 else low
    steps = list(range(low, upper + 1, d)) if d > 1 else list(range(low, upper + 1))
    if upper == width and (not steps or steps[-1] != width):
        steps.append(width)
    if not steps:
        steps = [upper]
    return np.array(sorted(set(steps)))


class BudgetAllocation:
    """Chooses kept widths that minimise the summed penalty under a cost budget.

    Args:
      groups: The prunable `ChannelGroup`s.
      cost: A cost model (e.g. `WidthFlops`).
      penalties: Group name -> `fn(kept_widths_array) -> losses array`, the
        predicted loss of keeping each width (0 at full width). Groups not
        listed get `PRIOR_DROP` per fraction pruned.
      channel_divisible: Kept widths are multiples of this. Defaults to `1`.
      max_ratio: Largest fraction of a group that may be pruned. Defaults to
        `0.9`.
      upper_bounds: Group name -> largest allowed width (nested iterative
        pruning). Defaults to none.

    Example:

    ```python
    allocation = BudgetAllocation(deps.prunable_groups, WidthFlops(deps), penalties)
    kept = allocation.for_budget(0.5 * allocation.cost.baseline)
    ```
    """

    def __init__(self, groups, cost, penalties=None, channel_divisible=1, max_ratio=0.9,
                 upper_bounds=None):
        self.groups = list(groups)
        self.cost = cost
        self.divisible = int(channel_divisible)
        self.max_ratio = float(max_ratio)
        upper = dict(upper_bounds or {})
        penalties = penalties or {}
        self._steps = {g.name: staircase(g.width, channel_divisible, max_ratio,
                                         upper.get(g.name)) for g in self.groups}
        self._losses = {}
        for g in self.groups:
            steps = self._steps[g.name]
            prior = PRIOR_DROP * (1.0 - steps / g.width)
            fn = penalties.get(g.name)
            measured = np.zeros(len(steps)) if fn is None else np.asarray(fn(steps), float)
            # Monotone: keeping fewer channels never predicts a smaller loss.
            self._losses[g.name] = np.maximum.accumulate((measured + prior)[::-1])[::-1]

    def steps(self, name):
        """The staircase of group `name` (ascending kept widths)."""
        return self._steps[name]

    def loss(self, kept):
        """Summed predicted loss of `kept` (group name -> width)."""
        return float(sum(self._loss_at(name, w) for name, w in kept.items()))

    def _loss_at(self, name, width):
        steps = self._steps[name]
        return float(self._losses[name][int(np.searchsorted(steps, width))])

    def total(self, kept):
        """Cost of `kept` (group name -> width)."""
        return float(np.sum(self.cost.per_node(self._by_id(kept))))

    def _by_id(self, kept):
        return {g.id: int(kept[g.name]) for g in self.groups}

    def for_budget(self, budget):
        """Kept widths (group name -> width) costing at most `budget`, or the cheapest plan.

        The result costs at most `budget` whenever the staircases allow it;
        otherwise it is the cheapest plan (every group at its lowest step) and
        the caller reports how far it got.
        """
        by_name = {g.name: g for g in self.groups}
        index = {g.name: len(self._steps[g.name]) - 1 for g in self.groups}
        kept = {name: int(self._steps[name][i]) for name, i in index.items()}
        counts = self._by_id(kept)
        per_node = self.cost.per_node(counts)
        total = float(per_node.sum())
        while total > budget:
            best = None
            for name, i in index.items():
                if i == 0:
                    continue
                steps, losses = self._steps[name], self._losses[name]
                gid = by_name[name].id
                cuts, saved = self._savings(steps, i, gid, counts, per_node, total)
                if cuts is None:
                    continue
                extra = losses[cuts] - losses[i]
                ratios = extra / saved
                j = int(np.argmin(ratios))
                key = (ratios[j], -saved[j])
                if best is None or key < best[0]:
                    best = (key, name, int(cuts[j]))
            if best is None:
                break
            _, name, j = best
            index[name] = j
            kept[name] = int(self._steps[name][j])
            gid = by_name[name].id
            counts[gid] = kept[name]
            per_node = self.cost.per_node(counts)
            total = float(per_node.sum())
        kept = self._give_back(kept, index, counts, per_node, budget)
        return self._exchange(kept, budget)

    def _savings(self, steps, i, gid, counts, per_node, total):
        """Cuts of one group from step `i`, and the cost each saves (only positive savings).

        FLOPs are linear in one group's width when the others stay fixed (every
        layer's FLOPs are a product of independent widths), so one exact step
        gives the saving of any cut. A measured latency is a staircase, not a
        line: there each cut down to `_NONLINEAR_WINDOW` steps is priced
        exactly (deeper cuts are reached over several rounds).
        """
        if getattr(self.cost, "linear", True):
            one = dict(counts)
            one[gid] = int(steps[i - 1])
            saved_one = total - self.cost.total_after(per_node, one, [gid])
            per_channel = max(saved_one, 0.0) / max(int(steps[i]) - int(steps[i - 1]), 1)
            if per_channel <= 0:
                return None, None
            cuts = np.arange(i)
            return cuts, per_channel * (int(steps[i]) - steps[cuts])
        cuts = np.arange(max(0, i - _NONLINEAR_WINDOW), i)
        saved = np.empty(len(cuts))
        for k, j in enumerate(cuts):
            trial = dict(counts)
            trial[gid] = int(steps[j])
            saved[k] = total - self.cost.total_after(per_node, trial, [gid])
        keep = saved > 0
        if not keep.any():
            return None, None
        return cuts[keep], saved[keep]

    def _give_back(self, kept, index, counts, per_node, budget):
        """Steps groups back up, most loss saved per unit of cost first, while the budget holds."""
        by_name = {g.name: g for g in self.groups}
        total = float(per_node.sum())
        if total > budget:
            return kept
        while True:
            best = None
            for name, i in index.items():
                steps = self._steps[name]
                if i + 1 >= len(steps):
                    continue
                gid = by_name[name].id
                trial = dict(counts)
                trial[gid] = int(steps[i + 1])
                after = self.cost.total_after(per_node, trial, [gid])
                if after > budget:
                    continue
                gain = self._losses[name][i] - self._losses[name][i + 1]
                key = (-gain / max(after - total, 1e-12), after)
                if best is None or key < best[0]:
                    best = (key, name, trial, after)
            if best is None:
                return kept
            _, name, counts, total = best
            index[name] += 1
            kept[name] = int(self._steps[name][index[name]])
            per_node = self.cost.per_node(counts)

    def _exchange(self, kept, budget):
        """Trades steps between two groups while that lowers the loss within budget.

        Greedy cuts can leave a better plan one exchange away (the budget is met in
        discrete steps). Candidate pairs are ranked with each single step's exact
        cost, then the best is checked exactly with both changes together.
        """
        by_name = {g.name: g for g in self.groups}
        kept = dict(kept)
        for _ in range(_MAX_EXCHANGES):
            counts = self._by_id(kept)
            per_node = self.cost.per_node(counts)
            total = float(per_node.sum())
            if total > budget:
                return kept
            ups, downs = [], []
            for name, width in kept.items():
                steps, losses = self._steps[name], self._losses[name]
                i = int(np.searchsorted(steps, width))
                gid = by_name[name].id
                # FLOPs: one step either way is enough to find a better exchange. On a
                # staircase (latency) a step may save nothing, so look a few steps away.
                reach = 1 if getattr(self.cost, "linear", True) else _EXCHANGE_REACH
                moves = [(i + k, ups) for k in range(1, reach + 1)]
                moves += [(i - k, downs) for k in range(1, reach + 1)]
                for j, side in moves:
                    if 0 <= j < len(steps):
                        trial = dict(counts)
                        trial[gid] = int(steps[j])
                        change = self.cost.total_after(per_node, trial, [gid]) - total
                        side.append((name, int(steps[j]), change, losses[i] - losses[j]))
            pairs = []
            for up_name, up_width, up_cost, gain in ups:
                for down_name, down_width, down_cost, loss in downs:
                    net = gain + loss  # loss is negative: losses[i] - losses[i - 1] <= 0
                    if up_name != down_name and net > 1e-12 and \
                            total + up_cost + down_cost <= budget:
                        pairs.append((-net, up_name, up_width, down_name, down_width))
            improved = False
            for _, up_name, up_width, down_name, down_width in sorted(pairs)[:_PAIR_CHECKS]:
                trial = dict(kept, **{up_name: up_width, down_name: down_width})
                if self.total(trial) <= budget:
                    kept, improved = trial, True
                    break
            if not improved:
                return kept
        return kept

    def step_over(self, kept, budget):
        """The plan one step above `kept` whose cost exceeds `budget` the least, or None.

        With coarse staircases (a large `channel_divisible` on a small net) the
        best plan under the budget can be far below it; the caller compares it
        with this one and keeps whichever lands closer.
        """
        counts = self._by_id(kept)
        per_node = self.cost.per_node(counts)
        best = None
        for g in self.groups:
            steps = self._steps[g.name]
            i = int(np.searchsorted(steps, kept[g.name]))
            if i + 1 >= len(steps):
                continue
            trial = dict(counts)
            trial[g.id] = int(steps[i + 1])
            after = self.cost.total_after(per_node, trial, [g.id])
            if after > budget and (best is None or after < best[0]):
                best = (after, g.name, int(steps[i + 1]))
        if best is None:
            return None
        out = dict(kept)
        out[best[1]] = best[2]
        return out


def penalties_from_curves(curves, groups):
    """Group name -> `fn(widths) -> predicted drop` from sensitivity drop curves."""
    out = {}
    for g in groups:
        curve = curves.get(g.name)
        if curve is not None:
            out[g.name] = (lambda steps, c=curve, w=g.width:
                           np.array([c.drop_at(1.0 - s / w) for s in steps]))
    return out
