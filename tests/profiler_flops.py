"""Reference FLOP counts computed by TensorFlow's own graph profiler.

This module is deliberately independent of the library under test: it
freezes a tf_keras model into a constant graph and asks
``tf.compat.v1.profiler`` for its registered ``flops`` statistics, so the
numbers can serve as ground truth in tests. The profiler also counts integer
ops (shape arithmetic such as an upsampled size: a few per layer, whatever
the batch); those are left out, as they are no floating-point operations.
"""

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants
from tensorflow.python.framework import function_def_to_graph

# Call ops that survive freezing, e.g. the XLA-compiled function tf_keras
# uses for grouped convolutions (``groups > 1``). The profiler does not look
# inside them, so their bodies are profiled separately.
_CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")


def _frozen_graph_def(model, input_shapes):
    """Freezes ``model`` called with ``training=False`` into a GraphDef.

    Args:
        model: A tf_keras model.
        input_shapes: List of fully defined input shapes (batch included),
            one per model input.

    Returns:
        The frozen ``GraphDef``, variables replaced by constants.
    """
    specs = [tf.TensorSpec(shape, tf.float32) for shape in input_shapes]

    @tf.function
    def forward(*inputs):
        args = inputs[0] if len(inputs) == 1 else list(inputs)
        return model(args, training=False)

    concrete = forward.get_concrete_function(*specs)
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    return frozen.graph.as_graph_def()


def _is_integer_op(graph, name):
    """Whether the op computes on integers: shape arithmetic (an upsampled size,
    a transposed permutation), which the profiler counts but is no float op."""
    outputs = graph.get_operation_by_name(name).outputs
    return bool(outputs) and outputs[0].dtype.is_integer


def _profile_graph_def(graph_def, library, prefix, per_op_type, per_node):
    """Profiles ``graph_def`` and the bodies of its function calls.

    Args:
        graph_def: The ``GraphDef`` to profile.
        library: ``FunctionDefLibrary`` of the frozen model.
        prefix: Prefix added to node names (the enclosing call node's path).
        per_op_type: Dict from op type to float ops, updated in place.
        per_node: Dict from node name to float ops, updated in place.

    Returns:
        The profiler's total float ops, function bodies included, without
        ops on integers.
    """
    graph_def.library.CopyFrom(library)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")

    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    root = tf.compat.v1.profiler.profile(graph, cmd="op", options=options)

    total = 0
    # The "op" view nests one op type per level; each level lists its nodes.
    pending = list(root.children)
    while pending:
        op_type = pending.pop()
        pending.extend(op_type.children)
        for node in op_type.graph_nodes:
            if not node.float_ops or _is_integer_op(graph, node.name):
                continue
            per_op_type[op_type.name] = (
                per_op_type.get(op_type.name, 0) + int(node.float_ops))
            per_node[prefix + node.name] = int(node.float_ops)
            total += int(node.float_ops)

    functions = {f.signature.name: f for f in library.function}
    for op in graph.get_operations():
        if op.type in _CALL_OPS:
            body, _ = function_def_to_graph.function_def_to_graph_def(
                functions[op.get_attr("f").name])
            # The leading Placeholder nodes are the arguments: give them the
            # call-site shapes (the stored ones may have a None batch).
            for arg, tensor in zip(body.node, op.inputs):
                arg.attr["shape"].shape.CopyFrom(tensor.shape.as_proto())
            total += _profile_graph_def(body, library, prefix + op.name + "/",
                                        per_op_type, per_node)
    return total


def profiler_flops(model, input_shapes):
    """Counts a model's float operations with TensorFlow's profiler.

    Args:
        model: A tf_keras model (single or multi input).
        input_shapes: List of fully defined input shapes including the batch
            dimension (normally 1), one per model input, in input order.

    Returns:
        A tuple ``(total, per_op_type, per_node)`` where ``total`` is the
        total float ops, ``per_op_type`` maps a TF op type (e.g.
        ``"Conv2D"``) to its summed float ops and ``per_node`` maps a node
        name of the frozen graph to its float ops. Nodes inside a function
        call (e.g. a grouped convolution) are named ``"<call node>/<node>"``.
        Only ops with a non-zero count appear in the dictionaries.
    """
    graph_def = _frozen_graph_def(model, input_shapes)
    per_op_type, per_node = {}, {}
    total = _profile_graph_def(graph_def, graph_def.library, "",
                               per_op_type, per_node)
    return total, per_op_type, per_node
