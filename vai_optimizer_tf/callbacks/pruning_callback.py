"""`PruningCallback`: the base of the library's callbacks, for either Keras flavour's `fit`.

tf_keras' `fit` and Keras 3's `fit` each expect their own
`keras.callbacks.Callback`. The library's callbacks derive from both, so one
instance of `vot.callbacks.GradualChannelPruning(...)` is a
`tf_keras.callbacks.Callback` and a `keras.callbacks.Callback` at once, and
works in the `fit` of whichever flavour the pruned model is. The two base
classes differ only in how they hold the model (tf_keras sets an attribute,
Keras 3 reads a property); here it is one property both can set.
"""

import keras
import tf_keras


class PruningCallback(tf_keras.callbacks.Callback, keras.callbacks.Callback):
    """A callback that both tf_keras' and Keras 3's `fit` accept.

    Subclasses implement the hooks (`on_train_begin`, `on_train_batch_end`,
    ...) as for either flavour, and read the trained model as `self.model`.

    Example:

    ```python
    import keras
    import tf_keras
    from vai_optimizer_tf.callbacks.pruning_callback import PruningCallback

    class CountSteps(PruningCallback):
        def on_train_begin(self, logs=None):
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1

    callback = CountSteps()
    assert isinstance(callback, keras.callbacks.Callback)
    assert isinstance(callback, tf_keras.callbacks.Callback)
    ```
    """

    def __init__(self):
        tf_keras.callbacks.Callback.__init__(self)
        self.params = None
        # The library's hooks never read `logs`. Saying so keeps tf_keras' `fit`
        # from converting the logs to numpy after every batch (a device sync
        # per step). benchmarks/sparsity.py times both settings; on the
        # 2-core CPU the sync was not measurable.
        self._supports_tf_logs = True

    @property
    def model(self):
        """The model being trained (set by `fit`)."""
        return self._model

    @model.setter
    def model(self, model):
        self._model = model

    def set_model(self, model):
        self._model = model

    def optimizer_step(self):
        """The trained model's optimizer step count (`optimizer.iterations`), as an int."""
        return int(self.model.optimizer.iterations.numpy())
