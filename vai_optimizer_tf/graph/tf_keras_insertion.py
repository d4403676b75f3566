"""How a tf_keras model config writes the calls of an inserted layer.

A tf_keras Functional config lists each call of a layer as
`[[layer name, node index, tensor index, call kwargs]]`; a Sequential config
gives its first layer the model's `batch_input_shape`. The config walk is
`layer_insertion.py`; `TfKerasAdapter.insert_before` runs it with these.
"""

import tf_keras

from vai_optimizer_tf.graph import layer_insertion


def _single_tensor_node(node, target):
    """The `[layer, node, tensor, kwargs]` entry of a call with one input tensor."""
    if (isinstance(node, list) and len(node) == 1 and isinstance(node[0], list)
            and len(node[0]) >= 3 and isinstance(node[0][0], str)):
        return node[0]
    raise ValueError(f"Cannot insert a layer in front of {target!r}: its call in the model "
                     f"config is not a call on one tensor ({node!r}).")


def _connect(entry, new_entry, new_name, path, first):
    if entry is None:  # in front of the first layer of a Sequential config
        if "batch_input_shape" in first["config"]:
            new_entry["config"]["batch_input_shape"] = first["config"]["batch_input_shape"]
        return
    new_nodes = []
    for index, node in enumerate(entry["inbound_nodes"] or []):
        source = _single_tensor_node(node, path)
        new_nodes.append([[source[0], source[1], source[2], {}]])
        kwargs = source[3] if len(source) > 3 else {}
        entry["inbound_nodes"][index] = [[new_name, index, 0, kwargs]]
    new_entry["inbound_nodes"] = new_nodes


def insert_layers(config, layer_for, suffix):
    """`layer_insertion.insert_layers` on a tf_keras model config.

    Returns:
      `(inserted, classes)`, see `layer_insertion.insert_layers`.

    Raises:
      ValueError: if a target is called on several tensors.
    """
    return layer_insertion.insert_layers(config, layer_for, suffix,
                                         tf_keras.saving.serialize_keras_object, _connect)
