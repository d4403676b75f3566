"""Specification of the once-for-all supernet (`OFAPruner.ofa_model`, `OFASupernet`).

Every test runs on a tf_keras model and on a Keras 3 model (the module's
`keras` fixture): the supernet, its training and its static subnets are of
the model's flavour. The search has its own file, `test_ofa_search.py`.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import vai_optimizer_tf as vot
from tests.flavours import FLAVOURS, flavour_name
from tests.profiler_flops import profiler_flops
from tests.small_models import plain_convnet, small_mobilenet
from zoo_models import zoo_model  # as test_zoo.py imports it, so the model is built once
from vai_optimizer_tf.ofa import ofa_flavours

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATIOS = (0.25, 0.5, 0.75, 1.0)
TOLERANCE = 1e-5
X = np.random.RandomState(1).rand(8, 12, 12, 3).astype("float32")


def relative_difference(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


@pytest.fixture(scope="module", params=list(FLAVOURS))
def keras(request):
    """The Keras flavour of the module's fixtures: tf_keras, then Keras 3."""
    return FLAVOURS[request.param]


def supernet_class(keras):
    """The flavour's `OFASupernet` class."""
    return ofa_flavours.supernet_class(flavour_name(keras))


@pytest.fixture(scope="module")
def model(keras):
    return small_mobilenet(keras=keras)


@pytest.fixture(scope="module")
def built(model, tmp_path_factory):
    """A pruner and its supernet (widths and 3x3 centres of the 5x5 depthwise kernels)."""
    pruner = vot.OFAPruner(model, workspace=str(tmp_path_factory.mktemp("ws")))
    return pruner, pruner.ofa_model(expand_ratios=RATIOS, kernel_sizes=(3,), channel_divisible=4)


def random_configs(space, count, seed=0):
    rng = np.random.RandomState(seed)
    return [space.decode(space.random_genes(rng)) for _ in range(count)]


class TestSearchSpace:

    def test_widths_come_from_the_channel_groups(self, built):
        _, supernet = built
        groups = {g.name: g.choices for g in supernet.space.groups}
        assert groups == {"stem": (4, 8), "b0_expand": (8, 16, 24, 32),
                          "b1_expand": (8, 16, 24, 32)}
        assert {k.path: k.choices for k in supernet.space.kernels} == {
            "b0_dw": (3, 5), "b1_dw": (3, 5)}

    def test_depthwise_models_focus_on_convolutions_with_kernels_larger_than_one(self, built):
        _, supernet = built
        assert "only touched by 1x1 convolutions" in supernet.space.fixed["b1_project"]

    def test_search_space_all_includes_the_1x1_groups(self, model, tmp_path):
        supernet = vot.OFAPruner(model, workspace=str(tmp_path)).ofa_model(
            expand_ratios=RATIOS, channel_divisible=4, search_space="all")
        assert "b1_project" in [g.name for g in supernet.space.groups]

    def test_strided_kernels_only_shrink_to_sizes_at_least_their_stride(self, model, tmp_path):
        supernet = vot.OFAPruner(model, workspace=str(tmp_path)).ofa_model(
            expand_ratios=RATIOS, kernel_sizes=(1, 3), channel_divisible=4)
        kernels = {k.path: k.choices for k in supernet.space.kernels}
        assert kernels == {"stem": (1, 3), "b0_dw": (1, 3, 5), "b1_dw": (3, 5)}  # b1_dw: stride 2


class TestReorder:

    def test_reordered_supernet_equals_the_original(self, model, built):
        _, supernet = built
        assert relative_difference(supernet(X), model(X)) <= TOLERANCE

    def test_each_group_is_sorted_by_importance(self, built):
        pruner, supernet = built
        for group in supernet.space.groups:
            producers = [g for g in pruner.groups if g.name == group.name][0].producers
            # L1 norm of each output channel's filters, summed over the producers.
            l1 = sum(np.abs(supernet.get_layer(p).get_weights()[0]).reshape(
                -1, group.width).sum(axis=0) for p in producers)
            assert np.all(np.diff(l1) <= 1e-6), group.name

    def test_the_users_model_is_not_modified(self, keras, tmp_path):
        model = small_mobilenet(keras=keras)
        before = [w.copy() for w in model.get_weights()]
        config = model.get_config()
        pruner = vot.OFAPruner(model, workspace=str(tmp_path))
        supernet = pruner.ofa_model(expand_ratios=RATIOS, kernel_sizes=(3,), channel_divisible=4)
        pruner.get_static_subnet(supernet.space.smallest())
        assert model.get_config() == config
        assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("layer_class", ["conv", "depthwise"])
