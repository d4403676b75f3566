"""Elastic Keras 3 layers: Conv, Dense, DepthwiseConv2D and SeparableConv2D of any width.

The Keras 3 twins of `tf_keras_elastic.py`: each class is the Keras 3 layer
it replaces in a supernet plus `ElasticMixin` (`elastic_mixin.py`, which
explains the masks). Keras 3 runs on its TensorFlow backend here, so the
masked kernels are TensorFlow tensors and `keras.ops` computes the rest as
the base layers do. `LAYERS` is the flavour's `ElasticLayerSet`.
"""

import keras
from keras import ops

from vai_optimizer_tf.ofa.elastic_layer_set import ElasticLayerSet
from vai_optimizer_tf.ofa.elastic_mixin import ElasticMixin


def _register(cls):
    return keras.saving.register_keras_serializable(package="vai_optimizer_tf")(cls)


class _ElasticLayer(ElasticMixin):
    """Saving, and the bias and activation, of every elastic Keras 3 layer."""

    # Keras 3's Conv and Dense save only their kernel and bias (for their
    # quantized modes); elastic layers save and load every variable, in order.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def _finish(self, outputs):
        """Adds the bias and applies the activation, as the base layers do."""
        if self.bias is not None:
            bias = self.bias
            if getattr(self, "data_format", "channels_last") == "channels_first":
                bias = ops.reshape(bias, (1, -1) + (1,) * (len(outputs.shape) - 2))
            outputs = ops.add(outputs, bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


def _elastic_conv(base):
    """The elastic subclass of a Keras 3 `Conv1D`/`Conv2D`/`Conv3D`."""

    class ElasticConv(_ElasticLayer, base):
        __doc__ = (f"A `{base.__name__}` whose input channels and kernel size are elastic "
                   "(see `vai_optimizer_tf.ofa.elastic_mixin`).")

        # Not `convolution_op`: Keras 3's Conv1D does not call it.
        def call(self, inputs):
            padding = self.padding
            if padding == "causal":
                inputs = ops.pad(inputs, self._compute_causal_padding())
                padding = "valid"
            outputs = ops.conv(
                inputs, self.elastic_kernel(self.kernel, in_axis=-2, spatial_rank=self.rank),
                strides=list(self.strides), padding=padding, dilation_rate=self.dilation_rate,
                data_format=self.data_format)
            return self._finish(outputs)

    ElasticConv.__name__ = ElasticConv.__qualname__ = f"Elastic{base.__name__}"
    return _register(ElasticConv)


ElasticConv1D = _elastic_conv(keras.layers.Conv1D)
ElasticConv2D = _elastic_conv(keras.layers.Conv2D)
ElasticConv3D = _elastic_conv(keras.layers.Conv3D)


@_register
class ElasticDense(_ElasticLayer, keras.layers.Dense):
    """A Keras 3 `Dense` whose input channels are elastic."""

    def call(self, inputs, training=None):
        return self._finish(ops.matmul(inputs, self.elastic_kernel(self.kernel, in_axis=0)))


@_register
class ElasticDepthwiseConv2D(_ElasticLayer, keras.layers.DepthwiseConv2D):
    """A Keras 3 `DepthwiseConv2D` whose kernel size is elastic (its channels follow its input's)."""

    masked_weight_name = None

    def call(self, inputs):
        outputs = ops.depthwise_conv(
            inputs, self.elastic_kernel(self.kernel, spatial_rank=2), strides=self.strides,
            padding=self.padding, dilation_rate=self.dilation_rate, data_format=self.data_format)
        return self._finish(outputs)


@_register
class ElasticSeparableConv2D(_ElasticLayer, keras.layers.SeparableConv2D):
    """A Keras 3 `SeparableConv2D` whose input channels (pointwise) and kernel size are elastic."""

    masked_weight_name = "pointwise_kernel"

    def call(self, inputs):
        outputs = ops.separable_conv(
            inputs, self.elastic_kernel(self.depthwise_kernel, spatial_rank=2),
            self.elastic_kernel(self.pointwise_kernel, in_axis=-2), strides=self.strides,
            padding=self.padding, dilation_rate=self.dilation_rate, data_format=self.data_format)
        return self._finish(outputs)


LAYERS = ElasticLayerSet(keras, [ElasticConv1D, ElasticConv2D, ElasticConv3D, ElasticDense,
                                 ElasticDepthwiseConv2D, ElasticSeparableConv2D])
