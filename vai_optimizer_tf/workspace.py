"""`Workspace`: the folder where analyses, specs and the latest-spec pointer live.

    <workspace>/ana/sensitivity*.json   analysis caches (one per process/shard)
    <workspace>/ana/sensitivity.csv     the sensitivity table
    <workspace>/specs/*.json            specs written by `prune`
    <workspace>/latest_spec.json        which spec `prune` wrote last

Every file is written atomically, so any process may be killed at any time.
"""

import json
import os

from vai_optimizer_tf.analysis.sensitivity_cache import SensitivityCache
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
        atomic.write_json_atomic(os.path.join(self.path, _LATEST),
                                 {"spec_path": os.path.abspath(spec_path)})

    def latest_spec_path(self):
        """Path of the spec `prune` saved last, or None."""
        pointer = os.path.join(self.path, _LATEST)
        if not os.path.exists(pointer):
            return None
        with open(pointer) as f:
            return json.load(f).get("spec_path")

    def analyses(self, graph_digest):
        """Every analysis of a graph in this workspace, shards merged, one per key."""
        folder = self.analysis_folder
        by_key = {}
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        for name in names:
            if name.startswith("sensitivity") and name.endswith(".json"):
                cache = SensitivityCache.load(os.path.join(folder, name))
                if cache.key.get("graph_digest") != graph_digest:
                    continue
                key = json.dumps(cache.key, sort_keys=True)
                if key not in by_key:
                    by_key[key] = SensitivityCache(cache.key)
                by_key[key].merge(cache)
        return list(by_key.values())
