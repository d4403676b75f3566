"""Export formats, checked the way their users check them, for both Keras flavours.

The Keras files, the SavedModel, the frozen graph and the TFLite models are
written once per flavour (module fixtures, parametrized by the module's
`keras` fixture: tf_keras, then Keras 3) and then read back in a fresh Python
process that does not import vai_optimizer_tf, with the loaders of
TensorFlow and of the flavour's Keras only (`tf_keras.models.load_model` or
`keras.models.load_model`, `tf.saved_model.load`,
`tf.compat.v1.import_graph_def`, `tf.lite.Interpreter`). Their outputs are
compared with the slim Keras model's in this process.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import vai_optimizer_tf as vot
from tests.flavours import FLAVOURS
from vai_optimizer_tf import datasets, errors, export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module", params=list(FLAVOURS))
def keras(request):
    """The Keras flavour of the module's fixtures: tf_keras, then Keras 3."""
    return FLAVOURS[request.param]


def _convnet(keras):
    """A small ResNet-style classifier for 28x28x1 images."""
    x = inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="stem")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    y = keras.layers.Conv2D(24, 3, padding="same", activation="relu", name="b_conv1")(x)
    y = keras.layers.Conv2D(16, 3, padding="same", name="b_conv2")(y)
    x = keras.layers.ReLU(name="b_relu")(keras.layers.Add(name="b_add")([x, y]))
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="convnet")


def _two_in_two_out(keras):
    image = keras.Input((8, 8, 3), name="image")
    meta = keras.Input((5,), name="meta")
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(image)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Concatenate(name="cat")([x, meta])
    x = keras.layers.Dense(12, activation="relu", name="hidden")(x)
    return keras.Model([image, meta], [keras.layers.Dense(4, name="logits")(x),
                                       keras.layers.Dense(1, name="score")(x)], name="two_io")


@pytest.fixture(scope="module")
def data():
    _, ((x_train, y_train), (x_test, y_test)) = datasets.load_example_dataset()
    return x_train[:4000], y_train[:4000], x_test[:500], y_test[:500]


@pytest.fixture(scope="module")
def slim(keras, data, tmp_path_factory):
    """The slim model of a trained convnet pruned by half with channel_divisible=4."""
    x_train, y_train, _, _ = data
    keras.utils.set_random_seed(0)
    model = _convnet(keras)
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, batch_size=64, epochs=2, verbose=0)
    runner = vot.IterativePruningRunner(model, workspace=tmp_path_factory.mktemp("ws"))
    slim = runner.get_slim_model(runner.uniform_spec(0.5, channel_divisible=4))
    assert slim.count_params() < model.count_params()
    return slim


@pytest.fixture(scope="module")
def exported(keras, slim, data, tmp_path_factory):
    """Every format of the slim model (and a two-input, two-output model), written once."""
    _, _, x_test, _ = data
    root = tmp_path_factory.mktemp("export")
    lines = []
    paths = export.export_model(
        slim, root, formats=export.FORMATS, representative_data=x_test[:100],
        print_fn=lines.append)
    paths["saved_model_batch4"] = str(root / "batch4")
    export.export_saved_model(slim, paths["saved_model_batch4"], batch_size=4, print_fn=None)
    two = _two_in_two_out(keras)
    paths["two_io_saved_model"] = str(root / "two_io")
    export.export_saved_model(two, paths["two_io_saved_model"], print_fn=None)
    paths["two_io_pb"] = export.export_frozen_graph(two, root / "two_io.pb", print_fn=None).path
    return {"paths": {k: os.fspath(v) for k, v in paths.items()}, "lines": lines, "two": two,
            "root": root}


