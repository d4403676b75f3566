"""One worker of a `MultiWorkerMirroredStrategy` run that fine-tunes a sparse model.

Usage: TF_CONFIG=... python multi_worker_mirrored_worker.py SPEC_PATH WEIGHTS_PATH

`tests/test_training_masks.py` starts two of these on localhost, each with its
own `TF_CONFIG` (same cluster, its own task index). Each builds `gated_net`
(fixed seed) and its sparse model for the spec inside the strategy scope and
trains it with `fit` (SGD with momentum, 8 steps of a global batch of 8,
split between the workers). As in a real cluster, every worker saves: the
chief (task 0) to WEIGHTS_PATH, the other workers to a temporary folder they
delete afterwards. Each prints one JSON line: `{"task", "replicas",
"iterations", "weights_sha256"}`; equal digests show the workers ended with
the same weights.
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

# The strategy must exist before any other TensorFlow op runs.
STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()

import tf_keras as keras  # noqa: E402

import vai_optimizer_tf as vot  # noqa: E402
from tests.test_training_masks import gated_net, loss_fn, training_data  # noqa: E402


def main():
    spec_path, weights_path = sys.argv[1], sys.argv[2]
    runner = vot.IterativePruningRunner(gated_net(keras), workspace=os.path.dirname(spec_path))
    with STRATEGY.scope():
        sparse = runner.get_sparse_model(spec_path)
        sparse.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss_fn(keras))
    x, y = training_data()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).with_options(options)
    sparse.fit(dataset, epochs=2, verbose=0)

    # Every worker saves (saving may need all of them); only the chief's file is kept.
    # The same file name: the suffix picks the format, and with it the collective reads.
    chief = STRATEGY.extended.should_checkpoint  # True on the chief only
    target = weights_path if chief else os.path.join(
        tempfile.mkdtemp(prefix=f"worker{STRATEGY.cluster_resolver.task_id}-"),
        os.path.basename(weights_path))
    sparse.save_weights(target)
    if not chief:
        shutil.rmtree(os.path.dirname(target))
    digest = hashlib.sha256(b"".join(w.tobytes() for w in sparse.get_weights())).hexdigest()
    # A barrier: no worker leaves while another may still need it for a collective op.
    STRATEGY.reduce("SUM", STRATEGY.run(lambda: tf.constant(1.0)), axis=None)
    print(json.dumps({"task": STRATEGY.cluster_resolver.task_id,
                      "replicas": STRATEGY.num_replicas_in_sync,
                      "iterations": int(sparse.optimizer.iterations.numpy()),
                      "weights_sha256": digest}))


if __name__ == "__main__":
    main()
