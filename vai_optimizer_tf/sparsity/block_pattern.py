"""`BlockPattern`: N:M block sparsity along the input channels, in numpy.

A weight is cut into blocks of `block_size` consecutive entries along its
input-channel axis (one block per output channel, spatial position and group
of input channels). In each block, the `zeros` entries of smallest magnitude
are zero and the others are kept. This module knows nothing about Keras: it
validates the Vitis settings, selects the kept entries and counts pattern
violations on numpy arrays, so every flavour (tf_keras, Keras 3, TFLite
tensors read back) shares one definition.
"""

import dataclasses
import numbers

import numpy as np

# The pairings the Vitis `SparsePruner` accepts: weight sparsity with no
# activation sparsity, or 75% weights with 50% activations.
W_SPARSITIES = (0.5, 0.75)
A_SPARSITIES = (0.0, 0.5)
BLOCK_SIZES = (4, 8, 16)
_PAIRED_W_SPARSITY = 0.75


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_sparsity_config(w_sparsity, block_size, a_sparsity):
    """Checks a `(w_sparsity, block_size, a_sparsity)` setting against the Vitis rules.

    Weights may be 0.5 or 0.75 sparse when activations are dense; 50%
    activation sparsity requires 75% weight sparsity. Blocks hold 4, 8 or 16
    input channels.

    Args:
      w_sparsity: Fraction of each weight block that is zero.
      block_size: Consecutive input channels per block.
      a_sparsity: Fraction of each block of input activations that is zero.

    Returns:
      `(w_sparsity, block_size, a_sparsity)` as `(float, int, float)`.

    Raises:
      ValueError: for a value outside those sets or a pair the rules forbid.

    Example:

    ```python
    check_sparsity_config(0.75, 16, 0.5)   # (0.75, 16, 0.5)
    ```
    """
    if not _is_real(w_sparsity) or float(w_sparsity) not in W_SPARSITIES + (0.0,):
        raise ValueError(f"Invalid `w_sparsity`: expected one of {W_SPARSITIES}. "
                         f"Received: w_sparsity={w_sparsity!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral) \
            or int(block_size) not in BLOCK_SIZES:
        raise ValueError(f"Invalid `block_size`: expected one of {BLOCK_SIZES}. "
                         f"Received: block_size={block_size!r}")
    if not _is_real(a_sparsity) or float(a_sparsity) not in A_SPARSITIES:
        raise ValueError(f"Invalid `a_sparsity`: expected one of {A_SPARSITIES}. "
                         f"Received: a_sparsity={a_sparsity!r}")
    w_sparsity, block_size, a_sparsity = float(w_sparsity), int(block_size), float(a_sparsity)
    if a_sparsity > 0 and w_sparsity != _PAIRED_W_SPARSITY:
        raise ValueError(
            f"Invalid `w_sparsity`: a_sparsity={a_sparsity} requires "
            f"w_sparsity={_PAIRED_W_SPARSITY}, the only pairing with activation sparsity. "
            f"Received: w_sparsity={w_sparsity}")
    if w_sparsity == 0.0:
        raise ValueError(
            f"Invalid `w_sparsity`: expected one of {W_SPARSITIES}; 0.0 (with "
            f"a_sparsity=0.0) prunes nothing. Received: w_sparsity={w_sparsity}")
    return w_sparsity, block_size, a_sparsity


@dataclasses.dataclass(frozen=True)
class BlockPattern:
    """An N:M pattern: `zeros` of every `block_size` consecutive entries are zero.

    Attributes:
      block_size: Entries per block (M).
      zeros: Zero entries per block (M - N).

    Example:

    ```python
    pattern = BlockPattern.from_sparsity(0.75, 16)
    print(pattern, pattern.kept)   # 4:16 4
    ```
    """

    block_size: int
    zeros: int

    def __post_init__(self):
        if self.block_size < 1:
            raise ValueError(f"Invalid `block_size`: expected a positive integer. "
                             f"Received: block_size={self.block_size!r}")
        if not 0 <= self.zeros < self.block_size:
            raise ValueError(f"Invalid `zeros`: expected an integer in [0, {self.block_size}). "
                             f"Received: zeros={self.zeros!r}")

    @classmethod
    def from_sparsity(cls, sparsity, block_size):
        """The pattern zeroing `sparsity * block_size` entries per block (rounded down)."""
        return cls(int(block_size), int(np.floor(float(sparsity) * block_size + 1e-6)))

    @property
    def kept(self):
        """Kept entries per block (N)."""
        return self.block_size - self.zeros

    @property
    def sparsity(self):
        return self.zeros / self.block_size

    def __str__(self):
        return f"{self.kept}:{self.block_size}"


def blocks(values, axis, block_size):
    """`values` with `axis` moved last and cut into rows of `block_size` entries.

    Raises:
      ValueError: if the axis length is not a multiple of `block_size`.
    """
    values = np.asarray(values)
    moved = np.moveaxis(values, axis, -1)
    if moved.shape[-1] % block_size:
        raise ValueError(f"Axis {axis} of a weight of shape {values.shape} has "
                         f"{moved.shape[-1]} entries, not a multiple of block_size={block_size}.")
    return moved.reshape(-1, block_size)


def kept_mask(values, axis, pattern):
    """Which entries the pattern keeps: the largest magnitudes of every block.

    Ties are broken by position (the lower index is kept), so the result is
    deterministic and every block keeps exactly `pattern.kept` entries.

    Args:
      values: A numpy weight.
      axis: Its input-channel axis.
      pattern: A `BlockPattern`.

    Returns:
      A boolean array of `values.shape`, True where kept.
    """
    values = np.asarray(values)
    rows = blocks(np.abs(values.astype(np.float64)), axis, pattern.block_size)
    order = np.argsort(-rows, axis=1, kind="stable")
    keep = np.zeros(rows.shape, dtype=bool)
    np.put_along_axis(keep, order[:, :pattern.kept], True, axis=1)
    moved_shape = np.moveaxis(values, axis, -1).shape
    return np.moveaxis(keep.reshape(moved_shape), -1, axis)


def zeros_per_block(values, axis, block_size, zero_point=0):
    """The number of entries equal to `zero_point` in every block, as a flat int array."""
    return np.sum(blocks(values, axis, block_size) == zero_point, axis=1)


def violations(values, axis, pattern, zero_point=0):
    """How many blocks have fewer than `pattern.zeros` zero entries."""
    return int(np.sum(zeros_per_block(values, axis, pattern.block_size, zero_point)
                      < pattern.zeros))
