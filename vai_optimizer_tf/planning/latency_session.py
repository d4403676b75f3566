"""`LatencySession`: a runner's latency table, cost model and measurements for one device.

It ties the pieces of latency-targeted pruning to one model, one device and
one batch size: which units to time (`latency_cost.latency_requests`), the
workspace's `LatencyTable` (filled with a `UnitBenchmark` where points are
missing), the measured baseline, the calibrated `LatencyCost`, and the
closing-loop measurement of slim models (`measure_fn`).
"""

import logging
import os

from vai_optimizer_tf.planning import latency_cost as cost_lib
from vai_optimizer_tf.planning.latency_table import LatencyTable, table_key
from vai_optimizer_tf.planning.latency_timer import (UnitBenchmark, check_device, make_call,
                                                     time_calls, time_ratio)
from vai_optimizer_tf.utils import validation

logger = logging.getLogger("vai_optimizer_tf")
_BASELINE_REPEATS = 7


class LatencySession:
    """The latency side of a runner, for one device and batch size.

    Args:
      model: The baseline tf_keras model.
      model_digest: Its graph digest (keys its measured latency).
      workspace: The workspace folder; the table lives in `<workspace>/latency`.
      build_slim: `fn(kept) -> slim model` for group name -> kept width.
      device: `"tf"` or `"tflite"`.
      batch_size: Batch size of every timing.
      measure_units: `fn(unit, points) -> seconds` used to fill the table.
        Defaults to a `UnitBenchmark` on `device`.
      verbose: 1 shows the table's progress bar and one line per closing-loop
        measurement. Defaults to `1`.
    """

    def __init__(self, model, model_digest, workspace, build_slim, device="tf", batch_size=1,
                 measure_units=None, verbose=1):
        self.model = model
        self.model_digest = model_digest
        self.build_slim = build_slim
        self.device = check_device(device)
        self.batch_size = validation.check_positive_int("batch_size", batch_size)
        self.verbose = verbose
        self.table = LatencyTable(os.path.join(os.fspath(workspace), "latency"),
                                  table_key(self.device, self.batch_size))
        self._measure_units = measure_units
        self._base_call = None

    def _log(self, text):
        if self.verbose:
            print(text)

    def baseline_seconds(self):
        """The baseline's measured latency (cached in the table; measured when missing)."""
        seconds = self.table.model_seconds(self.model_digest)
        if seconds is None:
            self._log(f"Measuring the baseline's latency ({self.device}, batch "
                      f"{self.batch_size})")
            seconds = time_calls([self._baseline_call()], repeats=_BASELINE_REPEATS,
                                 min_seconds=0.05)[0]
            self.table.set_model_seconds(self.model_digest, seconds)
        return seconds

    def _baseline_call(self):
        if self._base_call is None:
            self._base_call = make_call(self.model, self.device, self.batch_size)
        return self._base_call

    def cost(self, deps, flops, channel_divisible, max_ratio=0.9, upper_bounds=None):
        """The calibrated `LatencyCost` of `deps`, timing what the table lacks.

        Args:
          deps: The `DependencyGraph` (excludes applied).
          flops: Its `WidthFlops`.
          channel_divisible: Only multiples of this are timed.
          max_ratio: Deepest cut of a group. Defaults to `0.9`.
          upper_bounds: Group name -> largest width. Defaults to none.

        Returns:
          `(cost, baseline_seconds)`.
        """
        units, untimed, requests = cost_lib.latency_requests(
            deps, flops, deps.prunable_groups, channel_divisible, max_ratio, upper_bounds)
        if untimed:
            logger.info("Layers whose widths change but that are not timed on their own (their "
                        "time counts in the calibrated constant): %s", untimed)
        measure = self._measure_units or UnitBenchmark(deps, self.device, self.batch_size)
        self.table.fill(requests, measure, verbose=self.verbose)
        baseline = self.baseline_seconds()
        return cost_lib.calibrate(cost_lib.cost_from_table(flops, units, self.table),
                                  baseline), baseline

    def measure(self, kept):
        """Measured latency of the slim model of `kept`, as a fraction of the baseline's.

        The two models are timed side by side (`time_ratio`), so the
        machine's load cancels out.
        """
        slim = self.build_slim(kept)
        ratio, _, _ = time_ratio(self._baseline_call(), make_call(slim, self.device,
                                                                  self.batch_size))
        return ratio
