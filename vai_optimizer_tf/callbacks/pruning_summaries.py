"""`ChannelPruningSummaries`: TensorBoard scalars of the pruning state."""

import tensorflow as tf

from vai_optimizer_tf.callbacks.pruning_callback import PruningCallback


class ChannelPruningSummaries(PruningCallback):
    """Writes the FLOPs reduction, parameter count and group widths to TensorBoard.

    Like TFMOT's `PruningSummaries`, but for channels: under
    `pruning/flops_reduction`, `pruning/params` and `pruning/width/<group>`,
    at every epoch end (or every `update_freq` steps).

    Args:
      runner: The `IterativePruningRunner` that built the sparse model.
      log_dir: TensorBoard log folder.
      update_freq: `"epoch"`, or a number of steps. Defaults to `"epoch"`.

    Example:

    ```python
    callbacks = [vot.callbacks.GradualChannelPruning(runner, schedule),
                 vot.callbacks.ChannelPruningSummaries(runner, log_dir="logs")]
    sparse.fit(x, y, epochs=1, callbacks=callbacks, verbose=0)
    ```
    """

    def __init__(self, runner, log_dir, update_freq="epoch"):
        super().__init__()
        if update_freq != "epoch" and not (isinstance(update_freq, int) and update_freq > 0):
            raise ValueError("Invalid `update_freq`: expected 'epoch' or a positive number of "
                             f"steps. Received: update_freq={update_freq!r}")
        try:
            import tensorboard  # noqa: F401  (tf.summary needs it)
        except ImportError as e:
            raise ImportError("ChannelPruningSummaries writes TensorBoard summaries; install "
                              "TensorBoard: `pip install tensorboard`.") from e
        self.runner = runner
        self.log_dir = log_dir
        self.update_freq = update_freq
        self._writer = None
        self._state = None
        self._last_step = 0

    def on_train_begin(self, logs=None):
        self._state = self.runner.mask_state(self.model)
        self._writer = tf.summary.create_file_writer(self.log_dir)
        self._last_step = self._step()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()

    def _step(self):
        return self.optimizer_step()

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch":
            return
        # With steps_per_execution > 1 not every step is seen: write when one
        # of the `update_freq` boundaries was crossed.
        step, last = self._step(), self._last_step
        self._last_step = step
        if step // self.update_freq > last // self.update_freq:
            self.write()

    def on_epoch_end(self, epoch, logs=None):
        if self.update_freq == "epoch":
            self.write()

    def write(self):
        """Writes the current state at the current step."""
        spec = self.runner.spec_from_state(self._state)
        stats = self.runner.stat(spec)
        step = self._step()
        with self._writer.as_default():
            tf.summary.scalar("pruning/flops_reduction", spec.metadata["flops_reduction"], step)
            tf.summary.scalar("pruning/params", stats.params, step)
            for group in self.runner.prunable_groups:
                width = len(spec.groups[group.name].kept) if group.name in spec.groups else group.width
                tf.summary.scalar(f"pruning/width/{group.name}", width, step)
        self._writer.flush()