@pytest.mark.parametrize("stride,size,kernel", [(1, 9, 1), (1, 9, 3), (2, 9, 3), (2, 10, 3),
                                                (3, 11, 3), (1, 8, 5)])
def test_a_centre_kernel_computes_a_static_conv_of_that_size(keras, layer_class, stride, size,
                                                              kernel):
    rs = np.random.RandomState(0)
    x = rs.rand(2, size, size, 6).astype("float32")
    spec = {"kernel_index": 0, "kernel_sizes": sorted({kernel, 5})}
    elastic = supernet_class(keras).LAYERS.elastic_class
    if layer_class == "conv":
        layer = elastic(keras.layers.Conv2D)(4, 5, strides=stride, padding="same",
                                             ofa_elastic=spec)
        static = keras.layers.Conv2D(4, kernel, strides=stride, padding="same")
    else:
        layer = elastic(keras.layers.DepthwiseConv2D)(5, strides=stride, padding="same",
                                                      ofa_elastic=spec)
        static = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same")
    layer(x)
    layer.set_weights([rs.normal(size=w.shape).astype("float32") if w.dtype == np.float32
                       else w for w in layer.get_weights()])
    layer.set_active([], [kernel])
    low = (5 - kernel) // 2
    static(x)
    static.set_weights([layer.get_weights()[0][low:low + kernel, low:low + kernel],
                        layer.get_weights()[1]])
    assert relative_difference(layer(x), static(x)) <= TOLERANCE


class TestStaticSubnets:

    def test_every_static_subnet_equals_the_supernet_at_its_configuration(self, built):
        pruner, supernet = built
        space = supernet.space
        try:
            for config in [space.largest(), space.smallest()] + random_configs(space, 6):
                supernet.set_config(config)
                static = pruner.get_static_subnet(config)
                assert relative_difference(static(X), supernet(X)) <= TOLERANCE, config
        finally:
            supernet.set_config(space.largest())

    def test_static_subnets_are_plain_slim_models(self, keras, built):
        pruner, supernet = built
        config = random_configs(supernet.space, 1, seed=3)[0]
        static = pruner.get_static_subnet(config)
        for layer in static.layers:
            assert getattr(keras.layers, type(layer).__name__) is type(layer)
            assert not any("ofa_" in w.name for w in layer.weights)
        widths = {layer.name: layer.filters for layer in static.layers
                  if isinstance(layer, keras.layers.Conv2D)}
        assert widths["b0_expand"] == config.widths["b0_expand"]
        assert widths["stem"] == config.widths["stem"]
        assert static.get_layer("b1_dw").kernel_size == (config.kernel_sizes["b1_dw"],) * 2

    def test_static_flops_are_the_profilers(self, model, built):
        pruner, supernet = built
        for config in (supernet.space.smallest(), random_configs(supernet.space, 1, 5)[0]):
            static = pruner.get_static_subnet(config)
            assert vot.stat(static).flops == profiler_flops(static, [(1, 12, 12, 3)])[0]

    def test_largest_and_smallest_configurations(self, model, built):
        pruner, supernet = built
        largest = pruner.get_static_subnet(supernet.space.largest())
        assert relative_difference(largest(X), model(X)) <= TOLERANCE
        assert vot.stat(largest).flops == vot.stat(model).flops
        smallest = pruner.get_static_subnet(supernet.space.smallest())
        assert smallest.get_layer("stem").filters == 4
        assert smallest.get_layer("b0_expand").filters == 8
        assert smallest.get_layer("b0_dw").kernel_size == (3, 3)
        assert vot.stat(smallest).flops < vot.stat(largest).flops

    def test_a_static_subnet_saves_and_reloads_in_a_fresh_process(self, keras, built,
                                                                  tmp_path):
        pruner, supernet = built
        static = pruner.get_static_subnet(supernet.space.smallest())
        path = str(tmp_path / "subnet.keras")
        static.save(path)
        np.save(tmp_path / "x.npy", X)
        code = ("import numpy as np, %s as k; m = k.models.load_model(%r); "
                "np.save(%r, np.asarray(m(np.load(%r))))" % (
                    keras.__name__, path, str(tmp_path / "y.npy"), str(tmp_path / "x.npy")))
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert relative_difference(np.load(tmp_path / "y.npy"), static(X)) <= TOLERANCE

    def test_a_static_subnet_exports_to_tflite(self, built, tmp_path):
        pruner, supernet = built
        static = pruner.get_static_subnet(random_configs(supernet.space, 1, seed=4)[0])
        path = str(tmp_path / "subnet.tflite")
        vot.export.export_tflite(static, path, print_fn=None)
        interpreter = tf.lite.Interpreter(model_path=path)
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], X.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], X)
        interpreter.invoke()
        lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        assert relative_difference(lite, static(X)) <= TOLERANCE


