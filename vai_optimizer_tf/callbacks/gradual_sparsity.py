"""`GradualSparsity`: ramps an N:M sparse model from dense to its pattern during `fit`."""

import logging
import numbers

import numpy as np

from vai_optimizer_tf.callbacks.pruning_callback import PruningCallback
from vai_optimizer_tf.callbacks.schedule import RatioSchedule
from vai_optimizer_tf.sparsity import block_mask_base as block_mask
from vai_optimizer_tf.sparsity import block_pattern
from vai_optimizer_tf.utils import validation

logger = logging.getLogger("vai_optimizer_tf")


class GradualSparsity(PruningCallback):
    """Raises the weight sparsity of every block to the model's pattern, along a schedule.

    Build the model with `SparsePruner.sparse_model(..., gradual=True)`: its
    masks start dense. At each pruning step the schedule gives a sparsity
    `s`; every block then zeroes `floor(s * block_size)` entries, and its
    survivors are re-selected by magnitude from the *current* weights (pruned
    entries are zero, so they stay pruned). The schedule must end at the
    model's `w_sparsity`. Between pruning steps the masks hold by themselves;
    with `steps_per_execution > 1` a pruning step inside an execution is
    applied at its end.

    The step is `model.optimizer.iterations`, so a resumed training continues
    the schedule; the masks are re-read from the kernels when training
    begins. The same callback works in tf_keras' and in Keras 3's `fit` (it
    is a `keras.callbacks.Callback` of both, see `PruningCallback`).

    Args:
      schedule: A `tfmot.sparsity.keras.PruningSchedule` (`PolynomialDecay`,
        `ConstantSparsity`), whose own frequency and begin/end steps decide
        when to prune; or a callable `step -> sparsity`.
      frequency: For callable schedules, prune every `frequency` steps.
        Defaults to `100`.

    Raises:
      ValueError: for a bad `frequency` or `schedule`; at the start of `fit`,
        when the model has no N:M masks or the schedule does not end at its
        `w_sparsity`.

    Example:

    ```python
    import tensorflow_model_optimization as tfmot

    sparse = pruner.sparse_model(w_sparsity=0.5, block_size=4, gradual=True)
    sparse.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8,
                                                    frequency=2)
    sparse.fit(x, y, batch_size=8, epochs=2, verbose=0,
               callbacks=[vot.callbacks.GradualSparsity(schedule)])
    ```
    """

    def __init__(self, schedule, frequency=100):
        super().__init__()
        self.schedule = RatioSchedule(schedule, validation.check_positive_int("frequency",
                                                                              frequency))
        self._masks = []
        self._last_step = -1
        self._epoch_start = 0

    def on_train_begin(self, logs=None):
        self._masks = block_mask.find_block_masks(self.model)
        if not self._masks:
            raise ValueError(f"Model {self.model.name!r} has no N:M masks. Train the model "
                             "returned by SparsePruner.sparse_model(..., gradual=True).")
        final = self.schedule.final_ratio()
        targets = sorted({mask.sparsity for _, _, _, mask in self._masks})
        if not isinstance(final, numbers.Real) or abs(final - targets[-1]) > 1e-6:
            raise ValueError(f"The schedule must end at the model's w_sparsity={targets[-1]}. "
                             f"Received: a schedule ending at {final!r}")
        for _, _, variable, mask in self._masks:  # after a reload or load_weights
            values = variable.numpy()
            variable.assign(values * mask.set_from_weights(values))
        resumed_at = self._step()
        self._last_step = resumed_at if resumed_at > 0 else -1
        self._epoch_start = resumed_at

    def _step(self):
        return self.optimizer_step()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._step()

    def on_train_batch_end(self, batch, logs=None):
        step = self._epoch_start + batch + 1
        if step <= self._last_step:
            return
        due = self.schedule.due(self._last_step, step)
        self._last_step = step
        if due:
            self.prune_to(self.schedule.ratio(step))

    def prune_to(self, sparsity):
        """Zeroes `floor(sparsity * block_size)` entries of every block now (never fewer).

        Returns:
          The number of kernels whose mask changed.
        """
        changed = 0
        for _, _, variable, mask in self._masks:
            wanted = block_pattern.BlockPattern.from_sparsity(
                min(max(float(sparsity), 0.0), mask.sparsity), mask.block_size)
            if wanted.zeros <= mask.pattern.zeros:
                continue
            values = variable.numpy()
            variable.assign(values * mask.set_from_weights(values, zeros=wanted.zeros))
            changed += 1
        if changed:
            logger.info("GradualSparsity: %d kernels at %.0f%% sparsity per block", changed,
                        100 * float(np.clip(sparsity, 0, 1)))
        return changed
