"""Models for the Fashion-MNIST benchmarks (28x28x1 inputs, 10 classes)."""

import tf_keras as keras


def vgg_dense_head():
    """A plain convnet with a hidden Dense(128) head (the case the old allocation hurt)."""
    x = inputs = keras.Input((28, 28, 1))
    for i, width in enumerate((32, 32, 64, 64)):
        x = keras.layers.Conv2D(width, 3, padding="same", name=f"conv{i + 1}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
        if i % 2:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i // 2 + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="vgg_dense_head")


def resnet20(width=16):
    """ResNet-20 for 28x28x1: 3 stages of 3 basic blocks, widths w, 2w, 4w, with BN."""
    x = inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="stem_bn")(x))
    for stage, w in enumerate((width, 2 * width, 4 * width)):
        for block in range(3):
            stride = 2 if stage and not block else 1
            name = f"s{stage}b{block}"
            y = keras.layers.Conv2D(w, 3, strides=stride, padding="same", use_bias=False,
                                    name=f"{name}_conv1")(x)
            y = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"{name}_bn1")(y))
            y = keras.layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
            y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)
            if stride != 1 or x.shape[-1] != w:
                x = keras.layers.Conv2D(w, 1, strides=stride, use_bias=False,
                                        name=f"{name}_proj")(x)
                x = keras.layers.BatchNormalization(name=f"{name}_proj_bn")(x)
            x = keras.layers.ReLU()(keras.layers.Add(name=f"{name}_add")([x, y]))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet20")


def mobilenet_v2(width=16, expansion=6):
    """A MobileNetV2-style net for 28x28x1: inverted residual blocks with depthwise convs.

    Stem 3x3 conv (width), then blocks (expansion t, channels c, repeats n,
    stride s) = (1, w, 1, 1), (t, 1.5w, 2, 2), (t, 2w, 2, 2), (t, 3w, 2, 1), a
    1x1 conv to 12w, global average pooling and a Dense(10). BatchNormalization
    and ReLU6 as in MobileNetV2; residual adds where shapes allow.
    """
    L = keras.layers

    def bn_relu(x, name, relu=True):
        x = L.BatchNormalization(name=f"{name}_bn")(x)
        return L.ReLU(6.0, name=f"{name}_relu")(x) if relu else x

    x = inputs = keras.Input((28, 28, 1))
    x = bn_relu(L.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(x), "stem")
    stages = ((1, width, 1, 1), (expansion, 3 * width // 2, 2, 2),
              (expansion, 2 * width, 2, 2), (expansion, 3 * width, 2, 1))
    for s, (t, channels, repeats, stride) in enumerate(stages):
        for r in range(repeats):
            name = f"b{s}_{r}"
            y = x
            if t != 1:
                y = bn_relu(L.Conv2D(t * x.shape[-1], 1, use_bias=False,
                                     name=f"{name}_expand")(y), f"{name}_expand")
            y = bn_relu(L.DepthwiseConv2D(3, strides=stride if r == 0 else 1, padding="same",
                                          use_bias=False, name=f"{name}_dw")(y), f"{name}_dw")
            y = bn_relu(L.Conv2D(channels, 1, use_bias=False, name=f"{name}_project")(y),
                        f"{name}_project", relu=False)
            if (stride == 1 or r) and x.shape[-1] == channels:
                y = L.Add(name=f"{name}_add")([x, y])
            x = y
    x = bn_relu(L.Conv2D(12 * width, 1, use_bias=False, name="last")(x), "last")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="mobilenet_v2")
