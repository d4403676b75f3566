"""The once-for-all classes of each Keras flavour, picked by the flavour of the model's adapter.

`OFAPruner` reads the model through `graph.adapters.adapter_for`, whose
adapter names the flavour (`"tf_keras"` or `"keras3"`); this module maps the
flavour to its supernet class (`tf_keras_supernet.py` or
`keras3_supernet.py`), whose `LAYERS` are the flavour's elastic layers. The
flavour modules are imported on first use only.
"""

import importlib

_SUPERNET_MODULES = {
    "tf_keras": "vai_optimizer_tf.ofa.tf_keras_supernet",
    "keras3": "vai_optimizer_tf.ofa.keras3_supernet",
}


def supernet_class(flavour):
    """The `OFASupernet` class of a Keras flavour (`"tf_keras"` or `"keras3"`).

    Raises:
      ValueError: for a flavour without once-for-all support.
    """
    if flavour not in _SUPERNET_MODULES:
        raise ValueError(f"Invalid `flavour`: expected one of {sorted(_SUPERNET_MODULES)}. "
                         f"Received: flavour={flavour!r}")
    return importlib.import_module(_SUPERNET_MODULES[flavour]).OFASupernet
