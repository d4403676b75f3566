"""The model zoo shared by test_zoo.py and test_stat_profiler.py.

Building a tf_keras.applications model, profiling it and pruning it each take
seconds, so every step is computed once per test session and cached here
(``functools.lru_cache`` on module-level functions: pytest imports this module
once, whichever test file asks first).

Models are built with ``weights=None`` at small input sizes and get random
BatchNormalization statistics, so that slicing errors in BN weights show up in
the outputs. They output logits (``classifier_activation=None``): with random
weights the softmax of 1000 classes is nearly uniform (VGG16's probabilities
are all 1e-3 +- 4e-7), which would hide any difference between two models.
"""

import dataclasses
import functools

import tf_keras as keras

import vai_optimizer_tf as vot
from model_utils import randomize_batch_norm
from profiler_flops import profiler_flops

# Model name -> square input size. The smallest sizes the constructors accept
# (Inception needs 75, Xception 71) or a small one keeping the test fast.
ZOO = {
    "ResNet50": 64,
    "MobileNet": 64,
    "MobileNetV2": 64,
    "VGG16": 32,
    "DenseNet121": 64,
    "InceptionV3": 75,
    "Xception": 71,
    "EfficientNetB0": 64,
}

SPARSITY = 0.5


def input_shapes(model):
    """Fully defined input shapes of ``model`` with a batch of 1, one per input."""
    return [(1,) + tuple(t.shape[1:]) for t in model.inputs]


@functools.lru_cache(maxsize=None)
def zoo_model(name):
    """The zoo model ``name``, built once, with random BN statistics.

    Args:
        name: A key of ``ZOO``.

    Returns:
        A tf_keras model. Callers must not modify it.
    """
    size = ZOO[name]
    constructor = getattr(keras.applications, name)
    model = constructor(weights=None, input_shape=(size, size, 3),
                        classifier_activation=None)
    return randomize_batch_norm(model, seed=0)


@functools.lru_cache(maxsize=None)
def zoo_profile(name):
    """``profiler_flops`` of the zoo model ``name``: (total, per_op_type, per_node)."""
    model = zoo_model(name)
    return profiler_flops(model, input_shapes(model))


@dataclasses.dataclass(frozen=True)
class PrunedZoo:
    """A zoo model pruned by ``uniform_spec(SPARSITY, channel_divisible=1)``.

    Attributes:
        model: The original model.
        runner: The `IterativePruningRunner` of ``model``.
        spec: The uniform `PruningSpec`.
        sparse: The sparse model built from ``spec``.
        slim: The slim model built from ``spec``.
    """

    model: keras.Model
    runner: vot.IterativePruningRunner
    spec: vot.PruningSpec
    sparse: keras.Model
    slim: keras.Model


@functools.lru_cache(maxsize=None)
def zoo_pruned(name):
    """The zoo model ``name`` pruned uniformly by ``SPARSITY``, built once."""
    model = zoo_model(name)
    runner = vot.IterativePruningRunner(model)
    spec = runner.uniform_spec(SPARSITY, criterion="l1", channel_divisible=1)
    return PrunedZoo(model, runner, spec, runner.get_sparse_model(spec),
                     runner.get_slim_model(spec))


@functools.lru_cache(maxsize=None)
def zoo_slim_profile(name):
    """``profiler_flops`` of the slim model of ``zoo_pruned(name)``."""
    slim = zoo_pruned(name).slim
    return profiler_flops(slim, input_shapes(slim))

