"""FLOP formulas, as functions of a node's input and output shapes.

They follow the conventions of TensorFlow's profiler (`float_operation` on a
frozen graph), so our counts can be checked against it:

* one multiply-add counts as 2 FLOPs; a bias add is 1 FLOP per output element;
* an element-wise op over n tensors is (n - 1) FLOPs per output element;
* max/average pooling is one FLOP per window element per output; global
  average pooling one per input element; global max pooling 0;
* inference BatchNormalization on 4D/5D tensors is a fused op counted as 0
  (it folds into the previous conv on deployment); ReLU-like activations,
  sigmoid, tanh and log-softmax are 0; mish is 1, swish 2, hard-sigmoid and
  GELU 4, softmax 5 per element (`ACTIVATION_FLOPS`). An activation that is
  a user's function counts 0.

Shapes include the batch axis, which is ignored: counts are per sample, as
the profiler counts a batch of 1. The few parts computed from the weights
alone (the inverse deviation of an inference BatchNormalization, PReLU's
`-alpha`) are counted once per call; such formulas say how much in a
`per_call` attribute, so that a layer applied at every time step
(`TimeDistributed`) counts them once.
Channel widths in the shapes may be pruned widths, which is how analytic FLOPs
of a pruned model are computed without building it.
"""

import math

# The Keras activations, with their FLOPs per element as TensorFlow's profiler
# counts them in tf_keras. Each is finite, with a finite gradient, at 0. The
# names from `celu` on exist in Keras 3 only.
ACTIVATION_FLOPS = {
    "linear": 0, "relu": 0, "relu6": 0, "leaky_relu": 0, "elu": 0, "selu": 0, "sigmoid": 0,
    "tanh": 0, "softplus": 0, "softsign": 0, "exponential": 0, "mish": 1, "swish": 2,
    "silu": 2, "hard_sigmoid": 4, "gelu": 4, "softmax": 5, "log_softmax": 0,
    "celu": 5, "hard_shrink": 1, "hard_silu": 3, "hard_swish": 3, "hard_tanh": 2,
    "log_sigmoid": 2, "soft_shrink": 4, "sparse_plus": 5, "sparse_sigmoid": 4, "squareplus": 4,
    "tanh_shrink": 1, "sparsemax": 8,
}

# Keras 3 computes `hard_sigmoid` as `relu6(x + 3) / 6` (tf_keras with a clip:
# 4 FLOPs); every other activation costs what `ACTIVATION_FLOPS` says.
KERAS3_ACTIVATION_FLOPS = {**ACTIVATION_FLOPS, "hard_sigmoid": 2}


def activation_name(config):
    """The activation a layer config names, or None.

    A Keras activation gives its name (`"relu"`), a user's function its
    function name, a layer object its class name and a lambda `"lambda"`.
    """
    act = config.get("activation")
    if isinstance(act, dict):
        inner = act.get("config")
        if isinstance(inner, str):  # a function, serialized by name
            return inner
        return act.get("class_name") or "lambda"
    return act


def _elements(shape):
    return math.prod(d for d in shape[1:])


def with_activation_flops(formula, table):
    """`formula`, with the node's activation counted by `table` instead of `ACTIVATION_FLOPS`.

    For a flavour that computes some activations with other TF ops (Keras 3's
    `hard_sigmoid`). `per_call` parts are kept.
    """
    def counted(node, in_shapes, out_shapes):
        name = activation_name(node.config)
        delta = table.get(name, 0) - ACTIVATION_FLOPS.get(name, 0)
        return formula(node, in_shapes, out_shapes) + delta * _elements(out_shapes[0])
    counted.__name__ = getattr(formula, "__name__", "flops")
    if hasattr(formula, "per_call"):
        counted.per_call = formula.per_call
    return counted


def _activation_flops(config, out_shape):
    """FLOPs of a config's activation; 0 for functions that are not Keras activations."""
    return ACTIVATION_FLOPS.get(activation_name(config), 0) * _elements(out_shape)


def _bias_and_activation(node, out_shapes):
    bias = _elements(out_shapes[0]) if node.config.get("use_bias") else 0
    return bias + _activation_flops(node.config, out_shapes[0])


