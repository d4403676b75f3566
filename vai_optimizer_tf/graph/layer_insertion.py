"""Inserting layers into a model config in front of other layers, for any flavour.

`SparsePruner` puts an `ActivationSparsity` layer in front of each sparse
layer when `a_sparsity > 0`. The model is rebuilt from its config with new
entries: in a Functional config the new layer takes over the target's
inbound nodes (one call per call of the target, so shared layers work) and
the target reads the new layer; in a Sequential config the new entry goes
right before the target. Nested models are handled at their own level. No
existing layer is wrapped or renamed.

This module walks the config, which both flavours lay out alike (`layers`,
each entry with `class_name`, `config` and, in a Functional config,
`inbound_nodes`); how one call is written differs, so each flavour's
insertion module (`tf_keras_insertion.py`, `keras3_insertion.py`) passes its
own `reroute`. Models reach it through `ModelAdapter.insert_before`.
"""

MODEL_CLASS_NAMES = ("Functional", "Sequential", "Model")


def _unique_name(base, taken):
    name, k = base, 1
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    taken.add(name)
    return name


def _rerouted(reroute, node, new_name, index, target):
    calls = reroute(node, new_name, index)
    if calls is None:
        raise ValueError(f"Cannot insert a layer in front of {target!r}: its call in the model "
                         f"config is not a call on one tensor ({node!r}).")
    return calls


def insert_layers(config, layer_for, suffix, serialize, reroute, prefix="", inserted=None):
    """Adds a new layer entry in front of every layer `layer_for` names, in place.

    Args:
      config: A Functional or Sequential model config (changed in place).
      layer_for: `fn(layer path) -> layer or None`: the layer to insert in
        front of that layer (called with one input tensor), or None.
      suffix: The new layers are named `<target name>_<suffix>`.
      serialize: `fn(layer) -> config entry` of the flavour.
      reroute: `fn(node, new_name, index) -> (new node, target node)` of the
        flavour: given one call of the target (an `inbound_nodes` item), the
        same call made on the new layer, and the call of the target on the
        new layer's `index`-th output; None if the call is not on one tensor.
      prefix: The path of the model `config` belongs to, with a trailing `/`.
      inserted: Dict filled with `{target path: inserted layer path}`.

    Returns:
      `(inserted, classes)`: the paths dict and `{class name: class}` of the
      inserted layers, for the custom object scope of `from_config`.

    Raises:
      ValueError: if a target is called on several tensors.
    """
    inserted = {} if inserted is None else inserted
    classes = {}
    taken = {entry["config"]["name"] for entry in config["layers"]}
    functional = "input_layers" in config
    out = []
    for entry in config["layers"]:
        name = entry["config"]["name"]
        path = prefix + name
        if entry["class_name"] in MODEL_CLASS_NAMES and "layers" in entry["config"]:
            _, inner = insert_layers(entry["config"], layer_for, suffix, serialize, reroute,
                                     path + "/", inserted)
            classes.update(inner)
        layer = layer_for(path)
        if layer is None:
            out.append(entry)
            continue
        new_name = _unique_name(f"{name}_{suffix}", taken)
        new_entry = serialize(layer)
        new_entry["config"] = dict(new_entry["config"], name=new_name)
        new_entry["name"] = new_name
        if functional:
            calls = [_rerouted(reroute, node, new_name, index, path)
                     for index, node in enumerate(entry.get("inbound_nodes") or [])]
            new_entry["inbound_nodes"] = [new for new, _ in calls]
            entry["inbound_nodes"] = [target for _, target in calls]
        elif not out and "batch_input_shape" in entry["config"]:
            # A tf_keras Sequential config gives the model's input shape to its first layer.
            new_entry["config"]["batch_input_shape"] = entry["config"]["batch_input_shape"]
        classes[type(layer).__name__] = type(layer)
        out.extend([new_entry, entry])
        inserted[path] = prefix + new_name
    config["layers"] = out
    return inserted, classes
