"""Specification of PruningSpec files, importance criteria and runner arguments."""

import json
import os

import numpy as np
import pytest
import tf_keras as keras

import vai_optimizer_tf as vot
from tests import model_utils


def _residual_model(name="residual"):
    """conv_a and conv_b both write into one residual group, then a BN and a head."""
    x = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", name="conv_a")(x)
    b = keras.layers.Conv2D(8, 1, name="conv_b")(x)
    y = keras.layers.Add(name="add")([a, b])
    y = keras.layers.BatchNormalization(name="bn")(y)
    y = keras.layers.ReLU(name="relu")(y)
    y = keras.layers.Conv2D(6, 3, padding="same", name="conv_c")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    out = keras.layers.Dense(4, name="head")(y)
    return model_utils.randomize_batch_norm(keras.Model(x, out, name=name))


@pytest.fixture(scope="module")
def model():
    return _residual_model()


@pytest.fixture(scope="module")
def runner(model):
    return vot.IterativePruningRunner(model)


class TestSpecFile:

    def test_round_trip_keeps_every_field(self, runner, tmp_path):
        spec = runner.uniform_spec(0.5, criterion="l2", channel_divisible=2)
        path = spec.save(tmp_path / "spec.json")
        loaded = vot.PruningSpec.load(path)
        assert loaded.to_json() == spec.to_json()
        assert loaded.criterion == "l2"
        assert loaded.channel_divisible == 2
        assert loaded.model_digest == runner.model_digest

    def test_file_is_readable_json_with_kept_indices(self, runner, tmp_path):
        path = runner.uniform_spec(0.5, channel_divisible=1).save(tmp_path / "spec.json")
        with open(path) as f:
            data = json.load(f)
        group = data["groups"]["conv_a"]
        assert group["width"] == 8
        assert len(group["kept"]) == 4
        assert group["kept"] == sorted(group["kept"])
        assert data["metadata"]["pruned_flops"] < data["metadata"]["baseline_flops"]

    def test_save_leaves_no_temporary_files(self, runner, tmp_path):
        runner.uniform_spec(0.5, channel_divisible=1).save(tmp_path / "spec.json")
        assert os.listdir(tmp_path) == ["spec.json"]

    def test_models_accept_spec_path(self, runner, tmp_path):
        spec = runner.uniform_spec(0.5, channel_divisible=1)
        path = spec.save(tmp_path / "spec.json")
        x = model_utils.random_inputs(runner.model)
        from_object = runner.get_slim_model(spec)
        from_path = runner.get_slim_model(path)
        assert model_utils.max_relative_difference(from_object, from_path, x) == 0.0

    def test_spec_for_another_model_is_refused(self, runner):
        other = vot.IterativePruningRunner(
            keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.Conv2D(2, 3)], name="other"))
        spec = other.uniform_spec(0.5, channel_divisible=1)
        with pytest.raises(vot.SpecMismatchError, match="made for model 'other'"):
            runner.get_slim_model(spec)

    def test_missing_file_says_how_to_make_one(self, runner, tmp_path):
        with pytest.raises(FileNotFoundError, match="spec.save"):
            runner.get_slim_model(str(tmp_path / "missing.json"))

    def test_corrupted_file_is_reported(self, runner, tmp_path):
        path = tmp_path / "bad.json"
        path.write_text("{not json")
        with pytest.raises(vot.SpecFormatError, match="not valid JSON"):
            runner.get_slim_model(str(path))

    def test_foreign_json_is_reported(self, runner, tmp_path):
        path = tmp_path / "other.json"
        path.write_text('{"groups": {}}')
        with pytest.raises(vot.SpecFormatError, match="not a vai_optimizer_tf pruning spec"):
            vot.PruningSpec.load(path)

    def test_out_of_range_kept_index_is_reported(self, runner, tmp_path):
        data = runner.uniform_spec(0.5, channel_divisible=1).to_json()
        data["groups"]["conv_a"]["kept"] = [0, 1, 99]
        with pytest.raises(vot.SpecFormatError, match="conv_a"):
            vot.PruningSpec.from_json(data)

    def test_binary_file_is_reported_with_its_name(self, runner, tmp_path):
        path = tmp_path / "spec.json"
        path.write_bytes(bytes(range(256)))
        with pytest.raises(vot.SpecFormatError, match="spec.json.*not valid JSON text"):
            runner.get_slim_model(str(path))

    @pytest.mark.parametrize("field, value, message", [
        ("groups", [], "field `groups` must be an object"),
        ("model_digest", 7, "field `model_digest` must be a string"),
        ("channel_divisible", 0, "field `channel_divisible` must be an integer >= 1"),
        ("metadata", [], "field `metadata` must be an object"),
    ])
    def test_malformed_top_level_field_is_named(self, runner, tmp_path, field, value, message):
        data = runner.uniform_spec(0.5, channel_divisible=1).to_json()
        data[field] = value
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(data))
        with pytest.raises(vot.SpecFormatError, match=f"spec.json.*{message}"):
            vot.PruningSpec.load(path)

    @pytest.mark.parametrize("field, value, message", [
        ("kept", [0.5, 1.7], "groups.conv_a.kept` must be a non-empty list of integer"),
        ("kept", [True, 2], "groups.conv_a.kept` must be a non-empty list of integer"),
        ("kept", [], "groups.conv_a.kept` must be a non-empty list of integer"),
        ("kept", [3, 1], "groups.conv_a.kept` must be sorted, distinct"),
        ("width", "8", "groups.conv_a.width` must be an integer"),
        ("width", 8.0, "groups.conv_a.width` must be an integer"),
        ("ratio", 2, "groups.conv_a.ratio` must be a number in"),
        ("index", -1, "groups.conv_a.index` must be an integer >= 0"),
        ("index", 0.0, "groups.conv_a.index` must be an integer >= 0"),
    ])
    def test_malformed_group_field_is_named(self, runner, tmp_path, field, value, message):
        data = runner.uniform_spec(0.5, channel_divisible=1).to_json()
        data["groups"]["conv_a"][field] = value
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(data))
        with pytest.raises(vot.SpecFormatError, match=f"spec.json.*{message}"):
            vot.PruningSpec.load(path)

    def test_group_that_is_not_an_object_is_named(self, runner):
        data = runner.uniform_spec(0.5, channel_divisible=1).to_json()
        data["groups"]["conv_a"] = [0, 1]
        with pytest.raises(vot.SpecFormatError, match="field `groups.conv_a` must be an object"):
            vot.PruningSpec.from_json(data)

    def test_swapped_group_indices_are_refused(self, runner, tmp_path):
        data = runner.uniform_spec(0.5, channel_divisible=1).to_json()
        a, c = data["groups"]["conv_a"], data["groups"]["conv_c"]
        assert a["width"] != c["width"]  # caught as swapped, before any width check
        a["index"], c["index"] = c["index"], a["index"]
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(data))
        with pytest.raises(vot.SpecFormatError, match="groups.conv_a.index.*look swapped"):
            runner.get_sparse_model(str(path))

    def test_swapped_indices_of_groups_of_equal_width_are_refused(self, tmp_path):
        x = keras.Input((6, 6, 3))
        y = keras.layers.Conv2D(4, 3, padding="same", name="first")(x)
        y = keras.layers.Conv2D(4, 3, padding="same", name="second")(y)
        y = keras.layers.GlobalAveragePooling2D()(y)
        runner = vot.IterativePruningRunner(keras.Model(x, keras.layers.Dense(2)(y)))
        data = runner.uniform_spec(0.5, channel_divisible=1).to_json()
        data["groups"]["first"]["kept"] = [0, 1]
        data["groups"]["second"]["kept"] = [2, 3]
        first, second = data["groups"]["first"], data["groups"]["second"]
        first["index"], second["index"] = second["index"], first["index"]
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(data))
        with pytest.raises(vot.SpecFormatError, match="look swapped"):
            runner.get_slim_model(str(path))

    def test_duplicate_group_index_is_refused(self, runner):
        data = runner.uniform_spec(0.5, channel_divisible=1).to_json()
        data["groups"]["conv_c"]["index"] = data["groups"]["conv_a"]["index"]
        with pytest.raises(vot.SpecFormatError, match="groups.conv_c.index"):
            vot.PruningSpec.from_json(data)

    def test_out_of_range_group_index_is_refused(self, runner):
        data = runner.uniform_spec(0.5, channel_divisible=1).to_json()
        data["groups"]["conv_a"]["index"] = 99
        with pytest.raises(vot.SpecFormatError, match="groups.conv_a.index` is 99"):
            runner.get_slim_model(vot.PruningSpec.from_json(data))

    def test_another_models_spec_leaves_the_latest_pointer_alone(self, model, tmp_path):
        runner = vot.IterativePruningRunner(model, workspace=tmp_path / "ws")
        ours = runner.uniform_spec(0.5, channel_divisible=1).save(tmp_path / "ours.json")
        runner.prune(spec_path=ours, channel_divisible=1)
        other = vot.IterativePruningRunner(
            keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.Conv2D(2, 3)], name="other"))
        theirs = other.uniform_spec(0.5, channel_divisible=1).save(tmp_path / "theirs.json")
        with pytest.raises(vot.SpecMismatchError):
            runner.prune(spec_path=theirs, channel_divisible=1)
        assert os.path.samefile(runner.latest_spec_path(), ours)
        runner.get_slim_model()  # still works from the pointer

    def test_wrong_argument_type(self, runner):
        with pytest.raises(TypeError, match="PruningSpec or the path"):
            runner.get_sparse_model(42)


