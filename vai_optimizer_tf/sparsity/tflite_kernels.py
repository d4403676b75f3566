"""Reading the kernels of a TFLite model back from the interpreter, sparse ones decoded.

`tf.lite.Optimize.EXPERIMENTAL_SPARSITY` stores a sparse weight as its
non-zero values plus TFLite sparsity parameters (a traversal order, an
optional block map and, per traversed dimension, a dense size or CSR
segments and indices), read at load time by a `DENSIFY` op. `read_kernels`
finds the weight of every convolution and fully connected op, decodes the
sparse ones in numpy (following the TFLite schema's `SparsityParameters`),
and gives them in one layout per op: output channels first, input channels
last (`canonical`), so they can be compared with the Keras kernels.
"""

import dataclasses
import warnings
from typing import Optional

import numpy as np
import tensorflow as tf

# TFLite op -> (weight input index, output-channel axis, input-channel axis).
WEIGHT_OPS = {
    "CONV_2D": (1, 0, 3),
    "FULLY_CONNECTED": (1, 0, 1),
    "TRANSPOSE_CONV": (1, 0, 3),
    "CONV_3D": (1, 4, 3),
    "CONV_3D_TRANSPOSE": (1, 3, 4),
}
_DENSE, _SPARSE_CSR = 0, 1


def decode_sparse(values, sparsity, shape):
    """The dense array of a TFLite sparse tensor.

    Args:
      values: The stored (non-zero) values, flat, in traversal order.
      sparsity: The tensor's `sparsity_parameters` from
        `Interpreter.get_tensor_details()`: `traversal_order`, `block_map`
        and `dim_metadata` (per traversed dimension: `format` 0 = dense with
        `dense_size`, 1 = CSR with `array_segments` and `array_indices`).
      shape: The tensor's dense shape.

    Returns:
      A numpy array of `shape`, zero where nothing is stored.
    """
    values = np.asarray(values).ravel()
    shape = tuple(int(d) for d in shape)
    order = [int(d) for d in sparsity["traversal_order"]]
    block_map = [int(d) for d in sparsity.get("block_map", [])]
    metadata = sparsity["dim_metadata"]
    rank = len(shape)
    # Sizes of the traversed dimensions: original dims (divided by their block
    # size when blocked), then one per block dimension.
    block_sizes = [int(metadata[order.index(rank + k)]["dense_size"])
                   for k in range(len(block_map))]
    expanded = list(shape)
    for k, dim in enumerate(block_map):
        expanded[dim] //= block_sizes[k]
    expanded += block_sizes
    positions = np.zeros(1, dtype=np.int64)
    coords = np.zeros((1, len(expanded)), dtype=np.int64)
    for level, dim in enumerate(order):
        meta = metadata[level]
        if int(meta["format"]) == _DENSE:
            size = int(meta["dense_size"])
            child = np.arange(size)
            positions = (positions[:, None] * size + child[None, :]).ravel()
            coords = np.repeat(coords, size, axis=0)
            coords[:, dim] = np.tile(child, len(coords) // size)
        else:
            segments = np.asarray(meta["array_segments"], dtype=np.int64)
            indices = np.asarray(meta["array_indices"], dtype=np.int64)
            starts, ends = segments[positions], segments[positions + 1]
            counts = ends - starts
            parent = np.repeat(np.arange(len(positions)), counts)
            positions = (np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
                         if len(positions) else np.zeros(0, np.int64)).astype(np.int64)
            coords = coords[parent]
            coords[:, dim] = indices[positions]
    dense_coords = coords[:, :rank].copy()
    for k, dim in enumerate(block_map):
        dense_coords[:, dim] = dense_coords[:, dim] * block_sizes[k] + coords[:, rank + k]
    out = np.zeros(shape, dtype=values.dtype)
    out[tuple(dense_coords.T)] = values[positions]
    return out


def canonical(values, out_axis, in_axis):
    """`values` as `[out, other axes in order (size-1 ones dropped), in]`."""
    values = np.asarray(values)
    rest = [a for a in range(values.ndim) if a not in (out_axis % values.ndim,
                                                       in_axis % values.ndim)]
    moved = np.transpose(values, [out_axis % values.ndim] + rest + [in_axis % values.ndim])
    keep = [moved.shape[0]] + [d for d in moved.shape[1:-1] if d != 1] + [moved.shape[-1]]
    return moved.reshape(keep)


@dataclasses.dataclass
class TFLiteKernel:
    """The weight of one TFLite convolution or fully connected op.

    Attributes:
      op: The op name, e.g. `CONV_2D`.
      tensor: Index of the weight tensor the op reads.
      name: That tensor's name.
      values: The dense weight (decoded when stored sparse), in the op's layout.
      zero_point: The value that stands for 0 (the quantization zero point of
        an integer weight, else 0).
      out_axis: The weight's output-channel axis in the op's layout.
      in_axis: Its input-channel axis.
      sparse_encoded: Whether the file stores it with sparsity parameters.
      stored_values: How many values the file stores for it.
    """

    op: str
    tensor: int
    name: str
    values: np.ndarray
    zero_point: int
    out_axis: int
    in_axis: int
    sparse_encoded: bool
    stored_values: int
    match: Optional[str] = None

    def canonical_zeros(self):
        """Where the weight is zero, as `[out, ..., in]` (see `canonical`)."""
        return canonical(self.values == self.zero_point, self.out_axis, self.in_axis)


def _zero_point(detail):
    points = np.asarray(detail.get("quantization_parameters", {}).get("zero_points", []))
    if points.size and np.issubdtype(detail["dtype"], np.integer):
        if np.any(points != points.flat[0]):
            raise ValueError(f"Weight {detail['name']!r} has per-channel zero points; only "
                             "symmetric weight quantization is supported.")
        return int(points.flat[0])
    return 0


def read_kernels(content):
    """The weight of every convolution and fully connected op of a TFLite model.

    Args:
      content: The flatbuffer, as bytes.

    Returns:
      A list of `TFLiteKernel`, in op order.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(
            model_content=bytes(content),
            experimental_op_resolver_type=(
                tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # pylint: disable=protected-access
    producer = {int(t): op for op in ops for t in op["outputs"]}
    kernels = []
    for op in ops:
        if op["op_name"] not in WEIGHT_OPS:
            continue
        weight_input, out_axis, in_axis = WEIGHT_OPS[op["op_name"]]
        tensor = int(op["inputs"][weight_input])
        source = producer.get(tensor)
        stored = tensor
        if source is not None and source["op_name"] == "DENSIFY":
            stored = int(source["inputs"][0])
        elif source is not None:
            continue  # a weight computed at run time (not a constant)
        detail = details[stored]
        raw = interpreter.get_tensor(stored)
        sparsity = detail.get("sparsity_parameters") or {}
        shape = tuple(int(d) for d in detail["shape"])
        values = decode_sparse(raw, sparsity, shape) if sparsity else np.asarray(raw)
        kernels.append(TFLiteKernel(op["op_name"], tensor, detail["name"], values,
                                    _zero_point(detail), out_axis, in_axis, bool(sparsity),
                                    int(np.size(raw))))
    return kernels
