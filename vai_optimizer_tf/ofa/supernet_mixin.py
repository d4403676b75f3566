"""`SupernetMixin`: what the `OFASupernet` of both Keras flavours shares.

The supernet is a rebuilt copy of the user's model whose consumers and
elastic-kernel convolutions are elastic layers (`elastic_mixin.py`). Its
`train_step` runs the sandwich rule of Once-for-All and BigNAS: at every step
the largest subnet, the smallest and `num_random_subnets` random ones each do
a forward and backward pass on the batch, their gradients are summed and
applied once. Every subnet learns from the labels (the compiled loss) and,
by soft distillation, from the original model (`distillation_weight`); the
smaller ones also learn from the largest subnet's outputs
(`inplace_distillation_weight`). BatchNormalization moving statistics follow
the largest subnet (the other passes' updates are undone), so `evaluate` of
the full supernet is meaningful during training; every other subnet gets its
statistics from adaptive BN. Subnets are drawn in-graph (`tf.random`), so
the step is traced once; widths and kernel sizes reach the layers as tensors
of the step, not as variable assignments, which keeps the step valid under
`tf.distribute` strategies.

This mixin holds that step, the sampling, the settings and their
serialization; each flavour's class (`tf_keras_supernet.OFASupernet`,
`keras3_supernet.OFASupernet`) sets `LAYERS` (its `ElasticLayerSet`) and
implements the few calls whose API differs: the loss of one subnet
(`_subnet_loss`), loss scaling (`_scaled_loss`) and applying the summed
gradients (`_apply_summed`).
"""

import copy
import json

import tensorflow as tf

from vai_optimizer_tf.ofa import distillation
from vai_optimizer_tf.ofa.config_space import ConfigSpace


class SupernetMixin:
    """The flavour-neutral part of `OFASupernet` (see the module docstring).

    Attributes:
      LAYERS: The flavour's `ElasticLayerSet`, set by the subclass.
    """

    LAYERS = None

    def _init_ofa(self):
        # Plain attributes, outside Keras's tracking: the teacher is no layer of
        # this model (not in `layers` or `weights`), yet `.keras` files save it.
        object.__setattr__(self, "_ofa_settings", None)
        object.__setattr__(self, "_ofa_teacher", None)
        object.__setattr__(self, "_ofa_space", None)

    @classmethod
    def from_rebuilt(cls, model, settings, teacher=None):
        """A supernet over the layers of `model` (a rebuilt copy with elastic layers).

        Args:
          model: A Functional model of the flavour, with elastic layers.
          settings: See `configure`.
          teacher: See `configure`. Defaults to None.
        """
        inputs, outputs = cls._io_structure(model)
        supernet = cls(inputs=inputs, outputs=outputs, name=model.name)
        supernet.configure(settings, teacher)
        return supernet

    @staticmethod
    def _io_structure(model):
        """`(inputs, outputs)` of a Functional model, as its constructor took them."""
        return model.inputs, model.outputs

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
            settings["teacher"] = (self.LAYERS.keras.saving.serialize_keras_object(
                self._ofa_teacher) if self._ofa_teacher is not None else None)
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
                teacher = cls.LAYERS.keras.saving.deserialize_keras_object(
                    teacher, custom_objects=custom_objects)
            model.configure(settings, teacher)
        return model

    def _check_save_format(self, filepath, keras_format):
        """Refuses to save without the teacher: only `.keras` files hold it."""
        if self._ofa_teacher is not None and not keras_format:
            raise ValueError(
                f"Invalid `filepath`: save the supernet as a `.keras` file, which holds the "
                f"original model it distils from. Received: filepath={filepath!r}. For weights "
                "only, use save_weights() and load them into a supernet built by "
                "OFAPruner.ofa_model().")

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
        self.LAYERS.set_active(self, widths, kernels)

    def _sample(self, kind):
        """`(widths, kernels)` int32 tensors of the largest, smallest or a random subnet."""
        tables = [tf.constant(t) for t in self.space.choice_tables()]
        width_table, width_counts, kernel_table, kernel_counts = tables

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
        layers = self.LAYERS.elastic_layers(self)
        for layer in layers:
            layer.set_override((widths, kernels))
        try:
            return self(x, training=True)
        finally:
            for layer in layers:
                layer.set_override(None)

    # Training ----------------------------------------------------------------------------

    def _distillation(self, teacher, student):
        return distillation.distillation_loss(self._ofa_settings["distillation_loss"], teacher,
                                              student, self.LAYERS.keras.backend.epsilon())

    def _subnet_loss(self, x, y, y_pred, sample_weight, first):
        """The compiled loss of one subnet (float32), regularization included when `first`."""
        raise NotImplementedError

    def _scaled_loss(self, loss):
        """`loss` scaled for mixed precision (the optimizer's loss scale), if any."""
        raise NotImplementedError

    def _apply_summed(self, gradients, variables):
        """Applies the summed gradients of the step's subnets (unscaling them if needed)."""
        raise NotImplementedError

    def train_step(self, data):
        x, y, sample_weight = self.LAYERS.keras.utils.unpack_x_y_sample_weight(data)
        settings = self._ofa_settings
        kd_weight = float(settings["distillation_weight"])
        inplace_weight = float(settings["inplace_distillation_weight"])
        teacher_out = None
        if self._ofa_teacher is not None and kd_weight > 0:
            teacher_out = tf.nest.map_structure(tf.stop_gradient,
                                                self._ofa_teacher(x, training=False))
        kinds = ["largest", "smallest"] + ["random"] * int(settings["num_random_subnets"])
        variables = self.trainable_weights
        summed, largest_out = None, None
        moving = self.LAYERS.batch_norm_statistics(self)
        for i, kind in enumerate(kinds):
            widths, kernels = self._sample(kind)
            with tf.GradientTape() as tape:
                out = self._forward(x, widths, kernels)
                loss = self._subnet_loss(x, y, out, sample_weight, first=i == 0)
                if teacher_out is not None:
                    loss += kd_weight * self._distillation(teacher_out, out)
                if i > 0 and inplace_weight > 0:
                    loss += inplace_weight * self._distillation(largest_out, out)
                scaled = self._scaled_loss(loss)
            grads = tape.gradient(scaled, variables)
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
        self._apply_summed(summed, variables)
        return self.compute_metrics(x, y, largest_out, sample_weight)
