"""The N:M sparsity classes of each Keras flavour, keyed like `ModelAdapter.flavour`.

A sparse model carries `BlockSparseMask` constraints and, with activation
sparsity, `ActivationSparsity` layers of its own flavour: the tf_keras
classes for a tf_keras model, the Keras 3 twins for a Keras 3 model. Both
twins of each class share one base (`block_mask_base.py`,
`activation_sparsity_base.py`), which is what code reading a model checks.
"""

from vai_optimizer_tf.sparsity import keras3_activation_sparsity
from vai_optimizer_tf.sparsity import keras3_block_mask
from vai_optimizer_tf.sparsity import tf_keras_activation_sparsity
from vai_optimizer_tf.sparsity import tf_keras_block_mask

# Flavour -> (BlockSparseMask class, ActivationSparsity class).
_CLASSES = {
    "tf_keras": (tf_keras_block_mask.BlockSparseMask,
                 tf_keras_activation_sparsity.ActivationSparsity),
    "keras3": (keras3_block_mask.BlockSparseMask,
               keras3_activation_sparsity.ActivationSparsity),
}


def block_mask_class(flavour):
    """The `BlockSparseMask` constraint class of a flavour (`"tf_keras"` or `"keras3"`)."""
    return _CLASSES[flavour][0]


def activation_sparsity_class(flavour):
    """The `ActivationSparsity` layer class of a flavour (`"tf_keras"` or `"keras3"`)."""
    return _CLASSES[flavour][1]
