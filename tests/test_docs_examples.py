"""Every ```python block in README.md and docs/*.md runs, and docstring examples run.

Blocks of one page share a namespace, in order, so a page reads as one script.
"""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def python_blocks(text):
    return [m.group(1) for m in _BLOCK.finditer(text)]


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(open(p).read())],
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for i, block in enumerate(python_blocks(open(page).read())):
        try:
            exec(compile(block, f"{os.path.basename(page)}[block {i}]", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{page} block {i} failed: {type(e).__name__}: {e}\n{block}") from e


def _public_objects():
    import vai_optimizer_tf as vot
    return [getattr(vot, name) for name in vot.__all__]


def test_every_public_symbol_has_a_docstring():
    missing = [obj.__name__ for obj in _public_objects()
               if callable(obj) and not (obj.__doc__ or "").strip()]
    assert not missing


@pytest.mark.parametrize("name", ["IterativePruningRunner", "stat", "register_layer",
                                  "PruningSpec", "OFAPruner", "OFASupernet", "Keras3OFASupernet",
                                  "SubnetConfig"])
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    import numpy as np
    import tensorflow as tf
    import tf_keras
    import vai_optimizer_tf as vot

    monkeypatch.chdir(tmp_path)
    small = tf_keras.Sequential([tf_keras.Input((8, 8, 3)), tf_keras.layers.Conv2D(8, 3),
                                 tf_keras.layers.Conv2D(4, 3)])
    namespace = {"tf": tf, "tf_keras": tf_keras, "np": np, "vai_optimizer_tf": vot,
                 "runner": vot.IterativePruningRunner(small),
                 **{n: getattr(vot, n) for n in vot.__all__}}
    doc = getattr(vot, name).__doc__
    blocks = python_blocks(doc.replace("\n    ", "\n"))
    assert blocks, f"{name} has no ```python example"
    for block in blocks:
        exec(compile(block, f"{name} docstring", "exec"), namespace)


def _flavour_objects():
    from vai_optimizer_tf.callbacks.pruning_callback import PruningCallback
    from vai_optimizer_tf.masks import keras3_channel_mask
    return {"PruningCallback": PruningCallback,
            "keras3 ChannelMask": keras3_channel_mask.ChannelMask}


@pytest.mark.parametrize("name", ["PruningCallback", "keras3 ChannelMask"])
def test_flavour_docstring_examples_run(name, tmp_path, monkeypatch):
    import tensorflow as tf

    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(_flavour_objects()[name].__doc__.replace("\n    ", "\n"))
    assert blocks, f"{name} has no ```python example"
    for block in blocks:
        exec(compile(block, f"{name} docstring", "exec"), {"tf": tf})


def layer_support_names(table):
    """Class names in the first column of the layer support table, whole words.

    `MaxPooling1D/2D/3D` stands for MaxPooling1D, MaxPooling2D and
    MaxPooling3D; a name in backticks (`` `Conv` ``) counts too.
    """
    names = set()
    for line in table.splitlines():
        cells = line.split("|")
        if len(cells) < 3 or set(cells[1].strip()) <= set("-: ") or cells[1].strip() == "Layer":
            continue
        for token in re.findall(r"[A-Za-z_]\w*(?:/\dD)*", cells[1]):
            stem, *variants = token.split("/")
            names.add(stem)
            match = re.match(r"(.*?)\dD$", stem)
            if match:
                names.update(match.group(1) + variant for variant in variants)
    return names


def test_layer_support_names_are_whole_names():
    names = layer_support_names("| Layer | Role |\n|---|---|\n"
                                "| DepthwiseConv1D/2D, Foo (`Bar`) | passthrough |\n")
    assert names == {"DepthwiseConv1D", "DepthwiseConv2D", "Foo", "Bar"}
    assert "Conv2D" not in names


@pytest.mark.parametrize("package", ["tf_keras.", "keras."])
def test_layer_support_table_lists_every_registered_class(package):
    from vai_optimizer_tf.graph import keras3_adapter  # noqa: F401  (registers entries)
    from vai_optimizer_tf.graph import tf_keras_adapter  # noqa: F401  (registers entries)
    from vai_optimizer_tf.graph.registry import REGISTRY

    names = layer_support_names(open(os.path.join(ROOT, "docs", "layer_support.md")).read())
    missing = [cls.__name__ for cls in REGISTRY.registered_classes()
               if cls.__module__.startswith(package) and cls.__name__ not in names]
    assert not missing, f"docs/layer_support.md does not list {missing}"
