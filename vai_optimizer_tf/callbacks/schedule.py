"""Ratio schedules: TFMOT `PruningSchedule` objects or plain `step -> ratio` callables."""

import numbers

import numpy as np


class RatioSchedule:
    """Wraps a schedule so it answers when to prune and to which ratio.

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
        config = schedule.get_config().get("config", {}) if self.is_tfmot else {}
        self._tfmot_steps = (tuple(int(config[k]) for k in ("begin_step", "end_step", "frequency"))
                             if all(k in config for k in ("begin_step", "end_step", "frequency"))
                             else None)

    def __call__(self, step):
        """`(should_prune, ratio)` at `step`."""
        return self.due(step - 1, step), self.ratio(step)

    def ratio(self, step):
        """The FLOPs reduction the schedule asks for at `step`."""
        if self.is_tfmot:
            return float(np.asarray(self.schedule(np.int64(step))[1]))
        return _checked_ratio(self.schedule(int(step)), step)

    def due(self, since, step):
        """Whether a pruning step lies in `(since, step]`.

        With `steps_per_execution > 1` callbacks see only every n-th step, so
        the pruning steps in between must count too.
        """
        if not self.is_tfmot:
            return step // self.frequency > since // self.frequency
        if self._tfmot_steps is None:  # an unknown PruningSchedule: ask it about each step
            return any(bool(np.asarray(self.schedule(np.int64(s))[0]))
                       for s in range(since + 1, step + 1))
        begin, end, frequency = self._tfmot_steps
        first = max(since + 1, begin)
        last = step if end < 0 else min(step, end)
        if first > last:
            return False
        next_turn = begin + -(-(first - begin) // frequency) * frequency
        return next_turn <= last

    def final_ratio(self):
        """The ratio the schedule ends at."""
        if self.is_tfmot:
            return _tfmot_final(self.schedule)
        final = getattr(self.schedule, "final_ratio", None)
        if final is not None:
            return float(final)
        return _checked_ratio(self.schedule(10 ** 12), 10 ** 12)


def _checked_ratio(ratio, step):
    """`ratio` as a float, or a ValueError naming the step if it is not a real number."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise ValueError(f"The schedule returned {ratio!r} at step {step}; it must return "
                         "the FLOPs reduction as a float in [0, 1).")
    return float(ratio)


def _tfmot_final(schedule):
    config = schedule.get_config().get("config", schedule.get_config())
    for key in ("final_sparsity", "target_sparsity"):
        if key in config:
            return float(config[key])
    return None
