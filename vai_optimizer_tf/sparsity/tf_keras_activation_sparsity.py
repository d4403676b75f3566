"""`ActivationSparsity` for tf_keras models: N:M sparsity of a layer's inputs, at run time.

See `activation_sparsity_base.py` for what it computes and how it exports.
Registered as `vai_optimizer_tf>ActivationSparsity`, and under its bare name
for the legacy `.h5` loader. Keras 3 models get the class of
`keras3_activation_sparsity.py`.
"""

import tf_keras

from vai_optimizer_tf.sparsity.activation_sparsity_base import ActivationSparsityBase


@tf_keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class ActivationSparsity(ActivationSparsityBase, tf_keras.layers.Layer):
    """Zeroes the smallest activations of each block of input channels (tf_keras).

    Args:
      block_size, sparsity, **kwargs: As for
        `activation_sparsity_base.ActivationSparsityBase`.

    Example:

    ```python
    layer = ActivationSparsity(block_size=4, sparsity=0.5)
    print(layer(tf.constant([[4.0, -1.0, 3.0, 2.0]])).numpy())   # [[4. 0. 3. 0.]]
    ```
    """


def _register():
    """Also registers the layer under its bare name, for the `.h5` loader (see `ChannelMask`)."""
    tf_keras.saving.get_custom_objects().setdefault(ActivationSparsity.__name__,
                                                    ActivationSparsity)


_register()
