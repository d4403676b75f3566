"""Small deterministic models shared by several test files."""

import tf_keras

from tests import model_utils


def small_resnet(seed=0, name="small_resnet", width=8, blocks=2, keras=tf_keras):
    """A ResNet-style net: stem, `blocks` residual blocks, a head. Same weights per seed.

    `keras` is the flavour's module: `tf_keras` (the default) or Keras 3's `keras`.
    """
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", name="stem")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for b in range(blocks):
        y = keras.layers.Conv2D(width * 2, 3, padding="same", name=f"b{b}_conv1")(x)
        y = keras.layers.BatchNormalization(name=f"b{b}_bn1")(y)
        y = keras.layers.ReLU(name=f"b{b}_relu1")(y)
        y = keras.layers.Conv2D(width, 3, padding="same", name=f"b{b}_conv2")(y)
        y = keras.layers.BatchNormalization(name=f"b{b}_bn2")(y)
        x = keras.layers.Add(name=f"b{b}_add")([x, y])
        x = keras.layers.ReLU(name=f"b{b}_relu2")(x)
    x = keras.layers.Conv2D(width * 4, 1, name="expand")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(10, name="head")(x)
    model = keras.Model(inputs, outputs, name=name)
    return model_utils.randomize_batch_norm(model, seed)
