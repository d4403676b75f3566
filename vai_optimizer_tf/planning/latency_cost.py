"""`LatencyCost`: predicted latency for any kept widths, from the measured table.

It is a cost model for `BudgetAllocation` with the interface of `WidthFlops`
(`baseline`, `per_node`, `total`, `total_after`), so the same knapsack spends
a latency budget instead of a FLOPs one.

Each latency unit's time is read from its measured points (`UnitCurve`):

* a unit whose time depends on one width (a depthwise conv, an add, the
  first conv) is interpolated linearly between its measured widths;
* a conv or dense whose input and output both shrink is measured along its
  input widths at the full output, and along its output widths at the full
  input (a cross, not a grid: n + m timings instead of n * m), and
  `t(a, b) = c0 + (t(a, B) - c0) * (t(A, b) - c0) / (t(A, B) - c0)`, with `c0`
  the fixed part of the unit's time (where its measured lines meet zero
  width). This is exact for times proportional to `a * b` and keeps the
  steps of both staircases.

The prediction of the whole model is `alpha * sum(unit times) + beta`:
layers whose widths never change, the call overhead and what the sum of
layers timed alone misses are calibrated against the measured baseline
(and, while pruning, against measured slim models; see `latency_plan`).
"""

import numpy as np

from vai_optimizer_tf.planning.budget_allocation import staircase
from vai_optimizer_tf.planning.latency_units import axis_widths, find_units

# Widths timed per unit axis, at most; between them the time is interpolated.
MAX_POINTS = 10


def _intercept(xs, ys):
    if len(xs) < 2:
        return 0.0
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(intercept) if slope > 0 else 0.0


class UnitCurve:
    """A unit's seconds as a function of its (input, output) widths.

    Args:
      unit: The `LatencyUnit`.
      points: `(in_width, out_width)` -> measured seconds (see `requests_for`).
        None or empty for a unit that could not be timed: its time is then a
        constant (0 here, part of the calibration).
    """

    def __init__(self, unit, points=None):
        self.unit = unit
        points = points or {}
        full_in, full_out = unit.in_width, unit.out_width
        self.constant = not points
        row = sorted((a, s) for (a, b), s in points.items() if b == full_out)
        col = sorted((b, s) for (a, b), s in points.items() if a == full_in)
        self._row = (np.array([a for a, _ in row], float), np.array([s for _, s in row], float))
        self._col = (np.array([b for b, _ in col], float), np.array([s for _, s in col], float))
        self.full = float(points.get((full_in, full_out), 0.0))
        c0 = 0.0
        if unit.in_varies and unit.out_varies and self.full > 0:
            c0 = min(_intercept(*self._row), _intercept(*self._col))
            c0 = min(max(c0, 0.0), 0.5 * self.full)
        self.c0 = c0

    def at(self, in_width, out_width):
        """Predicted seconds at these widths."""
        if self.constant:
            return 0.0
        unit = self.unit
        if unit.in_varies and not unit.out_varies:
            return float(np.interp(in_width, *self._row))
        if unit.out_varies and not unit.in_varies:
            return float(np.interp(out_width, *self._col))
        r = float(np.interp(in_width, *self._row))
        c = float(np.interp(out_width, *self._col))
        span = self.full - self.c0
        if span <= 0:
            return r * c / self.full if self.full > 0 else 0.0
        return self.c0 + (r - self.c0) * (c - self.c0) / span


def requests_for(unit, in_widths, out_widths):
    """The `(in_width, out_width)` points to time for a unit (a cross through full widths)."""
    points = []
    if unit.in_varies:
        points += [(int(a), unit.out_width) for a in in_widths]
    if unit.out_varies:
        points += [(unit.in_width, int(b)) for b in out_widths]
    if (unit.in_width, unit.out_width) not in points:
        points.append((unit.in_width, unit.out_width))
    return list(dict.fromkeys(points))


