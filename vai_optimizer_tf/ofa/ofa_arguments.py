"""Argument checks of `OFAPruner.ofa_model` and `OFAPruner.search`."""

import numbers

from vai_optimizer_tf.utils import validation


def check_ratios(expand_ratios):
    """`expand_ratios` as a sorted tuple of distinct floats in (0, 1] that includes 1.0."""
    if isinstance(expand_ratios, (str, bytes)) or not hasattr(expand_ratios, "__iter__"):
        raise ValueError("Invalid `expand_ratios`: expected a sequence of floats in (0, 1] "
                         f"that includes 1.0. Received: expand_ratios={expand_ratios!r}")
    ratios = list(expand_ratios)
    if not ratios:
        raise ValueError("Invalid `expand_ratios`: expected at least one ratio, and 1.0 among "
                         "them. Received: expand_ratios=()")
    for r in ratios:
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not 0 < r <= 1:
            raise ValueError("Invalid `expand_ratios`: every ratio must be a float in (0, 1]. "
                             f"Received: expand_ratios={expand_ratios!r}")
    if max(ratios) != 1:
        raise ValueError("Invalid `expand_ratios`: 1.0 must be one of them, so the largest "
                         "subnet is the original model (the distillation teacher). Received: "
                         f"expand_ratios={expand_ratios!r}")
    if len(set(ratios)) < 2:
        raise ValueError("Invalid `expand_ratios`: expected at least two different ratios "
                         f"(1.0 and a smaller one). Received: expand_ratios={expand_ratios!r}")
    return tuple(sorted(float(r) for r in set(ratios)))


def check_kernel_sizes(kernel_sizes):
    """`kernel_sizes` as a sorted tuple of distinct odd positive ints, or None."""
    if kernel_sizes is None:
        return None
    if isinstance(kernel_sizes, (str, bytes)) or not hasattr(kernel_sizes, "__iter__"):
        raise ValueError("Invalid `kernel_sizes`: expected a sequence of odd positive ints, "
                         f"e.g. (3, 5), or None. Received: kernel_sizes={kernel_sizes!r}")
    sizes = list(kernel_sizes)
    if not sizes or any(isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1
                        or k % 2 == 0 for k in sizes):
        raise ValueError("Invalid `kernel_sizes`: expected odd positive ints (a smaller kernel "
                         "is the centre of a larger one), e.g. (3, 5). Received: "
                         f"kernel_sizes={kernel_sizes!r}")
    return tuple(sorted(int(k) for k in set(sizes)))


def check_weight(name, value):
    """A loss weight: a float >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"Invalid `{name}`: expected a number >= 0. Received: {name}={value!r}")
    return float(value)


def check_targets(flops_targets):
    """FLOPs-reduction targets as a list of floats in (0, 1)."""
    if isinstance(flops_targets, numbers.Real):
        flops_targets = (flops_targets,)
    targets = list(flops_targets) if hasattr(flops_targets, "__iter__") else None
    if not targets:
        raise ValueError("Invalid `flops_targets`: expected a non-empty sequence of FLOPs "
                         f"reductions in (0, 1). Received: flops_targets={flops_targets!r}")
    return [validation.check_ratio("flops_targets", t, low_inclusive=False) for t in targets]
