"""The Keras 3 layer and op classes, each mapped to its rule in the registry.

One entry per class; the rules are the flavour-neutral ones of
`layer_rules.py` and `op_rules.py`, shared with tf_keras (`tf_keras_rules.py`).
Three things differ in Keras 3 and are stated here:

* weight names: a `DepthwiseConv*D` kernel is `kernel` (tf_keras:
  `depthwise_kernel`), and ConvNeXt's `LayerScale` weight is `variable`;
* FLOPs: Keras 3 computes some layers with other TF ops than tf_keras
  (BatchNormalization is never the fused kernel, for one), so their formulas
  are the ones TensorFlow's profiler counts for Keras 3
  (tests/test_stat_profiler.py checks every class registered here);
* `keras.ops` calls on Keras tensors (`x + y`, `keras.ops.relu(x)`) are
  operations of op classes, mapped to the function of `op_rules.py` they
  compute.

With `keras3_adapter.py` and `keras3_calibration.py`, this is the only module
that imports Keras 3 internals (`keras.src`): the op classes and the layers
private to `keras.applications` models.
"""

from keras import layers
from keras.src.applications.convnext import LayerScale
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
from keras.src.ops import core as core_ops
from keras.src.ops import math as math_ops
from keras.src.ops import nn as nn_ops
from keras.src.ops import numpy as numpy_ops

from vai_optimizer_tf.graph import layer_rules as rules
from vai_optimizer_tf.graph import op_rules
from vai_optimizer_tf.graph.registry import REGISTRY, LayerSpec
from vai_optimizer_tf.stats import formulas

L = layers


def _with_flops(rule, flops):
    """`rule`, with the FLOPs formula of Keras 3's implementation of the layer."""
    def keras3_rule(node):
        spec = rule(node) if callable(rule) else rule
        return spec.replace(flops=flops)
    keras3_rule.__name__ = getattr(rule, "__name__", "rule")
    return keras3_rule


def _with_activations(rule):
    """`rule`, counting the layer's activation as Keras 3 computes it."""
    def keras3_rule(node):
        spec = rule(node) if callable(rule) else rule
        if spec.flops is None:
            return spec
        return spec.replace(flops=formulas.with_activation_flops(
            spec.flops, formulas.KERAS3_ACTIVATION_FLOPS))
    keras3_rule.__name__ = getattr(rule, "__name__", "rule")
    return keras3_rule


def _gelu_op(node):
    """`ops.gelu` is the tanh approximation unless `approximate=False`."""
    per_element = 7 if node.config.get("approximate", True) else None
    return op_rules.function_spec(node, "nn.gelu", _where(node), per_element)


# Producers ---------------------------------------------------------------------

_DEPTHWISE = rules.DEPTHWISE.replace(in_axes={"kernel": -2})

LAYER_ENTRIES = {
    L.Conv1D: _with_activations(rules.conv),
    L.Conv2D: _with_activations(rules.conv),
    L.Conv3D: _with_activations(rules.conv),
    L.Conv1DTranspose: _with_activations(rules.CONV_TRANSPOSE),
    L.Conv2DTranspose: _with_activations(rules.CONV_TRANSPOSE),
    L.Conv3DTranspose: _with_activations(rules.CONV_TRANSPOSE),
    L.SeparableConv1D: _with_activations(rules.separable),
    L.SeparableConv2D: _with_activations(rules.separable),
    L.DepthwiseConv1D: _with_activations(_DEPTHWISE),
    L.DepthwiseConv2D: _with_activations(_DEPTHWISE),
    L.Dense: _with_activations(rules.dense),
    # Keras 3 checks every index (`indices < 0`) before gathering.
    L.Embedding: rules.EMBEDDING.replace(flops=formulas.per_input_element),
    # Normalization: Keras 3 never runs the fused kernels.
    L.BatchNormalization: _with_flops(rules.batch_norm, formulas.batch_norm_unfused),
    L.LayerNormalization: _with_flops(rules.layer_norm, formulas.layer_norm_moments),
    L.GroupNormalization: _with_flops(rules.group_norm, formulas.group_norm_moments),
    # Activations
    L.Activation: _with_activations(rules.activation),
    L.ReLU: rules.RELU.replace(flops=formulas.relu_where_threshold),
    # Normalization, activations, regularization, pooling, shape and merging
    # layers both flavours have, counted alike
    **rules.shared_entries(L),
    # Wrappers
    # Keras 3 calls the wrapped layer once per time step.
    L.TimeDistributed: rules.time_distributed(REGISTRY, per_call_once=False),
    # Layers private to keras.applications models
    LayerScale: rules.LAYER_SCALE.replace(out_axes={"variable": 0}),
    CustomScaleLayer: rules.SCALED_ADD,
}


