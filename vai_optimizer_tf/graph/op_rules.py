"""Rules for functions called on Keras tensors (`tf.nn.relu(x)`, `keras.ops.add(x, y)`).

tf_keras records a `tf.*` call as one layer whose config names the function
(`"nn.relu"`, `"math.truediv"`) and whose call arguments hold the operands.
Keras 3 records a `keras.ops` call as one operation of the op's class
(`keras.src.ops.nn.Relu`), whose call arguments hold the operands and whose
config the op's other arguments (an axis, a shape); `keras3_rules.py` maps
each op class to the function of these tables it computes. The rules here
read only that neutral information from the `Node`. Function names are the
ones tf_keras records: aliases are recorded under one name (`tf.nn.swish` as
`"nn.silu"`, `tf.math.divide` as `"math.truediv"`). A function missing from
the tables is a barrier whose FLOPs are unknown.

**Zero safety.** In the sparse model a pruned channel is exactly 0, and the
layers reading it have zeroed weights for it. An element-wise function that
is infinite at 0 (`log`, `rsqrt`, `reciprocal`, division by the channel), or
whose gradient is (`sqrt`, `x ** 0.5`), turns that 0 into inf, and the zeroed
weight turns inf into NaN (0 * inf), in the outputs or in the gradients of
fine-tuning. Only functions that are finite with a finite gradient at 0 pass
channels through; the others are barriers, so their channels are never
pruned. Every function of the tables below is tested for this
(tests/test_layer_patterns.py) and for its FLOPs against TensorFlow's
profiler (tests/test_stat_profiler.py).
"""

import math
import numbers

import numpy as np

from vai_optimizer_tf.graph.ir import TensorRef
from vai_optimizer_tf.graph.layer_rules import covers_channel_axis, rank
from vai_optimizer_tf.graph.registry import LayerSpec, Role
from vai_optimizer_tf.stats import formulas

# Element-wise functions of one tensor, finite with a finite gradient at 0:
# FLOPs per element, as TensorFlow's profiler counts them.
SAFE_UNARY_OPS = {
    "nn.relu": 0, "nn.relu6": 0, "nn.elu": 0, "nn.selu": 0, "nn.leaky_relu": 0,
    "nn.gelu": 4, "nn.silu": 2, "nn.softsign": 0, "math.sigmoid": 0, "math.tanh": 0,
    "math.softplus": 0, "math.log_sigmoid": 2, "math.exp": 0, "math.abs": 0,
    "math.square": 1, "math.negative": 1, "math.erf": 0, "math.sin": 0, "math.cos": 0,
    "math.round": 0, "math.floor": 0, "math.ceil": 0, "math.sign": 0, "identity": 0,
    "cast": 0, "stop_gradient": 0, "clip_by_value": 2,
}

# Element-wise functions of one tensor that are not finite at 0, or whose
# gradient is not: (FLOPs per element, why). Barriers.
UNSAFE_UNARY_OPS = {
    "math.log": (1, "log(0) = -inf"),
    "math.rsqrt": (2, "rsqrt(0) = inf"),
    "math.reciprocal": (1, "1 / 0 = inf"),
    "math.sqrt": (0, "the gradient of sqrt at 0 is inf"),
}

# Element-wise functions of two operands `(x, y)`: (FLOPs per element, what
# happens when `y` is 0, or None when that is fine). When it is not fine, a `y`
# that is a tensor carrying channels makes a barrier; a constant or a
# single-channel (broadcast) `y` is never a pruned channel.
BINARY_OPS = {
    "__operators__.add": (1, None), "math.add": (1, None),
    "math.subtract": (1, None), "math.multiply": (1, None), "math.maximum": (1, None),
    "math.minimum": (1, None), "math.squared_difference": (2, None),
    "math.multiply_no_nan": (0, None), "math.divide_no_nan": (0, None),
    "math.truediv": (1, "x / 0 = inf, 0 / 0 = NaN"), "math.xdivy": (0, "x / 0 = inf"),
    "math.xlogy": (0, "x * log(0) = -inf"), "compat.v1.floor_div": (0, "x // 0 = inf"),
    "math.floormod": (0, "x % 0 = NaN"),
}
# `x ** y`: a tensor base needs a constant exponent >= 1 (0 ** 0.5 has an
# infinite gradient, 0 ** -1 is inf); a tensor exponent needs a constant base > 0.
POW_OPS = frozenset({"math.pow"})

# Reductions: FLOPs as the profiler counts them (Mean: one per input element;
# Sum: one per input element less one per output element; Max/Min: none).
REDUCE_OPS = {
    "math.reduce_mean": formulas.reduce_mean, "math.reduce_sum": formulas.reduce_sum,
    "math.reduce_max": formulas.zero, "math.reduce_min": formulas.zero,
}


def _call_arg(node, index, name, default=None):
    if len(node.call_args) > index:
        return node.call_args[index]
    return node.call_kwargs.get(name, default)


def _constants(node):
    values = list(node.call_args) + [v for k, v in node.call_kwargs.items() if k != "name"]
    return [v for v in values if not isinstance(v, TensorRef)
            and isinstance(v, (int, float, list, tuple))]


def _carries_channels(node, operand):
    """Whether `operand` is a tensor with more than one channel (not a broadcast)."""
    if not isinstance(operand, TensorRef):
        return False
    shape = node.input_shapes[node.inputs.index(operand.id)]
    return len(shape) > 1 and shape[-1] != 1


def _scalar(value):
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (list, tuple)) and np.size(value) == 1:
        return float(np.ravel(value)[0])
    return None


