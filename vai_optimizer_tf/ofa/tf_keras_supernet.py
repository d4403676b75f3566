"""`OFASupernet`: a tf_keras Functional model of elastic layers, trained with the sandwich rule.

The supernet is a rebuilt copy of the user's model whose consumers and
elastic-kernel convolutions are elastic layers (`tf_keras_elastic.py`). Its
`train_step` runs the sandwich rule of Once-for-All and BigNAS: at every step
the largest subnet, the smallest and `num_random_subnets` random ones each do
a forward and backward pass on the batch, their gradients are summed and
applied once. Every subnet learns from the labels (the compiled loss) and,
by soft distillation, from the original model (`distillation_weight`); the
smaller ones also learn from the largest subnet's outputs
(`inplace_distillation_weight`). BatchNormalization moving statistics follow
the largest subnet (the other passes' updates are undone), so `evaluate` of
the full supernet is meaningful during training; every other subnet gets its
statistics from adaptive BN. Subnets are drawn in-graph (`tf.random`),
so the step is traced once; widths and kernel sizes reach the layers as
tensors of the step, not as variable assignments, which keeps the step
valid under `tf.distribute` strategies.

`evaluate`, `predict` and `__call__` run the *active* configuration, held in
the layers' non-trainable variables (`set_config`); it is the largest unless
set otherwise. The model saves to `.keras` and reloads with
`keras.models.load_model` once `vai_optimizer_tf` is imported: the config
carries the search space and the training settings, and the file holds the
original model (the distillation teacher) next to the supernet's weights.
"""

import copy
import json
import os

import tensorflow as tf
import tf_keras

from vai_optimizer_tf.ofa import tf_keras_elastic
from vai_optimizer_tf.ofa.config_space import ConfigSpace

DISTILLATION_LOSSES = ("kl_logits", "kl_probabilities", "mse")


def _kd_per_sample(kind, teacher, student):
    """Per-sample soft distillation loss of one output (float32, shape [batch])."""
    teacher = tf.cast(teacher, tf.float32)
    student = tf.cast(student, tf.float32)
    if kind == "mse":
        loss = tf.square(teacher - student)
    elif kind == "kl_logits":
        target = tf.nn.softmax(teacher, axis=-1)
        loss = target * (tf.nn.log_softmax(teacher, axis=-1) - tf.nn.log_softmax(student, axis=-1))
    else:
        eps = tf_keras.backend.epsilon()
        target = tf.clip_by_value(teacher, eps, 1.0)
        loss = target * (tf.math.log(target) - tf.math.log(tf.clip_by_value(student, eps, 1.0)))
    loss = tf.reshape(loss, [tf.shape(loss)[0], -1])
    return tf.reduce_sum(loss, axis=-1) if kind != "mse" else tf.reduce_mean(loss, axis=-1)


