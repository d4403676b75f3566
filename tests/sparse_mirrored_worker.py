"""Trains N:M sparse models under `tf.distribute.MirroredStrategy` on 2 logical CPUs.

Usage: python sparse_mirrored_worker.py FLAVOUR OUTPUT_DIR

Logical devices must be configured before TensorFlow initialises its devices,
so `tests/test_sparse_training.py` runs this in a fresh process. Inside the
strategy scope it builds the 2:4 sparse model of `nm_net` with FLAVOUR's
Keras (`tf_keras` or `keras3`) and trains it (SGD
with momentum, 8 steps), saves it as `built.keras`, loads that file again in
the scope (masks recovered from the zeros when the train step is traced),
trains it 8 more steps and saves `reloaded.keras`. It prints one JSON line:
the replica count, and per model the optimizer steps and whether the pruned
entries stayed the same.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _CPU, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import vai_optimizer_tf as vot  # noqa: E402
from tests import nm_utils  # noqa: E402
from tests.flavours import FLAVOURS  # noqa: E402


def same_zeros(model, zeros):
    now = nm_utils.zero_positions(model)
    return all(np.array_equal(now[layer], zeros[layer]) for layer in zeros)


def train(keras, model, data):
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), nm_utils.loss_fn(keras))
    model.fit(*data, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return int(model.optimizer.iterations.numpy())


def main():
    keras, output_dir = FLAVOURS[sys.argv[1]], sys.argv[2]
    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    data = nm_utils.training_data()
    pruner = vot.SparsePruner(nm_utils.nm_net(keras))
    report = {"replicas": strategy.num_replicas_in_sync}
    with strategy.scope():
        built = pruner.sparse_model(0.5, 4)
    zeros = nm_utils.zero_positions(built)
    with strategy.scope():
        iterations = train(keras, built, data)
    report["built"] = {"iterations": iterations, "same_zeros": same_zeros(built, zeros)}
    built.save(os.path.join(output_dir, "built.keras"))
    with strategy.scope():
        reloaded = keras.models.load_model(os.path.join(output_dir, "built.keras"))
        iterations = train(keras, reloaded, data)
    report["reloaded"] = {"iterations": iterations, "same_zeros": same_zeros(reloaded, zeros)}
    reloaded.save(os.path.join(output_dir, "reloaded.keras"))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
