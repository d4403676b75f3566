"""Registry entries for tf_keras layers: one declaration per layer class.

Entries for config-dependent layers are small functions `node -> LayerSpec`.
Classes are looked up through the MRO, so `Conv` covers Conv1D/2D/3D and
`Pooling2D` every 2D pooling layer.
"""

import math

import numpy as np
from tf_keras import layers
from tf_keras.src.layers.core import tf_op_layer

from vai_optimizer_tf.graph.registry import REGISTRY, LayerSpec, Role, Axis
from vai_optimizer_tf.stats import formulas

_SOFTMAX_ACTIVATIONS = ("softmax", "log_softmax")


def _activation_name(config):
    act = config.get("activation")
    if isinstance(act, dict):
        act = act.get("config", {}).get("name", act.get("class_name"))
    return act


def _fixed_if_softmax(spec, node):
    if _activation_name(node.config) in _SOFTMAX_ACTIVATIONS:
        return spec.replace(fixed_output=(
            f"layer {node.layer_path!r} applies a softmax across its outputs, which "
            "mixes channels"))
    return spec


# Producers -------------------------------------------------------------------

_CONV = LayerSpec(Role.PRODUCER, in_axes={"kernel": -2}, out_axes={"kernel": -1, "bias": 0},
                  width_key="filters", flops=formulas.conv)


def _conv(node):
    groups = int(node.config.get("groups", 1) or 1)
    if groups > 1:
        return LayerSpec.barrier(
            f"grouped convolution {node.layer_path!r} (groups={groups}), whose channels "
            "must shrink per group, which is not supported").replace(flops=formulas.conv)
    return _fixed_if_softmax(_CONV, node)


_CONV_TRANSPOSE = LayerSpec(Role.PRODUCER, in_axes={"kernel": -1},
                            out_axes={"kernel": -2, "bias": 0}, width_key="filters",
                            flops=formulas.conv_transpose)
_DENSE = LayerSpec(Role.PRODUCER, in_axes={"kernel": 0}, out_axes={"kernel": 1, "bias": 0},
                   width_key="units", flops=formulas.dense)
_SEPARABLE = LayerSpec(
    Role.PRODUCER,
    in_axes={"depthwise_kernel": -2, "pointwise_kernel": Axis(-2, "depth_multiplier")},
    out_axes={"pointwise_kernel": -1, "bias": 0}, width_key="filters",
    flops=formulas.separable)
_DEPTHWISE = LayerSpec(Role.PASSTHROUGH, in_axes={"depthwise_kernel": -2},
                       out_axes={"bias": 0}, expand_key="depth_multiplier",
                       flops=formulas.depthwise)
_EMBEDDING = LayerSpec(Role.PRODUCER, out_axes={"embeddings": 1}, width_key="output_dim")

REGISTRY.register(layers.Conv1D.__mro__[1], _conv)  # the shared `Conv` base class
REGISTRY.register(layers.Conv1DTranspose, _CONV_TRANSPOSE)
REGISTRY.register(layers.Conv2DTranspose, _CONV_TRANSPOSE)
REGISTRY.register(layers.Conv3DTranspose, _CONV_TRANSPOSE)
REGISTRY.register(layers.SeparableConv1D, lambda n: _fixed_if_softmax(_SEPARABLE, n))
REGISTRY.register(layers.SeparableConv2D, lambda n: _fixed_if_softmax(_SEPARABLE, n))
REGISTRY.register(layers.DepthwiseConv1D, _DEPTHWISE)
REGISTRY.register(layers.DepthwiseConv2D, _DEPTHWISE)
REGISTRY.register(layers.Dense, lambda n: _fixed_if_softmax(_DENSE, n))
REGISTRY.register(layers.Embedding, _EMBEDDING)


# Normalization -----------------------------------------------------------------

def _axes(config_axis):
    return list(config_axis) if isinstance(config_axis, (list, tuple)) else [config_axis]


def _covers_channel_axis(node, config_axis, rank):
    return any(a % rank == rank - 1 for a in _axes(config_axis))


_BN_WEIGHTS = {"gamma": 0, "beta": 0, "moving_mean": 0, "moving_variance": 0}


