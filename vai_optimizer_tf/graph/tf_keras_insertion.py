"""Inserting layers into a tf_keras model through its config.

`SparsePruner` puts an `ActivationSparsity` layer in front of each sparse
layer when `a_sparsity > 0`. The model is rebuilt from its config with new
entries: in a Functional config the new layer takes over the target's
inbound nodes (one call per call of the target, so shared layers work) and
the target reads the new layer; in a Sequential config the new entry goes
right before the target. Nested models are handled at their own level. No
existing layer is wrapped or renamed, and weights are copied by layer path.
"""

import copy

import tf_keras
from tf_keras.src.saving import serialization_lib

_MODEL_CLASS_NAMES = ("Functional", "Sequential", "Model")


def _unique_name(base, taken):
    name, k = base, 1
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    taken.add(name)
    return name


def _new_entry(layer, name):
    entry = tf_keras.saving.serialize_keras_object(layer)
    entry["config"] = dict(entry["config"], name=name)
    entry["name"] = name
    return entry


def _single_tensor_node(node, target):
    """The `[layer, node, tensor, kwargs]` entry of a call with one input tensor."""
    if (isinstance(node, list) and len(node) == 1 and isinstance(node[0], list)
            and len(node[0]) >= 3 and isinstance(node[0][0], str)):
        return node[0]
    raise ValueError(f"Cannot insert a layer in front of {target!r}: its call in the model "
                     f"config is not a call on one tensor ({node!r}).")


def _insert(config, prefix, layer_for, suffix, inserted):
    layers = config["layers"]
    taken = {entry["config"]["name"] for entry in layers}
    functional = "input_layers" in config
    out = []
    for entry in layers:
        name = entry["config"]["name"]
        path = prefix + name
        if entry["class_name"] in _MODEL_CLASS_NAMES and "layers" in entry["config"]:
            _insert(entry["config"], path + "/", layer_for, suffix, inserted)
        layer = layer_for(path)
        if layer is None:
            out.append(entry)
            continue
        new_name = _unique_name(f"{name}_{suffix}", taken)
        new_entry = _new_entry(layer, new_name)
        if functional:
            nodes = entry.get("inbound_nodes") or []
            new_nodes = []
            for index, node in enumerate(nodes):
                source = _single_tensor_node(node, path)
                new_nodes.append([[source[0], source[1], source[2], {}]])
                kwargs = source[3] if len(source) > 3 else {}
                entry["inbound_nodes"][index] = [[new_name, index, 0, kwargs]]
            new_entry["inbound_nodes"] = new_nodes
        elif "batch_input_shape" in entry["config"] and not out:
            new_entry["config"]["batch_input_shape"] = entry["config"]["batch_input_shape"]
        out.append(new_entry)
        out.append(entry)
        inserted[path] = (prefix + new_name)
    config["layers"] = out


def insert_before(model, layer_for, suffix, custom_objects=None):
    """A copy of `model` with a new layer in front of some of its layers.

    Args:
      model: A tf_keras Sequential or Functional model (not modified).
      layer_for: `fn(layer path) -> layer or None`: the layer to insert in
        front of that layer (called with one input tensor), or None.
      suffix: The new layers are named `<target name>_<suffix>`.
      custom_objects: Name -> class for the model's custom layers.

    Returns:
      `(new model, {target path: inserted layer path})`. The new model has
      fresh weights; copy them by layer path.

    Raises:
      ValueError: if a target is called on several tensors.
    """
    config = copy.deepcopy(model.get_config())
    inserted = {}
    _insert(config, "", layer_for, suffix, inserted)
    with tf_keras.utils.custom_object_scope(custom_objects or {}), \
            serialization_lib.SafeModeScope(False):  # the user's own model, not a file
        if isinstance(model, tf_keras.Sequential):
            return tf_keras.Sequential.from_config(config), inserted
        return tf_keras.Model.from_config(config), inserted
