"""Layer rules that any Keras flavour maps its layer classes to.

A rule is a `LayerSpec`, or a function `node -> LayerSpec` for layers whose
behaviour depends on their config (a `Concatenate` on the channel axis
concatenates channels; on another axis it merges them). Rules read only the
neutral `Node`: its config dict, shapes, weights and call arguments. They
never import a Keras flavour, so the tf_keras mapping
(`tf_keras_rules.py`) and any other adapter's mapping share them.

The config keys read here (`filters`, `kernel_size`, `axis`, `groups`,
`shared_axes`, `target_shape`, ...) are the ones Keras layers have used since
Keras 2.
"""

from vai_optimizer_tf.graph.registry import Axis, LayerSpec, Role
from vai_optimizer_tf.stats import formulas

# Activations whose output channel i depends on other channels: what they do.
_CHANNEL_MIXING_ACTIVATIONS = {
    "softmax": "applies a softmax across its outputs",
    "log_softmax": "applies a softmax across its outputs",
    "sparsemax": "applies a sparsemax across its outputs",
    "glu": "gates one half of its channels with the other half",
}


activation_name = formulas.activation_name


def rank(node):
    """Rank of the node's first input, batch axis included (at least 1)."""
    return max(node.input_rank, 1)


def axes_list(config_axis):
    """A config's `axis` (an int or a list of ints) as a list."""
    return list(config_axis) if isinstance(config_axis, (list, tuple)) else [config_axis]


def covers_channel_axis(config_axis, rank_):
    """Whether any of the axes is the last (channel) axis of a tensor of rank `rank_`."""
    return any(a % rank_ == rank_ - 1 for a in axes_list(config_axis))


def _unknown_activation(node):
    """Why the node's activation is not known to be safe for pruned channels, or None."""
    name = activation_name(node.config)
    if name is None or name in formulas.ACTIVATION_FLOPS:
        return None
    return (f"layer {node.layer_path!r} applies {name!r}, which is not a Keras activation "
            "known to be finite at 0, where pruned channels are")


def _output_checked(spec, node):
    """A producer's spec, its output fixed when its activation mixes channels or is unknown."""
    mixing = _CHANNEL_MIXING_ACTIVATIONS.get(activation_name(node.config))
    if mixing:
        return spec.replace(fixed_output=(
            f"layer {node.layer_path!r} {mixing}, which mixes channels"))
    unknown = _unknown_activation(node)
    if unknown:
        return spec.replace(fixed_output=unknown)
    return spec


# Producers -------------------------------------------------------------------

CONV = LayerSpec(Role.PRODUCER, in_axes={"kernel": -2}, out_axes={"kernel": -1, "bias": 0},
                 width_key="filters", flops=formulas.conv)
CONV_TRANSPOSE = LayerSpec(Role.PRODUCER, in_axes={"kernel": -1},
                           out_axes={"kernel": -2, "bias": 0}, width_key="filters",
                           flops=formulas.conv_transpose)
DENSE = LayerSpec(Role.PRODUCER, in_axes={"kernel": 0}, out_axes={"kernel": 1, "bias": 0},
                  width_key="units", flops=formulas.dense)
SEPARABLE = LayerSpec(
    Role.PRODUCER,
    in_axes={"depthwise_kernel": -2, "pointwise_kernel": Axis(-2, "depth_multiplier")},
    out_axes={"pointwise_kernel": -1, "bias": 0}, width_key="filters",
    flops=formulas.separable)
DEPTHWISE = LayerSpec(Role.PASSTHROUGH, in_axes={"depthwise_kernel": -2},
                      out_axes={"bias": 0}, expand_key="depth_multiplier",
                      flops=formulas.depthwise)
EMBEDDING = LayerSpec(Role.PRODUCER, out_axes={"embeddings": 1}, width_key="output_dim",
                      flops=formulas.zero)


def conv(node):
    """Conv1D/2D/3D: a producer; grouped convolutions are barriers."""
    groups = int(node.config.get("groups", 1) or 1)
    if groups > 1:
        return LayerSpec.barrier(
            f"grouped convolution {node.layer_path!r} (groups={groups}), whose channels "
            "must shrink per group, which is not supported").replace(flops=formulas.conv)
    return _output_checked(CONV, node)