class TestImportance:

    def _kernels(self, model):
        a = model.get_layer("conv_a").get_weights()[0]
        b = model.get_layer("conv_b").get_weights()[0]
        return a.reshape(-1, 8), b.reshape(-1, 8)

    def test_l1_sums_over_every_producer_of_the_group(self, model, runner):
        a, b = self._kernels(model)
        expected = np.abs(a).sum(0) + np.abs(b).sum(0)
        keep = np.sort(np.argsort(-expected, kind="stable")[:4])
        spec = runner.uniform_spec(0.5, criterion="l1", channel_divisible=1)
        np.testing.assert_array_equal(spec.groups["conv_a"].kept, keep)

    def test_l2_sums_over_every_producer_of_the_group(self, model, runner):
        a, b = self._kernels(model)
        expected = np.sqrt((a ** 2).sum(0)) + np.sqrt((b ** 2).sum(0))
        keep = np.sort(np.argsort(-expected, kind="stable")[:4])
        np.testing.assert_array_equal(
            runner.uniform_spec(0.5, criterion="l2",
                                channel_divisible=1).groups["conv_a"].kept, keep)

    def test_bn_gamma_keeps_largest_scales(self, model, runner):
        gamma = np.abs(model.get_layer("bn").get_weights()[0])
        keep = np.sort(np.argsort(-gamma, kind="stable")[:4])
        np.testing.assert_array_equal(
            runner.uniform_spec(0.5, criterion="bn_gamma",
                                channel_divisible=1).groups["conv_a"].kept, keep)

    def test_user_callable_sees_all_producers(self, runner):
        seen = {}

        def prefer_last_channels(weights):
            seen[weights.group.name] = [name for name, _ in weights.kernels]
            return np.arange(weights.group.width, dtype=float)

        spec = runner.uniform_spec(0.5, criterion=prefer_last_channels, channel_divisible=1)
        assert sorted(seen["conv_a"]) == ["conv_a", "conv_b"]
        np.testing.assert_array_equal(spec.groups["conv_a"].kept, [4, 5, 6, 7])
        assert spec.criterion == "prefer_last_channels"

    def test_callable_with_wrong_shape_is_reported(self, runner):
        with pytest.raises(ValueError, match=r"expected \(8,\), one per channel"):
            runner.uniform_spec(0.5, criterion=lambda w: np.ones(3), channel_divisible=1)

    def test_unknown_criterion_is_reported(self, runner):
        with pytest.raises(ValueError, match="Invalid `criterion`"):
            runner.uniform_spec(0.5, criterion="entropy", channel_divisible=1)


