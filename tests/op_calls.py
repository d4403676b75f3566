"""How users call each `tf.*` function of the op tables in vai_optimizer_tf/graph/op_rules.py.

Keys are the function names tf_keras records (`tf.nn.swish` is recorded as
`"nn.silu"`); tests check that the keys match the tables, so every table
entry is exercised by the layer-pattern tests and the profiler tests.
"""

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