def _sequential_flatten_dense(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((10, 10, 3)), L.Conv2D(8, 3, padding="same",
                                                                activation="relu"),
                             L.Conv2D(8, 3, padding="same"), L.Flatten(),
                             L.Dense(6, activation="relu"), L.Dense(3)], name="sequential")


def _separable(keras):
    L = keras.layers
    inputs = keras.Input((10, 10, 3))
    y = L.SeparableConv2D(8, 5, padding="same", activation="relu", depth_multiplier=2)(inputs)
    y = L.SeparableConv2D(6, 3, padding="same", depth_multiplier=2)(y)
    return keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(y)), name="separable")


def _conv1d(keras):
    L = keras.layers
    inputs = keras.Input((10, 3))
    y = L.Conv1D(8, 5, padding="same", activation="relu")(inputs)
    y = L.Conv1D(8, 3, padding="causal")(y)
    return keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling1D()(y)), name="conv1d")


def _concat(keras):
    L = keras.layers
    inputs = keras.Input((10, 10, 3))
    a = L.Conv2D(6, 3, padding="same", activation="relu", name="left")(inputs)
    b = L.Conv2D(8, 1, activation="relu", name="right")(inputs)
    y = L.Conv2D(8, 3, padding="same", name="mix")(L.Concatenate(name="concat")([a, b]))
    return keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(y)), name="concat")


def _nested(keras):
    L = keras.layers
    inner_inputs = keras.Input((10, 10, 8))
    inner = keras.Model(inner_inputs, L.Conv2D(8, 3, padding="same", activation="relu",
                                               name="inner_conv")(inner_inputs), name="inner")
    inputs = keras.Input((10, 10, 3))
    y = inner(L.Conv2D(8, 3, padding="same", activation="relu", name="outer_conv")(inputs))
    return keras.Model(inputs, L.Dense(3)(L.GlobalAveragePooling2D()(y)), name="nested")


@pytest.mark.parametrize("build", [_sequential_flatten_dense, _separable, _conv1d, _concat,
                                   _nested],
                         ids=lambda f: f.__name__.strip("_"))
def test_static_subnets_of_other_layer_kinds_equal_the_supernet(keras, build, tmp_path):
    keras.utils.set_random_seed(0)
    model = build(keras)
    x = np.random.RandomState(0).rand(*((4,) + tuple(model.input_shape[1:]))).astype("float32")
    pruner = vot.OFAPruner(model, workspace=str(tmp_path))
    supernet = pruner.ofa_model(expand_ratios=(0.5, 1.0), kernel_sizes=(1, 3),
                                channel_divisible=2)
    assert supernet.space.groups
    assert relative_difference(supernet(x), model(x)) <= TOLERANCE
    for config in [supernet.space.smallest()] + random_configs(supernet.space, 2):
        supernet.set_config(config)
        static = pruner.get_static_subnet(config)
        assert relative_difference(static(x), supernet(x)) <= TOLERANCE


def test_an_applications_model(keras, tmp_path):
    """MobileNetV2 of the flavour's `applications` (the zoo's, shared with test_zoo.py)."""
    model = zoo_model(flavour_name(keras), "MobileNetV2")
    x = np.random.RandomState(0).rand(2, 64, 64, 3).astype("float32")
    pruner = vot.OFAPruner(model, workspace=str(tmp_path))
    supernet = pruner.ofa_model(expand_ratios=(0.5, 1.0), kernel_sizes=(1,), channel_divisible=8)
    assert isinstance(supernet, supernet_class(keras))
    assert relative_difference(supernet(x), model(x)) <= TOLERANCE
    config = random_configs(supernet.space, 1, seed=1)[0]
    supernet.set_config(config)
    static = pruner.get_static_subnet(config)
    assert relative_difference(static(x), supernet(x)) <= TOLERANCE
    assert vot.stat(static).flops < vot.stat(model).flops