class TestRunnerArguments:

    @pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, "half", None])
    def test_sparsity_out_of_range(self, runner, sparsity):
        with pytest.raises(ValueError, match="Invalid `sparsity`"):
            runner.uniform_spec(sparsity, channel_divisible=1)

    @pytest.mark.parametrize("divisible", [0, -8, 2.5])
    def test_channel_divisible_must_be_positive_int(self, runner, divisible):
        with pytest.raises(ValueError, match="Invalid `channel_divisible`"):
            runner.uniform_spec(0.5, channel_divisible=divisible)

    def test_zero_sparsity_prunes_nothing(self, runner):
        assert runner.uniform_spec(0.0, channel_divisible=1).groups == {}

    def test_flops_metadata_matches_runner_stat(self, runner):
        spec = runner.uniform_spec(0.5, channel_divisible=1)
        assert spec.metadata["pruned_flops"] == runner.stat(spec).flops
        assert spec.metadata["baseline_flops"] == vot.stat(runner.model).flops

    def test_weights_from_a_different_architecture_is_refused(self, runner):
        spec = runner.uniform_spec(0.5, channel_divisible=1)
        other = _residual_model("other")
        other_runner_model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1)])
        with pytest.raises(ValueError, match="Invalid `weights_from`"):
            runner.get_slim_model(spec, weights_from=other_runner_model)
        # Same architecture, other weights: accepted, and its weights are used.
        slim = runner.get_slim_model(spec, weights_from=other)
        sparse = runner.get_sparse_model(spec, weights_from=other)
        x = model_utils.random_inputs(other)
        assert model_utils.max_relative_difference(sparse, slim, x) < 1e-5

    def test_describe_groups_names_every_group(self, runner):
        text = runner.describe_groups()
        for group in runner.groups:
            assert f"group {group.name!r}" in text
