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


def small_mobilenet(seed=0, name="small_mobilenet", dw_kernel=5, keras=tf_keras):
    """A MobileNetV2-style net: stem, two inverted residual blocks (one strided), a head.

    Groups: the residual group `stem` (stem, b0_project), the expansions
    `b0_expand` and `b1_expand` (carried by depthwise convs), and
    `b1_project`, which only 1x1 convolutions touch (block 1 changes width, so
    it has no residual). Depthwise convs (2) outnumber regular ones with
    kernels larger than 1 (the stem), as in MobileNets.
    """
    keras.utils.set_random_seed(seed)
    L = keras.layers
    x = inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)
    x = L.ReLU(6.0, name="stem_relu")(L.BatchNormalization(name="stem_bn")(x))
    for b, (width, stride) in enumerate(((8, 1), (12, 2))):
        y = L.Conv2D(4 * x.shape[-1], 1, use_bias=False, name=f"b{b}_expand")(x)
        y = L.ReLU(6.0, name=f"b{b}_relu1")(L.BatchNormalization(name=f"b{b}_bn1")(y))
        y = L.DepthwiseConv2D(dw_kernel, strides=stride, padding="same", use_bias=False,
                              name=f"b{b}_dw")(y)
        y = L.ReLU(6.0, name=f"b{b}_relu2")(L.BatchNormalization(name=f"b{b}_bn2")(y))
        y = L.Conv2D(width, 1, use_bias=False, name=f"b{b}_project")(y)
        y = L.BatchNormalization(name=f"b{b}_bn3")(y)
        x = L.Add(name=f"b{b}_add")([x, y]) if stride == 1 and width == x.shape[-1] else y
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(5, name="head")(x)
    model = keras.Model(inputs, outputs, name=name)
    return model_utils.randomize_batch_norm(model, seed)


def plain_convnet(seed=0, name="plain_convnet", keras=tf_keras):
    """conv1 -> conv2 (5x5) -> GAP -> Dense, with biases and no BatchNormalization."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    x = inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = L.Conv2D(8, 5, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(4, name="head")(x), name=name)
