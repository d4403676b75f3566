"""Trains an OFA supernet under `tf.distribute.MirroredStrategy` on 2 logical CPUs.

Usage: python ofa_mirrored_worker.py FLAVOUR OUT.npz  (FLAVOUR: tf_keras or keras3)

Logical devices must be configured before TensorFlow initialises its devices,
so `tests/test_ofa.py` runs this in a fresh process and compares the trained
weights with `train(None, FLAVOUR)`, the same training on one device. The model has no
BatchNormalization (whose per-replica batch statistics differ from one
device's by design) and the steps sample no random subnet, so both runs must
agree: largest and smallest subnets, distillation from the original model and
in place, gradients summed, at a global batch of 8.
"""

import contextlib
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def train(strategy, flavour):
    """Builds and trains the supernet (in `strategy`'s scope when given); returns its weights."""
    import vai_optimizer_tf as vot
    from tests.flavours import FLAVOURS
    from tests.small_models import plain_convnet

    keras = FLAVOURS[flavour]
    rs = np.random.RandomState(0)
    x = rs.rand(16, 8, 8, 3).astype("float32")
    y = rs.randint(0, 4, 16)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as workspace, scope:
        pruner = vot.OFAPruner(plain_convnet(keras=keras), workspace=workspace)
        supernet = pruner.ofa_model(expand_ratios=(0.5, 1.0), kernel_sizes=(3,),
                                    channel_divisible=1, num_random_subnets=0)
        supernet.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                         keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    supernet.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return [np.asarray(w) for w in supernet.weights]


def main():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")])
    weights = train(strategy, sys.argv[1])
    np.savez(sys.argv[2], **{f"w{i}": w for i, w in enumerate(weights)})
    print(json.dumps({"replicas": strategy.num_replicas_in_sync}))


if __name__ == "__main__":
    main()
