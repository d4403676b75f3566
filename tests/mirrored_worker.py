"""Trains a sparse model under `tf.distribute.MirroredStrategy` on 2 logical CPUs.

Usage: python mirrored_worker.py FLAVOUR SPEC_PATH WEIGHTS_PATH

Logical devices must be configured before TensorFlow initialises its devices,
so `tests/test_training_masks.py` runs this in a fresh process. It builds
`gated_net` (fixed seed) with FLAVOUR's Keras (`tf_keras` or `keras3`) and
its sparse model for the spec inside the strategy scope, trains it with `fit` (SGD with momentum, 8 steps), saves the trained
weights to WEIGHTS_PATH for the parent test to check, and prints one JSON line:
`{"replicas": ..., "iterations": ...}`.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _CPU, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import vai_optimizer_tf as vot  # noqa: E402
from tests.flavours import FLAVOURS  # noqa: E402
from tests.test_training_masks import gated_net, loss_fn, training_data  # noqa: E402


def main():
    keras = FLAVOURS[sys.argv[1]]
    spec_path, weights_path = sys.argv[2], sys.argv[3]
    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    runner = vot.IterativePruningRunner(gated_net(keras), workspace=os.path.dirname(spec_path))
    with strategy.scope():
        sparse = runner.get_sparse_model(spec_path)
        sparse.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss_fn(keras))
    x, y = training_data()
    sparse.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    sparse.save_weights(weights_path)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                      "iterations": int(sparse.optimizer.iterations.numpy())}))


if __name__ == "__main__":
    main()
