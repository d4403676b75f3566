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
        """Builds a spec from `to_json()` output; raises `SpecFormatError` if malformed."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise errors.SpecFormatError(
                f"{source} is not a vai_optimizer_tf pruning spec (missing "
                f"\"format\": \"{FORMAT}\"). Pass a file written by PruningSpec.save() or "
                "runner.prune().")
        if data.get("version") != VERSION:
            raise errors.SpecFormatError(
                f"{source} has spec version {data.get('version')!r}; this library reads "
                f"version {VERSION}. Regenerate the spec with this version.")
        try:
            groups = {}
            for name, g in data["groups"].items():
                kept = np.asarray(g["kept"], dtype=np.int64)
                width = int(g["width"])
                if kept.size == 0 or np.any(np.diff(kept) <= 0) or kept[0] < 0 or kept[-1] >= width:
                    raise errors.SpecFormatError(
                        f"{source}: group {name!r} must keep a sorted, non-empty list of distinct "
                        f"channel indices in [0, {width}).")
                index = g.get("index")
                groups[name] = GroupSpec(width, float(g.get("ratio", 1 - kept.size / width)), kept,
                                         int(index) if index is not None else None)
            return cls(model_name=str(data["model_name"]), model_digest=str(data["model_digest"]),
                       groups=groups, criterion=str(data.get("criterion", "l1")),
                       channel_divisible=int(data.get("channel_divisible", 1)),
                       metadata=dict(data.get("metadata", {})))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, errors.SpecFormatError):
                raise
            raise errors.SpecFormatError(f"{source} is malformed ({type(e).__name__}: {e}). "
                                         "Regenerate it with runner.prune() or uniform_spec().") from e

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
            with open(path) as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise errors.SpecFormatError(f"Pruning spec {path!r} is not valid JSON ({e}). "
                                         "Regenerate it.") from e
        return cls.from_json(data, source=repr(path))

    def check_model(self, deps, model_digest, model_name):
        """Raises `SpecMismatchError` unless the spec fits this model."""
        if self.model_digest != model_digest:
            raise errors.SpecMismatchError(
                f"This pruning spec was made for model {self.model_name!r} (graph digest "
                f"{self.model_digest}), but the runner holds model {model_name!r} (graph digest "
                f"{model_digest}). Use the spec with the model it was made for, or make a new "
                "one with this runner.")
        for name, g in self.groups.items():
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