class LatencyCost:
    """Predicted seconds of a model for any kept widths; a cost model like `WidthFlops`.

    Args:
      flops: The `WidthFlops` of the dependency graph (tensor widths).
      units: The `LatencyUnit`s.
      curves: One `UnitCurve` per unit.
      alpha: Scale of the summed unit times. Defaults to `1.0`.
      beta: Constant seconds added. Defaults to `0.0`.

    Example:

    ```python
    cost = LatencyCost(flops, units, curves, alpha=1.0, beta=0.002)
    cost.total({})                                      # predicted baseline seconds
    cost.total({deps.group("conv1").id: 16}) / cost.baseline
    ```
    """

    # The saving of a cut is not proportional to the channels removed: the
    # allocation must price every step (see BudgetAllocation).
    linear = False

    def __init__(self, flops, units, curves, alpha=1.0, beta=0.0):
        self.flops = flops
        self.units = list(units)
        self.curves = list(curves)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self._affected = {}
        for i, unit in enumerate(self.units):
            for tid in (unit.in_tensor, unit.out_tensor):
                for gid in flops.tensor_coefficients(tid):
                    nodes = self._affected.setdefault(gid, [])
                    if not nodes or nodes[-1] != i:
                        nodes.append(i)
        self._full_units = self.unit_seconds({})
        self._baseline = self.total({})

    @property
    def baseline(self):
        """Predicted seconds of the unpruned model."""
        return self._baseline

    def calibrated(self, alpha, beta):
        """The same cost with another calibration `alpha * sum + beta`."""
        out = object.__new__(LatencyCost)
        out.__dict__.update(self.__dict__)
        out.alpha, out.beta = float(alpha), float(beta)
        out._baseline = float(alpha * self._full_units.sum() + beta)
        return out

    def _unit_time(self, i, kept_counts):
        unit = self.units[i]
        return self.curves[i].at(self.flops.tensor_width(unit.in_tensor, kept_counts),
                                 self.flops.tensor_width(unit.out_tensor, kept_counts))

    def unit_seconds(self, kept_counts):
        """Each unit's predicted seconds (uncalibrated), as an array."""
        return np.array([self._unit_time(i, kept_counts) for i in range(len(self.units))])

    def sum_units(self, kept_counts):
        """Summed uncalibrated unit seconds."""
        return float(self.unit_seconds(kept_counts).sum())

    def per_node(self, kept_counts):
        """Calibrated seconds per unit, and the constant last (for `total_after`)."""
        return np.append(self.alpha * self.unit_seconds(kept_counts), self.beta)

    def total(self, kept_counts):
        """Predicted seconds with `kept_counts` (group id -> kept width); others keep all."""
        return float(self.per_node(kept_counts).sum())

    def total_after(self, per_node, kept_counts, changed_groups):
        """Predicted seconds after changing `changed_groups`, recomputing only their units."""
        indices = sorted({i for g in changed_groups for i in self._affected.get(g, ())})
        total = float(per_node.sum())
        for i in indices:
            total += self.alpha * self._unit_time(i, kept_counts) - float(per_node[i])
        return total


def latency_requests(deps, flops, groups, channel_divisible, max_ratio=0.9, upper_bounds=None,
                     max_points=None):
    """The units of a model and the points of each that planning needs timed.

    Args:
      deps: The `DependencyGraph` (excludes applied).
      flops: Its `WidthFlops`.
      groups: The groups whose widths may change.
      channel_divisible: Kept widths are multiples of this: only those are
        timed.
      max_ratio: Deepest cut of a group. Defaults to `0.9`.
      upper_bounds: Group name -> largest width. Defaults to none.
      max_points: Widths timed per unit axis at most. Defaults to
        `MAX_POINTS` (10).

    Returns:
      `(units, untimed, requests)`: see `find_units`; `requests` maps each
      unit to its points.
    """
    upper = dict(upper_bounds or {})
    max_points = int(max_points or MAX_POINTS)
    units, untimed = find_units(deps, flops, groups)
    stairs = {g.id: staircase(g.width, channel_divisible, max_ratio, upper.get(g.name))
              for g in groups}
    requests = {}
    for unit in units:
        a = axis_widths(flops, unit.in_tensor, stairs, max_points) if unit.in_varies else []
        b = axis_widths(flops, unit.out_tensor, stairs, max_points) if unit.out_varies else []
        requests[unit] = requests_for(unit, a, b)
    return units, untimed, requests


def cost_from_table(flops, units, table):
    """An uncalibrated `LatencyCost` (alpha 1, beta 0) from a filled `LatencyTable`."""
    curves = [UnitCurve(u, None if table.error(u.signature) else table.points(u.signature))
              for u in units]
    return LatencyCost(flops, units, curves)


def calibrate(cost, baseline_seconds):
    """`cost` calibrated so that it predicts `baseline_seconds` for the unpruned model.

    What the units do not explain (other layers, call overhead) is a constant
    `beta`; if the units alone take longer than the whole model (they ran in
    parallel in it), they are scaled down instead.
    """
    summed = float(cost.unit_seconds({}).sum())
    if summed <= 0:
        return cost.calibrated(1.0, baseline_seconds)
    if summed <= baseline_seconds:
        return cost.calibrated(1.0, baseline_seconds - summed)
    return cost.calibrated(baseline_seconds / summed, 0.0)
