"""How a tf_keras model config writes the calls of an inserted layer.

A tf_keras Functional config lists each call of a layer as
`[[layer name, node index, tensor index, call kwargs]]`. The config walk is
`layer_insertion.py`; `TfKerasAdapter.insert_before` runs it with `reroute`.
"""


def reroute(node, new_name, index):
    """The `reroute` of `layer_insertion.insert_layers` for tf_keras configs.

    A call is `[[layer name, node index, tensor index, call kwargs]]`; None
    for a call on several tensors.
    """
    if not (isinstance(node, list) and len(node) == 1 and isinstance(node[0], list)
            and len(node[0]) >= 3 and isinstance(node[0][0], str)):
        return None
    source = node[0]
    kwargs = source[3] if len(source) > 3 else {}
    return [[source[0], source[1], source[2], {}]], [[new_name, index, 0, kwargs]]
