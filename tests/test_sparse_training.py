"""Specification: an N:M sparse model keeps its pattern through training, with no callback.

Whatever trains it (`fit` with SGD momentum, Adam or AdamW, several steps per
execution, XLA (`jit_compile=True`), mixed precision, a `MirroredStrategy`, a
`tf.GradientTape` loop), the pruned entries are exactly zero afterwards and
they are the same entries as before: survivors are not re-selected. A model
saved as `.keras` (or `.h5`, tf_keras) and loaded in a fresh process recovers
its masks from the kernels' zeros and keeps the same pattern while it trains
further. `GradualSparsity` ramps a dense-masked model to its pattern along a
TFMOT schedule. Every test runs on a tf_keras model and on a Keras 3 model
(the module's `keras` fixture), except the `.h5` format (tf_keras only).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import vai_optimizer_tf as vot
from tests import model_utils, nm_utils
from tests.flavours import FLAVOURS, flavour_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sparse_mirrored_worker.py")
OPTIMIZERS = {
    "sgd_momentum": lambda keras: keras.optimizers.SGD(0.1, momentum=0.9),
    "adam": lambda keras: keras.optimizers.Adam(0.01),
    "adamw_weight_decay": lambda keras: keras.optimizers.AdamW(0.01, weight_decay=0.1),
}


@pytest.fixture(scope="module", params=list(FLAVOURS))
def keras(request):
    """The Keras flavour of the module's fixtures: tf_keras, then Keras 3."""
    return FLAVOURS[request.param]


@pytest.fixture(scope="module")
def pruner(keras):
    return vot.SparsePruner(nm_utils.nm_net(keras))


@pytest.fixture(scope="module")
def data():
    return nm_utils.training_data()


def fit(keras, model, data, optimizer, epochs=2, **compile_kwargs):
    model.compile(optimizer, nm_utils.loss_fn(keras), **compile_kwargs)
    x, y = data
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0)
    return model


class TestPatternHoldsThroughFit:

    @pytest.mark.parametrize("optimizer", OPTIMIZERS)
    def test_optimizer(self, keras, pruner, data, optimizer):
        sparse = pruner.sparse_model(0.5, 4)
        zeros, before = nm_utils.zero_positions(sparse), nm_utils.kernels(sparse)

        fit(keras, sparse, data, OPTIMIZERS[optimizer](keras))

        assert sparse.optimizer.iterations.numpy() == 8
        nm_utils.assert_trained(sparse, before)
        nm_utils.assert_same_zeros(sparse, zeros)
        nm_utils.assert_pattern(sparse, 4, 2)

    def test_steps_per_execution(self, keras, pruner, data):
        batch_ends = []
        sparse = pruner.sparse_model(0.75, 16)
        zeros, before = nm_utils.zero_positions(sparse), nm_utils.kernels(sparse)
        sparse.compile(keras.optimizers.AdamW(0.01, weight_decay=0.1), nm_utils.loss_fn(keras),
                       steps_per_execution=4)
        x, y = data
        sparse.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                   callbacks=[keras.callbacks.LambdaCallback(
                       on_train_batch_end=lambda batch, logs: batch_ends.append(batch))])

        assert sparse.optimizer.iterations.numpy() == 8 and len(batch_ends) == 2
        nm_utils.assert_trained(sparse, before)
        nm_utils.assert_same_zeros(sparse, zeros)
        nm_utils.assert_pattern(sparse, 16, 12)

    def test_xla_jit_compile_with_activation_sparsity(self, keras, data):
        sparse = vot.SparsePruner(nm_utils.nm_net(keras)).sparse_model(0.75, 16, a_sparsity=0.5)
        layers = nm_utils.ACTIVATION_SPARSE_LAYERS
        zeros, before = nm_utils.zero_positions(sparse, layers), nm_utils.kernels(sparse, layers)

        fit(keras, sparse, data, keras.optimizers.Adam(0.01), jit_compile=True,
            steps_per_execution=2)

        assert sparse.jit_compile is True and sparse.optimizer.iterations.numpy() == 8
        nm_utils.assert_trained(sparse, before, layers)
        nm_utils.assert_same_zeros(sparse, zeros)
        nm_utils.assert_pattern(sparse, 16, 12, layers)

    def test_custom_gradient_tape_loop(self, keras, pruner, data):
        sparse = pruner.sparse_model(0.5, 4)
        zeros, before = nm_utils.zero_positions(sparse), nm_utils.kernels(sparse)
        optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        model_utils.train_with_gradient_tape(sparse, optimizer, nm_utils.loss_fn(keras), data)

        assert optimizer.iterations.numpy() == 4
        nm_utils.assert_trained(sparse, before)
        nm_utils.assert_same_zeros(sparse, zeros)

    def test_mixed_float16_with_activation_sparsity(self, keras, data):
        keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            sparse = vot.SparsePruner(nm_utils.nm_net(keras)).sparse_model(0.75, 16,
                                                                           a_sparsity=0.5)
            layers = nm_utils.ACTIVATION_SPARSE_LAYERS
            zeros, before = (nm_utils.zero_positions(sparse, layers),
                             nm_utils.kernels(sparse, layers))
            fit(keras, sparse, data, keras.optimizers.Adam(0.01))
        finally:
            keras.mixed_precision.set_global_policy("float32")

        assert sparse.get_layer("conv_input_sparsity").compute_dtype == "float16"
        assert isinstance(sparse.optimizer, keras.mixed_precision.LossScaleOptimizer)
        nm_utils.assert_trained(sparse, before, layers)
        nm_utils.assert_same_zeros(sparse, zeros)
        nm_utils.assert_pattern(sparse, 16, 12, layers)

    def test_mirrored_strategy_built_and_reloaded_in_scope(self, keras, tmp_path):
        result = subprocess.run([sys.executable, WORKER, flavour_name(keras), str(tmp_path)],
                                capture_output=True, text=True, timeout=600, cwd=REPO)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])

        assert report == {"replicas": 2, "built": {"iterations": 8, "same_zeros": True},
                          "reloaded": {"iterations": 8, "same_zeros": True}}
        trained = keras.models.load_model(str(tmp_path / "reloaded.keras"))
        nm_utils.assert_pattern(trained, 4, 2)


