"""Elastic tf_keras layers: Conv, Dense, DepthwiseConv2D and SeparableConv2D of any width.

Each elastic layer is a subclass of the tf_keras layer it replaces in a
supernet (`adapter.rebuild(..., layer_classes=...)`), with the same weights
plus non-trainable `ofa_widths` (one width per elastic channel group its
input carries) and `ofa_kernel` (its active kernel size). Inside `call` the
kernel is multiplied by masks derived from them:

* an input mask zeroes the kernel's input slices beyond each group's active
  width, so channels past the width are dead downstream exactly as in the
  slim model, which removes them (BN, activations, adds, concatenations and
  depthwise convolutions are per channel, and every layer that mixes
  channels is masked);
* a centre mask keeps the central `k x k` of a `K x K` kernel, which with
  `padding="same"`, no dilation and strides at most `k` computes what a
  static `k x k` convolution with those weights computes.

The layers read their widths and kernel size from their variables (what
`evaluate`, `predict` and saved models use), or from per-step tensors set by
`OFASupernet.train_step` (`_ofa_override`), so a traced training step samples
subnets in-graph. Layer configs carry the masks' layout (`ofa_elastic`), so a
supernet saves, reloads and copies itself without any other state.

This is the only tf_keras-specific module of elastic widths besides
`tf_keras_supernet.py`; a Keras 3 port adds its own pair.
"""

import json

import numpy as np
import tensorflow as tf
import tf_keras

_INT_MAX = np.iinfo(np.int32).max


def _in_positions(runs):
    """(slot, channel) int32 arrays of a masked axis from runs `[[slot, start, length], ...]`."""
    slots, channels = [], []
    for slot, start, length in runs:
        slots.append(np.full(length, slot, dtype=np.int32))
        channels.append(np.arange(start, start + length, dtype=np.int32))
    if not slots:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    return np.concatenate(slots), np.concatenate(channels)


