"""Shared pytest set-up: quiet TensorFlow, deterministic seeds, shared models."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")


@pytest.fixture(params=["tf_keras", "keras3"])
def keras(request):
    """The Keras flavour under test: the `tf_keras` module, then Keras 3's `keras`."""
    from tests.flavours import FLAVOURS
    return FLAVOURS[request.param]


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    tf.random.set_seed(0)


_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What running the suite may create in the checkout: caches and the venv (all in .gitignore).
_IGNORED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "build", "dist"}


def _source_files():
    files = set()
    for folder, dirs, names in os.walk(_REPO):
        dirs[:] = [d for d in dirs if d not in _IGNORED_DIRS and not d.endswith(".egg-info")]
        files.update(os.path.relpath(os.path.join(folder, n), _REPO) for n in names
                     if not n.endswith(".pyc"))
    return files


@pytest.fixture(autouse=True, scope="session")
def _source_tree_stays_clean():
    """Fails the run if a test wrote into the checkout: tests write under tmp_path only."""
    before = _source_files()
    yield
    written = sorted(_source_files() - before)
    assert not written, (f"The test run wrote {len(written)} file(s) into the source tree: "
                         f"{written[:10]}. Tests must write under tmp_path.")
