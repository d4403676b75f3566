"""`OFASupernet` of tf_keras: a Functional model of elastic layers, trained with the sandwich rule.

The training step, the sampling and the settings are `SupernetMixin`'s
(`supernet_mixin.py`, which explains them); this class adds what tf_keras
does its own way: the compiled loss, loss scaling and saving. The Keras 3
twin is `keras3_supernet.py`.

`evaluate`, `predict` and `__call__` run the *active* configuration, held in
the layers' non-trainable variables (`set_config`); it is the largest unless
set otherwise. The model saves to `.keras` and reloads with
`tf_keras.models.load_model` once `vai_optimizer_tf` is imported: the config
carries the search space and the training settings, and the file holds the
original model (the distillation teacher) next to the supernet's weights.
"""

import os

import tensorflow as tf
import tf_keras

from vai_optimizer_tf.ofa import tf_keras_elastic
from vai_optimizer_tf.ofa.supernet_mixin import SupernetMixin


@tf_keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class OFASupernet(SupernetMixin, tf_keras.Model):
    """An elastic-width (and elastic-kernel) tf_keras supernet, built by `OFAPruner.ofa_model`.

    Train it like any Keras model: `compile`, then `fit` with your data and
    callbacks. Each training step follows the sandwich rule (largest,
    smallest and `num_random_subnets` random subnets, gradients summed), with
    distillation from the original model and in-place distillation from the
    largest subnet. The reported `loss` is the compiled loss averaged over
    the subnets of each step; metrics are the largest subnet's.

    Example:

    ```python
    import numpy as np
    import tf_keras as keras
    import vai_optimizer_tf as vot

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))

    supernet = vot.OFAPruner(model, workspace="ws").ofa_model(channel_divisible=4)
    supernet.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    supernet.fit(np.random.rand(32, 8, 8, 3), np.random.randint(0, 4, 32), verbose=0)
    supernet.set_config(supernet.space.smallest())      # evaluate/predict this subnet
    ```
    """

    LAYERS = tf_keras_elastic.LAYERS

    def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, name=name, trainable=trainable,
                         **kwargs)
        self._init_ofa()

    def save(self, filepath, *args, **kwargs):
        """Saves the supernet; the `.keras` format keeps the distillation teacher too.

        Raises:
          ValueError: for another format while the supernet has a teacher:
            an `.h5` file or a SavedModel would hold the supernet's weights
            but not the teacher's, and a reloaded supernet would distil from
            an untrained model.
        """
        path = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else None
        save_format = kwargs.get("save_format", args[1] if len(args) > 1 else None)
        self._check_save_format(filepath, save_format == "keras" or (
            save_format is None and path is not None and path.endswith(".keras")))
        return super().save(filepath, *args, **kwargs)

    def _subnet_loss(self, x, y, y_pred, sample_weight, first):
        return tf.cast(self.compiled_loss(
            y, y_pred, sample_weight, regularization_losses=self.losses if first else None),
            tf.float32)

    def _scaled_loss(self, loss):
        if hasattr(self.optimizer, "get_scaled_loss"):
            return self.optimizer.get_scaled_loss(loss)
        return loss

    def _apply_summed(self, gradients, variables):
        if hasattr(self.optimizer, "get_unscaled_gradients"):
            gradients = self.optimizer.get_unscaled_gradients(gradients)
        self.optimizer.apply_gradients(zip(gradients, variables))

