"""From a latency target to kept widths per group, closing the loop on measurements.

`latency` is a fraction of the baseline's measured latency (0.5: twice as
fast). The planner spends that budget like the FLOPs planner spends FLOPs:
`BudgetAllocation` with a `LatencyCost`, the measured per-layer table, as
the cost, and per group the predicted loss of each width as the penalty
(the sensitivity analysis's drop curves, or without one the share of the
group's importance that is pruned). With `uniform=True` every group is
pruned by the same fraction instead, the fraction chosen for the budget.

A sum of layers timed alone is not the latency of the whole model, so the
prediction is `alpha * sum + beta`, calibrated on the measured baseline, and
then NetAdapt-style: the slim model of the plan is built and measured side
by side with the baseline, `alpha` and `beta` are refitted through the
measurements nearest the target (a secant), and the budget is planned again,
until the measured latency is within the tolerance (`TOLERANCE`, 7%) or
`max_measurements` models were measured. The plan whose measurement is
closest to the target is kept; when it is still off, a `UserWarning` says
by how much.
"""

import dataclasses
import warnings
from typing import List, Optional, Tuple

import numpy as np

from vai_optimizer_tf.planning import importance
from vai_optimizer_tf.planning.budget_allocation import BudgetAllocation

TOLERANCE = 0.07
_BISECTION_STEPS = 30


@dataclasses.dataclass
class LatencyPlan:
    """Kept widths for a latency target, and what they were predicted and measured to reach.

    Attributes:
      kept: Group name -> kept width.
      target: The requested latency, as a fraction of the baseline's.
      predicted: The predicted latency of `kept`, as a fraction.
      measured: The measured latency of the slim model, as a fraction, or
        None when nothing was measured.
      history: `(predicted, measured)` of every plan measured, in order.
    """

    kept: dict
    target: float
    predicted: float
    measured: Optional[float] = None
    history: List[Tuple[float, float]] = dataclasses.field(default_factory=list)

    @property
    def on_target(self):
        value = self.measured if self.measured is not None else self.predicted
        return abs(value / self.target - 1.0) <= TOLERANCE + 1e-9


def importance_penalties(deps, weights, groups, criterion="l1"):
    """Group name -> `fn(widths) -> share of the group's importance pruned`.

    The prior used when no sensitivity analysis exists: keeping the `k` most
    important channels of a group loses the importance of the others, as a
    fraction of the group's total (in [0, 1]).
    """
    out = {}
    for g in groups:
        scores = np.sort(np.abs(importance.score_group(deps, g, weights, criterion)))[::-1]
        kept_share = np.cumsum(scores) / max(float(scores.sum()), 1e-30)
        out[g.name] = (lambda steps, s=kept_share:
                       1.0 - s[np.clip(np.asarray(steps, int), 1, len(s)) - 1])
    return out


def uniform_widths(groups, sparsity, channel_divisible, upper_bounds=None):
    """Kept widths when every group is pruned by `sparsity` (rounded to the multiple)."""
    upper = dict(upper_bounds or {})
    return {g.name: min(importance.kept_count(g.width, sparsity, channel_divisible),
                        upper.get(g.name, g.width)) for g in groups}


