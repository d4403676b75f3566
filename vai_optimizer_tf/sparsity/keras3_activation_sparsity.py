"""`ActivationSparsity` for Keras 3 models: N:M sparsity of a layer's inputs, at run time.

See `activation_sparsity_base.py` for what it computes and how it exports.
Registered in Keras 3's registry under the same name as the tf_keras class,
`vai_optimizer_tf>ActivationSparsity`, so a sparse `.keras` file of either
flavour loads after `import vai_optimizer_tf`.
"""

import keras

from vai_optimizer_tf.sparsity.activation_sparsity_base import ActivationSparsityBase


@keras.saving.register_keras_serializable(package="vai_optimizer_tf")
class ActivationSparsity(ActivationSparsityBase, keras.layers.Layer):
    """Zeroes the smallest activations of each block of input channels (Keras 3).

    Args:
      block_size, sparsity, **kwargs: As for
        `activation_sparsity_base.ActivationSparsityBase`.

    Example:

    ```python
    from vai_optimizer_tf.sparsity import keras3_activation_sparsity

    layer = keras3_activation_sparsity.ActivationSparsity(block_size=4, sparsity=0.5)
    print(layer(tf.constant([[4.0, -1.0, 3.0, 2.0]])).numpy())   # [[4. 0. 3. 0.]]
    ```
    """