class TestTraining:

    def test_a_step_applies_the_summed_gradients_of_the_largest_and_smallest(self, keras,
                                                                            tmp_path):
        model = plain_convnet(keras=keras)
        pruner = vot.OFAPruner(model, workspace=str(tmp_path))
        supernet = pruner.ofa_model(expand_ratios=(0.5, 1.0), kernel_sizes=(3,),
                                    channel_divisible=1, num_random_subnets=0,
                                    distillation_weight=0, inplace_distillation_weight=0)
        x = np.random.RandomState(0).rand(6, 8, 8, 3).astype("float32")
        y = np.random.RandomState(1).randint(0, 4, 6)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        # Independent truth: the gradients of the two static models, the
        # smallest one's placed at its channels (prefixes, centre kernel).
        expected = {(layer.name, i): np.zeros(w.shape, "float32")
                    for layer in supernet.layers for i, w in enumerate(layer.trainable_weights)}
        for config in (supernet.space.largest(), supernet.space.smallest()):
            static = pruner.get_static_subnet(config)
            with tf.GradientTape() as tape:
                value = loss(y, static(x, training=True))
            grads = tape.gradient(value, static.trainable_weights)
            owners = [(layer.name, i) for layer in static.layers
                      for i, _ in enumerate(layer.trainable_weights)]
            for owner, grad in zip(owners, grads):
                grad, full = grad.numpy(), expected[owner]
                if grad.ndim == 4 and grad.shape[0] < full.shape[0]:   # centre of the kernel
                    low = (full.shape[0] - grad.shape[0]) // 2
                    full = full[low:low + grad.shape[0], low:low + grad.shape[1]]
                full[tuple(slice(0, s) for s in grad.shape)] += grad
        expected = [expected[(layer.name, i)] for layer in supernet.layers
                    for i, _ in enumerate(layer.trainable_weights)]
        before = [w.numpy() for w in supernet.trainable_weights]
        supernet.compile(keras.optimizers.SGD(0.1), loss)
        supernet.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
        assert len(expected) == len(before)
        for b, a, g in zip(before, supernet.trainable_weights, expected):
            np.testing.assert_allclose(a.numpy(), b - 0.1 * g, rtol=0, atol=1e-6)

    def test_batch_norm_statistics_follow_the_largest_subnet(self, keras, tmp_path):
        model = small_mobilenet(keras=keras)
        supernet = vot.OFAPruner(model, workspace=str(tmp_path)).ofa_model(
            expand_ratios=RATIOS, channel_divisible=4, distillation_weight=0)
        reference = small_mobilenet(keras=keras)   # the same weights, trained with a plain fit
        for m in (supernet, reference):
            m.compile(keras.optimizers.SGD(0.0), keras.losses.MeanSquaredError())
            m.fit(X, np.zeros((8, 5), "float32"), batch_size=8, epochs=1, verbose=0)
        # The supernet's channels are reordered: compare each BN's statistics as sets.
        for layer in reference.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                for ours, theirs in zip(supernet.get_layer(layer.name).get_weights()[2:],
                                        layer.get_weights()[2:]):
                    np.testing.assert_allclose(np.sort(ours), np.sort(theirs), rtol=1e-5)

    def test_fit_with_callbacks_and_distillation(self, keras, model, tmp_path):
        pruner = vot.OFAPruner(model, workspace=str(tmp_path))
        supernet = pruner.ofa_model(expand_ratios=RATIOS, kernel_sizes=(3,), channel_divisible=4)
        supernet.compile(keras.optimizers.Adam(1e-3),
                         keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                         metrics=["accuracy"])
        y = np.arange(8) % 5
        history = supernet.fit(X, y, batch_size=4, epochs=2, verbose=0, callbacks=[
            keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt.keras")),
            keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))])
        assert np.all(np.isfinite(history.history["loss"]))
        assert int(supernet.optimizer.iterations.numpy()) == 4
        reloaded = keras.models.load_model(str(tmp_path / "ckpt.keras"))
        assert relative_difference(reloaded(X), supernet(X)) <= TOLERANCE

    def test_mixed_precision(self, keras, tmp_path):
        keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            model = small_mobilenet(keras=keras)
            pruner = vot.OFAPruner(model, workspace=str(tmp_path))
            supernet = pruner.ofa_model(expand_ratios=RATIOS, kernel_sizes=(3,),
                                        channel_divisible=4)
            supernet.compile(keras.optimizers.SGD(0.01),
                             keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            before = [w.numpy() for w in supernet.trainable_weights]
            history = supernet.fit(X, np.arange(8) % 5, batch_size=4, epochs=1, verbose=0)
            assert isinstance(supernet.optimizer, keras.mixed_precision.LossScaleOptimizer)
            assert supernet.get_layer("b0_expand").compute_dtype == "float16"
            assert np.isfinite(history.history["loss"][0])
            assert all(w.dtype == tf.float32 for w in supernet.trainable_weights)
            assert any(not np.array_equal(b, w.numpy())
                       for b, w in zip(before, supernet.trainable_weights))
            config = supernet.space.smallest()
            supernet.set_config(config)
            static = pruner.get_static_subnet(config)
            # Both compute in float16, in different summation orders.
            assert relative_difference(static(X), supernet(X)) <= 1e-2
        finally:
            keras.mixed_precision.set_global_policy("float32")

    def test_mirrored_strategy_equals_one_device(self, keras, tmp_path):
        worker = os.path.join(REPO, "tests", "ofa_mirrored_worker.py")
        out = str(tmp_path / "mirrored.npz")
        flavour = flavour_name(keras)
        result = subprocess.run([sys.executable, worker, flavour, out], capture_output=True,
                                cwd=REPO,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        info = json.loads(result.stdout.decode().strip().splitlines()[-1])
        assert info["replicas"] == 2
        from tests.ofa_mirrored_worker import train
        single = train(None, flavour)
        mirrored = np.load(out)
        assert len(mirrored.files) == len(single)
        for i, value in enumerate(single):
            np.testing.assert_allclose(mirrored[f"w{i}"], value, rtol=1e-4, atol=1e-5)


class TestSaveLoad:

    def test_the_supernet_survives_save_and_load(self, keras, built, tmp_path):
        pruner, supernet = built
        path = str(tmp_path / "supernet.keras")
        supernet.save(path)
        loaded = keras.models.load_model(path)
        assert isinstance(loaded, supernet_class(keras))
        assert loaded.space.get_config() == supernet.space.get_config()
        assert loaded.settings == supernet.settings
        assert relative_difference(loaded.teacher(X), supernet.teacher(X)) <= TOLERANCE
        try:
            for config in [supernet.space.smallest()] + random_configs(supernet.space, 2, 7):
                supernet.set_config(config)
                loaded.set_config(config)
                assert relative_difference(loaded(X), supernet(X)) <= TOLERANCE
            static = pruner.get_static_subnet(config, supernet=loaded)
            assert relative_difference(static(X), supernet(X)) <= TOLERANCE
        finally:
            supernet.set_config(supernet.space.largest())

    def test_a_reloaded_supernet_keeps_its_active_configuration_and_trains(self, keras, built,
                                                                          tmp_path):
        _, supernet = built
        config = supernet.space.smallest()
        supernet.set_config(config)
        try:
            path = str(tmp_path / "supernet.keras")
            supernet.save(path)
            expected = supernet(X).numpy()
        finally:
            supernet.set_config(supernet.space.largest())
        np.save(tmp_path / "x.npy", X)
        code = ("import numpy as np, %s as k, vai_optimizer_tf; "
                "m = k.models.load_model(%r); np.save(%r, np.asarray(m(np.load(%r)))); "
                "m.compile('sgd', 'mse'); m.fit(np.load(%r), np.zeros((8, 5)), verbose=0)"
                % (keras.__name__, path, str(tmp_path / "y.npy"), str(tmp_path / "x.npy"),
                   str(tmp_path / "x.npy")))
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                     "PYTHONPATH": REPO})
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        assert relative_difference(np.load(tmp_path / "y.npy"), expected) <= TOLERANCE

    def test_formats_that_lose_the_teacher_are_refused(self, built, tmp_path):
        _, supernet = built
        for path in ("supernet.h5", "supernet_savedmodel"):
            with pytest.raises(ValueError, match="save the supernet as a `.keras` file"):
                supernet.save(str(tmp_path / path))

    def test_configs_round_trip(self):
        config = vot.SubnetConfig({"stem": 4}, {"b0_dw": 3})
        assert vot.SubnetConfig.from_config(json.loads(json.dumps(config.get_config()))) == config
        subnet = vot.OFASubnet(config, 0.51, 0.9, 0.5)
        assert vot.OFASubnet.from_config(json.loads(json.dumps(subnet.get_config()))) == subnet