def separable(node):
    return _output_checked(SEPARABLE, node)


def dense(node):
    return _output_checked(DENSE, node)


# Normalization -----------------------------------------------------------------

_BN_WEIGHTS = {"gamma": 0, "beta": 0, "moving_mean": 0, "moving_variance": 0}


def batch_norm(node):
    r = rank(node)
    axes = axes_list(node.config.get("axis", -1))
    if len(axes) == 1 and axes[0] % r == r - 1:
        return LayerSpec.passthrough(per_channel_weights=_BN_WEIGHTS,
                                     flops=formulas.batch_norm)
    if any(a % r == r - 1 for a in axes):
        return LayerSpec.barrier(f"BatchNormalization {node.layer_path!r} over axes {axes}, "
                                 "which mixes the channel axis with others").replace(
                                     flops=formulas.batch_norm)
    return LayerSpec.passthrough(flops=formulas.batch_norm)


def _normalization_over_axes(kind, flops):
    def rule(node):
        if covers_channel_axis(node.config.get("axis", -1), rank(node)):
            return LayerSpec.barrier(
                f"{kind} {node.layer_path!r} over the channel axis, whose statistics change "
                "when channels are removed").replace(flops=flops)
        return LayerSpec.passthrough(flops=flops)
    rule.__name__ = kind.lower()
    return rule


layer_norm = _normalization_over_axes("LayerNormalization", formulas.layer_norm)
unit_norm = _normalization_over_axes("UnitNormalization", formulas.unit_norm)


def group_norm(node):
    groups = int(node.config.get("groups", 32))
    channels = node.input_shapes[0][-1]
    if groups in (-1, channels):
        def rewrite(config, ctx):
            config = dict(config)
            config["groups"] = -1 if groups == -1 else ctx.out_width
            return config
        return LayerSpec.passthrough(per_channel_weights={"gamma": 0, "beta": 0},
                                     rewrite=rewrite, flops=formulas.group_norm)
    return LayerSpec.barrier(
        f"GroupNormalization {node.layer_path!r} with {groups} groups, whose statistics "
        "mix channels within a group").replace(flops=formulas.group_norm)


def normalization(node):
    r = rank(node)
    axes = axes_list(node.config.get("axis", -1))
    if node.config.get("mean") is not None:
        return LayerSpec.barrier(f"Normalization {node.layer_path!r} with a fixed `mean` "
                                 "in its config").replace(flops=formulas.normalization)
    if axes == [-1] or (len(axes) == 1 and axes[0] % r == r - 1):
        return LayerSpec.passthrough(per_channel_weights={"mean": 0, "variance": 0},
                                     flops=formulas.normalization)
    return LayerSpec.barrier(f"Normalization {node.layer_path!r} over axes {axes}").replace(
        flops=formulas.normalization)


# Activations -----------------------------------------------------------------

def activation(node):
    name = activation_name(node.config)
    if name in _CHANNEL_MIXING_ACTIVATIONS:
        known = name in formulas.ACTIVATION_FLOPS
        return LayerSpec.barrier(
            f"activation layer {node.layer_path!r} {_CHANNEL_MIXING_ACTIVATIONS[name]}, "
            "which mixes channels", flops=formulas.activation if known else None)
    unknown = _unknown_activation(node)
    if unknown:  # a user's function: its cost is unknown too
        return LayerSpec.barrier(unknown)
    return LayerSpec.passthrough(flops=formulas.activation)


def softmax(node):
    if covers_channel_axis(node.config.get("axis", -1), rank(node)):
        return LayerSpec.barrier(f"softmax layer {node.layer_path!r}, which normalizes "
                                 "across channels").replace(flops=formulas.softmax)
    return LayerSpec.passthrough(flops=formulas.softmax)


def prelu(node):
    return LayerSpec.passthrough(per_channel_weights={"alpha": -1}, flops=formulas.prelu)


# Shape layers ----------------------------------------------------------------

def rescaling(node):
    for key in ("scale", "offset"):
        value = node.config.get(key)
        if isinstance(value, (list, tuple)) and len(value) > 1:
            return LayerSpec.barrier(f"Rescaling {node.layer_path!r} with a per-channel "
                                     f"`{key}`").replace(flops=formulas.per_element(2))
    return LayerSpec.passthrough(flops=formulas.per_element(2))


