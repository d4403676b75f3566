"""Specification: N:M sparse models export to plain Keras, SavedModel and sparse-encoded TFLite.

The TFLite files are read back with the TFLite interpreter itself (no
delegates, every tensor kept): each sparse kernel arrives through a `DENSIFY`
op, and the dense weight TFLite computes from the sparse encoding keeps the
pattern along the op's input-channel axis (written by hand below). With
activation sparsity, every block of inputs reaching a sparse layer is at
least half zeros, in Keras and in TFLite (float and int8), on random data.
Every test runs on a tf_keras model and on a Keras 3 model (the module's
`keras` fixture); each flavour trains and exports its two sparse models once.
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

import vai_optimizer_tf as vot
from tests import nm_utils
from tests.flavours import FLAVOURS
from vai_optimizer_tf.sparsity import tflite_kernels

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TFLite op -> (weight input, input-channel axis of the weight), from the TFLite op reference.
WEIGHT_INPUT_AXIS = {"CONV_2D": (1, 3), "FULLY_CONNECTED": (1, 1), "TRANSPOSE_CONV": (1, 3)}
DATA_INPUT = {"CONV_2D": 0, "FULLY_CONNECTED": 0, "TRANSPOSE_CONV": 2}


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


def trained(keras, model, data):
    model.compile(keras.optimizers.Adam(0.01), nm_utils.loss_fn(keras))
    model.fit(*data, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(keras, pruner, data, tmp_path_factory):
    """2:4 and 4:16 + 50% activation sparsity, trained and exported (float and int8)."""
    out = {}
    for name, kwargs in {"w2of4": dict(w_sparsity=0.5, block_size=4),
                         "w4of16_a50": dict(w_sparsity=0.75, block_size=16,
                                            a_sparsity=0.5)}.items():
        sparse = trained(keras, pruner.sparse_model(**kwargs), data)
        folder = tmp_path_factory.mktemp(name)
        result = pruner.export_sparse_model(sparse, folder, representative_data=data[0],
                                            print_fn=None)
        out[name] = (sparse, result)
    return out


def interpreter(path, x):
    """A delegate-free interpreter that keeps every tensor, invoked once on `x` (float)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = tf.lite.Interpreter(
            model_path=path, experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=(
                tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    it.allocate_tensors()
    detail = it.get_input_details()[0]
    if np.issubdtype(detail["dtype"], np.integer):
        scale, zero_point = detail["quantization"]
        x = np.clip(np.round(x / scale + zero_point), -128, 127).astype(detail["dtype"])
    it.set_tensor(detail["index"], x)
    it.invoke()
    return it


def zero_point(it, index):
    points = [d for d in it.get_tensor_details() if d["index"] == index][0][
        "quantization_parameters"]["zero_points"]
    return int(points[0]) if len(points) else 0


def sparse_weight_ops(it):
    """`(op, weight tensor index)` of every conv / fully connected op fed by a DENSIFY op."""
    ops = it._get_ops_details()
    densified = {int(op["outputs"][0]) for op in ops if op["op_name"] == "DENSIFY"}
    found = []
    for op in ops:
        if op["op_name"] in WEIGHT_INPUT_AXIS:
            weight = int(op["inputs"][WEIGHT_INPUT_AXIS[op["op_name"]][0]])
            if weight in densified:
                found.append((op, weight))
    return found, len(densified)


class TestTFLiteKeepsThePattern:

    @pytest.mark.parametrize("quantization", ["float", "int8"])
    @pytest.mark.parametrize("name,block_size,zeros,count", [
        ("w2of4", 4, 2, len(nm_utils.SPARSE_KERNELS)),
        ("w4of16_a50", 16, 12, len(nm_utils.ACTIVATION_SPARSE_LAYERS))])
    def test_every_densified_kernel_keeps_the_pattern(self, exported, data, quantization,
                                                      name, block_size, zeros, count):
        _, result = exported[name]
        it = interpreter(result.tflite[quantization].path, data[0][:1])

        found, densify_ops = sparse_weight_ops(it)

        assert len(found) == densify_ops == count
        for op, weight in found:
            _, axis = WEIGHT_INPUT_AXIS[op["op_name"]]
            counts = nm_utils.block_zero_counts(it.get_tensor(weight), axis, block_size,
                                                zero=zero_point(it, weight))
            assert counts.min() >= zeros, (op["op_name"], weight)
        check = result.tflite[quantization].check
        assert check.compliant and check.sparse_encoded == count

    def test_decoder_matches_tflite_densify(self, exported, data):
        _, result = exported["w2of4"]
        it = interpreter(result.tflite["float"].path, data[0][:1])
        details = {d["index"]: d for d in it.get_tensor_details()}
        densify = [op for op in it._get_ops_details() if op["op_name"] == "DENSIFY"]

        assert densify
        for op in densify:
            stored, dense = int(op["inputs"][0]), int(op["outputs"][0])
            decoded = tflite_kernels.decode_sparse(
                it.get_tensor(stored), details[stored]["sparsity_parameters"],
                details[stored]["shape"])
            np.testing.assert_array_equal(decoded, it.get_tensor(dense))

    def test_outputs_and_sizes(self, exported, data):
        sparse, result = exported["w2of4"]
        it = interpreter(result.tflite["float"].path, data[0][:1])
        out = it.get_tensor(it.get_output_details()[0]["index"])

        np.testing.assert_allclose(out, np.asarray(sparse(data[0][:1])), rtol=0, atol=1e-4)
        for file in result.tflite.values():
            assert file.size_bytes == os.path.getsize(file.path)
        assert result.tflite["float"].size_bytes < result.tflite["float"].dense_size_bytes

    def test_overwrite_false_refuses_existing_files(self, pruner, exported):
        sparse, result = exported["w2of4"]
        with pytest.raises(FileExistsError, match="already exists"):
            pruner.export_sparse_model(sparse, os.path.dirname(result.keras_path),
                                       overwrite=False, print_fn=None)


class TestActivationSparsity:

    def test_keras_inputs_of_every_sparse_layer_are_half_zeros(self, keras, exported):
        sparse, _ = exported["w4of16_a50"]
        layers = nm_utils.ACTIVATION_SPARSE_LAYERS
        probe = keras.Model(sparse.inputs, [sparse.get_layer(n).input for n in layers])
        x = np.random.RandomState(3).normal(size=(4, 8, 8, 3)).astype("float32")

        for name, value in zip(layers, probe(x)):
            counts = nm_utils.block_zero_counts(np.asarray(value), -1, 16)
            assert counts.min() >= 8, name

    @pytest.mark.parametrize("quantization", ["float", "int8"])
    def test_tflite_inputs_of_every_sparse_op_are_half_zeros(self, exported, quantization):
        _, result = exported["w4of16_a50"]
        x = np.random.RandomState(4).normal(size=(1, 8, 8, 3)).astype("float32")
        it = interpreter(result.tflite[quantization].path, x)

        found, _ = sparse_weight_ops(it)

        assert len(found) == len(nm_utils.ACTIVATION_SPARSE_LAYERS)
        for op, _ in found:
            index = int(op["inputs"][DATA_INPUT[op["op_name"]]])
            counts = nm_utils.block_zero_counts(it.get_tensor(index), -1, 16,
                                                zero=zero_point(it, index))
            assert counts.min() >= 8, op["op_name"]

    def test_layer_keeps_the_largest_magnitudes_and_breaks_ties_by_channel(self, keras):
        layer = nm_utils.activation_sparsity_class(keras)(block_size=4, sparsity=0.5)
        x = tf.constant([[4.0, -1.0, -3.0, 2.0, 5.0, 5.0, 5.0, 5.0]])

        np.testing.assert_array_equal(np.asarray(layer(x)),
                                      [[4.0, 0.0, -3.0, 0.0, 5.0, 5.0, 0.0, 0.0]])

    def test_gradient_passes_straight_through(self, keras):
        layer = nm_utils.activation_sparsity_class(keras)(block_size=4, sparsity=0.5)
        x = tf.constant(np.random.RandomState(0).normal(size=(2, 8)).astype("float32"))
        weights = tf.constant(np.random.RandomState(1).normal(size=(2, 8)).astype("float32"))
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * weights)

        np.testing.assert_array_equal(tape.gradient(loss, x).numpy(), weights.numpy())

    def test_channels_must_be_a_multiple_of_the_block(self, keras):
        with pytest.raises(ValueError, match="multiple of block_size=16"):
            nm_utils.activation_sparsity_class(keras)(block_size=16, sparsity=0.5)(
                tf.zeros((1, 8)))


SAVED_MODEL_CHILD = """
import sys
import numpy as np, tensorflow as tf
assert "vai_optimizer_tf" not in sys.modules
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
np.save(sys.argv[3], list(serve(tf.constant(np.load(sys.argv[2]))).values())[0].numpy())
"""
KERAS_CHILD = """
import importlib, sys
import numpy as np
keras = importlib.import_module(sys.argv[4])
model = keras.models.load_model(sys.argv[1])
assert "vai_optimizer_tf" not in sys.modules
assert all(getattr(v, "constraint", None) is None for v in model.weights)
np.save(sys.argv[3], np.asarray(model(np.load(sys.argv[2]))))
"""


class TestPlainFormats:

    def test_keras_and_saved_model_load_without_the_library(self, keras, exported, data,
                                                            tmp_path):
        x_path = str(tmp_path / "x.npy")
        np.save(x_path, data[0][:4])
        runs = {"keras 2:4": (KERAS_CHILD, exported["w2of4"]),
                "saved_model 4:16 a50": (SAVED_MODEL_CHILD, exported["w4of16_a50"])}
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        processes = {}
        for label, (script, (_, result)) in runs.items():
            source = result.keras_path if "keras" in label else result.saved_model_dir
            out = str(tmp_path / (label.replace(" ", "_").replace(":", "") + ".npy"))
            processes[label] = (out, subprocess.Popen(
                [sys.executable, "-c", script, source, x_path, out, keras.__name__],
                cwd=str(tmp_path),
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for label, (out, process) in processes.items():
            _, err = process.communicate(timeout=600)
            assert process.returncode == 0, f"{label}: {err[-3000:]}"
            sparse, _ = runs[label][1]
            np.testing.assert_allclose(np.load(out), np.asarray(sparse(data[0][:4])), rtol=0,
                                       atol=1e-5, err_msg=label)
