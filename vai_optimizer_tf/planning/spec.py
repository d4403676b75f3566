"""`PruningSpec`: which channels each group keeps, saved as readable JSON."""

import dataclasses
import json
import os
from typing import Any, Dict, Optional

import numpy as np

from vai_optimizer_tf import errors
from vai_optimizer_tf.utils import atomic

FORMAT = "vai_optimizer_tf.pruning_spec"
VERSION = 1


@dataclasses.dataclass
class GroupSpec:
    """The pruning of one channel group.

    Attributes:
      width: The group's original number of channels.
      ratio: Fraction of channels requested to be pruned.
      kept: Sorted indices of the kept channels.
      index: The group's position in graph order (see `ChannelGroup.index`),
        which identifies it even when Keras named the layers differently.
    """

    width: int
    ratio: float
    kept: np.ndarray
    index: Optional[int] = None

    def __post_init__(self):
        self.kept = np.asarray(self.kept, dtype=np.int64)

    def to_json(self):
        data = {"width": int(self.width), "ratio": round(float(self.ratio), 6),
                "kept": [int(k) for k in self.kept]}
        if self.index is not None:
            data["index"] = int(self.index)
        return data


@dataclasses.dataclass
class PruningSpec:
    """Kept channels per group, tied to one model graph by its digest.

    Attributes:
      model_name: Name of the model the spec was made for.
      model_digest: `Graph.digest()` of that model.
      groups: Group name -> `GroupSpec`. Groups not listed are not pruned.
      criterion: Name of the importance criterion used.
      channel_divisible: Kept widths are multiples of this.
      metadata: Free-form extra facts (e.g. FLOPs achieved).
      source: Where the spec was read from, for error messages (not saved).

    Example:

    ```python
    spec = runner.uniform_spec(0.5)
    spec.save("spec.json")
    same = PruningSpec.load("spec.json")
    ```
    """

    model_name: str
    model_digest: str
    groups: Dict[str, GroupSpec]
    criterion: str = "l1"
    channel_divisible: int = 1
    metadata: Dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = dataclasses.field(default="the spec", compare=False, repr=False)

    def group_of(self, deps, name):
        """The `ChannelGroup` of `deps` that spec group `name` refers to."""
        index = self.groups[name].index
        if index is not None and 0 <= index < len(deps.groups):
            return deps.group_at(index)
        return deps.group(name)

    def kept_by_group(self, deps):
        """Group id -> kept indices, for the groups of `deps`."""
        return {self.group_of(deps, name).id: g.kept for name, g in self.groups.items()}

    def kept_by_name(self, deps):
        """Group name in `deps` -> kept indices (names may differ from the spec's)."""
        return {self.group_of(deps, name).name: g.kept for name, g in self.groups.items()}

    def renamed(self, deps):
        """A copy whose group names are those of `deps` (matched by group index)."""
        groups = {}
        for name, g in self.groups.items():
            group = self.group_of(deps, name)
            groups[group.name] = GroupSpec(g.width, g.ratio, g.kept, group.index)
        return dataclasses.replace(self, groups=groups, metadata=dict(self.metadata))

    def to_json(self):
        return {
            "format": FORMAT,
            "version": VERSION,
            "model_name": self.model_name,
            "model_digest": self.model_digest,
            "criterion": self.criterion,
            "channel_divisible": int(self.channel_divisible),
            "metadata": self.metadata,
            "groups": {name: g.to_json() for name, g in self.groups.items()},
        }

    @classmethod
    def from_json(cls, data, source="<dict>"):
        """Builds a spec from `to_json()` output.

        Every field is checked: a malformed one raises `SpecFormatError`
        naming `source` and the field, never a raw Python error.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise errors.SpecFormatError(
                f"{source} is not a vai_optimizer_tf pruning spec (missing "
                f"\"format\": \"{FORMAT}\"). Pass a file written by PruningSpec.save() or "
                "runner.prune().")
        if data.get("version") != VERSION:
            raise errors.SpecFormatError(
                f"{source} has spec version {data.get('version')!r}; this library reads "
                f"version {VERSION}. Regenerate the spec with this version.")
        fields = _FieldChecker(source)
        model_name = fields.string(data, "model_name")
        model_digest = fields.string(data, "model_digest")
        criterion = fields.string(data, "criterion", default="l1")
        divisible = fields.integer(data, "channel_divisible", default=1, low=1)
        metadata = data.get("metadata", {})
        if not isinstance(metadata, dict):
            fields.fail("metadata", "an object", metadata)
        raw_groups = data.get("groups")
        if not isinstance(raw_groups, dict):
            fields.fail("groups", "an object mapping group names to their pruning",
                        raw_groups)
        groups, seen_indices = {}, {}
        for name, g in raw_groups.items():
            groups[name] = fields.group(name, g)
            index = groups[name].index
            if index is not None and index in seen_indices:
                raise errors.SpecFormatError(
                    f"{source}: field `groups.{name}.index` is {index}, which group "
                    f"{seen_indices[index]!r} also has; each group has its own index. "
                    "Regenerate the spec with runner.prune() or uniform_spec().")
            seen_indices[index] = name
        spec = cls(model_name=model_name, model_digest=model_digest, groups=groups,
                   criterion=criterion, channel_divisible=divisible, metadata=dict(metadata))
        spec.source = source
        return spec

    def save(self, path):
        """Writes the spec as JSON, atomically."""
        atomic.write_json_atomic(path, self.to_json())
        return os.fspath(path)

    @classmethod
    def load(cls, path):
        """Reads a spec written by `save`."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"No pruning spec at {path!r}. Save one with spec.save(path) "
                                    "or pass the PruningSpec object itself.")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise errors.SpecFormatError(
                f"Pruning spec {path!r} is not valid JSON text ({type(e).__name__}: {e}). "
                "Pass the .json file written by runner.prune() or spec.save(), or regenerate "
                "it.") from e
        except IsADirectoryError as e:
            raise errors.SpecFormatError(f"Pruning spec {path!r} is a folder; pass the .json "
                                         "file written by runner.prune() or spec.save().") from e
        return cls.from_json(data, source=repr(path))

    def check_model(self, deps, model_digest, model_name):
        """Raises `SpecMismatchError` unless the spec fits this model."""
        if self.model_digest != model_digest:
            raise errors.SpecMismatchError(
                f"This pruning spec was made for model {self.model_name!r} (graph digest "
                f"{self.model_digest}), but the runner holds model {model_name!r} (graph digest "
                f"{model_digest}). Use the spec with the model it was made for, or make a new "
                "one with this runner.")
        names = {group.name for group in deps.groups}
        for name, g in self.groups.items():
            self._check_index(deps, names, name, g)
            try:
                group = self.group_of(deps, name)
            except KeyError:
                raise errors.SpecMismatchError(
                    f"The spec prunes group {name!r}, which this model does not have.") from None
            if group.width != g.width:
                raise errors.SpecMismatchError(
                    f"Group {name!r} has {group.width} channels in this model but {g.width} in "
                    "the spec.")
            if not group.prunable:
                raise errors.SpecMismatchError(
                    f"Group {name!r} is not prunable in this model: {group.reasons[0]}.")

    def _check_index(self, deps, names, name, g):
        """Refuses an `index` field that cannot be this group's in the model."""
        if g.index is None:
            return
        field = f"{self.source}: field `groups.{name}.index`"
        if g.index >= len(deps.groups):
            raise errors.SpecFormatError(
                f"{field} is {g.index}, but the model has only {len(deps.groups)} channel "
                "groups. Regenerate the spec with runner.prune() or uniform_spec().")
        at = deps.group_at(g.index).name
        # Names may differ between two builds of one model (Keras numbers its layers), so
        # the index decides; but an index naming another group of this very spec, while the
        # spec's name exists elsewhere, means the fields were swapped or edited by hand.
        if at != name and name in names and at in self.groups:
            raise errors.SpecFormatError(
                f"{field} is {g.index}, the index of group {at!r}, while group {name!r} is at "
                f"index {deps.group(name).index} in this model: the index fields look swapped. "
                "Fix them, or regenerate the spec with runner.prune() or uniform_spec().")

    @property
    def num_pruned_groups(self):
        return sum(1 for g in self.groups.values() if len(g.kept) < g.width)

    def __repr__(self):
        return (f"PruningSpec(model={self.model_name!r}, groups={len(self.groups)}, "
                f"criterion={self.criterion!r}, channel_divisible={self.channel_divisible})")


