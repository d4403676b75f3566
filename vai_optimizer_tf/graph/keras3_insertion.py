"""How a Keras 3 model config writes the calls of an inserted layer.

A Keras 3 Functional config lists each call of a layer as
`{"args": [...], "kwargs": {...}}`, a tensor argument being a
`__keras_tensor__` entry whose `keras_history` is `[layer name, node index,
tensor index]`. A Sequential config starts with its `InputLayer`, so the new
entry needs nothing more. The config walk is `layer_insertion.py`;
`Keras3Adapter.insert_before` runs it with these.
"""

import copy

import keras

from vai_optimizer_tf.graph import layer_insertion


def _single_tensor(node, target):
    """The `__keras_tensor__` entry of a call whose only tensor argument is its first."""
    args = node.get("args") if isinstance(node, dict) else None
    if (isinstance(args, (list, tuple)) and len(args) == 1 and isinstance(args[0], dict)
            and args[0].get("class_name") == "__keras_tensor__"):
        return args[0]
    raise ValueError(f"Cannot insert a layer in front of {target!r}: its call in the model "
                     f"config is not a call on one tensor ({node!r}).")


def _connect(entry, new_entry, new_name, path, first):
    if entry is None:  # a Sequential config starts with its InputLayer: nothing to carry
        return
    new_nodes = []
    for index, node in enumerate(entry["inbound_nodes"] or []):
        tensor = _single_tensor(node, path)
        new_nodes.append({"args": [tensor], "kwargs": {}})
        output = copy.deepcopy(tensor)
        output["config"]["keras_history"] = [new_name, index, 0]
        entry["inbound_nodes"][index] = dict(node, args=[output])
    new_entry["inbound_nodes"] = new_nodes


def insert_layers(config, layer_for, suffix):
    """`layer_insertion.insert_layers` on a Keras 3 model config.

    Returns:
      `(inserted, classes)`, see `layer_insertion.insert_layers`.

    Raises:
      ValueError: if a target is called on several tensors.
    """
    return layer_insertion.insert_layers(config, layer_for, suffix,
                                         keras.saving.serialize_keras_object, _connect)
