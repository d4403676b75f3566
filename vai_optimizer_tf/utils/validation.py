"""Argument validators that produce Keras-style error messages."""

import numbers


def check_ratio(name, value, low_inclusive=True, high_inclusive=False):
    """Checks that `value` is a real number in [0, 1) (bounds configurable).

    Args:
        name: Argument name, used in the message.
        value: The value to check.
        low_inclusive: Whether 0 is allowed. Defaults to `True`.
        high_inclusive: Whether 1 is allowed. Defaults to `False`.

    Returns:
        `value` as a float.

    Raises:
        ValueError: if `value` is not a number in the range.
    """
    lo = "[" if low_inclusive else "("
    hi = "]" if high_inclusive else ")"
    expected = f"a float in {lo}0, 1{hi}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Invalid `{name}`: expected {expected}. Received: {name}={value!r}")
    value = float(value)
    too_low = value < 0 or (value == 0 and not low_inclusive)
    too_high = value > 1 or (value == 1 and not high_inclusive)
    if too_low or too_high or value != value:
        raise ValueError(f"Invalid `{name}`: expected {expected}. Received: {name}={value!r}")
    return value


def check_positive_int(name, value):
    """Checks that `value` is an int >= 1 and returns it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
                f"Invalid `{name}`: expected a positive integer. Received: {name}={value!r}")
    return int(value)


def check_shard(shard):
    """Validates `shard`: None, or a pair `(i, n)` of ints with 0 <= i < n."""
    if shard is None:
        return None
    if (not isinstance(shard, (tuple, list)) or len(shard) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in shard)
            or not 0 <= shard[0] < shard[1]):
        raise ValueError(f"Invalid `shard`: expected a pair (i, n) of ints with 0 <= i < n. "
                         f"Received: shard={shard!r}")
    return (int(shard[0]), int(shard[1]))


def check_seed(seed):
    """Checks that `seed` is a non-negative int and returns it."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"Invalid `seed`: expected a non-negative integer. Received: seed={seed!r}")
    return int(seed)
