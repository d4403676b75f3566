"""The model zoo shared by test_zoo.py and test_stat_profiler.py, for both Keras flavours.

Building an `applications` model, profiling it and pruning it each take
seconds, so every step is computed once per test session and cached here
(``functools.lru_cache`` on module-level functions: pytest imports this module
once, whichever test file asks first).

Models are built with ``weights=None`` at small input sizes and get random
BatchNormalization statistics, so that slicing errors in BN weights show up in
the outputs. They output logits (``classifier_activation=None``): with random
weights the softmax of 1000 classes is nearly uniform (VGG16's probabilities
are all 1e-3 +- 4e-7), which would hide any difference between two models.

The tf_keras zoo is the eight models of the core issue. The Keras 3 zoo, to
keep the suite's time, is four models covering most patterns of the eight
(residual adds, depthwise convs, squeeze-excite with Reshape and Multiply,
Rescaling and Normalization, `keras.ops` calls such as `x + 3.0` inside
MobileNetV3Small; concatenations are covered by the pattern and property
tests); all eight pass in
`benchmarks/zoo.py --flavours keras3`, see docs/model_zoo.md.
"""

import dataclasses
import functools
from typing import Any

import vai_optimizer_tf as vot
from flavours import FLAVOURS
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
    "MobileNetV3Small": 64,
}

# Flavour -> the zoo models its tests build.
ZOO_BY_FLAVOUR = {
    "tf_keras": ("ResNet50", "MobileNet", "MobileNetV2", "VGG16", "DenseNet121", "InceptionV3",
                 "Xception", "EfficientNetB0"),
    "keras3": ("ResNet50", "MobileNetV2", "EfficientNetB0", "MobileNetV3Small"),
}
# `(flavour, name)` pairs, for parametrized tests.
ZOO_CASES = [(flavour, name) for flavour, names in ZOO_BY_FLAVOUR.items() for name in names]

SPARSITY = 0.5


def case_ids(cases):
    """`["keras3-ResNet50", ...]` for `(flavour, name)` cases, as pytest ids."""
    return ["-".join(case) for case in cases]


def input_shapes(model):
    """Fully defined input shapes of ``model`` with a batch of 1, one per input."""
    return [(1,) + tuple(t.shape[1:]) for t in model.inputs]


@functools.lru_cache(maxsize=None)
def zoo_model(flavour, name):
    """The zoo model ``name`` of a flavour, built once, with random BN statistics.

    Args:
        flavour: ``"tf_keras"`` or ``"keras3"``.
        name: A key of ``ZOO``.

    Returns:
        A model of that flavour. Callers must not modify it.
    """
    size = ZOO[name]
    constructor = getattr(FLAVOURS[flavour].applications, name)
    model = constructor(weights=None, input_shape=(size, size, 3),
                        classifier_activation=None)
    return randomize_batch_norm(model, seed=0)


@functools.lru_cache(maxsize=None)
def zoo_profile(flavour, name):
    """``profiler_flops`` of the zoo model: (total, per_op_type, per_node)."""
    model = zoo_model(flavour, name)
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

    model: Any
    runner: vot.IterativePruningRunner
    spec: vot.PruningSpec
    sparse: Any
    slim: Any


@functools.lru_cache(maxsize=None)
def zoo_pruned(flavour, name):
    """The zoo model pruned uniformly by ``SPARSITY``, built once."""
    model = zoo_model(flavour, name)
    runner = vot.IterativePruningRunner(model)
    spec = runner.uniform_spec(SPARSITY, criterion="l1", channel_divisible=1)
    return PrunedZoo(model, runner, spec, runner.get_sparse_model(spec),
                     runner.get_slim_model(spec))


@functools.lru_cache(maxsize=None)
def zoo_slim_profile(flavour, name):
    """``profiler_flops`` of the slim model of ``zoo_pruned(flavour, name)``."""
    slim = zoo_pruned(flavour, name).slim
    return profiler_flops(slim, input_shapes(slim))
