"""`channel_divisible="auto"`: the width multiple this CPU runs fastest.

CPU backends process channels in vector blocks: oneDNN (TensorFlow's CPU
kernels) lays activations out in blocks of 16 floats on AVX-512 CPUs and of 8
on AVX/AVX2 CPUs, and XNNPACK (TFLite) tiles its kernels likewise. A width
that is not a multiple of the block runs padded, or on slower kernels, so a
model pruned to arbitrary widths can run *slower* than its baseline (see
docs/deployment.md for the measurements). `"auto"` picks the block:

* 16 on CPUs with AVX-512;
* 8 everywhere else (AVX2 CPUs, ARM, and the multiple most accelerators and
  DPUs want).

Groups no wider than the multiple are kept whole. Pass an integer (1 for
any width) to choose yourself.
"""

import functools
import numbers
import warnings

AUTO = "auto"
_AVX512_MULTIPLE = 16
_DEFAULT_MULTIPLE = 8


@functools.lru_cache(maxsize=None)
def cpu_flags():
    """The CPU feature flags of /proc/cpuinfo (Linux), or an empty set elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def auto_channel_divisible(flags=None):
    """The multiple `channel_divisible="auto"` stands for on this machine.

    Args:
      flags: CPU feature flags to decide from. Defaults to this CPU's.

    Returns:
      16 when the CPU has AVX-512 (`avx512f`), else 8.

    Example:

    ```python
    from vai_optimizer_tf.planning.divisibility import auto_channel_divisible

    print(auto_channel_divisible())                   # 16 on an AVX-512 CPU
    print(auto_channel_divisible({"avx2", "fma"}))    # 8
    ```
    """
    flags = cpu_flags() if flags is None else frozenset(flags)
    return _AVX512_MULTIPLE if "avx512f" in flags else _DEFAULT_MULTIPLE


def resolve_channel_divisible(value, name="channel_divisible"):
    """Checks `channel_divisible` and turns `"auto"` into this CPU's multiple.

    Args:
      value: `"auto"` or a positive integer.
      name: The argument's name, for the error message. Defaults to
        `"channel_divisible"`.

    Returns:
      A positive int.

    Raises:
      ValueError: for anything else.
    """
    if isinstance(value, str) and value == AUTO:
        return auto_channel_divisible()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Invalid `{name}`: expected a positive integer or 'auto'. "
                         f"Received: {name}={value!r}")
    return int(value)


def warn_if_groups_stay_whole(value, multiple, groups, stacklevel=3):
    """Warns when `"auto"` keeps prunable groups whole because they are no wider than it.

    A user who did not choose the multiple would otherwise see narrow groups
    silently left unpruned.

    Args:
      value: The `channel_divisible` the user passed.
      multiple: What it resolved to.
      groups: The prunable `ChannelGroup`s.
      stacklevel: Passed to `warnings.warn`. Defaults to `3`.
    """
    if not (isinstance(value, str) and value == AUTO):
        return
    narrow = [g.name for g in groups if g.width <= multiple]
    if narrow:
        shown = ", ".join(repr(n) for n in narrow[:5]) + (" ..." if len(narrow) > 5 else "")
        warnings.warn(
            f"channel_divisible='auto' is {multiple} on this CPU, so {len(narrow)} of "
            f"{len(groups)} prunable groups, no wider than {multiple} channels, stay whole "
            f"({shown}). Pass channel_divisible=1 (or another multiple) to prune them.",
            UserWarning, stacklevel=stacklevel)
