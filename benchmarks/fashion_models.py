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
