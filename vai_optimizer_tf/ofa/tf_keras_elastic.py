"""Elastic tf_keras layers: Conv, Dense, DepthwiseConv2D and SeparableConv2D of any width.

Each class is the tf_keras layer it replaces in a supernet plus
`ElasticMixin` (`elastic_mixin.py`, which explains the masks): its `call`
masks the kernel, then computes what the base layer computes. `LAYERS` is
the flavour's `ElasticLayerSet`. The Keras 3 twins are in `keras3_elastic.py`.
"""

import tensorflow as tf
import tf_keras

from vai_optimizer_tf.ofa.elastic_layer_set import ElasticLayerSet
from vai_optimizer_tf.ofa.elastic_mixin import ElasticMixin


def _register(cls):
    return tf_keras.saving.register_keras_serializable(package="vai_optimizer_tf")(cls)


def _elastic_conv(base):
    """The elastic subclass of a tf_keras `Conv1D`/`Conv2D`/`Conv3D`."""

    class ElasticConv(ElasticMixin, base):
        __doc__ = (f"A `{base.__name__}` whose input channels and kernel size are elastic "
                   "(see `vai_optimizer_tf.ofa.elastic_mixin`).")

        def convolution_op(self, inputs, kernel):
            kernel = self.elastic_kernel(kernel, in_axis=-2, spatial_rank=self.rank)
            return super().convolution_op(inputs, kernel)

    ElasticConv.__name__ = ElasticConv.__qualname__ = f"Elastic{base.__name__}"
    return _register(ElasticConv)


ElasticConv1D = _elastic_conv(tf_keras.layers.Conv1D)
ElasticConv2D = _elastic_conv(tf_keras.layers.Conv2D)
ElasticConv3D = _elastic_conv(tf_keras.layers.Conv3D)


@_register
class ElasticDense(ElasticMixin, tf_keras.layers.Dense):
    """A `Dense` whose input channels are elastic."""

    def call(self, inputs):
        if inputs.dtype.base_dtype != self._compute_dtype_object.base_dtype:
            inputs = tf.cast(inputs, self._compute_dtype_object)
        kernel = self.elastic_kernel(self.kernel, in_axis=0)
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


@_register
class ElasticDepthwiseConv2D(ElasticMixin, tf_keras.layers.DepthwiseConv2D):
    """A `DepthwiseConv2D` whose kernel size is elastic (its channels follow its input's)."""

    masked_weight_name = None

    def call(self, inputs):
        kernel = self.elastic_kernel(self.depthwise_kernel, spatial_rank=2)
        outputs = tf_keras.backend.depthwise_conv2d(
            inputs, kernel, strides=self.strides, padding=self.padding,
            dilation_rate=self.dilation_rate, data_format=self.data_format)
        if self.use_bias:
            outputs = tf_keras.backend.bias_add(outputs, self.bias, data_format=self.data_format)
        if self.activation is not None:
            return self.activation(outputs)
        return outputs


@_register
class ElasticSeparableConv2D(ElasticMixin, tf_keras.layers.SeparableConv2D):
    """A `SeparableConv2D` whose input channels (pointwise) and kernel size are elastic."""

    masked_weight_name = "pointwise_kernel"

    def call(self, inputs):
        depthwise = self.elastic_kernel(self.depthwise_kernel, spatial_rank=2)
        pointwise = self.elastic_kernel(self.pointwise_kernel, in_axis=-2)
        outputs = tf.nn.separable_conv2d(
            inputs, depthwise, pointwise, strides=(1,) + tuple(self.strides) + (1,),
            padding=self.padding.upper(), dilations=self.dilation_rate, data_format="NHWC")
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias, data_format="NHWC")
        if self.activation is not None:
            return self.activation(outputs)
        return outputs


LAYERS = ElasticLayerSet(tf_keras, [ElasticConv1D, ElasticConv2D, ElasticConv3D, ElasticDense,
                                    ElasticDepthwiseConv2D, ElasticSeparableConv2D])