# keras.ops calls -----------------------------------------------------------------

# Op class -> (the function of op_rules' tables it computes, FLOPs per element
# of Keras 3's TensorFlow implementation, or None when the table's count holds).
OP_FUNCTIONS = {
    numpy_ops.Add: ("math.add", None),
    numpy_ops.Subtract: ("math.subtract", None),
    numpy_ops.Multiply: ("math.multiply", None),
    numpy_ops.Maximum: ("math.maximum", None),
    numpy_ops.Minimum: ("math.minimum", None),
    numpy_ops.Divide: ("math.truediv", None),
    numpy_ops.TrueDivide: ("math.truediv", None),
    numpy_ops.DivideNoNan: ("math.divide_no_nan", None),
    numpy_ops.Power: ("math.pow", None),
    numpy_ops.FloorDivide: ("compat.v1.floor_div", None),
    numpy_ops.Mod: ("math.floormod", None),
    numpy_ops.Absolute: ("math.abs", None),  # and its subclass Abs
    numpy_ops.Negative: ("math.negative", None),
    numpy_ops.Square: ("math.square", None),
    numpy_ops.Exp: ("math.exp", None),
    numpy_ops.Tanh: ("math.tanh", None),
    numpy_ops.Sin: ("math.sin", None),
    numpy_ops.Cos: ("math.cos", None),
    numpy_ops.Round: ("math.round", None),
    numpy_ops.Floor: ("math.floor", None),
    numpy_ops.Ceil: ("math.ceil", None),
    numpy_ops.Sign: ("math.sign", None),
    numpy_ops.Clip: ("clip_by_value", None),
    numpy_ops.Log: ("math.log", None),
    numpy_ops.Sqrt: ("math.sqrt", None),
    numpy_ops.Reciprocal: ("math.reciprocal", None),
    nn_ops.Relu: ("nn.relu", None),
    nn_ops.Relu6: ("nn.relu6", None),
    nn_ops.Sigmoid: ("math.sigmoid", None),
    nn_ops.Silu: ("nn.silu", None),
    nn_ops.Elu: ("nn.elu", None),
    nn_ops.Selu: ("nn.selu", None),
    nn_ops.LeakyRelu: ("nn.leaky_relu", None),
    nn_ops.Softplus: ("math.softplus", None),
    nn_ops.Softsign: ("nn.softsign", None),
    nn_ops.LogSigmoid: ("math.log_sigmoid", None),
    math_ops.Erf: ("math.erf", None),
    math_ops.Rsqrt: ("math.rsqrt", None),
    core_ops.Cast: ("cast", None),
    core_ops.StopGradient: ("stop_gradient", None),
}


def _where(node):
    return f"keras.ops call {node.layer_path!r} ({node.class_name})"


def _function_rule(function, per_element):
    def rule(node):
        return op_rules.function_spec(node, function, _where(node), per_element)
    rule.__name__ = function.replace(".", "_")
    return rule


def _rewrite_newshape(config, ctx):
    """`ops.reshape(x, (-1, n))` keeps flattening: `n` becomes the slim feature count."""
    config = dict(config)
    config["newshape"] = [-1, ctx.out_width]
    return config


def _reshape_op(node):
    return op_rules.reshape_spec(node, _where(node), node.config.get("newshape") or [],
                                 rewrite=_rewrite_newshape)


def _reduction(flops):
    def rule(node):
        return op_rules.reduction_spec(node, _where(node), node.config.get("axis"),
                                       bool(node.config.get("keepdims", False)), flops)
    return rule


OP_ENTRIES = {cls: _function_rule(function, count)
              for cls, (function, count) in OP_FUNCTIONS.items()}
OP_ENTRIES.update({
    numpy_ops.Concatenate: rules.concatenate,
    numpy_ops.Reshape: _reshape_op,
    numpy_ops.Mean: _reduction(formulas.reduce_mean),
    numpy_ops.Sum: _reduction(formulas.reduce_sum),
    numpy_ops.Max: _reduction(formulas.zero),
    numpy_ops.Min: _reduction(formulas.zero),
    numpy_ops.GetItem: op_rules.slicing_op,
    nn_ops.Softmax: rules.softmax,
    nn_ops.Gelu: _gelu_op,
})

ENTRIES = {**LAYER_ENTRIES, **OP_ENTRIES}

for _cls, _entry in ENTRIES.items():
    REGISTRY.register(_cls, _entry)
