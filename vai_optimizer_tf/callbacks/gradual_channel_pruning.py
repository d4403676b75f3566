"""`GradualChannelPruning`: raises the FLOPs reduction of a sparse model during `fit`."""

import logging
import numbers

from vai_optimizer_tf.callbacks.pruning_callback import PruningCallback
from vai_optimizer_tf.callbacks.schedule import RatioSchedule
from vai_optimizer_tf.planning.divisibility import resolve_channel_divisible
from vai_optimizer_tf.utils import validation

logger = logging.getLogger("vai_optimizer_tf")


class GradualChannelPruning(PruningCallback):
    """Prunes more channels as training goes, following a ratio schedule.

    At each pruning step the callback asks the schedule for the FLOPs
    reduction to reach, plans per-group widths (from the sensitivity analysis
    when the workspace has one, otherwise the same fraction for every group),
    picks the channels from the *current* weights with the criterion, and
    updates the model's channel masks. A channel once pruned stays pruned: the
    kept sets are nested. Masks hold between pruning steps without this
    callback; it only drives the schedule. With `steps_per_execution > 1` the
    callback runs once per execution, and a pruning step inside an execution
    is applied at its end.

    The step is `model.optimizer.iterations`, so training resumed from a
    checkpoint continues the schedule where it stopped, with the masks found
    in the reloaded model (or, after `load_weights` into a fresh sparse
    model, recovered from its zero slices).

    The same callback works in tf_keras' and in Keras 3's `fit` (it is a
    `keras.callbacks.Callback` of both, see `PruningCallback`).

    Args:
      runner: The `IterativePruningRunner` that built the sparse model.
      schedule: A `tfmot.sparsity.keras.PruningSchedule` such as
        `PolynomialDecay(initial_sparsity, final_sparsity, begin_step,
        end_step, frequency)` or `ConstantSparsity`, whose sparsity is read
        as the FLOPs reduction; or a callable `step -> ratio`.
      frequency: For callable schedules, prune every `frequency` steps.
        Defaults to `100`.
      update_freq: `"step"` to follow the schedule within epochs, `"epoch"`
        to prune only at epoch ends. Defaults to `"step"`.
      criterion: Importance criterion. Defaults to `"l1"`.
      channel_divisible: Kept widths are multiples of this. `"auto"` is the
        multiple this CPU runs fastest (16 with AVX-512, else 8); 1 allows
        any width. Defaults to `"auto"`.
      excludes: Layers whose output channels must not shrink.
      use_analysis: `None` uses the workspace's sensitivity analysis when
        there is one, `True` requires it, `False` prunes groups alike.
        Defaults to `None`.

    Raises:
      ValueError: for bad arguments; at the start of `fit`, when the model is
        not a sparse model of `runner`, or when the schedule's final ratio
        cannot be reached (the message says how far pruning can go).

    Example:

    ```python
    import numpy as np
    import tensorflow_model_optimization as tfmot
    import tf_keras
    import vai_optimizer_tf as vot

    model = tf_keras.Sequential([
        tf_keras.Input((16, 16, 3)), tf_keras.layers.Conv2D(16, 3, activation="relu"),
        tf_keras.layers.Conv2D(16, 3, activation="relu"),
        tf_keras.layers.GlobalAveragePooling2D(), tf_keras.layers.Dense(10)])
    runner = vot.IterativePruningRunner(model, workspace="ws")
    sparse = runner.get_sparse_model(runner.uniform_spec(0.0))
    sparse.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8,
                                                    frequency=2)
    x, y = np.random.rand(64, 16, 16, 3), np.random.randint(0, 10, 64)
    sparse.fit(x, y, batch_size=8, epochs=1, verbose=0,
               callbacks=[vot.callbacks.GradualChannelPruning(runner, schedule)])
    print(runner.spec_from_model(sparse).metadata["flops_reduction"])  # ~0.5
    ```
    """

    def __init__(self, runner, schedule, frequency=100, update_freq="step", criterion="l1",
                 channel_divisible="auto", excludes=None, use_analysis=None):
        super().__init__()
        if not hasattr(runner, "plan_widths"):
            raise ValueError("Invalid `runner`: expected a vai_optimizer_tf.IterativePruningRunner. "
                             f"Received: runner={runner!r}")
        if update_freq not in ("step", "epoch"):
            raise ValueError("Invalid `update_freq`: expected 'step' or 'epoch'. "
                             f"Received: update_freq={update_freq!r}")
        self.runner = runner
        self.schedule = RatioSchedule(schedule, validation.check_positive_int("frequency",
                                                                              frequency))
        self.update_freq = update_freq
        self.criterion = criterion
        self.channel_divisible = resolve_channel_divisible(channel_divisible)
        self.excludes = excludes
        self.use_analysis = use_analysis
        self._state = None
        self._last_ratio = 0.0
        self._last_step = -1
        self._epoch_start = 0

    def on_train_begin(self, logs=None):
        self._state = self.runner.mask_state(self.model)
        if self._state.is_unpruned:
            # Resumed with load_weights into a fresh sparse model: the pruned
            # slices are zero but the masks were rebuilt all ones.
            self._state.apply(self._state.kept_from_zero_weights())
        self._last_ratio = self.runner.spec_from_state(self._state).metadata["flops_reduction"]
        # A resumed model has handled the steps up to its optimizer's step count.
        # A fresh one has handled none: step 0 counts at the first batch end.
        resumed_at = self._step()
        self._last_step = resumed_at if resumed_at > 0 else -1
        self._epoch_start = resumed_at
        final = self.schedule.final_ratio()
        if not isinstance(final, numbers.Real) or not 0 <= final < 1:
            raise ValueError(f"The schedule's final ratio must be a float in [0, 1). "
                             f"Received: {final!r}")
        # Fails now, with how far pruning can go, rather than mid-training.
        self.runner.plan_widths(final, self.channel_divisible, self.excludes,
                                use_analysis=self.use_analysis)

    def _step(self):
        return self.optimizer_step()

    def on_epoch_begin(self, epoch, logs=None):
        # Read the step once per epoch; batch ends count from it, so no batch
        # waits on a device read of the optimizer's step counter.
        self._epoch_start = self._step()

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "step":
            self._maybe_prune(self._epoch_start + batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        if self.update_freq == "epoch":
            self._maybe_prune(self._step(), force=True)

    def _maybe_prune(self, step, force=False):
        if step <= self._last_step:
            return
        # With steps_per_execution > 1 this sees every n-th step: count the ones between.
        due = force or self.schedule.due(self._last_step, step)
        self._last_step = step
        if not due:
            return
        ratio = self.schedule.ratio(step)
        if ratio > self._last_ratio + 1e-4:
            self.prune_to(ratio)

    def prune_to(self, ratio):
        """Prunes the model now to a FLOPs reduction of `ratio` (nested)."""
        current = self.runner.spec_from_state(self._state)
        upper = {name: len(g.kept) for name, g in current.groups.items()}
        # Intermediate ratios only need to be close; the final one was checked (and
        # warned about, if off target) when training began.
        widths = self.runner.plan_widths(ratio, self.channel_divisible, self.excludes,
                                         upper_bounds=upper, use_analysis=self.use_analysis,
                                         warn=False)
        spec = self.runner.build_spec(widths, weights_from=self.model, criterion=self.criterion,
                                      channel_divisible=self.channel_divisible, previous=current)
        self._state.apply_spec(spec)
        self._last_ratio = self.runner.spec_from_state(self._state).metadata["flops_reduction"]
        logger.info("GradualChannelPruning: FLOPs reduction %.3f", self._last_ratio)