def _channels_and_spatial(node, shape):
    """(channels, spatial dims) of a shape, for either data format."""
    if node.config.get("data_format") == "channels_first":
        return shape[1], tuple(shape[2:])
    return shape[-1], tuple(shape[1:-1])


def _dilated_spatial(node, shape):
    dilation = node.config.get("dilation_rate") or 1
    dims = _channels_and_spatial(node, shape)[1]
    if isinstance(dilation, int):
        dilation = (dilation,) * len(dims)
    # TF runs dilated convs as space-to-batch, which pads each dim to a multiple.
    return math.prod(-(-d // r) * r for d, r in zip(dims, dilation))


def conv(node, in_shapes, out_shapes):
    """Conv1D/2D/3D, grouped convs included."""
    kernel = math.prod(node.config["kernel_size"])
    cin = _channels_and_spatial(node, in_shapes[0])[0] // int(node.config.get("groups", 1) or 1)
    cout = _channels_and_spatial(node, out_shapes[0])[0]
    positions = _dilated_spatial(node, out_shapes[0])
    return 2 * kernel * cin * cout * positions + _bias_and_activation(node, out_shapes)


def conv_transpose(node, in_shapes, out_shapes):
    """Conv*DTranspose, as TF's Conv2DBackpropInput is counted."""
    kernel = math.prod(node.config["kernel_size"])
    strides = math.prod(node.config.get("strides") or (1,))
    macs = math.prod(out_shapes[0][1:-1]) * kernel * in_shapes[0][-1] * out_shapes[0][-1]
    return int(2 * macs / strides) + _bias_and_activation(node, out_shapes)


def depthwise(node, in_shapes, out_shapes):
    kernel = math.prod(node.config["kernel_size"])
    positions = _dilated_spatial(node, out_shapes[0])
    return 2 * kernel * positions * out_shapes[0][-1] + _bias_and_activation(node, out_shapes)


def separable(node, in_shapes, out_shapes):
    kernel = math.prod(node.config["kernel_size"])
    multiplier = int(node.config.get("depth_multiplier", 1))
    spatial = math.prod(out_shapes[0][1:-1])
    mid = in_shapes[0][-1] * multiplier
    return (2 * kernel * mid * _dilated_spatial(node, out_shapes[0])
            + 2 * mid * out_shapes[0][-1] * spatial + _bias_and_activation(node, out_shapes))


def dense(node, in_shapes, out_shapes):
    return 2 * in_shapes[0][-1] * _elements(out_shapes[0]) + _bias_and_activation(node, out_shapes)


def pool(node, in_shapes, out_shapes):
    return math.prod(node.config["pool_size"]) * _elements(out_shapes[0])


def global_average_pool(node, in_shapes, out_shapes):
    return _elements(in_shapes[0])


def activation(node, in_shapes, out_shapes):
    return _activation_flops(node.config, out_shapes[0])


def softmax(node, in_shapes, out_shapes):
    return 5 * _elements(out_shapes[0])


def _norm_axes(node, shape, default=-1):
    """The config's normalization axes, as non-negative indices into `shape`."""
    axes = node.config.get("axis", default)
    axes = list(axes) if isinstance(axes, (list, tuple)) else [axes]
    return sorted(a % len(shape) for a in axes)


def _stat_elements(shape, axes):
    """Elements of statistics kept along `axes` (batch excluded)."""
    return math.prod(shape[a] for a in axes if a > 0)


def _reduced_elements(shape, axes):
    """Elements left after reducing over `axes` (batch excluded)."""
    return math.prod(d for i, d in enumerate(shape) if i > 0 and i not in axes)


def _affine(elements, stats, inv, scale, center):
    """`tf.nn.batch_normalization` without the moments.

    `rsqrt(var + eps)` on `stats` elements, times the scale (giving `inv`
    elements), `x * inv + (offset - mean * inv)` over `elements`.
    """
    return (3 * stats + (inv if scale else 0) + 2 * elements + inv
            + (elements if center else inv))


def _batch_norm_parts(node, shape, fused_kernel=True):
    """(per-sample FLOPs, per-call FLOPs) of an inference BatchNormalization."""
    axes = _norm_axes(node, shape)
    fused = (fused_kernel and len(shape) in (4, 5) and len(axes) == 1 and axes[0] in (1, len(shape) - 1)
             and not node.config.get("renorm")
             and node.config.get("virtual_batch_size") is None)
    if fused:
        return 0, 0
    stats = _stat_elements(shape, axes)
    scale = node.config.get("scale", True)
    # x * inv + offset - mean * inv over the input; inv and the offset term
    # come from the moving statistics alone.
    return 2 * _elements(shape), 5 * stats + (stats if scale else 0)


def batch_norm(node, in_shapes, out_shapes):
    """Inference BatchNormalization.

    The fused kernel (4D/5D input, one axis that is the first or last
    non-batch axis) counts 0 and folds into the previous conv on deployment;
    otherwise `tf.nn.batch_normalization` with the moving statistics.
    """
    return sum(_batch_norm_parts(node, in_shapes[0]))


batch_norm.per_call = lambda node, in_shapes, out_shapes: _batch_norm_parts(
    node, in_shapes[0])[1]


def batch_norm_unfused(node, in_shapes, out_shapes):
    """Inference BatchNormalization as `tf.nn.batch_normalization`, whatever its rank.

    Keras 3 computes every BatchNormalization this way, never with the fused
    kernel: `x * inv + (offset - mean * inv)` over the input, and `inv` and
    the offset term from the moving statistics.
    """
    return sum(_batch_norm_parts(node, in_shapes[0], fused_kernel=False))


batch_norm_unfused.per_call = lambda node, in_shapes, out_shapes: _batch_norm_parts(
    node, in_shapes[0], fused_kernel=False)[1]


def layer_norm(node, in_shapes, out_shapes):
    """LayerNormalization: fused over trailing axes, else moments plus the affine part."""
    shape = in_shapes[0]
    axes = _norm_axes(node, shape)
    scale, center = node.config.get("scale", True), node.config.get("center", True)
    elements = _elements(shape)
    fused = (axes[-1] == len(shape) - 1 and axes[-1] - axes[0] == len(axes) - 1
             and float(node.config.get("epsilon", 1e-3)) >= 1.001e-5)
    if fused:  # the normalization runs as a fused kernel (0); scale and offset do not
        return elements * (int(bool(scale)) + int(bool(center)))
    stats = _reduced_elements(shape, axes)
    # Moments: mean (E), squared difference (2E), mean (E).
    return 4 * elements + _affine(elements, stats, elements if scale else stats, scale, center)


def layer_norm_moments(node, in_shapes, out_shapes):
    """LayerNormalization as Keras 3 computes it: `ops.moments`, then the affine part.

    `inv = rsqrt(var + eps) [* gamma]`, `res = -mean * inv [+ beta]`,
    `x * inv + res`; with a scale, `inv` has the input's shape.
    """
    shape = in_shapes[0]
    elements = _elements(shape)
    stats = _reduced_elements(shape, _norm_axes(node, shape))
    scale, center = node.config.get("scale", True), node.config.get("center", True)
    inv = elements if scale else stats
    # Moments: mean (E), squared difference (2E), mean (E); rsqrt(var + eps) (3S); -mean (S).
    return (4 * elements + 4 * stats + (elements if scale else 0) + inv
            + (elements if center else 0) + 2 * elements)


def group_norm_moments(node, in_shapes, out_shapes):
    """GroupNormalization as Keras 3 computes it: `ops.moments` per group, then the affine part."""
    shape = in_shapes[0]
    elements, channels = _elements(shape), shape[-1]
    groups = int(node.config.get("groups", 32))
    groups = channels if groups == -1 else groups
    scale, center = node.config.get("scale", True), node.config.get("center", True)
    inv = channels if scale else groups
    # Moments (4E); rsqrt(var + eps) (3G); -mean (G); inv * gamma (C); -mean * inv;
    # + beta (C); x * inv + res (2E).
    return (4 * elements + 4 * groups + (channels if scale else 0) + inv
            + (channels if center else 0) + 2 * elements)


def group_norm(node, in_shapes, out_shapes):
    """GroupNormalization: weighted moments per group, then the affine part."""
    shape = in_shapes[0]
    elements, channels = _elements(shape), shape[-1]
    groups = int(node.config.get("groups", 32))
    groups = channels if groups == -1 else groups
    scale, center = node.config.get("scale", True), node.config.get("center", True)
    # Weighted moments: 2 masks (2E), 3 sums (3(E - G)), weights + zeros (E),
    # squared difference (2E); then rsqrt(var + eps) on G.
    moments = 8 * elements - 3 * groups
    inv = channels if scale else groups
    return (moments + 3 * groups + (channels if scale else 0) + 2 * elements + inv
            + (channels if center else inv))


def unit_norm(node, in_shapes, out_shapes):
    """UnitNormalization: `x * rsqrt(max(sum(x ** 2), eps))`."""
    shape = in_shapes[0]
    elements = _elements(shape)
    reduced = _reduced_elements(shape, _norm_axes(node, shape))
    # square (E), sum (E - R), maximum (R), rsqrt (2R), multiply (E)
    return 3 * elements + 2 * reduced


def normalization(node, in_shapes, out_shapes):
    """Normalization: `(x - mean) / max(sqrt(var), eps)`."""
    shape = in_shapes[0]
    return 2 * _elements(shape) + normalization.per_call(node, in_shapes, out_shapes)


normalization.per_call = lambda node, in_shapes, out_shapes: _stat_elements(
    in_shapes[0], _norm_axes(node, in_shapes[0]))


def relu(node, in_shapes, out_shapes):
    """The ReLU layer, as `backend.relu` builds it from `max_value`, `negative_slope`
    and `threshold`."""
    return _relu(node, out_shapes, threshold_flops=2)


def relu_where_threshold(node, in_shapes, out_shapes):
    """The ReLU layer as Keras 3 builds it: the threshold selects (`where(x > t, x, 0)`)."""
    return _relu(node, out_shapes, threshold_flops=1)


def _relu(node, out_shapes, threshold_flops):
    config = node.config
    slope = float(config.get("negative_slope") or 0.0)
    threshold = float(config.get("threshold") or 0.0)
    max_value = config.get("max_value")
    if slope and max_value is None and not threshold:
        return 0  # one LeakyRelu op
    count = 0
    if slope:
        count += 2 if threshold else 1  # negative part: relu(-x + threshold)
        count += 2  # x -= slope * negative part
    if threshold:
        count += threshold_flops  # x * cast(x > threshold), or a select
    if max_value is not None and (threshold or float(max_value) != 6.0):
        count += 2  # clip_by_value
    return count * _elements(out_shapes[0])


def elu(node, in_shapes, out_shapes):
    """ELU: one Elu op, plus `where(x > 0, y, alpha * y)` when alpha is not 1."""
    alpha = float(node.config.get("alpha", 1.0))
    return 0 if alpha == 1.0 else 2 * _elements(out_shapes[0])


def prelu(node, in_shapes, out_shapes):
    """`relu(x) - alpha * relu(-x)`; `-alpha` is computed once per call."""
    return 3 * _elements(out_shapes[0]) + prelu.per_call(node, in_shapes, out_shapes)


def _prelu_alpha(node, in_shapes, out_shapes):
    shared = node.config.get("shared_axes") or ()
    return math.prod(1 if (i + 1) in shared else d for i, d in enumerate(in_shapes[0][1:]))


prelu.per_call = _prelu_alpha


def reduce_mean(node, in_shapes, out_shapes):
    """`Mean`: one FLOP per input element."""
    return _elements(in_shapes[0])


def reduce_sum(node, in_shapes, out_shapes):
    """`Sum`: n - 1 additions for each output element that sums n inputs."""
    return _elements(in_shapes[0]) - _elements(out_shapes[0])


def per_input_element(node, in_shapes, out_shapes):
    """One FLOP per element of the first input (Keras 3's `Embedding` checks each index)."""
    return _elements(in_shapes[0])


def zero(node, in_shapes, out_shapes):
    """A layer known to cost nothing (ReLU, reshapes, padding, max reductions)."""
    return 0


def merge(node, in_shapes, out_shapes):
    """Add, Multiply, Maximum, Minimum, Subtract over n inputs: (n - 1) per element."""
    return max(len(in_shapes) - 1, 1) * _elements(out_shapes[0])


def average(node, in_shapes, out_shapes):
    """n - 1 additions and one division per element."""
    return len(in_shapes) * _elements(out_shapes[0])


def per_element(count):
    """A formula of `count` FLOPs per output element."""
    def formula(node, in_shapes, out_shapes):
        return count * _elements(out_shapes[0])
    formula.__name__ = f"per_element_{count}"
    return formula