def reshape(node):
    target = list(node.config["target_shape"])
    in_shape = node.input_shapes[0]
    if in_shape and target and target[-1] == in_shape[-1] and len(in_shape) > 1:
        def rewrite(config, ctx):
            config = dict(config)
            config["target_shape"] = tuple(list(config["target_shape"][:-1]) + [ctx.out_width])
            return config
        return LayerSpec.passthrough(rewrite=rewrite, flops=formulas.zero)
    if len(target) == 1:
        def rewrite_flat(config, ctx):
            config = dict(config)
            config["target_shape"] = (ctx.out_width,) if target[0] != -1 else (-1,)
            return config
        return LayerSpec(Role.FLATTEN, rewrite=rewrite_flat, flops=formulas.zero)
    return LayerSpec.barrier(f"Reshape {node.layer_path!r} to the fixed shape "
                             f"{tuple(target)}").replace(flops=formulas.zero)


def permute(node):
    dims = list(node.config["dims"])
    if dims and dims[-1] == len(dims):
        return LayerSpec.passthrough(flops=formulas.zero)
    return LayerSpec.barrier(f"Permute {node.layer_path!r}, which moves the channel "
                             "axis").replace(flops=formulas.zero)


def concatenate(node):
    r = rank(node)
    axis = int(node.config.get("axis", -1))
    if axis % r == r - 1:
        return LayerSpec(Role.CONCAT, flops=formulas.zero)
    return LayerSpec(Role.MERGE, flops=formulas.zero)


# Wrappers and application layers ----------------------------------------------

def _per_step_flops(formula, per_call_once=True):
    """`formula` of the wrapped layer, applied at every time step."""
    if formula is None:
        return None

    per_call = getattr(formula, "per_call", None) if per_call_once else None

    def flops(node, in_shapes, out_shapes):
        steps = in_shapes[0][1]
        step_in = [(s[0],) + tuple(s[2:]) for s in in_shapes]
        step_out = [(s[0],) + tuple(s[2:]) for s in out_shapes]
        count = steps * formula(node.wrapped, step_in, step_out)
        if per_call is not None:  # computed from the weights once, not at every step
            count -= (steps - 1) * per_call(node.wrapped, step_in, step_out)
        return count
    flops.__name__ = f"per_step_{getattr(formula, '__name__', 'flops')}"
    return flops


def time_distributed(registry, per_call_once=True):
    """The rule of `TimeDistributed`, resolving the wrapped layer in `registry`.

    The wrapped layer's rule applies with the time axis added: a producer's
    output channels, a pass-through's per-channel weights and their slicing
    are the wrapped layer's, its FLOPs count once per time step, and the slim
    model rewrites the wrapped layer's config (`config_path`). Wrapped layers
    that merge, concatenate or flatten make a barrier.

    Args:
      registry: The `LayerRegistry` resolving the wrapped layer.
      per_call_once: Whether the parts of the wrapped layer's FLOPs computed
        from its weights alone (`per_call`) count once (tf_keras runs the
        layer once on all time steps) or at every step (Keras 3 calls the
        layer once per step). Defaults to `True`.
    """
    def rule(node):
        inner = node.wrapped
        if inner is None:
            return LayerSpec.barrier(f"wrapper {node.layer_path!r} whose wrapped layer the "
                                     "adapter did not describe")
        spec = registry.resolve(inner)
        flops = _per_step_flops(spec.flops, per_call_once)
        if spec.role in (Role.PRODUCER, Role.PASSTHROUGH):
            return spec.replace(config_path=("layer", "config") + spec.config_path, flops=flops)
        if spec.role is Role.BARRIER:
            return spec.replace(flops=flops)
        return LayerSpec.barrier(
            f"TimeDistributed {node.layer_path!r} around {inner.class_name}, whose channel "
            f"role ({spec.role.value}) is only supported outside TimeDistributed",
            flops=flops)
    rule.__name__ = "time_distributed"
    return rule


def _rewrite_projection_dim(config, ctx):
    config = dict(config)
    config["projection_dim"] = ctx.out_width
    return config