_FRESH_PROCESS_READER = r'''
import importlib, json, sys
import numpy as np
import tensorflow as tf
from google.protobuf import text_format

job = json.load(open(sys.argv[1]))
keras = importlib.import_module(job["keras"])  # tf_keras, or Keras 3's keras
paths = job["paths"]
x = np.load(job["x"])
image, meta = np.load(job["x_two"])["image"], np.load(job["x_two"])["meta"]
out, facts = {}, {"modules": []}

for fmt in ("keras", "h5"):
    model = keras.models.load_model(paths[fmt])      # no custom_objects
    out[fmt] = model.predict(x, verbose=0)

def input_shapes(signature):
    return {k: v.shape.as_list() for k, v in signature.structured_input_signature[1].items()}

serve = tf.saved_model.load(paths["saved_model"]).signatures["serving_default"]
facts["serving_inputs"] = input_shapes(serve)
facts["serving_outputs"] = sorted(serve.structured_outputs)
out["saved_model"] = serve(image=tf.constant(x))["logits"].numpy()
out["saved_model_batch3"] = serve(image=tf.constant(x[:3]))["logits"].numpy()
fixed = tf.saved_model.load(paths["saved_model_batch4"]).signatures["serving_default"]
facts["batch4_inputs"] = input_shapes(fixed)
out["saved_model_batch4"] = fixed(image=tf.constant(x[:4]))["logits"].numpy()
two = tf.saved_model.load(paths["two_io_saved_model"]).signatures["serving_default"]
result = two(image=tf.constant(image), meta=tf.constant(meta))
out["two_logits"], out["two_score"] = result["logits"].numpy(), result["score"].numpy()

def run_graph(graph_def, feeds, fetches):
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return sess.run(fetches, feeds)

graph_def = tf.compat.v1.GraphDef()
graph_def.ParseFromString(open(paths["frozen_graph"], "rb").read())
facts["ops"] = sorted({n.op for n in graph_def.node})
facts["placeholders"] = [n.name for n in graph_def.node if n.op == "Placeholder"]
out["frozen_graph"] = run_graph(graph_def, {"image:0": x}, "logits:0")
text_def = text_format.Parse(open(paths["pbtxt"]).read(), tf.compat.v1.GraphDef())
out["pbtxt"] = run_graph(text_def, {"image:0": x}, "logits:0")
graph_def = tf.compat.v1.GraphDef()
graph_def.ParseFromString(open(paths["two_io_pb"], "rb").read())
out["two_pb_logits"], out["two_pb_score"] = run_graph(
    graph_def, {"image:0": image, "meta:0": meta}, ["logits:0", "score:0"])

for fmt in ("tflite", "tflite_int8"):
    interpreter = tf.lite.Interpreter(model_path=paths[fmt])
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    feed = x
    if inp["dtype"] == np.int8:
        scale, zero = inp["quantization"]
        feed = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    interpreter.set_tensor(inp["index"], feed)
    interpreter.invoke()
    y = interpreter.get_tensor(outp["index"])
    if outp["dtype"] == np.int8:
        scale, zero = outp["quantization"]
        y = (y.astype(np.float32) - zero) * scale
    facts[fmt + "_dtype"] = str(inp["dtype"].__name__)
    out[fmt] = y

facts["modules"] = sorted(m for m in sys.modules if m.startswith("vai_optimizer_tf"))
np.savez(job["out"], **out)
json.dump(facts, open(job["facts"], "w"))
'''


@pytest.fixture(scope="module")
def fresh(keras, exported, data):
    """Outputs of every exported file, computed in a fresh process by TF's own loaders."""
    _, _, x_test, _ = data
    root = exported["root"]
    np.save(root / "x.npy", x_test)
    rng = np.random.RandomState(0)
    two_x = {"image": rng.rand(5, 8, 8, 3).astype("float32"),
             "meta": rng.rand(5, 5).astype("float32")}
    np.savez(root / "x_two.npz", **two_x)
    job = {"paths": exported["paths"], "x": str(root / "x.npy"), "x_two": str(root / "x_two.npz"),
           "out": str(root / "out.npz"), "facts": str(root / "facts.json"),
           "keras": keras.__name__}
    (root / "job.json").write_text(json.dumps(job))
    (root / "reader.py").write_text(_FRESH_PROCESS_READER)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(root / "reader.py"), str(root / "job.json")],
                          capture_output=True, text=True, env=env, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = dict(np.load(job["out"]))
    facts = json.loads((root / "facts.json").read_text())
    return outputs, facts, two_x