def _batch_norm(node, rank):
    axes = _axes(node.config.get("axis", -1))
    if len(axes) == 1 and axes[0] % rank == rank - 1:
        return LayerSpec.passthrough(per_channel_weights=_BN_WEIGHTS,
                                     flops=formulas.batch_norm)
    if any(a % rank == rank - 1 for a in axes):
        return LayerSpec.barrier(f"BatchNormalization {node.layer_path!r} over axes {axes}, "
                                 "which mixes the channel axis with others").replace(
                                     flops=formulas.batch_norm)
    return LayerSpec.passthrough(flops=formulas.batch_norm)


def _normalization_over_axes(kind, flops):
    def entry(node, rank):
        if _covers_channel_axis(node, node.config.get("axis", -1), rank):
            return LayerSpec.barrier(
                f"{kind} {node.layer_path!r} over the channel axis, whose statistics change "
                "when channels are removed").replace(flops=flops)
        return LayerSpec.passthrough(flops=flops)
    entry.__name__ = f"_{kind}"
    return entry


_layer_norm = _normalization_over_axes("LayerNormalization", formulas.per_element(2))
_unit_norm = _normalization_over_axes("UnitNormalization", None)


def _group_norm(node, rank):
    groups = int(node.config.get("groups", 32))
    channels = node.input_shapes[0][-1]
    if groups in (-1, channels):
        def rewrite(config, ctx):
            config = dict(config)
            config["groups"] = -1 if groups == -1 else ctx.out_width
            return config
        return LayerSpec.passthrough(per_channel_weights={"gamma": 0, "beta": 0},
                                     rewrite=rewrite)
    return LayerSpec.barrier(
        f"GroupNormalization {node.layer_path!r} with {groups} groups, whose statistics "
        "mix channels within a group")


def _normalization(node, rank):
    axes = _axes(node.config.get("axis", -1))
    if node.config.get("mean") is not None:
        return LayerSpec.barrier(f"Normalization {node.layer_path!r} with a fixed `mean` "
                                 "in its config").replace(flops=formulas.normalization)
    if axes == [-1] or (len(axes) == 1 and axes[0] % rank == rank - 1):
        return LayerSpec.passthrough(per_channel_weights={"mean": 0, "variance": 0},
                                     flops=formulas.normalization)
    return LayerSpec.barrier(f"Normalization {node.layer_path!r} over axes {axes}").replace(
        flops=formulas.normalization)


# Activations -----------------------------------------------------------------

def _activation(node, rank):
    if _activation_name(node.config) in _SOFTMAX_ACTIVATIONS:
        return LayerSpec.barrier(f"softmax layer {node.layer_path!r}, which normalizes "
                                 "across channels").replace(flops=formulas.activation)
    return LayerSpec.passthrough(flops=formulas.activation)


def _softmax(node, rank):
    if _covers_channel_axis(node, node.config.get("axis", -1), rank):
        return LayerSpec.barrier(f"softmax layer {node.layer_path!r}, which normalizes "
                                 "across channels").replace(flops=formulas.softmax)
    return LayerSpec.passthrough(flops=formulas.softmax)


def _prelu(node, rank):
    return LayerSpec.passthrough(per_channel_weights={"alpha": -1}, flops=formulas.prelu)


# Shape layers ----------------------------------------------------------------

def _rescaling(node, rank):
    for key in ("scale", "offset"):
        value = node.config.get(key)
        if isinstance(value, (list, tuple)) and len(value) > 1:
            return LayerSpec.barrier(f"Rescaling {node.layer_path!r} with a per-channel "
                                     f"`{key}`")
    return LayerSpec.passthrough(flops=formulas.per_element(2))


