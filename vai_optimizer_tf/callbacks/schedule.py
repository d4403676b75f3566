"""Ratio schedules: TFMOT `PruningSchedule` objects or plain `step -> ratio` callables."""

import numbers

import numpy as np


class RatioSchedule:
    """Wraps a schedule so it answers `(should_prune, ratio)` for a training step.

    Args:
      schedule: A `tfmot.sparsity.keras.PruningSchedule` (its sparsity is read
        as the FLOPs reduction, and its own frequency and begin/end steps
        decide when to prune), or a callable `step -> ratio`.
      frequency: For callables, prune every `frequency` steps.
    """

    def __init__(self, schedule, frequency):
        if not callable(schedule):
            raise ValueError("Invalid `schedule`: expected a tfmot PruningSchedule or a callable "
                             f"step -> ratio. Received: schedule={schedule!r}")
        self.schedule = schedule
        self.frequency = frequency
        self.is_tfmot = hasattr(schedule, "get_config") and _tfmot_final(schedule) is not None

    def __call__(self, step):
        if self.is_tfmot:
            should_prune, ratio = self.schedule(np.int64(step))
            return bool(np.asarray(should_prune)), float(np.asarray(ratio))
        ratio = self.schedule(int(step))
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
            raise ValueError(f"The schedule returned {ratio!r} at step {step}; it must return "
                             "the FLOPs reduction as a float in [0, 1).")
        return step % self.frequency == 0, float(ratio)

    def final_ratio(self):
        """The ratio the schedule ends at."""
        if self.is_tfmot:
            return _tfmot_final(self.schedule)
        final = getattr(self.schedule, "final_ratio", None)
        return float(final) if final is not None else float(self.schedule(10 ** 12))


def _tfmot_final(schedule):
    config = schedule.get_config().get("config", schedule.get_config())
    for key in ("final_sparsity", "target_sparsity"):
        if key in config:
            return float(config[key])
    return None