class TestControl:

    def test_without_masks_training_brings_the_pruned_weights_back(self, keras, pruner, data):
        plain = nm_utils.nm_net(keras)
        plain.set_weights(pruner.sparse_model(0.5, 4).get_weights())
        nm_utils.assert_pattern(plain, 4, 2)

        fit(keras, plain, data, keras.optimizers.Adam(0.01))

        with pytest.raises(AssertionError, match="fewer than 2 zeros"):
            nm_utils.assert_pattern(plain, 4, 2)


CHILD = """
import json, sys
import numpy as np
import vai_optimizer_tf
from tests import nm_utils
from tests.flavours import FLAVOURS
x, y = nm_utils.training_data()
for path in sys.argv[2:]:
    model = FLAVOURS[sys.argv[1]].models.load_model(path)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.savez(path + ".npz", **nm_utils.kernels(model))
    print(json.dumps({"iterations": int(model.optimizer.iterations.numpy()),
                      "layers": [l.name for l in model.layers]}))
"""


def run_scripts(*scripts_and_args):
    """Runs each `(script, args)` in its own fresh Python process, all at once."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    processes = [subprocess.Popen([sys.executable, "-c", script] + list(args),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=REPO, env=env)
                 for script, args in scripts_and_args]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        results.append((process.returncode, stdout, stderr))
    return results


BARE_LOAD = """
import sys
from tests.flavours import FLAVOURS
FLAVOURS[sys.argv[1]].models.load_model(sys.argv[2])
"""


# The formats each flavour saves a sparse model in: Keras 3 writes no `.h5` of its own.
SAVE_SUFFIXES = {"tf_keras": (".keras", ".h5"), "keras3": (".keras",)}


class TestSaveAndReload:

    def test_fresh_process_recovers_the_masks_and_keeps_the_pattern(self, keras, pruner, data,
                                                                     tmp_path):
        flavour = flavour_name(keras)
        models = {}
        for suffix in SAVE_SUFFIXES[flavour]:  # file name -> model
            models["w2of4" + suffix] = pruner.sparse_model(0.5, 4)
            models["w4of16_a50" + suffix] = pruner.sparse_model(0.75, 16, a_sparsity=0.5)
        paths, zeros = {}, {}
        for name, model in models.items():
            fit(keras, model, data, keras.optimizers.Adam(0.01), epochs=1)
            paths[name] = str(tmp_path / name)
            model.save(paths[name])
            zeros[name] = nm_utils.zero_positions(model)

        (code, out, err), (bare_code, _, bare_err) = run_scripts(
            (CHILD, [flavour] + list(paths.values())),
            (BARE_LOAD, [flavour, paths["w2of4.keras"]]))

        assert code == 0, err[-3000:]
        assert bare_code != 0 and "BlockSparseMask" in bare_err
        reports = [json.loads(line) for line in out.strip().splitlines()[-len(paths):]]
        assert [r["iterations"] for r in reports] == [8] * len(paths)  # 4 before the save, 4 after
        for name, report in zip(paths, reports):
            assert ("conv_input_sparsity" in report["layers"]) == ("a50" in name)
        for name, model in models.items():
            reloaded = dict(np.load(paths[name] + ".npz"))
            before = nm_utils.kernels(model)
            for layer, value in reloaded.items():
                np.testing.assert_array_equal(value == 0, zeros[name][layer], err_msg=layer)
                assert not np.allclose(value, before[layer]), layer  # it trained further

    def test_restore_masks_after_load_weights_into_a_trained_model(self, keras, pruner, data,
                                                                   tmp_path):
        donor = fit(keras, pruner.sparse_model(0.5, 4), data, keras.optimizers.Adam(0.01),
                    epochs=1)
        path = str(tmp_path / "donor.weights.h5")
        donor.save_weights(path)
        other = fit(keras, pruner.sparse_model(0.5, 8), data, keras.optimizers.Adam(0.01),
                    epochs=1)
        other.load_weights(path)  # masks of the 2:8 selection, zeros of the donor

        assert vot.sparsity.restore_masks(other) == len(nm_utils.SPARSE_KERNELS)
        zeros = nm_utils.zero_positions(other)
        other.fit(*data, batch_size=8, epochs=1, shuffle=False, verbose=0)

        nm_utils.assert_same_zeros(other, zeros)
        nm_utils.assert_same_zeros(other, nm_utils.zero_positions(donor))

    def test_run_eagerly_after_reload_still_keeps_a_pattern(self, keras, pruner, data, tmp_path):
        path = str(tmp_path / "sparse.keras")
        fit(keras, pruner.sparse_model(0.5, 4), data, keras.optimizers.Adam(0.01),
            epochs=1).save(path)
        loaded = keras.models.load_model(path)
        loaded.compile(keras.optimizers.Adam(0.01), nm_utils.loss_fn(keras), run_eagerly=True)

        loaded.fit(*data, batch_size=8, epochs=1, shuffle=False, verbose=0)

        nm_utils.assert_pattern(loaded, 4, 2)


def schedule(final, end_step=8):
    return tfmot.sparsity.keras.PolynomialDecay(0.0, final, begin_step=0, end_step=end_step,
                                                frequency=2)


class TestGradualSparsity:

    def test_ramps_from_dense_to_the_pattern(self, keras, pruner, data):
        sparse = pruner.sparse_model(0.75, 16, gradual=True)
        assert all(np.all(v != 0) for v in nm_utils.kernels(sparse).values())
        sparse.compile(keras.optimizers.Adam(0.01), nm_utils.loss_fn(keras))
        fewest = []
        record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: fewest.append(
            min(int(nm_utils.block_zero_counts(nm_utils.kernel(sparse, layer, attr), axis,
                                               16).min())
                for layer, (attr, axis) in nm_utils.SPARSE_KERNELS.items())))

        sparse.fit(*data, batch_size=8, epochs=3, shuffle=False, verbose=0,
                   callbacks=[vot.callbacks.GradualSparsity(schedule(0.75)), record])

        assert fewest == sorted(fewest) and fewest[0] < 12 and fewest[-1] == 12
        assert len(set(fewest)) >= 3  # several steps on the way
        nm_utils.assert_pattern(sparse, 16, 12)
        assert vot.sparsity_report(sparse).compliant

    def test_steps_per_execution_reaches_the_final_pattern(self, keras, pruner, data):
        sparse = pruner.sparse_model(0.5, 4, gradual=True)
        sparse.compile(keras.optimizers.Adam(0.01), nm_utils.loss_fn(keras),
                       steps_per_execution=3)

        sparse.fit(*data, batch_size=8, epochs=3, shuffle=False, verbose=0,
                   callbacks=[vot.callbacks.GradualSparsity(schedule(0.5))])

        nm_utils.assert_pattern(sparse, 4, 2)

    def test_schedule_must_end_at_the_models_sparsity(self, keras, pruner, data):
        sparse = pruner.sparse_model(0.5, 4, gradual=True)
        sparse.compile("adam", nm_utils.loss_fn(keras))
        with pytest.raises(ValueError, match="must end at the model's w_sparsity=0.5"):
            sparse.fit(*data, epochs=1, verbose=0,
                       callbacks=[vot.callbacks.GradualSparsity(schedule(0.75))])

    def test_needs_a_sparse_model(self, keras, data):
        model = nm_utils.nm_net(keras)
        model.compile("adam", nm_utils.loss_fn(keras))
        with pytest.raises(ValueError, match="has no N:M masks"):
            model.fit(*data, epochs=1, verbose=0,
                      callbacks=[vot.callbacks.GradualSparsity(schedule(0.5))])

    def test_bad_frequency(self):
        with pytest.raises(ValueError, match="Invalid `frequency`"):
            vot.callbacks.GradualSparsity(lambda step: 0.5, frequency=0)
