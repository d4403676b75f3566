"""`export_frozen_graph`: a TF1-style frozen `GraphDef` for graph-mode tools.

Quantizers such as vai_q_tensorflow, and other TF1-era tools, read a frozen
graph (`.pb`): one `GraphDef` whose variables are constants, plus the names
of its input and output nodes. Our node names are stable: each input is a
`Placeholder` named after the Keras input (`image`), each output an
`Identity` named after the Keras output layer (`logits`).
"""

import dataclasses
import os
import re

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.python.framework import convert_to_constants

from vai_optimizer_tf.export import signature
from vai_optimizer_tf.utils import atomic

_VARIABLE_OPS = frozenset({"VarHandleOp", "VariableV2", "Variable", "ReadVariableOp",
                           "AssignVariableOp", "ResourceGather"})


@dataclasses.dataclass(frozen=True)
class FrozenGraph:
    """What `export_frozen_graph` wrote.

    Attributes:
      path: The binary `GraphDef` (`.pb`).
      text_path: The text `GraphDef` (`.pbtxt`), or `None`.
      signature: The `ModelSignature`; its input and output names are the
        graph's node names (tensor `name:0`).
      graph_def: The frozen `tf.compat.v1.GraphDef`.
    """

    path: str
    text_path: object
    signature: signature.ModelSignature
    graph_def: object

    def describe(self):
        """The names and shapes a TF1 tool needs, as `vai_q_tensorflow` flags."""
        sig = self.signature
        return "\n".join([
            f"frozen graph: {self.path}" + (f" (text: {self.text_path})" if self.text_path else ""),
            f"  --input_nodes={','.join(sig.input_names)}",
            f"  --input_shapes={':'.join(t.shape_flag() for t in sig.inputs)}",
            f"  --output_nodes={','.join(sig.output_names)}",
        ])


def _rename_node(graph_def, old, new):
    """Renames node `old` to `new`, rewriting every reference to it."""
    pattern = re.compile(rf"^(\^?){re.escape(old)}(:\d+)?$")
    for node in graph_def.node:
        if node.name == old:
            node.name = new
        for i, name in enumerate(node.input):
            match = pattern.match(name)
            if match:
                node.input[i] = f"{match.group(1)}{new}{match.group(2) or ''}"


def freeze(model, batch_size=None, input_signature=None):
    """Freezes `model` into a `GraphDef` with stable input and output names.

    Args:
      model: A tf_keras or Keras 3 model.
      batch_size: `None` keeps the batch dimension open, an int fixes it.
        Defaults to `None`.
      input_signature: Optional `tf.TensorSpec` (or list) for undefined
        input dimensions. Defaults to the model's own input shapes.

    Returns:
      `(graph_def, signature)`.

    Raises:
      ValueError: for a bad `batch_size` or `input_signature`.
      RuntimeError: if a variable survives freezing.

    Example:

    ```python
    import tf_keras
    from vai_optimizer_tf import export

    inputs = tf_keras.Input((4,), name="features")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="scores")(inputs))
    graph_def, sig = export.freeze(model, batch_size=1)
    print(sig.describe())   # input  features: float32[1,4] / output scores: float32[1,2]
    ```
    """
    specs = signature.input_specs(model, batch_size, input_signature)
    names = signature.output_names(model)
    concrete = signature.serving_function(model, specs).get_concrete_function()
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    taken = {node.name for node in graph_def.node}
    # Outputs come flat, in tf.nest order of the traced dict (sorted keys).
    flat_names = tf.nest.flatten({name: name for name in names})
    nodes = dict(zip(flat_names, (t.op.name for t in frozen.outputs)))
    for name in names:
        node = nodes[name]
        if node == name:
            continue
        if name in taken:
            raise RuntimeError(f"Cannot name output node {name!r}: the frozen graph already has "
                               "a node of that name. Rename the output layer.")
        _rename_node(graph_def, node, name)
        taken.discard(node)
        taken.add(name)
    placeholders = {n.name for n in graph_def.node if n.op == "Placeholder"}
    missing = [s.name for s in specs if s.name not in placeholders]
    if missing:
        raise RuntimeError(f"Frozen graph has no placeholder for input(s) {missing}; "
                           f"placeholders are {sorted(placeholders)}.")
    leftover = sorted({n.op for n in graph_def.node if n.op in _VARIABLE_OPS})
    if leftover:
        raise RuntimeError(f"Variables survived freezing (ops {leftover}).")
    return graph_def, signature.signature_of(specs, concrete, names)


def export_frozen_graph(model, path, as_text=False, batch_size=None, input_signature=None,
                        print_fn=print, overwrite=True):
    """Writes the model as a frozen graph (`.pb`), optionally also as `.pbtxt`.

    Variables become constants and layers run in inference mode. Inputs are
    `Placeholder` nodes named after the Keras inputs, outputs `Identity`
    nodes named after the Keras output layers, so a tool fetches
    `logits:0` after feeding `image:0`. The names and shapes are printed in
    the form vai_q_tensorflow's flags take. The graph loads with
    `tf.compat.v1.import_graph_def`. Files are written atomically (temporary
    file, then rename).

    Args:
      model: A tf_keras or Keras 3 model, typically the slim model.
      path: Destination of the binary `GraphDef`, ending in `.pb`.
      as_text: Also write the text form next to it, with suffix `.pbtxt`.
        Defaults to `False`.
      batch_size: `None` keeps the batch dimension open (`?`); an int fixes
        it, which some TF1 tools need. Defaults to `None`.
      input_signature: Optional `tf.TensorSpec` (or list, one per input) for
        inputs whose non-batch dimensions are undefined. Defaults to the
        model's own input shapes.
      print_fn: Where the node names go; `None` is silent. Defaults to
        `print`.
      overwrite: Replace existing files, as `model.save` does. With `False`,
        an existing `.pb` (or `.pbtxt` with `as_text`) raises
        `FileExistsError`. Defaults to `True`.

    Returns:
      A `FrozenGraph`.

    Raises:
      ValueError: for a `path` not ending in `.pb`, a bad `batch_size` or
        `input_signature`.
      FileExistsError: if `overwrite=False` and a file to write exists.
      UnsupportedModelError: if `model` is not a built Keras model.

    Example:

    ```python
    import numpy as np
    import tensorflow as tf
    import tf_keras
    from vai_optimizer_tf import export

    inputs = tf_keras.Input((4,), name="features")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="scores")(inputs))
    frozen = export.export_frozen_graph(model, "model.pb", as_text=True)

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(frozen.graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        print(sess.run("scores:0", {"features:0": np.ones((3, 4))}).shape)   # (3, 2)
    ```
    """
    path = os.fspath(path)
    if not path.endswith(".pb"):
        raise ValueError(f"Invalid `path`: expected a file name ending in .pb. "
                         f"Received: path={path!r}")
    text_path = path[:-len(".pb")] + ".pbtxt" if as_text else None
    atomic.check_writable([p for p in (path, text_path) if p], overwrite)
    graph_def, sig = freeze(model, batch_size, input_signature)
    atomic.write_bytes_atomic(path, graph_def.SerializeToString())
    if as_text:
        atomic.write_bytes_atomic(text_path, text_format.MessageToString(graph_def).encode())
    result = FrozenGraph(path, text_path, sig, graph_def)
    if print_fn is not None:
        print_fn(result.describe())
    return result
