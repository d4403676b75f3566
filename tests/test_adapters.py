"""The adapter contract: which adapter reads which model, and what the library asks of it.

Everything outside `vai_optimizer_tf/graph/` reaches a model through a
`ModelAdapter` only, so a flavour is supported exactly when its adapter
implements the contract. These tests pin that down: the model's class picks
the adapter, both adapters implement every abstract method, the shared code
calls no adapter attribute outside the contract, and models no adapter reads
are refused with a message that says why and what to do.
"""

import ast
import inspect
import os

import keras as keras3
import numpy as np
import pytest
import tf_keras

import vai_optimizer_tf as vot
from vai_optimizer_tf.graph import adapters
from vai_optimizer_tf.graph.adapter import ModelAdapter
from vai_optimizer_tf.graph.keras3_adapter import Keras3Adapter
from vai_optimizer_tf.graph.tf_keras_adapter import TfKerasAdapter

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "vai_optimizer_tf")
ADAPTERS = {"tf_keras": TfKerasAdapter, "keras3": Keras3Adapter}


def _tiny(keras):
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 1, name="conv")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(x))


@pytest.mark.parametrize("flavour", list(ADAPTERS))
def test_the_models_class_picks_the_adapter(flavour):
    keras = adapters.keras_module(flavour)
    model = _tiny(keras)

    adapter = adapters.adapter_for(model)

    assert type(adapter) is ADAPTERS[flavour]
    assert adapter.flavour == adapters.flavour_of(model) == flavour
    assert adapters.keras_module(flavour) is {"tf_keras": tf_keras, "keras3": keras3}[flavour]


@pytest.mark.parametrize("flavour", list(ADAPTERS))
def test_both_adapters_implement_the_whole_contract(flavour):
    cls = ADAPTERS[flavour]
    assert issubclass(cls, ModelAdapter)
    assert not inspect.isabstract(cls), cls.__abstractmethods__
    assert cls.mask_class is not None and cls.flavour == flavour


def _adapter_attributes_used_outside_graph():
    """`(module, attribute)` for every `<...>adapter.<attribute>` outside graph/."""
    used = set()
    for folder, _, names in os.walk(PACKAGE):
        if os.path.relpath(folder, PACKAGE).startswith("graph"):
            continue
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            for node in ast.walk(ast.parse(open(path).read(), path)):
                if not isinstance(node, ast.Attribute):
                    continue
                owner = node.value
                owner_name = (owner.id if isinstance(owner, ast.Name)
                              else owner.attr if isinstance(owner, ast.Attribute) else "")
                if owner_name.endswith("adapter"):
                    used.add((os.path.relpath(path, PACKAGE), node.attr))
    return used


def test_shared_code_calls_only_the_adapter_contract():
    contract = {name for name in dir(ModelAdapter) if not name.startswith("_")}
    contract |= {"graph", "model", "source_model"}  # set by every adapter while reading
    outside = sorted((module, attribute) for module, attribute
                     in _adapter_attributes_used_outside_graph() if attribute not in contract)
    assert not outside, f"adapter attributes used outside the contract: {outside}"
    assert _adapter_attributes_used_outside_graph(), "the scan found no adapter call at all"


def test_an_object_that_is_no_keras_model_is_refused():
    with pytest.raises(vot.UnsupportedModelError, match=r"Expected a Keras model.*tf_keras.*"
                                                        r"Keras 3.*Received: model of type"):
        vot.IterativePruningRunner(object())


def test_a_keras3_subclassed_model_is_refused_with_the_functional_way_out():
    class Net(keras3.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras3.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Net()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(vot.UnsupportedModelError, match=r"subclassed.*keras.Model\(inputs"):
        vot.IterativePruningRunner(model)


def test_a_keras3_model_given_to_the_tf_keras_adapter_names_the_picker():
    with pytest.raises(vot.UnsupportedModelError, match="adapter_for"):
        TfKerasAdapter(_tiny(keras3))


@pytest.mark.parametrize("flavour", list(ADAPTERS))
def test_io_names_are_the_input_and_output_layers(flavour):
    keras = adapters.keras_module(flavour)
    image = keras.Input((4, 4, 3), name="image")
    meta = keras.Input((2,), name="meta")
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(image)
    joined = keras.layers.Concatenate(name="join")([pooled, meta])
    model = keras.Model([image, meta], [keras.layers.Dense(3, name="logits")(joined),
                                        keras.layers.Dense(1, name="score")(joined)])
    sequential = keras.Sequential([keras.Input((3,), name="features"),
                                   keras.layers.Dense(2, name="scores")])

    assert adapters.io_names(model) == (["image", "meta"], ["logits", "score"])
    assert adapters.io_names(sequential)[1] == ["scores"]


@pytest.mark.parametrize("flavour", list(ADAPTERS))
def test_rebuilt_copies_compile_like_the_source_with_a_fresh_optimizer(flavour):
    keras = adapters.keras_module(flavour)
    model = _tiny(keras)
    model.compile(keras.optimizers.Adam(0.003), "mse", metrics=["mae"])
    adapter = adapters.adapter_for(model)

    copy = adapter.rebuild()
    assert adapter.compile_like_source(copy)

    assert copy.optimizer is not model.optimizer
    assert type(copy.optimizer) is type(model.optimizer)
    assert float(copy.optimizer.learning_rate.numpy()) == pytest.approx(0.003)
    x, y = np.ones((4, 4, 4, 3), "float32"), np.zeros((4, 4, 4, 2), "float32")
    np.testing.assert_allclose(copy.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0),
                               rtol=1e-6)


@pytest.mark.parametrize("flavour", list(ADAPTERS))
def test_an_uncompiled_source_leaves_its_copies_uncompiled(flavour):
    adapter = adapters.adapter_for(_tiny(adapters.keras_module(flavour)))
    assert adapter.compile_like_source(adapter.rebuild()) is False