@tf_keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class OFASupernet(tf_keras.Model):
    """An elastic-width (and elastic-kernel) supernet, built by `OFAPruner.ofa_model`.

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

    def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, name=name, trainable=trainable,
                         **kwargs)
        # Plain attributes, outside Keras's tracking: the teacher is no layer of
        # this model (not in `layers` or `weights`), yet `.keras` files save it.
        object.__setattr__(self, "_ofa_settings", None)
        object.__setattr__(self, "_ofa_teacher", None)
        object.__setattr__(self, "_ofa_space", None)

    # Settings -----------------------------------------------------------------------------

    def configure(self, settings, teacher=None):
        """Attaches the search space and training settings (done by `OFAPruner.ofa_model`).

        Args:
          settings: Dict with `space` (a `ConfigSpace` config),
            `num_random_subnets`, `distillation_weight`,
            `inplace_distillation_weight`, `distillation_loss` and `source`
            (the original model's name and graph digest).
          teacher: The original model, for distillation, or None.
        """
        settings = json.loads(json.dumps(dict(settings)))
        settings.pop("teacher", None)
        object.__setattr__(self, "_ofa_settings", settings)
        object.__setattr__(self, "_ofa_teacher", teacher)
        object.__setattr__(self, "_ofa_space", ConfigSpace.from_config(settings["space"]))

    @property
    def space(self):
        """The `ConfigSpace`: elastic groups and kernels with their choices."""
        return self._ofa_space

    @property
    def settings(self):
        """A copy of the training settings and search space, as stored in the config."""
        return copy.deepcopy(self._ofa_settings)

    @property
    def teacher(self):
        """The original model this supernet distils from, or None."""
        return self._ofa_teacher

    def get_config(self):
        config = super().get_config()
        settings = copy.deepcopy(self._ofa_settings)
        if settings is not None:
            settings["teacher"] = (tf_keras.saving.serialize_keras_object(self._ofa_teacher)
                                   if self._ofa_teacher is not None else None)
        config["ofa"] = settings
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        settings = config.pop("ofa", None)
        model = super().from_config(config, custom_objects)
        if settings is not None:
            teacher = settings.get("teacher")
            if teacher is not None:
                teacher = tf_keras.saving.deserialize_keras_object(
                    teacher, custom_objects=custom_objects)
            model.configure(settings, teacher)
        return model

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
        keras_format = save_format == "keras" or (save_format is None and path is not None
                                                  and path.endswith(".keras"))
        if self._ofa_teacher is not None and not keras_format:
            raise ValueError(
                f"Invalid `filepath`: save the supernet as a `.keras` file, which holds the "
                f"original model it distils from. Received: filepath={filepath!r}. For weights "
                "only, use save_weights() and load them into a supernet built by "
                "OFAPruner.ofa_model().")
        return super().save(filepath, *args, **kwargs)

    # Configurations ------------------------------------------------------------------------

    def set_config(self, config):
        """Makes `config` the active subnet of `evaluate`, `predict` and `__call__`.

        Args:
          config: A `SubnetConfig`, an `OFASubnet` or a dict; groups and
            kernels it leaves out run at full size.

        Raises:
          ValueError: for widths or kernel sizes outside the search space.
        """
        widths, kernels = self.space.vectors(config)
        tf_keras_elastic.set_active(self, widths, kernels)

    def _elastic_layers(self):
        return tf_keras_elastic.elastic_layers(self)

    def _tables(self):
        width_table, width_counts, kernel_table, kernel_counts = self.space.choice_tables()
        return (tf.constant(width_table), tf.constant(width_counts),
                tf.constant(kernel_table), tf.constant(kernel_counts))

    def _sample(self, kind):
        """`(widths, kernels)` int32 tensors of the largest, smallest or a random subnet."""
        width_table, width_counts, kernel_table, kernel_counts = self._tables()

        def pick(table, counts):
            if kind == "largest":
                index = counts - 1
            elif kind == "smallest":
                index = tf.zeros_like(counts)
            else:
                draw = tf.random.uniform(tf.shape(counts), dtype=tf.float32)
                index = tf.minimum(tf.cast(draw * tf.cast(counts, tf.float32), tf.int32),
                                   counts - 1)
            return tf.gather(table, index, axis=1, batch_dims=1)
        return pick(width_table, width_counts), pick(kernel_table, kernel_counts)

    def _forward(self, x, widths, kernels):
        layers = self._elastic_layers()
        for layer in layers:
            layer.set_override((widths, kernels))
        try:
            return self(x, training=True)
        finally:
            for layer in layers:
                layer.set_override(None)

    # Training ----------------------------------------------------------------------------

    def _distillation(self, teacher, student):
        kind = self._ofa_settings["distillation_loss"]
        per_sample = tf.add_n([_kd_per_sample(kind, t, s) for t, s in
                               zip(tf.nest.flatten(teacher), tf.nest.flatten(student))])
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return tf.reduce_mean(per_sample) / tf.cast(replicas, tf.float32)

    def train_step(self, data):
        x, y, sample_weight = tf_keras.utils.unpack_x_y_sample_weight(data)
        settings = self._ofa_settings
        kd_weight = float(settings["distillation_weight"])
        inplace_weight = float(settings["inplace_distillation_weight"])
        teacher_out = None
        if self._ofa_teacher is not None and kd_weight > 0:
            teacher_out = tf.nest.map_structure(tf.stop_gradient,
                                                self._ofa_teacher(x, training=False))
        kinds = ["largest", "smallest"] + ["random"] * int(settings["num_random_subnets"])
        variables = self.trainable_variables
        optimizer = self.optimizer
        scaling = hasattr(optimizer, "get_scaled_loss")
        summed, largest_out = None, None
        moving = _moving_statistics(self)
        for i, kind in enumerate(kinds):
            widths, kernels = self._sample(kind)
            with tf.GradientTape() as tape:
                out = self._forward(x, widths, kernels)
                loss = tf.cast(self.compiled_loss(
                    y, out, sample_weight,
                    regularization_losses=self.losses if i == 0 else None), tf.float32)
                if teacher_out is not None:
                    loss += kd_weight * self._distillation(teacher_out, out)
                if i > 0 and inplace_weight > 0:
                    loss += inplace_weight * self._distillation(largest_out, out)
                scaled = optimizer.get_scaled_loss(loss) if scaling else loss
            grads = tape.gradient(scaled, variables)
            if scaling:
                grads = optimizer.get_unscaled_gradients(grads)
            grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
            summed = grads if summed is None else [a + g for a, g in zip(summed, grads)]
            if i == 0:
                largest_out = tf.nest.map_structure(tf.stop_gradient, out)
                statistics = [tf.identity(v) for v in moving]
        # BatchNormalization statistics follow the largest subnet only: the
        # other passes' updates are undone, so `evaluate` of the full model
        # sees consistent statistics (subnets get theirs from adaptive BN).
        for variable, value in zip(moving, statistics):
            variable.assign(value)
        optimizer.apply_gradients(zip(summed, variables))
        return self.compute_metrics(x, y, largest_out, sample_weight)


def _moving_statistics(model):
    """The moving mean and variance of every BatchNormalization layer of `model`."""
    out, seen = [], set()

    def walk(m):
        for layer in m.layers:
            if isinstance(layer, tf_keras.Model):
                walk(layer)
            elif isinstance(layer, tf_keras.layers.BatchNormalization) and id(layer) not in seen:
                seen.add(id(layer))
                out.extend([layer.moving_mean, layer.moving_variance])
    walk(model)
    return out


def supernet_from(model, settings, teacher=None):
    """An `OFASupernet` over the layers of `model` (a rebuilt copy with elastic layers)."""
    supernet = OFASupernet(inputs=model.inputs, outputs=model.outputs, name=model.name)
    supernet.configure(settings, teacher)
    return supernet


def custom_objects():
    """Name -> class of the supernet and its elastic layers."""
    objects = tf_keras_elastic.custom_objects()
    objects["OFASupernet"] = OFASupernet
    objects[tf_keras.saving.get_registered_name(OFASupernet)] = OFASupernet
    return objects
