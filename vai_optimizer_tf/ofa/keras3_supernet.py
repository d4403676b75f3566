"""`OFASupernet` of Keras 3: a Functional model of elastic layers, trained with the sandwich rule.

The Keras 3 twin of `tf_keras_supernet.py`, on Keras 3's TensorFlow
backend. The training step, the sampling and the settings are
`SupernetMixin`'s (`supernet_mixin.py`, which explains them); this class adds
what Keras 3 does its own way: `compute_loss` and the loss tracker, the
optimizer's `scale_loss` (a `LossScaleOptimizer` under mixed precision
unscales in `apply`) and saving (`.keras` only keeps the teacher).

The model saves to `.keras` and reloads with `keras.models.load_model` once
`vai_optimizer_tf` is imported.
"""

import os

import keras
import tensorflow as tf

from vai_optimizer_tf.ofa import keras3_elastic
from vai_optimizer_tf.ofa.supernet_mixin import SupernetMixin


def _unscale_for_distribution(loss):
    """The loss summed over replicas, as Keras 3's `fit` reports it.

    Under a distribution strategy each replica's loss is divided by the
    number of replicas (so gradients sum right); the logged value is not.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss * tf.cast(replicas, loss.dtype) if replicas > 1 else loss


@keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class OFASupernet(SupernetMixin, keras.Model):
    """An elastic-width (and elastic-kernel) Keras 3 supernet, built by `OFAPruner.ofa_model`.

    What `OFAPruner.ofa_model` returns for a Keras 3 model; it behaves as
    the tf_keras `vot.OFASupernet` does (`compile`, `fit` with the sandwich
    rule and distillation, `set_config`, `space`), and `.keras` files keep
    its teacher. `vot.Keras3OFASupernet` names this class.

    Example:

    ```python
    import keras
    import numpy as np
    import vai_optimizer_tf as vot

    model = keras.Sequential([keras.Input((8, 8, 3)),
                              keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
    supernet = vot.OFAPruner(model, workspace="ws").ofa_model(channel_divisible=4)
    supernet.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    supernet.fit(np.random.rand(32, 8, 8, 3), np.random.randint(0, 4, 32), verbose=0)
    supernet.save("supernet.keras")                     # keeps the teacher too
    reloaded = keras.models.load_model("supernet.keras")
    reloaded.set_config(reloaded.space.smallest())      # evaluate/predict this subnet
    ```
    """

    LAYERS = keras3_elastic.LAYERS

    def __init__(self, inputs, outputs, name=None, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self._init_ofa()

    @staticmethod
    def _io_structure(model):
        # The structures the model was built with (a single tensor, a list, a
        # dict), so the supernet takes its inputs as the model does.
        function = model._functional if isinstance(model, keras.Sequential) else model
        return function._inputs_struct, function._outputs_struct

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Saves the supernet; the `.keras` format keeps the distillation teacher too.

        Raises:
          ValueError: for another format while the supernet has a teacher:
            an `.h5` file would hold the supernet's weights but not the
            teacher's, and a reloaded supernet would distil from an untrained
            model.
        """
        path = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else ""
        self._check_save_format(filepath, path.endswith(".keras"))
        return super().save(filepath, overwrite=overwrite, zipped=zipped, **kwargs)

    def _subnet_loss(self, x, y, y_pred, sample_weight, first):
        if first:
            loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                      training=True)
        else:
            # Only the first pass adds the model's own losses (regularization),
            # as tf_keras's does: they would count once per subnet otherwise.
            loss = (self._compile_loss(y, y_pred, sample_weight)
                    if self._compile_loss is not None else None)
            loss = tf.zeros((), tf.float32) if loss is None else loss
        loss = tf.cast(loss, tf.float32)
        batch = tf.shape(tf.nest.flatten(x)[0])[0]
        self._loss_tracker.update_state(_unscale_for_distribution(loss),
                                        sample_weight=batch)
        return loss

    def _scaled_loss(self, loss):
        return self.optimizer.scale_loss(loss)

    def _apply_summed(self, gradients, variables):
        self.optimizer.apply_gradients(zip(gradients, variables))