def as_spec(spec_or_path):
    """Accepts a `PruningSpec` or the path of a saved one."""
    if isinstance(spec_or_path, PruningSpec):
        return spec_or_path
    if isinstance(spec_or_path, (str, os.PathLike)):
        return PruningSpec.load(spec_or_path)
    raise TypeError(f"Invalid `spec`: expected a PruningSpec or the path of a saved spec. "
                    f"Received: spec of type {type(spec_or_path).__name__}")


class _FieldChecker:
    """Checks the fields of a spec's JSON, raising `SpecFormatError` naming the field."""

    def __init__(self, source):
        self.source = source

    def fail(self, field, expected, value):
        raise errors.SpecFormatError(
            f"{self.source}: field `{field}` must be {expected}. Received: {value!r:.80}. "
            "Regenerate the spec with runner.prune() or runner.uniform_spec(), or fix the "
            "field.")

    def string(self, data, field, default=None):
        value = data.get(field, default)
        if not isinstance(value, str):
            self.fail(field, "a string", value)
        return value

    def integer(self, data, field, default=None, low=0, where=None):
        value = data.get(field, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            self.fail(where or field, f"an integer >= {low}", value)
        return value

    def group(self, name, g):
        where = f"groups.{name}"
        if not isinstance(g, dict):
            self.fail(where, "an object with `width` and `kept`", g)
        width = self.integer(g, "width", low=1, where=f"{where}.width")
        kept = g.get("kept")
        if not isinstance(kept, list) or not kept or not all(
                isinstance(k, int) and not isinstance(k, bool) for k in kept):
            self.fail(f"{where}.kept", "a non-empty list of integer channel indices", kept)
        array = np.asarray(kept, dtype=np.int64)
        if np.any(np.diff(array) <= 0) or array[0] < 0 or array[-1] >= width:
            self.fail(f"{where}.kept", f"sorted, distinct channel indices in [0, {width})", kept)
        ratio = g.get("ratio", 1 - array.size / width)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            self.fail(f"{where}.ratio", "a number in [0, 1]", ratio)
        index = g.get("index")
        if index is not None:
            index = self.integer(g, "index", low=0, where=f"{where}.index")
        return GroupSpec(width, float(ratio), array, index)