class TestFreshProcess:

    def test_reader_never_imported_vai_optimizer_tf(self, fresh):
        assert fresh[1]["modules"] == []

    @pytest.mark.parametrize("fmt", ["keras", "h5", "saved_model", "frozen_graph", "pbtxt",
                                     "tflite"])
    def test_float_formats_equal_the_slim_keras_model(self, fresh, slim, data, fmt):
        expected = slim.predict(data[2], verbose=0)
        np.testing.assert_allclose(fresh[0][fmt], expected, rtol=1e-4, atol=1e-4)

    def test_serving_signature_is_batch_polymorphic_and_named_after_keras(self, fresh, slim,
                                                                        data):
        outputs, facts, _ = fresh
        assert facts["serving_inputs"] == {"image": [None, 28, 28, 1]}
        assert facts["serving_outputs"] == ["logits"]
        np.testing.assert_allclose(outputs["saved_model_batch3"],
                                   slim.predict(data[2][:3], verbose=0), rtol=1e-4, atol=1e-4)

    def test_fixed_batch_signature(self, fresh, slim, data):
        outputs, facts, _ = fresh
        assert facts["batch4_inputs"] == {"image": [4, 28, 28, 1]}
        np.testing.assert_allclose(outputs["saved_model_batch4"],
                                   slim.predict(data[2][:4], verbose=0), rtol=1e-4, atol=1e-4)

    def test_two_inputs_two_outputs_keep_their_names(self, fresh, exported):
        outputs, _, two_x = fresh
        expected = exported["two"].predict([two_x["image"], two_x["meta"]], verbose=0)
        for prefix in ("two", "two_pb"):
            np.testing.assert_allclose(outputs[f"{prefix}_logits"], expected[0], rtol=1e-5,
                                       atol=1e-5)
            np.testing.assert_allclose(outputs[f"{prefix}_score"], expected[1], rtol=1e-5,
                                       atol=1e-5)

    def test_frozen_graph_has_constants_not_variables(self, fresh):
        ops = set(fresh[1]["ops"])
        assert "Const" in ops
        assert not ops & {"VarHandleOp", "VariableV2", "ReadVariableOp", "Variable"}
        assert fresh[1]["placeholders"] == ["image"]

    def test_int8_model_takes_int8_and_agrees_with_keras(self, fresh, slim, data):
        outputs, facts, _ = fresh
        assert facts["tflite_int8_dtype"] == "int8"
        _, _, x_test, y_test = data
        keras_top1 = np.argmax(slim.predict(x_test, verbose=0), axis=-1)
        int8_top1 = np.argmax(outputs["tflite_int8"], axis=-1)
        assert np.mean(int8_top1 == keras_top1) > 0.9
        assert abs(np.mean(int8_top1 == y_test) - np.mean(keras_top1 == y_test)) < 0.05


