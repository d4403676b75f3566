"""`Workspace`: the folder where analyses, specs and the latest-spec pointer live.

    <workspace>/ana/sensitivity-<key>.<writer>.json   analysis results, one file per process
    <workspace>/ana/claims/<key>/                      steps being evaluated now
    <workspace>/ana/sensitivity.csv, .png              the latest complete analysis's reports
    <workspace>/specs/*.json                           specs written by `prune`
    <workspace>/specs/index/*.json                     where every spec `prune` saved lives
    <workspace>/latest_spec.json                       which spec `prune` wrote last

Every file is written atomically, so any process may be killed at any time.
"""

import glob
import hashlib
import json
import os

from vai_optimizer_tf import errors
from vai_optimizer_tf.utils import atomic

_LATEST = "latest_spec.json"


class Workspace:
    """Paths and pointers of one pruning workspace.

    Args:
      path: The folder. Created on first write.
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    @property
    def analysis_folder(self):
        return os.path.join(self.path, "ana")

    def spec_path(self, model_name, label):
        return os.path.join(self.path, "specs", f"{model_name}.{label}.json")

    def set_latest_spec(self, spec_path):
        """Points `latest_spec.json` at `spec_path`, and records it among the saved specs."""
        spec_path = os.path.abspath(spec_path)
        name = hashlib.sha256(spec_path.encode()).hexdigest()[:16]
        atomic.write_json_atomic(os.path.join(self.path, "specs", "index", f"{name}.json"),
                                 {"spec_path": spec_path})
        atomic.write_json_atomic(os.path.join(self.path, _LATEST), {"spec_path": spec_path})

    def latest_spec_path(self):
        """Path of the spec `prune` saved last, or None."""
        return _read_pointer(os.path.join(self.path, _LATEST))

    def saved_spec_paths(self):
        """Every spec saved in or recorded by this workspace, the latest first."""
        paths = [self.latest_spec_path()]
        paths += sorted(glob.glob(os.path.join(glob.escape(self.path), "specs", "*.json")))
        for pointer in sorted(glob.glob(os.path.join(glob.escape(self.path), "specs", "index",
                                                     "*.json"))):
            paths.append(_read_pointer(pointer))
        seen, out = set(), []
        for path in paths:
            if path is None or not os.path.isfile(path):
                continue
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                out.append(path)
        return out


def _read_pointer(pointer):
    if not os.path.exists(pointer):
        return None
    try:
        with open(pointer, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise errors.SpecFormatError(
            f"Spec pointer {pointer!r} is corrupted ({e}). Delete it; run runner.prune() "
            "again to write it.") from e
    path = data.get("spec_path") if isinstance(data, dict) else None
    if not isinstance(path, str):
        raise errors.SpecFormatError(
            f"Spec pointer {pointer!r} has no \"spec_path\" string. Delete it; run "
            "runner.prune() again to write it.")
    return path