def _pow_problem(node):
    """Why `x ** y` is not safe at 0, or None when it is."""
    base, exponent = _call_arg(node, 0, "x"), _call_arg(node, 1, "y")
    if _carries_channels(node, base):
        value = _scalar(exponent)
        if value is None or value < 1:
            return "raises channels that may be 0 to a power below 1 or a tensor power"
    if _carries_channels(node, exponent):
        value = _scalar(base)
        if value is None or value <= 0:
            return "raises a base that is not a positive constant to the channels' power"
    return None


def _rewrite_flat_reshape(call_kwargs, ctx):
    """`tf.reshape(x, (-1, n))` keeps flattening: `n` becomes the slim feature count."""
    call_kwargs = dict(call_kwargs)
    call_kwargs["shape"] = [-1, ctx.out_width]
    return call_kwargs


def _zero_unsafe(where, why, flops):
    return LayerSpec.barrier(
        f"{where}, which is not finite at 0 ({why}): a pruned channel would become inf or "
        "NaN in the sparse model").replace(flops=flops)


def _elementwise(node, where, function, per_element=None):
    if function in SAFE_UNARY_OPS:
        count = SAFE_UNARY_OPS[function] if per_element is None else per_element
        return LayerSpec.passthrough(flops=formulas.per_element(count))
    if function in UNSAFE_UNARY_OPS:
        count, why = UNSAFE_UNARY_OPS[function]
        count = count if per_element is None else per_element
        return _zero_unsafe(where, why, formulas.per_element(count))
    count, at_zero = BINARY_OPS.get(function, (1, None))
    flops = formulas.per_element(count if per_element is None else per_element)
    for const in _constants(node):
        if np.ndim(const) and np.shape(const)[-1] > 1:
            return LayerSpec.barrier(f"{where} with a per-channel constant operand").replace(
                flops=flops)
    if at_zero and _carries_channels(node, _call_arg(node, 1, "y")):
        return _zero_unsafe(where, f"its second operand carries channels, and {at_zero}", flops)
    if function in POW_OPS:
        problem = _pow_problem(node)
        if problem:
            return _zero_unsafe(where, f"it {problem}", flops)
    return LayerSpec(Role.MERGE, flops=flops)


def tf_op(node):
    """The rule of one `tf.*` function call, chosen by the function's name."""
    function = node.config.get("function", "")
    return function_spec(node, function, f"tf.{function} call {node.layer_path!r}")


def function_spec(node, function, where, per_element=None):
    """The spec of `node`, a call of the function the tables name `function`.

    Args:
      node: The call's node; its call arguments are the function's.
      function: A name of the tables above (`"math.add"`, `"concat"`).
      where: How messages name the call (`"tf.math.add call 'add'"`).
      per_element: For element-wise functions, FLOPs per element when the
        flavour computes the function with other TF ops than the tables
        count. Defaults to the tables' count.
    """
    r = rank(node)
    if (function in SAFE_UNARY_OPS or function in UNSAFE_UNARY_OPS or function in BINARY_OPS
            or function in POW_OPS):
        return _elementwise(node, where, function, per_element)
    if function == "concat":
        axis = int(_call_arg(node, 1, "axis", -1))
        role = Role.CONCAT if axis % r == r - 1 else Role.MERGE
        return LayerSpec(role, flops=formulas.zero)
    if function in REDUCE_OPS:
        return reduction_spec(node, where, _call_arg(node, 1, "axis"),
                              bool(_call_arg(node, 2, "keepdims", False)), REDUCE_OPS[function])
    if function == "reshape":
        return reshape_spec(node, where, list(_call_arg(node, 1, "shape", []) or []),
                            rewrite_call=_rewrite_flat_reshape)
    return LayerSpec.barrier(f"{where}, an op with no channel rule")


def reduction_spec(node, where, axis, keepdims, flops):
    """A reduction over `axis`: channels pass through unless the channel axis is reduced."""
    r = rank(node)
    if axis is not None and not covers_channel_axis(axis, r) and (keepdims or r > 1):
        return LayerSpec.passthrough(flops=flops)
    return LayerSpec.barrier(f"{where}, which reduces over the channel axis").replace(
        flops=flops)


def reshape_spec(node, where, shape, rewrite_call=None, rewrite=None):
    """A reshape to `shape`: flattening to `(-1, n)` or `(batch, -1)`, else a barrier.

    Args:
      node: The reshape's node.
      where: How messages name the call.
      shape: The target shape, batch axis included.
      rewrite_call: How the slim model rewrites the call's arguments, for
        flavours that keep the shape there (a `tf.reshape` call).
      rewrite: How the slim model rewrites the config, for flavours that keep
        the shape there (a Keras 3 `ops.reshape`).
    """
    shape = list(shape)
    if len(shape) == 2 and shape[-1] == -1:
        return LayerSpec(Role.FLATTEN, flops=formulas.zero)
    features = node.input_shapes[0][1:] if node.input_shapes else (None,)
    if (len(shape) == 2 and shape[0] == -1 and None not in features
            and shape[1] == math.prod(features)):
        return LayerSpec(Role.FLATTEN, rewrite_call=rewrite_call, rewrite=rewrite,
                         flops=formulas.zero)
    return LayerSpec.barrier(f"{where} to the fixed shape {tuple(shape)}; use "
                             "layers.Reshape, or -1 for the flattened axis").replace(
                                 flops=formulas.zero)


def slicing_op(node):
    """`tensor[...]`: the channel selection is fixed."""
    return LayerSpec.barrier(
        f"slicing op {node.layer_path!r} (tensor[...]), whose channel selection is "
        "fixed").replace(flops=formulas.zero)