# ConvNeXt's LayerScale: `x * gamma`, one gamma per channel.
LAYER_SCALE = LayerSpec.passthrough(per_channel_weights={"gamma": 0},
                                    flops=formulas.per_element(1),
                                    rewrite=_rewrite_projection_dim)

# InceptionResNetV2's CustomScaleLayer: `inputs[0] + inputs[1] * scale`.
SCALED_ADD = LayerSpec(Role.MERGE, flops=formulas.per_element(2))


# Constant rules ---------------------------------------------------------------

# Channel-preserving layers known to cost nothing at inference (dropout and
# noise, padding, cropping, upsampling, leaky ReLU, global max pooling).
ZERO_COST = LayerSpec.passthrough(flops=formulas.zero)
RELU = LayerSpec.passthrough(flops=formulas.relu)
ELU = LayerSpec.passthrough(flops=formulas.elu)
THRESHOLDED_RELU = LayerSpec.passthrough(flops=formulas.per_element(2))
POOL = LayerSpec.passthrough(flops=formulas.pool)
GLOBAL_AVERAGE_POOL = LayerSpec.passthrough(flops=formulas.global_average_pool)
MERGE = LayerSpec(Role.MERGE, flops=formulas.merge)
AVERAGE = MERGE.replace(flops=formulas.average)
FLATTEN = LayerSpec(Role.FLATTEN, flops=formulas.zero)


# Layers both flavours have -----------------------------------------------------

# Public layer name -> rule, for the layers tf_keras and Keras 3 both export
# under that name and count alike; each flavour's table adds its own classes.
_SHARED_LAYER_RULES = {
    # Normalization
    "UnitNormalization": unit_norm,
    "Normalization": normalization,
    "Rescaling": rescaling,
    # Activations
    "Softmax": softmax,
    "PReLU": prelu,
    "LeakyReLU": ZERO_COST,
    "ELU": ELU,
    # Regularization (SpatialDropout* subclass Dropout)
    "Dropout": ZERO_COST,
    "Identity": ZERO_COST,
    "GaussianNoise": ZERO_COST,
    "GaussianDropout": ZERO_COST,
    "AlphaDropout": ZERO_COST,
    "ActivityRegularization": ZERO_COST,
    # Pooling
    "MaxPooling1D": POOL,
    "MaxPooling2D": POOL,
    "MaxPooling3D": POOL,
    "AveragePooling1D": POOL,
    "AveragePooling2D": POOL,
    "AveragePooling3D": POOL,
    "GlobalMaxPooling1D": ZERO_COST,
    "GlobalMaxPooling2D": ZERO_COST,
    "GlobalMaxPooling3D": ZERO_COST,
    "GlobalAveragePooling1D": GLOBAL_AVERAGE_POOL,
    "GlobalAveragePooling2D": GLOBAL_AVERAGE_POOL,
    "GlobalAveragePooling3D": GLOBAL_AVERAGE_POOL,
    # Shape
    "RepeatVector": ZERO_COST,
    "UpSampling1D": ZERO_COST,
    "UpSampling2D": ZERO_COST,
    "UpSampling3D": ZERO_COST,
    "ZeroPadding1D": ZERO_COST,
    "ZeroPadding2D": ZERO_COST,
    "ZeroPadding3D": ZERO_COST,
    "Cropping1D": ZERO_COST,
    "Cropping2D": ZERO_COST,
    "Cropping3D": ZERO_COST,
    "Flatten": FLATTEN,
    "Reshape": reshape,
    "Permute": permute,
    # Merging
    "Add": MERGE,
    "Subtract": MERGE,
    "Multiply": MERGE,
    "Maximum": MERGE,
    "Minimum": MERGE,
    "Average": AVERAGE,
    "Concatenate": concatenate,
}


def shared_entries(layers):
    """Layer class -> rule for the layers both Keras flavours have and count alike.

    Args:
      layers: A flavour's public layers module (`tf_keras.layers`, or
        `keras.layers` for Keras 3).

    Returns:
      A dict from that module's classes to their rules, to merge into the
      flavour's registry table.

    Example:

    ```python
    import tf_keras

    entries = shared_entries(tf_keras.layers)
    assert entries[tf_keras.layers.Dropout] is ZERO_COST
    ```
    """
    return {getattr(layers, name): rule for name, rule in _SHARED_LAYER_RULES.items()}
