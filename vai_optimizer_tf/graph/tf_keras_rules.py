"""The tf_keras layer classes, each mapped to its rule in the registry.

One entry per class; the rules themselves are flavour-neutral and live in
`layer_rules.py` and `op_rules.py`. Classes are looked up through the MRO, so
`Conv` covers Conv1D/2D/3D and `Dropout` the SpatialDropout layers.

With `tf_keras_adapter.py`, this is the only module that imports `tf_keras`
internals (`tf_keras.src`): the private base class `Conv`, the op-layer
classes tf_keras creates for `tf.*` calls on Keras tensors, and the layers
private to `tf_keras.applications` models (ConvNeXt's `LayerScale`,
InceptionResNetV2's `CustomScaleLayer`), which the public API does not export.
"""

from tf_keras import layers
from tf_keras.src.applications.convnext import LayerScale
from tf_keras.src.applications.inception_resnet_v2 import CustomScaleLayer
from tf_keras.src.layers.convolutional.base_conv import Conv
from tf_keras.src.layers.core.tf_op_layer import SlicingOpLambda, TFOpLambda

from vai_optimizer_tf.graph import layer_rules as rules
from vai_optimizer_tf.graph import op_rules
from vai_optimizer_tf.graph.registry import REGISTRY

L = layers

ENTRIES = {
    # Producers
    Conv: rules.conv,
    L.Conv1DTranspose: rules.CONV_TRANSPOSE,
    L.Conv2DTranspose: rules.CONV_TRANSPOSE,
    L.Conv3DTranspose: rules.CONV_TRANSPOSE,
    L.SeparableConv1D: rules.separable,
    L.SeparableConv2D: rules.separable,
    L.DepthwiseConv1D: rules.DEPTHWISE,
    L.DepthwiseConv2D: rules.DEPTHWISE,
    L.Dense: rules.dense,
    L.Embedding: rules.EMBEDDING,
    # Normalization
    L.BatchNormalization: rules.batch_norm,
    L.LayerNormalization: rules.layer_norm,
    L.GroupNormalization: rules.group_norm,
    # Activations
    L.Activation: rules.activation,
    L.ReLU: rules.RELU,
    L.ThresholdedReLU: rules.THRESHOLDED_RELU,
    # Normalization, activations, regularization, pooling, shape and merging
    # layers both flavours have, counted alike
    **rules.shared_entries(L),
    # Wrappers
    L.TimeDistributed: rules.time_distributed(REGISTRY),
    # Layers private to tf_keras.applications models
    LayerScale: rules.LAYER_SCALE,
    CustomScaleLayer: rules.SCALED_ADD,
    # tf.* functions called on Keras tensors
    TFOpLambda: op_rules.tf_op,
    SlicingOpLambda: op_rules.slicing_op,
}

for _cls, _entry in ENTRIES.items():
    REGISTRY.register(_cls, _entry)