def _reshape(node, rank):
    target = list(node.config["target_shape"])
    in_shape = node.input_shapes[0]
    if in_shape and target and target[-1] == in_shape[-1] and len(in_shape) > 1:
        def rewrite(config, ctx):
            config = dict(config)
            config["target_shape"] = tuple(list(config["target_shape"][:-1]) + [ctx.out_width])
            return config
        return LayerSpec.passthrough(rewrite=rewrite)
    if len(target) == 1:
        def rewrite_flat(config, ctx):
            config = dict(config)
            config["target_shape"] = (ctx.out_width,) if target[0] != -1 else (-1,)
            return config
        return LayerSpec(Role.FLATTEN, rewrite=rewrite_flat)
    return LayerSpec.barrier(f"Reshape {node.layer_path!r} to the fixed shape {tuple(target)}")


def _permute(node, rank):
    dims = list(node.config["dims"])
    if dims and dims[-1] == len(dims):
        return LayerSpec.passthrough()
    return LayerSpec.barrier(f"Permute {node.layer_path!r}, which moves the channel axis")


def _concatenate(node, rank):
    axis = int(node.config.get("axis", -1))
    if axis % rank == rank - 1:
        return LayerSpec(Role.CONCAT)
    return LayerSpec(Role.MERGE)


def _with_rank(fn):
    """Adapts `fn(node, rank)` to a registry entry, with the input rank known."""
    def entry(node):
        return fn(node, max(node.input_rank, 1))
    entry.__name__ = fn.__name__
    return entry


_PASSTHROUGH = LayerSpec.passthrough()
_MERGE = LayerSpec(Role.MERGE, flops=formulas.merge)

for _cls in (layers.ReLU, layers.LeakyReLU, layers.ELU, layers.ThresholdedReLU,
             layers.Dropout, layers.GaussianNoise, layers.GaussianDropout, layers.AlphaDropout,
             layers.ActivityRegularization, layers.RepeatVector,
             layers.UpSampling1D, layers.UpSampling2D, layers.UpSampling3D,
             layers.ZeroPadding1D, layers.ZeroPadding2D, layers.ZeroPadding3D,
             layers.Cropping1D, layers.Cropping2D, layers.Cropping3D):
    REGISTRY.register(_cls, _PASSTHROUGH)  # SpatialDropout* subclass Dropout.

for _cls in (layers.MaxPooling1D, layers.MaxPooling2D, layers.MaxPooling3D,
             layers.AveragePooling1D, layers.AveragePooling2D, layers.AveragePooling3D):
    REGISTRY.register(_cls, LayerSpec.passthrough(flops=formulas.pool))

for _cls in (layers.GlobalMaxPooling1D, layers.GlobalMaxPooling2D, layers.GlobalMaxPooling3D):
    REGISTRY.register(_cls, _PASSTHROUGH)
for _cls in (layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D,
             layers.GlobalAveragePooling3D):
    REGISTRY.register(_cls, LayerSpec.passthrough(flops=formulas.global_average_pool))

for _cls in (layers.Add, layers.Subtract, layers.Multiply, layers.Maximum, layers.Minimum):
    REGISTRY.register(_cls, _MERGE)
REGISTRY.register(layers.Average, _MERGE.replace(flops=formulas.average))

REGISTRY.register(layers.Flatten, LayerSpec(Role.FLATTEN))
REGISTRY.register(layers.Reshape, _with_rank(_reshape))
REGISTRY.register(layers.Permute, _with_rank(_permute))
REGISTRY.register(layers.Concatenate, _with_rank(_concatenate))
REGISTRY.register(layers.Activation, _with_rank(_activation))
REGISTRY.register(layers.Softmax, _with_rank(_softmax))
REGISTRY.register(layers.PReLU, _with_rank(_prelu))
REGISTRY.register(layers.BatchNormalization, _with_rank(_batch_norm))
REGISTRY.register(layers.LayerNormalization, _with_rank(_layer_norm))
REGISTRY.register(layers.GroupNormalization, _with_rank(_group_norm))
REGISTRY.register(layers.UnitNormalization, _with_rank(_unit_norm))
REGISTRY.register(layers.Rescaling, _with_rank(_rescaling))
REGISTRY.register(layers.Normalization, _with_rank(_normalization))


# TFOpLambda: tf.* functions called on Keras tensors ------------------------------

