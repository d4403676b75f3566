"""Checking that the N:M pattern of every sparse kernel survived TFLite conversion.

Each sparse Keras kernel is found among the TFLite kernels (read back from
the interpreter, sparse ones decoded) by its zero pattern: in the common
`[out, ..., in]` layout, the TFLite weight has the same shape and is zero
wherever the Keras kernel is (folding BatchNormalization rescales output
channels, and int8 quantization may round more weights to zero, but neither
brings a zero back). The pattern is then counted on the TFLite tensor itself,
along the op's own input-channel axis.
"""

import dataclasses
from typing import List

import numpy as np

from vai_optimizer_tf.sparsity import block_pattern
from vai_optimizer_tf.sparsity import tflite_kernels


@dataclasses.dataclass(frozen=True)
class KernelCheck:
    """One sparse Keras kernel in a TFLite model.

    Attributes:
      layer: The Keras layer path.
      weight: The Keras weight name.
      tensor: The TFLite tensor's name, or `None` if it was not found.
      op: The TFLite op reading it.
      sparse_encoded: Whether the file stores it in sparse form.
      blocks: Blocks counted along the op's input-channel axis.
      violations: Blocks with fewer zeros than the pattern asks.
    """

    layer: str
    weight: str
    tensor: str
    op: str
    sparse_encoded: bool
    blocks: int
    violations: int

    @property
    def compliant(self):
        return self.tensor is not None and self.violations == 0


@dataclasses.dataclass(frozen=True)
class PatternCheck:
    """The pattern of every sparse kernel in one TFLite model.

    Attributes:
      pattern: The `BlockPattern` checked.
      kernels: One `KernelCheck` per sparse Keras kernel.
    """

    pattern: block_pattern.BlockPattern
    kernels: List[KernelCheck]

    @property
    def compliant(self):
        """Whether every sparse kernel was found and keeps the pattern in every block."""
        return all(k.compliant for k in self.kernels)

    @property
    def sparse_encoded(self):
        """How many sparse kernels the file stores in sparse form."""
        return sum(k.sparse_encoded for k in self.kernels)

    def describe(self):
        bad = [k for k in self.kernels if not k.compliant]
        text = (f"{len(self.kernels) - len(bad)}/{len(self.kernels)} sparse kernels keep the "
                f"{self.pattern} pattern in every block; {self.sparse_encoded} stored "
                "sparse-encoded")
        for k in bad:
            where = "not found" if k.tensor is None else f"{k.violations}/{k.blocks} blocks"
            text += f"\n  {k.layer}.{k.weight}: {where}"
        return text


def check_pattern(content, keras_kernels, pattern):
    """Finds each sparse Keras kernel in a TFLite model and counts its pattern there.

    Args:
      content: The TFLite flatbuffer.
      keras_kernels: `(layer, weight, values, in_axis, out_axis)` per sparse
        kernel of the Keras model that was converted.
      pattern: The `BlockPattern` every one of them must keep.

    Returns:
      A `PatternCheck`.
    """
    candidates = tflite_kernels.read_kernels(content)
    zeros = [c.canonical_zeros() for c in candidates]
    taken = set()
    checks = []
    for layer, weight, values, in_axis, out_axis in keras_kernels:
        wanted = tflite_kernels.canonical(np.asarray(values) == 0, out_axis, in_axis)
        found = None
        for i, (candidate, z) in enumerate(zip(candidates, zeros)):
            if i in taken or z.shape != wanted.shape or not np.all(z[wanted]):
                continue
            if found is None or z.sum() < zeros[found].sum():
                found = i
        if found is None:
            checks.append(KernelCheck(layer, weight, None, None, False, 0, 0))
            continue
        taken.add(found)
        kernel = candidates[found]
        block_zeros = block_pattern.zeros_per_block(kernel.values, kernel.in_axis,
                                                    pattern.block_size, kernel.zero_point)
        checks.append(KernelCheck(layer, weight, kernel.name, kernel.op, kernel.sparse_encoded,
                                  int(block_zeros.size),
                                  int(np.sum(block_zeros < pattern.zeros))))
    return PatternCheck(pattern, checks)
