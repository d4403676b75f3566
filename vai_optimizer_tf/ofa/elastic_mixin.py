"""`ElasticMixin`: the masks of elastic layers, shared by both Keras flavours.

An elastic layer (`tf_keras_elastic.py`, `keras3_elastic.py`) is a subclass
of the layer it replaces in a supernet, with the same weights plus
non-trainable `ofa_widths` (one width per elastic channel group its input
carries) and `ofa_kernel` (its active kernel size). Inside `call` its kernel
is multiplied by masks derived from them:

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
the supernet's `train_step` (`set_override`), so a traced training step
samples subnets in-graph. Layer configs carry the masks' layout
(`ofa_elastic`), so a supernet saves, reloads and copies itself without any
other state.

Both flavours run on TensorFlow, so the masks are TensorFlow ops; only the
layer classes differ.
"""

import json

import numpy as np
import tensorflow as tf

_INT_MAX = np.iinfo(np.int32).max


def in_positions(runs):
    """(slot, channel) int32 arrays of a masked axis from runs `[[slot, start, length], ...]`."""
    slots, channels = [], []
    for slot, start, length in runs:
        slots.append(np.full(length, slot, dtype=np.int32))
        channels.append(np.arange(start, start + length, dtype=np.int32))
    if not slots:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    return np.concatenate(slots), np.concatenate(channels)


def _constant(values):
    """An initializer returning `values` (a plain callable: both flavours accept one)."""
    def initializer(shape, dtype=None):
        return tf.constant(values, dtype=dtype or tf.int32, shape=shape)
    return initializer


class ElasticMixin:
    """Shared masks of the elastic layers of both flavours.

    The `ofa_elastic` config entry holds:

    * `groups`: the global index of each elastic group this layer's input
      carries (its *slots*);
    * `widths`: the full width of each of those groups;
    * `in_runs`: the layout of the masked input axis, as runs
      `[slot, first channel, length]` (slot -1: a channel that is not elastic);
    * `kernel_index`, `kernel_sizes`: the layer's index among elastic-kernel
      layers and its allowed kernel sizes (the largest is the layer's own),
      or None.

    An elastic class lists the mixin before the Keras layer it extends
    (`class ElasticDense(ElasticMixin, keras.layers.Dense)`), masks its
    kernels with `elastic_kernel` in `call`, and sets `masked_weight_name`
    to the weight whose input channels it masks (None: it masks none).
    """

    masked_weight_name = "kernel"

    def __init__(self, *args, ofa_elastic=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_elastic(ofa_elastic)

    def build(self, input_shape):
        super().build(input_shape)
        self._build_elastic()

    def get_config(self):
        return self._with_elastic_config(super().get_config())

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
        slots, channels = in_positions(spec["in_runs"] or [])
        object.__setattr__(self, "_ofa_slots", np.where(
            slots < 0, len(spec["groups"]), slots).astype(np.int32))
        object.__setattr__(self, "_ofa_channels", channels)

    def _build_elastic(self):
        spec = self._ofa_spec
        self.ofa_widths = None
        self.ofa_kernel = None
        if spec["groups"]:
            self.ofa_widths = self.add_weight(
                name="ofa_widths", shape=(len(spec["groups"]),), dtype="int32",
                initializer=_constant(spec["widths"]), trainable=False)
        if spec["kernel_sizes"]:
            self.ofa_kernel = self.add_weight(
                name="ofa_kernel", shape=(), dtype="int32",
                initializer=_constant(max(spec["kernel_sizes"])), trainable=False)

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
          kernel: The kernel (a variable or tensor, read in the compute dtype).
          in_axis: The axis holding input channels, or None to leave them.
          spatial_rank: Number of leading spatial axes, for the centre mask.

        Returns:
          The masked kernel, a tensor.
        """
        kernel = tf.convert_to_tensor(kernel)
        ndim = len(kernel.shape)
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
