"""Rules for TensorFlow functions called on Keras tensors (`tf.nn.relu(x)`, `x + y`).

tf_keras records such a call as one layer whose config names the function
(`"nn.relu"`, `"math.truediv"`) and whose call arguments hold the operands.
The rules here read only that neutral information from the `Node`.
"""

import math

import numpy as np

from vai_optimizer_tf.graph.ir import TensorRef
from vai_optimizer_tf.graph.layer_rules import MERGE, covers_channel_axis, rank
from vai_optimizer_tf.graph.registry import LayerSpec, Role
from vai_optimizer_tf.stats import formulas

UNARY_OPS = frozenset({
    "nn.relu", "nn.relu6", "nn.elu", "nn.selu", "nn.gelu", "nn.silu", "nn.swish",
    "nn.leaky_relu", "nn.sigmoid", "nn.tanh", "nn.softplus", "nn.softsign",
    "math.sigmoid", "math.tanh", "math.exp", "math.log", "math.abs", "math.square",
    "math.sqrt", "math.rsqrt", "math.negative", "math.reciprocal", "math.softplus",
    "math.erf", "math.sin", "math.cos", "math.round", "math.floor", "math.ceil",
    "identity", "cast", "clip_by_value", "stop_gradient", "math.sign",
})
_UNARY_FLOPS = {"nn.silu": formulas.per_element(2), "nn.swish": formulas.per_element(2),
                "nn.gelu": formulas.per_element(4)}
BINARY_OPS = frozenset({
    "__operators__.add", "math.add", "math.subtract", "math.multiply", "math.truediv",
    "math.divide", "math.maximum", "math.minimum", "math.pow", "math.squared_difference",
    "__operators__.radd", "math.multiply_no_nan", "math.divide_no_nan",
})
REDUCE_OPS = frozenset({"math.reduce_mean", "math.reduce_max", "math.reduce_min",
                        "math.reduce_sum", "reduce_mean", "reduce_max", "reduce_sum"})


def _call_arg(node, index, name, default=None):
    if len(node.call_args) > index:
        return node.call_args[index]
    return node.call_kwargs.get(name, default)


def _constants(node):
    values = list(node.call_args) + [v for k, v in node.call_kwargs.items() if k != "name"]
    return [v for v in values if not isinstance(v, TensorRef)
            and isinstance(v, (int, float, list, tuple))]


def _rewrite_flat_reshape(call_kwargs, ctx):
    """`tf.reshape(x, (-1, n))` keeps flattening: `n` becomes the slim feature count."""
    call_kwargs = dict(call_kwargs)
    call_kwargs["shape"] = [-1, ctx.out_width]
    return call_kwargs


def tf_op(node):
    """The rule of one `tf.*` function call, chosen by the function's name."""
    function = node.config.get("function", "")
    where = f"tf.{function} call {node.layer_path!r}"
    r = rank(node)
    if function in UNARY_OPS:
        return LayerSpec.passthrough(flops=_UNARY_FLOPS.get(function))
    if function in BINARY_OPS:
        for const in _constants(node):
            if np.ndim(const) and np.shape(const)[-1] > 1:
                return LayerSpec.barrier(f"{where} with a per-channel constant operand")
        return MERGE
    if function == "concat":
        axis = int(_call_arg(node, 1, "axis", -1))
        return LayerSpec(Role.CONCAT) if axis % r == r - 1 else LayerSpec(Role.MERGE)
    if function in REDUCE_OPS:
        axis = _call_arg(node, 1, "axis")
        keepdims = bool(_call_arg(node, 2, "keepdims", False))
        if axis is not None and not covers_channel_axis(axis, r) and (keepdims or r > 1):
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


def slicing_op(node):
    """`tensor[...]`: the channel selection is fixed."""
    return LayerSpec.barrier(
        f"slicing op {node.layer_path!r} (tensor[...]), whose channel selection is fixed")
