"""How a Keras 3 model config writes the calls of an inserted layer.

A Keras 3 Functional config lists each call of a layer as
`{"args": [...], "kwargs": {...}}`, a tensor argument being a
`__keras_tensor__` entry whose `keras_history` is `[layer name, node index,
tensor index]`. The config walk is `layer_insertion.py`;
`Keras3Adapter.insert_before` runs it with `reroute`.
"""

import copy


def reroute(node, new_name, index):
    """The `reroute` of `layer_insertion.insert_layers` for Keras 3 configs.

    A call is `{"args": [tensor], "kwargs": {...}}`; None for a call whose
    arguments are not one tensor.
    """
    args = node.get("args") if isinstance(node, dict) else None
    if not (isinstance(args, (list, tuple)) and len(args) == 1 and isinstance(args[0], dict)
            and args[0].get("class_name") == "__keras_tensor__"):
        return None
    output = copy.deepcopy(args[0])
    output["config"]["keras_history"] = [new_name, index, 0]
    return {"args": [args[0]], "kwargs": {}}, dict(node, args=[output])
