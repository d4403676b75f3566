"""How users call each function of the op tables in vai_optimizer_tf/graph/op_rules.py.

Keys of the `tf.*` tables are the function names tf_keras records
(`tf.nn.swish` is recorded as `"nn.silu"`); keys of `KERAS_OP_CALLS` are the
Keras 3 op classes of `keras3_rules.OP_ENTRIES`. Tests check that the keys
match the tables, so every table entry is exercised by the layer-pattern
tests and the profiler tests.
"""

import keras
import tensorflow as tf

# Finite, with a finite gradient, at 0: op_rules.SAFE_UNARY_OPS.
SAFE_UNARY_CALLS = {
    "nn.relu": tf.nn.relu, "nn.relu6": tf.nn.relu6, "nn.elu": tf.nn.elu, "nn.selu": tf.nn.selu,
    "nn.leaky_relu": tf.nn.leaky_relu, "nn.gelu": tf.nn.gelu, "nn.silu": tf.nn.swish,
    "nn.softsign": tf.nn.softsign, "math.sigmoid": tf.math.sigmoid, "math.tanh": tf.math.tanh,
    "math.softplus": tf.math.softplus, "math.log_sigmoid": tf.math.log_sigmoid,
    "math.exp": tf.math.exp, "math.abs": tf.math.abs, "math.square": tf.math.square,
    "math.negative": tf.math.negative, "math.erf": tf.math.erf, "math.sin": tf.math.sin,
    "math.cos": tf.math.cos, "math.round": tf.math.round, "math.floor": tf.math.floor,
    "math.ceil": tf.math.ceil, "math.sign": tf.math.sign, "identity": tf.identity,
    "cast": lambda t: tf.cast(t, tf.float32), "stop_gradient": tf.stop_gradient,
    "clip_by_value": lambda t: tf.clip_by_value(t, -0.5, 0.5),
}

# Not finite at 0, or with an infinite gradient there: op_rules.UNSAFE_UNARY_OPS.
UNSAFE_UNARY_CALLS = {
    "math.log": tf.math.log, "math.rsqrt": tf.math.rsqrt,
    "math.reciprocal": tf.math.reciprocal, "math.sqrt": tf.math.sqrt,
}

# Two operands: op_rules.BINARY_OPS and POW_OPS.
BINARY_CALLS = {
    "__operators__.add": lambda a, b: a + b, "math.add": tf.math.add,
    "math.subtract": lambda a, b: a - b, "math.multiply": lambda a, b: a * b,
    "math.maximum": tf.math.maximum, "math.minimum": tf.math.minimum,
    "math.squared_difference": tf.math.squared_difference,
    "math.multiply_no_nan": tf.math.multiply_no_nan,
    "math.divide_no_nan": tf.math.divide_no_nan, "math.truediv": lambda a, b: a / b,
    "math.xdivy": tf.math.xdivy, "math.xlogy": tf.math.xlogy,
    "compat.v1.floor_div": lambda a, b: a // b, "math.floormod": lambda a, b: a % b,
    "math.pow": lambda a, b: a ** b,
}

# Reductions over the spatial axes of a 4D tensor: op_rules.REDUCE_OPS.
REDUCE_CALLS = {
    "math.reduce_mean": lambda t: tf.math.reduce_mean(t, axis=[1, 2]),
    "math.reduce_sum": lambda t: tf.math.reduce_sum(t, axis=[1, 2], keepdims=True),
    "math.reduce_max": lambda t: tf.math.reduce_max(t, axis=1),
    "math.reduce_min": lambda t: tf.math.reduce_min(t, axis=[1, 2]),
}


# Keras 3: `keras.ops` calls on one or two (8, 8, 4) tensors, by the op class they record.
_O = keras.ops
KERAS_UNARY_OP_CALLS = {
    "Absolute": _O.abs, "Negative": lambda t: -t, "Square": _O.square, "Exp": _O.exp,
    "Tanh": _O.tanh, "Sin": _O.sin, "Cos": _O.cos, "Round": _O.round, "Floor": _O.floor,
    "Ceil": _O.ceil, "Sign": _O.sign, "Clip": lambda t: _O.clip(t, -0.5, 0.5),
    "Relu": _O.relu, "Relu6": _O.relu6, "Sigmoid": _O.sigmoid, "Silu": _O.silu, "Elu": _O.elu,
    "Selu": _O.selu, "LeakyRelu": _O.leaky_relu, "Softplus": _O.softplus,
    "Softsign": _O.softsign, "LogSigmoid": _O.log_sigmoid, "Erf": _O.erf,
    "Cast": lambda t: _O.cast(t, "float32"), "StopGradient": _O.stop_gradient,
    "Gelu": _O.gelu,
}
# Not finite at 0, or with an infinite gradient there.
KERAS_UNSAFE_UNARY_OP_CALLS = {
    "Log": _O.log, "Sqrt": _O.sqrt, "Reciprocal": _O.reciprocal, "Rsqrt": _O.rsqrt,
}
KERAS_BINARY_OP_CALLS = {
    "Add": lambda a, b: a + b, "Subtract": lambda a, b: a - b, "Multiply": lambda a, b: a * b,
    "Maximum": _O.maximum, "Minimum": _O.minimum, "Divide": _O.divide,
    "TrueDivide": lambda a, b: a / b, "DivideNoNan": _O.divide_no_nan,
    "Power": lambda a, b: a ** 2.0, "FloorDivide": lambda a, b: a // b,
    "Mod": lambda a, b: a % b,
}
KERAS_OTHER_OP_CALLS = {
    "Concatenate": lambda a, b: _O.concatenate([a, b], axis=-1),
    "Reshape": lambda a: _O.reshape(a, (-1, 8 * 8 * 4)),
    "Mean": lambda a: _O.mean(a, axis=(1, 2)),
    "Sum": lambda a: _O.sum(a, axis=(1, 2), keepdims=True),
    "Max": lambda a: _O.max(a, axis=1),
    "Min": lambda a: _O.min(a, axis=(1, 2)),
    "GetItem": lambda a: a[..., :2],
    "Softmax": lambda a: _O.softmax(a, axis=1),
}
KERAS_OP_CALLS = {**KERAS_UNARY_OP_CALLS, **KERAS_UNSAFE_UNARY_OP_CALLS, **KERAS_BINARY_OP_CALLS,
                  **KERAS_OTHER_OP_CALLS}