class ElasticMixin:
    """Shared masks of the elastic layers.

    The `ofa_elastic` config entry holds:

    * `groups`: the global index of each elastic group this layer's input
      carries (its *slots*);
    * `widths`: the full width of each of those groups;
    * `in_runs`: the layout of the masked input axis, as runs
      `[slot, first channel, length]` (slot -1: a channel that is not elastic);
    * `kernel_index`, `kernel_sizes`: the layer's index among elastic-kernel
      layers and its allowed kernel sizes (the largest is the layer's own),
      or None.
    """

    def _init_elastic(self, ofa_elastic):
        spec = dict(ofa_elastic or {})
        spec.setdefault("groups", [])
        spec.setdefault("widths", [])
        spec.setdefault("in_runs", None)
        spec.setdefault("kernel_index", None)
        spec.setdefault("kernel_sizes", None)
        # Plain data, kept out of Keras's attribute tracking (which would wrap its lists).
        object.__setattr__(self, "_ofa_spec", json.loads(json.dumps(spec)))
        self.set_override(None)
        slots, channels = _in_positions(spec["in_runs"] or [])
        self._ofa_slots = np.where(slots < 0, len(spec["groups"]), slots).astype(np.int32)
        self._ofa_channels = channels

    def _build_elastic(self):
        spec = self._ofa_spec
        self.ofa_widths = None
        self.ofa_kernel = None
        if spec["groups"]:
            self.ofa_widths = self.add_weight(
                name="ofa_widths", shape=(len(spec["groups"]),), dtype="int32",
                initializer=tf_keras.initializers.Constant(spec["widths"]), trainable=False)
        if spec["kernel_sizes"]:
            self.ofa_kernel = self.add_weight(
                name="ofa_kernel", shape=(), dtype="int32",
                initializer=tf_keras.initializers.Constant(max(spec["kernel_sizes"])),
                trainable=False)

    @property
    def elastic_groups(self):
        """Global indices of the elastic groups this layer's input carries."""
        return list(self._ofa_spec["groups"])

    @property
    def elastic_kernel_index(self):
        """This layer's index among elastic-kernel layers, or None."""
        return self._ofa_spec["kernel_index"] if self._ofa_spec["kernel_sizes"] else None

    def set_active(self, widths, kernels):
        """Assigns this layer's variables from global width and kernel-size vectors."""
        if self.ofa_widths is not None:
            self.ofa_widths.assign(tf.gather(tf.constant(widths, tf.int32),
                                             self._ofa_spec["groups"]))
        if self.ofa_kernel is not None:
            self.ofa_kernel.assign(int(kernels[self._ofa_spec["kernel_index"]]))

    def set_override(self, override):
        """Makes `call` read `(widths, kernels)` tensors instead of the variables (None: stop).

        Used while tracing a training step, so each sampled subnet's widths and
        kernel sizes are tensors of the step, not assignments to variables.
        """
        object.__setattr__(self, "_ofa_override", override)

    def _active_widths(self):
        if self._ofa_override is not None:
            return tf.gather(self._ofa_override[0], self._ofa_spec["groups"])
        return tf.convert_to_tensor(self.ofa_widths)

    def _active_kernel(self):
        if self._ofa_override is not None:
            return self._ofa_override[1][self._ofa_spec["kernel_index"]]
        return tf.convert_to_tensor(self.ofa_kernel)

    def _input_mask(self, dtype):
        """1 for input positions within their group's active width, 0 beyond."""
        widths = tf.concat([self._active_widths(), [_INT_MAX]], axis=0)
        limit = tf.gather(widths, tf.constant(self._ofa_slots))
        return tf.cast(tf.constant(self._ofa_channels) < limit, dtype)

    def _centre_mask(self, size, rank, dtype):
        """The `rank`-D mask keeping the central `k` of `size` positions per axis."""
        half = (self._active_kernel() - 1) // 2
        offsets = tf.abs(tf.range(size, dtype=tf.int32) - (size - 1) // 2)
        line = tf.cast(offsets <= half, dtype)
        mask = line
        for _ in range(rank - 1):
            mask = mask[..., None] * line
        return mask

    def elastic_kernel(self, kernel, in_axis=None, spatial_rank=0):
        """`kernel` with the input mask on `in_axis` and the centre mask on its first axes.

        Args:
          kernel: The kernel tensor (in the compute dtype).
          in_axis: The axis holding input channels, or None to leave them.
          spatial_rank: Number of leading spatial axes, for the centre mask.
        """
        ndim = kernel.shape.rank
        if in_axis is not None and self._ofa_spec["groups"]:
            shape = [1] * ndim
            shape[in_axis] = -1
            kernel = kernel * tf.reshape(self._input_mask(kernel.dtype), shape)
        if self._ofa_spec["kernel_sizes"] and spatial_rank:
            mask = self._centre_mask(kernel.shape[0], spatial_rank, kernel.dtype)
            kernel = kernel * tf.reshape(mask, list(mask.shape) + [1] * (ndim - spatial_rank))
        return kernel

    def _with_elastic_config(self, config):
        config = dict(config)
        config["ofa_elastic"] = json.loads(json.dumps(self._ofa_spec))
        return config


def _register(cls):
    return tf_keras.saving.register_keras_serializable(package="vai_optimizer_tf")(cls)


def _elastic_conv(base):
    """The elastic subclass of a tf_keras `Conv1D`/`Conv2D`/`Conv3D`."""

    class ElasticConv(ElasticMixin, base):
        __doc__ = (f"A `{base.__name__}` whose input channels and kernel size are elastic "
                   "(see `vai_optimizer_tf.ofa.tf_keras_elastic`).")

        def __init__(self, *args, ofa_elastic=None, **kwargs):
            super().__init__(*args, **kwargs)
            self._init_elastic(ofa_elastic)

        def build(self, input_shape):
            super().build(input_shape)
            self._build_elastic()

        def convolution_op(self, inputs, kernel):
            kernel = self.elastic_kernel(tf.convert_to_tensor(kernel), in_axis=-2,
                                         spatial_rank=self.rank)
            return super().convolution_op(inputs, kernel)

        def get_config(self):
            return self._with_elastic_config(super().get_config())

    ElasticConv.__name__ = ElasticConv.__qualname__ = f"Elastic{base.__name__}"
    return _register(ElasticConv)


ElasticConv1D = _elastic_conv(tf_keras.layers.Conv1D)
ElasticConv2D = _elastic_conv(tf_keras.layers.Conv2D)
ElasticConv3D = _elastic_conv(tf_keras.layers.Conv3D)


@_register
class ElasticDense(ElasticMixin, tf_keras.layers.Dense):
    """A `Dense` whose input channels are elastic."""

    def __init__(self, *args, ofa_elastic=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_elastic(ofa_elastic)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_elastic()

    def call(self, inputs):
        if inputs.dtype.base_dtype != self._compute_dtype_object.base_dtype:
            inputs = tf.cast(inputs, self._compute_dtype_object)
        kernel = self.elastic_kernel(tf.convert_to_tensor(self.kernel), in_axis=0)
        rank = inputs.shape.rank
        if rank == 2:
            outputs = tf.matmul(inputs, kernel)
        else:
            outputs = tf.tensordot(inputs, kernel, [[rank - 1], [0]])
            outputs.set_shape(inputs.shape[:-1].concatenate([self.units]))
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        return self._with_elastic_config(super().get_config())


@_register
class ElasticDepthwiseConv2D(ElasticMixin, tf_keras.layers.DepthwiseConv2D):
    """A `DepthwiseConv2D` whose kernel size is elastic (its channels follow its input's)."""

    def __init__(self, *args, ofa_elastic=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_elastic(ofa_elastic)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_elastic()

    def call(self, inputs):
        kernel = self.elastic_kernel(tf.convert_to_tensor(self.depthwise_kernel),
                                     spatial_rank=2)
        outputs = tf_keras.backend.depthwise_conv2d(
            inputs, kernel, strides=self.strides, padding=self.padding,
            dilation_rate=self.dilation_rate, data_format=self.data_format)
        if self.use_bias:
            outputs = tf_keras.backend.bias_add(outputs, self.bias, data_format=self.data_format)
        if self.activation is not None:
            return self.activation(outputs)
        return outputs

    def get_config(self):
        return self._with_elastic_config(super().get_config())


@_register
class ElasticSeparableConv2D(ElasticMixin, tf_keras.layers.SeparableConv2D):
    """A `SeparableConv2D` whose input channels (pointwise) and kernel size are elastic."""

    def __init__(self, *args, ofa_elastic=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_elastic(ofa_elastic)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_elastic()

    def call(self, inputs):
        depthwise = self.elastic_kernel(tf.convert_to_tensor(self.depthwise_kernel),
                                        spatial_rank=2)
        pointwise = self.elastic_kernel(tf.convert_to_tensor(self.pointwise_kernel),
                                        in_axis=-2)
        outputs = tf.nn.separable_conv2d(
            inputs, depthwise, pointwise, strides=(1,) + tuple(self.strides) + (1,),
            padding=self.padding.upper(), dilations=self.dilation_rate, data_format="NHWC")
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias, data_format="NHWC")
        if self.activation is not None:
            return self.activation(outputs)
        return outputs

    def get_config(self):
        return self._with_elastic_config(super().get_config())


# Exact class -> its elastic subclass. Subclasses of these (a user's Conv2D with
# its own `call`) are not listed: their computation is unknown.
ELASTIC_CLASSES = {
    tf_keras.layers.Conv1D: ElasticConv1D,
    tf_keras.layers.Conv2D: ElasticConv2D,
    tf_keras.layers.Conv3D: ElasticConv3D,
    tf_keras.layers.Dense: ElasticDense,
    tf_keras.layers.DepthwiseConv2D: ElasticDepthwiseConv2D,
    tf_keras.layers.SeparableConv2D: ElasticSeparableConv2D,
}
# The weight whose input axis the elastic class masks (DepthwiseConv2D only carries channels).
MASKED_WEIGHT = {
    tf_keras.layers.Conv1D: "kernel", tf_keras.layers.Conv2D: "kernel",
    tf_keras.layers.Conv3D: "kernel", tf_keras.layers.Dense: "kernel",
    tf_keras.layers.SeparableConv2D: "pointwise_kernel",
}
STATIC_CLASSES = {elastic.__name__: base for base, elastic in ELASTIC_CLASSES.items()}


def elastic_class(layer_class):
    """The elastic subclass replacing `layer_class`, or None if it has none."""
    return ELASTIC_CLASSES.get(layer_class)


def masked_weight(layer_class):
    """The weight whose input channels the elastic version of `layer_class` masks, or None."""
    return MASKED_WEIGHT.get(layer_class)


def elastic_layers(model):
    """Every elastic layer of a tf_keras model, nested models included, each once."""
    seen, out = set(), []

    def walk(m):
        for layer in m.layers:
            if isinstance(layer, tf_keras.Model):
                walk(layer)
            elif isinstance(layer, ElasticMixin) and id(layer) not in seen:
                seen.add(id(layer))
                out.append(layer)
    walk(model)
    return out


def set_active(model, widths, kernels):
    """Sets every elastic layer of `model` to global width and kernel-size vectors."""
    for layer in elastic_layers(model):
        layer.set_active(widths, kernels)


def custom_objects():
    """Name -> class of every elastic layer."""
    objects = {}
    for cls in ELASTIC_CLASSES.values():
        objects[cls.__name__] = cls
        objects[tf_keras.saving.get_registered_name(cls)] = cls
    return objects