def test_saved_model_cli_lists_the_serving_signature(exported):
    proc = subprocess.run([os.path.join(BIN, "saved_model_cli"), "show", "--dir",
                           exported["paths"]["saved_model"], "--all"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    serving = text[text.index("signature_def['serving_default']"):]
    assert "inputs['image'] tensor_info" in serving
    assert "shape: (-1, 28, 28, 1)" in serving
    assert "outputs['logits'] tensor_info" in serving
    assert "shape: (-1, 10)" in serving


def test_export_model_prints_the_node_names_a_tf1_tool_needs(exported):
    text = "\n".join(exported["lines"])
    assert "--input_nodes=image" in text
    assert "--input_shapes=?,28,28,1" in text
    assert "--output_nodes=logits" in text
    assert "input  image: float32[?,28,28,1]" in text
    assert set(exported["paths"]) >= set(export.FORMATS)


class TestAccuracyReport:

    def test_labelled_data_reports_both_accuracies(self, slim, data, fresh, tmp_path):
        _, _, x_test, y_test = data
        lines = []
        result = export.export_tflite(slim, tmp_path / "m.tflite", validation_data=(x_test, y_test),
                                      print_fn=lines.append)
        keras_accuracy = np.mean(np.argmax(slim.predict(x_test, verbose=0), -1) == y_test)
        lite_accuracy = np.mean(np.argmax(fresh[0]["tflite"], -1) == y_test)  # fresh process
        assert result.metrics["keras"] == pytest.approx(keras_accuracy)
        assert result.metrics["tflite float"] == pytest.approx(lite_accuracy)
        assert f"keras         {keras_accuracy:.4f}" in "\n".join(lines)

    def test_eval_fn_sees_keras_and_tflite_models(self, slim, data, tmp_path):
        _, _, x_test, y_test = data
        seen = []

        def eval_fn(m):
            seen.append(type(m).__name__)
            return float(np.mean(np.argmax(m.predict(x_test[:64]), -1) == y_test[:64]))

        result = export.export_tflite(slim, tmp_path / "m.tflite", eval_fn=eval_fn,
                                      print_fn=None)
        assert seen == ["Functional", "TFLiteModel"]
        assert result.metrics["tflite float"] == pytest.approx(result.metrics["keras"], abs=0.02)

    def test_eval_fn_returning_no_number_is_refused(self, slim, tmp_path):
        with pytest.raises(ValueError, match="return one number"):
            export.export_tflite(slim, tmp_path / "m.tflite", eval_fn=lambda m: None,
                                 print_fn=None)


@pytest.mark.parametrize("keras", ["tf_keras"], indirect=True)  # TFMOT needs tf_keras
def test_qat_hand_off_trains_and_converts_to_int8(keras, slim, data, tmp_path):
    x_train, y_train, x_test, y_test = data
    qat = export.prepare_qat_model(slim)
    assert any("Quantize" in type(layer).__name__ for layer in qat.layers)
    qat.compile(keras.optimizers.Adam(1e-4),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
    qat.fit(x_train[:1000], y_train[:1000], batch_size=64, epochs=1, verbose=0)
    qat_accuracy = qat.evaluate(x_test, y_test, verbose=0)[1]
    slim_accuracy = np.mean(np.argmax(slim.predict(x_test, verbose=0), -1) == y_test)
    assert qat_accuracy > slim_accuracy - 0.05
    result = export.export_tflite(qat, tmp_path / "qat.tflite", quantization="qat",
                                  print_fn=None)
    interpreter = tf.lite.Interpreter(model_path=result.path)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    lite_accuracy = export.top1_accuracy(export.TFLiteModel(result.path), x_test, y_test)
    assert abs(lite_accuracy - qat_accuracy) < 0.05


@pytest.mark.parametrize("keras", ["keras3"], indirect=True)
def test_qat_of_a_keras3_model_is_refused_with_both_ways_out(keras, slim):
    with pytest.raises(errors.UnsupportedModelError) as raised:
        export.prepare_qat_model(slim)
    message = str(raised.value)
    assert "Keras 3 model" in message
    assert "import tf_keras as keras" in message
    assert "quantization='int8'" in message


@pytest.fixture(scope="module")
def tiny(keras):
    return keras.Sequential([keras.Input((4,), name="features"),
                             keras.layers.Dense(2, name="scores")], name="tiny")


class TestArguments:

    def test_keras_suffix(self, tiny, tmp_path):
        with pytest.raises(ValueError, match=r"Invalid `path`: expected .*\.keras.*Received: "
                                             r"path='.*model\.bin'"):
            export.save_keras(tiny, str(tmp_path / "model.bin"))

    def test_pb_suffix(self, tiny, tmp_path):
        with pytest.raises(ValueError, match="Invalid `path`: expected a file name ending in .pb"):
            export.export_frozen_graph(tiny, str(tmp_path / "model.pbtxt"), print_fn=None)

    def test_tflite_suffix(self, tiny, tmp_path):
        with pytest.raises(ValueError, match="ending in .tflite"):
            export.export_tflite(tiny, str(tmp_path / "model.lite"), print_fn=None)

    @pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "4"])
    def test_batch_size(self, tiny, tmp_path, batch_size):
        with pytest.raises(ValueError, match=r"Invalid `batch_size`.*Received: batch_size="):
            export.export_saved_model(tiny, tmp_path / "sm", batch_size=batch_size)

    def test_quantization(self, tiny, tmp_path):
        with pytest.raises(ValueError, match=r"Invalid `quantization`.*Received: "
                                             r"quantization='int4'"):
            export.convert_to_tflite(tiny, quantization="int4")

    def test_int8_needs_representative_data(self, tiny):
        with pytest.raises(ValueError, match="Invalid `representative_data`"):
            export.convert_to_tflite(tiny, quantization="int8")

    def test_unknown_format(self, tiny, tmp_path):
        with pytest.raises(ValueError, match=r"Invalid `formats`.*Received: formats=\['onnx'\]"):
            export.export_model(tiny, tmp_path, formats="onnx")

    def test_input_signature_must_fit(self, tiny):
        with pytest.raises(ValueError, match="Invalid `input_signature`"):
            export.export_frozen_graph(tiny, "x.pb", input_signature=tf.TensorSpec((None, 5)),
                                       print_fn=None)

    def test_not_a_keras_model(self, tmp_path):
        with pytest.raises(errors.UnsupportedModelError,
                           match="expected a tf_keras or Keras 3 Model"):
            export.save_keras(object(), str(tmp_path / "m.keras"))

    def test_input_signature_fills_undefined_dimensions(self, keras):
        inputs = keras.Input((None, None, 3), name="image")
        x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
        model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(x))
        graph_def, sig = export.freeze(model, batch_size=1,
                                       input_signature=tf.TensorSpec((1, 32, 32, 3)))
        assert sig.inputs[0].shape == (1, 32, 32, 3)
        assert sig.outputs[0].describe() == "gap: float32[1,4]"
        placeholder = [n for n in graph_def.node if n.name == "image"][0]
        assert [d.size for d in placeholder.attr["shape"].shape.dim] == [1, 32, 32, 3]


