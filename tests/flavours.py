"""The two Keras flavours the library reads, for tests that run on both.

Tests take the `keras` fixture (tests/conftest.py), which is the `tf_keras`
module in one run and Keras 3's `keras` module in the other, and build their
models with it, so one test body specifies both flavours.
"""

import importlib

import keras as keras3
import tf_keras

FLAVOURS = {"tf_keras": tf_keras, "keras3": keras3}

# Layers private to the `applications` models of each flavour.
_PRIVATE_LAYERS = {
    "tf_keras": {"LayerScale": "tf_keras.src.applications.convnext",
                 "CustomScaleLayer": "tf_keras.src.applications.inception_resnet_v2"},
    "keras3": {"LayerScale": "keras.src.applications.convnext",
               "CustomScaleLayer": "keras.src.applications.inception_resnet_v2"},
}


def flavour_name(keras):
    """`"tf_keras"` or `"keras3"` for a flavour's module."""
    return next(name for name, module in FLAVOURS.items() if module is keras)


def private_layer(keras, name):
    """A layer class private to `keras.applications` models (`LayerScale`, ...)."""
    module = importlib.import_module(_PRIVATE_LAYERS[flavour_name(keras)][name])
    return getattr(module, name)