class LatencyPlanner:
    """Plans kept widths for a latency budget; one object per (model, table, target).

    Args:
      groups: The prunable `ChannelGroup`s.
      cost: The calibrated `LatencyCost` (its `baseline` need not be 1).
      baseline_seconds: The measured latency of the baseline.
      penalties: Group name -> `fn(widths) -> losses` (see
        `penalties_from_curves`, `importance_penalties`). Ignored when
        `uniform`.
      channel_divisible: Kept widths are multiples of this.
      max_ratio: Deepest cut of a group. Defaults to `0.9`.
      upper_bounds: Group name -> largest width. Defaults to none.
      uniform: Prune every group by the same fraction. Defaults to `False`.
    """

    def __init__(self, groups, cost, baseline_seconds, penalties=None, channel_divisible=1,
                 max_ratio=0.9, upper_bounds=None, uniform=False):
        self.groups = list(groups)
        self.cost = cost
        self.baseline_seconds = float(baseline_seconds)
        self.divisible = int(channel_divisible)
        self.max_ratio = float(max_ratio)
        self.upper = dict(upper_bounds or {})
        self.uniform = bool(uniform)
        self.allocation = BudgetAllocation(self.groups, cost, penalties or {},
                                           channel_divisible, max_ratio, upper_bounds)

    def counts(self, kept):
        return {g.id: int(kept[g.name]) for g in self.groups}

    def predicted(self, kept):
        """Predicted latency of `kept` as a fraction of the baseline's."""
        return self.cost.total(self.counts(kept)) / self.baseline_seconds

    def sum_units(self, kept):
        return self.cost.sum_units(self.counts(kept))

    def for_target(self, target):
        """Kept widths predicted to run at `target` x the baseline (or the fastest plan)."""
        budget = target * self.baseline_seconds
        if not self.uniform:
            self.allocation.cost = self.cost
            kept = self.allocation.for_budget(budget)
            # Coarse steps can leave the best plan under the budget far below it; the
            # cheapest plan one step over may land closer (as for FLOPs targets).
            error = abs(self.predicted(kept) / target - 1.0)
            over = self.allocation.step_over(kept, budget) if error > TOLERANCE / 2 else None
            if over is not None and abs(self.predicted(over) / target - 1.0) < error:
                kept = over
            return kept
        low, high = 0.0, self.max_ratio
        best = uniform_widths(self.groups, high, self.divisible, self.upper)
        if self.cost.total(self.counts(best)) > budget:
            return best
        for _ in range(_BISECTION_STEPS):
            mid = (low + high) / 2
            kept = uniform_widths(self.groups, mid, self.divisible, self.upper)
            if self.cost.total(self.counts(kept)) <= budget:
                high, best = mid, kept
            else:
                low = mid
        return best

    def refit(self, pair, latest):
        """Recalibrates the cost on measured `(sum of unit seconds, measured fraction)` points.

        The line through `pair`, the two points nearest the target (the
        baseline is `(sum at full widths, 1.0)`), gives `alpha` and `beta`;
        when that line does not rise (noise), only `alpha` changes, so that
        `latest` is predicted exactly.
        """
        s_last, r_last = latest
        (s1, r1), (s2, r2) = pair
        if abs(s2 - s1) > 1e-12 * max(abs(s1), abs(s2), 1e-30):
            slope = (r2 - r1) / (s2 - s1)
            if slope > 0:
                intercept = r2 - slope * s2
                self.cost = self.cost.calibrated(slope * self.baseline_seconds,
                                                 intercept * self.baseline_seconds)
                return
        if s_last > 0:
            alpha = (r_last * self.baseline_seconds - self.cost.beta) / s_last
            if alpha > 0:
                self.cost = self.cost.calibrated(alpha, self.cost.beta)


def plan_latency(planner, target, measure=None, max_measurements=4, tolerance=TOLERANCE,
                 log=None):
    """Plans kept widths whose latency is `target` x the baseline's, measuring as it goes.

    Args:
      planner: A `LatencyPlanner`.
      target: Latency to reach, as a fraction of the baseline's, in (0, 1).
      measure: `fn(kept) -> measured fraction` (builds and times the slim
        model next to the baseline), or None to trust the prediction.
      max_measurements: Slim models measured at most. Defaults to `4`.
      tolerance: Relative distance to the target that stops the loop.
        Defaults to `TOLERANCE` (7%).
      log: Optional `fn(str)` for one line per measurement.

    Returns:
      A `LatencyPlan`; the plan measured closest to the target.
    """
    full = {g.name: g.width for g in planner.groups}
    points = [(planner.sum_units(full), 1.0)]
    history, tried = [], []
    kept = planner.for_target(target)
    best = None
    for step in range(max_measurements if measure is not None else 0):
        predicted = planner.predicted(kept)
        measured = float(measure(kept))
        history.append((predicted, measured))
        tried.append(kept)
        if log is not None:
            log(f"latency plan {step + 1}/{max_measurements}: predicted {predicted:.3f}, "
                f"measured {measured:.3f} of the baseline (target {target:.3f})")
        error = abs(measured / target - 1.0)
        if best is None or error < best[0]:
            best = (error, kept, predicted, measured)
        # Stop once well inside the tolerance: another plan would only trade noise.
        if error <= tolerance / 2:
            break
        points.append((planner.sum_units(kept), measured))
        near = sorted(points, key=lambda p: abs(p[1] - target))[:2]
        planner.refit(near, points[-1])
        kept = planner.for_target(target)
        if kept in tried:
            break
    if best is None:
        plan = LatencyPlan(kept, target, planner.predicted(kept))
    else:
        _, kept, predicted, measured = best
        plan = LatencyPlan(kept, target, predicted, measured, history)
    if not plan.on_target:
        reached = plan.measured if plan.measured is not None else plan.predicted
        what = "measured" if plan.measured is not None else "predicted"
        warnings.warn(
            f"A latency of {target:.1%} of the baseline's was not reached within "
            f"{tolerance:.0%}: the closest plan {what} {reached:.1%}. The channel_divisible "
            "steps or the deepest allowed cuts (max ratio, analysed ratios, excludes) may not "
            "allow it; see summary().", UserWarning, stacklevel=3)
    return plan