def _docstring_examples():
    names = []
    for name in export.__all__:
        doc = getattr(getattr(export, name), "__doc__", None) or ""
        if callable(getattr(export, name)) and "```python" in doc:
            names.append(name)
    return names


@pytest.mark.parametrize("name", _docstring_examples())
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    doc = getattr(export, name).__doc__.replace("\n    ", "\n")
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    for block in blocks:
        exec(compile(block, f"export.{name} docstring", "exec"), {"__name__": "__doc__"})


def test_saving_a_sparse_model_warns_that_it_needs_the_library(keras, tmp_path, caplog):
    runner = vot.IterativePruningRunner(_two_in_two_out(keras), workspace=tmp_path / "ws")
    sparse = runner.get_sparse_model(runner.uniform_spec(0.5, channel_divisible=1))
    slim = runner.get_slim_model(runner.uniform_spec(0.5, channel_divisible=1))
    # The sparse model's masks are in its config (docs/training.md); if they vanish, the masks
    # would not survive save/load, and this test must fail, not skip.
    assert any("vai_optimizer_tf" in json.dumps(layer.get_config(), default=str)
               for layer in sparse.layers), "the sparse model's config carries no ChannelMask"
    with caplog.at_level("WARNING", logger="vai_optimizer_tf"):
        export.save_keras(slim, tmp_path / "slim.keras")
    assert not caplog.records
    with caplog.at_level("WARNING", logger="vai_optimizer_tf"):
        export.save_keras(sparse, tmp_path / "quiet.keras", sparse_ok=True)
    assert not caplog.records
    with caplog.at_level("WARNING", logger="vai_optimizer_tf"):
        export.save_keras(sparse, tmp_path / "sparse.keras")
    assert "loads only after `import vai_optimizer_tf`" in caplog.text
