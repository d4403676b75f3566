"""From a FLOPs-reduction target to kept widths per group.

With a sensitivity analysis, widths come from `BudgetAllocation`: the FLOPs
that must go are taken where each FLOP costs the least predicted drop. Without
one, every group is pruned by the same fraction (`RatioSearch`).

`channel_divisible` makes FLOPs a staircase: on a small net with wide steps
the target may fall between two plans several points apart. The plan closest
to the target is kept, and a warning names the reduction reached.
"""

import dataclasses
import warnings

from vai_optimizer_tf.planning.budget_allocation import BudgetAllocation, penalties_from_curves
from vai_optimizer_tf.planning.ratio_search import RatioSearch, unreachable_error

# A plan within this many points of the target is on target; further away, the
# caller is warned (the divisibility makes the target unreachable).
TOLERANCE = 0.01


@dataclasses.dataclass(frozen=True)
class FlopsPlan:
    """Kept widths for a FLOPs-reduction target, and what they reach.

    Attributes:
      kept: Group name -> kept width.
      target: The requested FLOPs reduction.
      reduction: The reduction the widths reach (analytic FLOPs).
    """

    kept: dict
    target: float
    reduction: float

    @property
    def on_target(self):
        return abs(self.reduction - self.target) <= TOLERANCE + 1e-9


def plan_flops_reduction(groups, flops, target, curves=None, channel_divisible=1, max_ratio=0.9,
                         upper_bounds=None, warn=True):
    """Plans kept widths for `target` (a FLOPs reduction in (0, 1)).

    Args:
      groups: The prunable `ChannelGroup`s.
      flops: The `WidthFlops` of the same dependency graph.
      target: FLOPs reduction to reach.
      curves: Group name -> `DropCurve`, or None to prune all groups alike.
      channel_divisible: Kept widths are multiples of this.
      max_ratio: Largest fraction of a group that may be pruned.
      upper_bounds: Group name -> largest allowed width.
      warn: Whether to warn when the plan is off target. Defaults to `True`.

    Returns:
      A `FlopsPlan`. When it is not within one point of the target (and
      `warn`), a `UserWarning` says what was reached and why.

    Raises:
      ValueError: if even the deepest allowed cuts do not reach the target;
        the message says how far pruning can go.
    """
    baseline = flops.baseline

    def reduction(kept):
        return 1.0 - flops.total({g.id: kept[g.name] for g in groups}) / baseline

    search = RatioSearch(groups, flops, curves, channel_divisible, max_ratio=max_ratio,
                         upper_bounds=upper_bounds)
    if curves is None:
        kept = search.for_flops_reduction(target)
    else:
        kept = _least_loss_in_band(groups, flops, target, curves, channel_divisible, max_ratio,
                                   upper_bounds, search, reduction)
    plan = FlopsPlan(kept, target, reduction(kept))
    if warn and not plan.on_target:
        warnings.warn(
            f"A FLOPs reduction of {target:.1%} cannot be reached within one point with "
            f"channel_divisible={channel_divisible}: the closest plan reaches "
            f"{plan.reduction:.1%}. Use a smaller channel_divisible to get closer.",
            UserWarning, stacklevel=3)
    return plan


def _least_loss_in_band(groups, flops, target, curves, channel_divisible, max_ratio,
                        upper_bounds, search, reduction):
    """The plan with the least predicted loss within one point of `target`, else the closest.

    The allocation minimises the loss under a FLOPs budget, but with coarse
    width steps its best plan can overshoot the target by more than a point.
    Budgets up to one point looser, the cheapest plan just over the budget and
    the tolerance-bisection plan of `RatioSearch` are candidates too. Plans
    reaching the target come first, then the rest of the band.
    """
    penalties = penalties_from_curves(curves, groups)
    allocation = BudgetAllocation(groups, flops, penalties, channel_divisible,
                                  max_ratio, upper_bounds)
    budget = (1.0 - target) * flops.baseline
    best = allocation.for_budget(budget)
    if allocation.total(best) > budget:
        raise unreachable_error(target, reduction(best), max_ratio, True, channel_divisible)
    candidates = [best]
    for k in (1, 2):
        candidates.append(allocation.for_budget(budget + k * TOLERANCE / 2 * flops.baseline))
    over = allocation.step_over(best, budget)
    if over is not None:
        candidates.append(over)
    try:
        candidates.append(search.for_flops_reduction(target))
    except ValueError:
        pass
    in_band = [k for k in candidates if abs(reduction(k) - target) <= TOLERANCE + 1e-9]
    # The target is a promise of "at least": plans that reach it come first.
    reaching = [k for k in in_band if reduction(k) >= target - 1e-9]
    if reaching or in_band:
        return min(reaching or in_band, key=lambda k: (allocation.loss(k), -reduction(k)))
    return min(candidates, key=lambda k: abs(reduction(k) - target))