class TestErrors:

    @pytest.mark.parametrize("ratios,message", [
        ((), "at least one ratio"),
        ((0.5,), "1.0 must be one of them"),
        ((0.0, 1.0), "in (0, 1]"),
        ((1.5, 1.0), "in (0, 1]"),
        ((True, 1.0), "in (0, 1]"),
        ("0.5", "sequence of floats"),
        ((1.0,), "at least two different ratios"),
    ])
    def test_bad_expand_ratios(self, built, ratios, message):
        pruner, _ = built
        with pytest.raises(ValueError, match="Invalid `expand_ratios`") as error:
            pruner.ofa_model(expand_ratios=ratios)
        assert message in str(error.value)

    @pytest.mark.parametrize("sizes", [(2,), (0,), "3", (3.0,)])
    def test_bad_kernel_sizes(self, built, sizes):
        pruner, _ = built
        with pytest.raises(ValueError, match="Invalid `kernel_sizes`"):
            pruner.ofa_model(kernel_sizes=sizes)

    def test_bad_training_arguments(self, built):
        pruner, _ = built
        for kwargs, name in (({"num_random_subnets": -1}, "num_random_subnets"),
                             ({"distillation_weight": -1.0}, "distillation_weight"),
                             ({"distillation_loss": "kl"}, "distillation_loss"),
                             ({"search_space": "some"}, "search_space"),
                             ({"channel_divisible": 0}, "channel_divisible")):
            with pytest.raises(ValueError, match=f"Invalid `{name}`"):
                pruner.ofa_model(**kwargs)

    def test_excluded_and_unprunable_groups_have_no_elastic_width(self, model, tmp_path):
        pruner = vot.OFAPruner(model, workspace=str(tmp_path))
        supernet = pruner.ofa_model(expand_ratios=RATIOS, channel_divisible=4,
                                    kernel_sizes=(3,), excludes=["b0_expand", "b1_dw"])
        with pytest.raises(ValueError, match=r"Group 'b0_expand' has no elastic width.*"
                                             r"excluded by the user"):
            pruner.get_static_subnet({"widths": {"b0_expand": 8}})
        with pytest.raises(ValueError, match=r"Group 'head' has no elastic width.*"
                                             r"reaches model output"):
            supernet.set_config({"widths": {"head": 2}})
        with pytest.raises(ValueError, match=r"width 12 for group 'stem'.*\[4, 8\]"):
            supernet.set_config({"widths": {"stem": 12}})
        with pytest.raises(ValueError, match="No channel group named 'nope'"):
            supernet.set_config({"widths": {"nope": 2}})
        with pytest.raises(ValueError, match=r"Layer 'b1_dw' has no elastic kernel size: it "
                                             r"is excluded by the user"):
            supernet.set_config({"kernel_sizes": {"b1_dw": 3}})

    def test_nothing_elastic(self, keras, tmp_path):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(8, 1, name="conv")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(2, name="head")(
            keras.layers.GlobalAveragePooling2D()(x)))
        with pytest.raises(ValueError, match=r"(?s)Nothing in model .* can be elastic.*"
                                             r"group 'conv': excluded by the user"):
            vot.OFAPruner(model, workspace=str(tmp_path)).ofa_model(excludes=["conv"])

    def test_a_supernet_of_another_model_is_refused(self, keras, built, tmp_path):
        _, supernet = built
        other = vot.OFAPruner(plain_convnet(keras=keras), workspace=str(tmp_path))
        with pytest.raises(ValueError, match="of another architecture"):
            other.get_static_subnet(supernet.space.largest(), supernet=supernet)
        with pytest.raises(ValueError, match=r"No supernet: call pruner.ofa_model\(\)"):
            other.get_static_subnet({})

    def test_a_supernet_of_the_other_flavour_is_refused(self, keras, built, tmp_path):
        _, supernet = built
        other_flavour = next(k for k in FLAVOURS.values() if k is not keras)
        other = vot.OFAPruner(small_mobilenet(keras=other_flavour), workspace=str(tmp_path))
        with pytest.raises(ValueError, match=r"Invalid `supernet`: it is a .* model but "
                                             r"'small_mobilenet' is a .* model"):
            other.get_static_subnet(supernet.space.largest(), supernet=supernet)