_UNARY_OPS = frozenset({
    "nn.relu", "nn.relu6", "nn.elu", "nn.selu", "nn.gelu", "nn.silu", "nn.swish",
    "nn.leaky_relu", "nn.sigmoid", "nn.tanh", "nn.softplus", "nn.softsign",
    "math.sigmoid", "math.tanh", "math.exp", "math.log", "math.abs", "math.square",
    "math.sqrt", "math.rsqrt", "math.negative", "math.reciprocal", "math.softplus",
    "math.erf", "math.sin", "math.cos", "math.round", "math.floor", "math.ceil",
    "identity", "cast", "clip_by_value", "stop_gradient", "math.sign",
})
_UNARY_FLOPS = {"nn.silu": formulas.per_element(2), "nn.swish": formulas.per_element(2),
                "nn.gelu": formulas.per_element(4)}
_BINARY_OPS = frozenset({
    "__operators__.add", "math.add", "math.subtract", "math.multiply", "math.truediv",
    "math.divide", "math.maximum", "math.minimum", "math.pow", "math.squared_difference",
    "__operators__.radd", "math.multiply_no_nan", "math.divide_no_nan",
})
_REDUCE_OPS = frozenset({"math.reduce_mean", "math.reduce_max", "math.reduce_min",
                         "math.reduce_sum", "reduce_mean", "reduce_max", "reduce_sum"})


def _call_arg(node, index, name, default=None):
    if len(node.call_args) > index:
        return node.call_args[index]
    return node.call_kwargs.get(name, default)


def _constants(node):
    from vai_optimizer_tf.graph.ir import TensorRef
    values = list(node.call_args) + [v for k, v in node.call_kwargs.items() if k != "name"]
    return [v for v in values if not isinstance(v, TensorRef)
            and isinstance(v, (int, float, list, tuple))]


def _rewrite_flat_reshape(call_kwargs, ctx):
    """`tf.reshape(x, (-1, n))` keeps flattening: `n` becomes the slim feature count."""
    call_kwargs = dict(call_kwargs)
    call_kwargs["shape"] = [-1, ctx.out_width]
    return call_kwargs


def _tf_op(node):
    function = node.config.get("function", "")
    where = f"tf.{function} call {node.layer_path!r}"
    rank = max(node.input_rank, 1)
    if function in _UNARY_OPS:
        return LayerSpec.passthrough(flops=_UNARY_FLOPS.get(function))
    if function in _BINARY_OPS:
        for const in _constants(node):
            if np.ndim(const) and np.shape(const)[-1] > 1:
                return LayerSpec.barrier(f"{where} with a per-channel constant operand")
        return _MERGE
    if function == "concat":
        axis = int(_call_arg(node, 1, "axis", -1))
        return LayerSpec(Role.CONCAT) if axis % rank == rank - 1 else LayerSpec(Role.MERGE)
    if function in _REDUCE_OPS:
        axis = _call_arg(node, 1, "axis")
        keepdims = bool(_call_arg(node, 2, "keepdims", False))
        if axis is not None and not _covers_channel_axis(node, axis, rank) and (
                keepdims or rank > 1):
            return LayerSpec.passthrough(flops=formulas.global_average_pool)
        return LayerSpec.barrier(f"{where}, which reduces over the channel axis")
    if function == "reshape":
        shape = list(_call_arg(node, 1, "shape", []) or [])
        if len(shape) == 2 and shape[-1] == -1:
            return LayerSpec(Role.FLATTEN)
        features = node.input_shapes[0][1:] if node.input_shapes else (None,)
        if (len(shape) == 2 and shape[0] == -1 and None not in features
                and shape[1] == math.prod(features)):
            return LayerSpec(Role.FLATTEN, rewrite_call=_rewrite_flat_reshape)
        return LayerSpec.barrier(f"{where} to the fixed shape {tuple(shape)}; use "
                                 "layers.Reshape, or -1 for the flattened axis")
    return LayerSpec.barrier(f"{where}, an op with no channel rule")


REGISTRY.register(tf_op_layer.TFOpLambda, _tf_op)
REGISTRY.register(tf_op_layer.SlicingOpLambda, lambda node: LayerSpec.barrier(
    f"slicing op {node.layer_path!r} (tensor[...]), whose channel selection is fixed"))
