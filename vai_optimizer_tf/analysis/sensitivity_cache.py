"""`SensitivityCache`: the results of a sensitivity analysis, on disk.

One JSON file per analysis process (`sensitivity.json`, or
`sensitivity.shard-I-of-N.json` for shards), rewritten atomically after every
step, so a run killed at any moment loses at most the step in flight. Files
are keyed by a digest of the graph, the weights, the ratio grid, the
criterion and the mode; a file with another key is never read as ours.
"""

import csv
import glob
import io
import json
import math
import os

from vai_optimizer_tf import errors
from vai_optimizer_tf.utils import atomic

FORMAT = "vai_optimizer_tf.sensitivity"
BASELINE = "__baseline__"


def ratio_key(ratio):
    return f"{ratio:.4f}"


class SensitivityCache:
    """Metric values per group and pruning ratio, tied to one model and grid.

    Args:
      key: Dict identifying the analysis: `graph_digest`, `weights_digest`,
        `ratios`, `criterion`, `mode`.
      baseline: Metric of the unpruned model, or None until measured.
      results: Group name -> {ratio key -> metric}.
    """

    def __init__(self, key, baseline=None, results=None, indices=None):
        self.key = dict(key)
        self.baseline = baseline
        self.results = {g: dict(r) for g, r in (results or {}).items()}
        self.indices = dict(indices or {})

    @property
    def ratios(self):
        return list(self.key["ratios"])

    @property
    def mode(self):
        return self.key["mode"]

    def has(self, group, ratio):
        if group == BASELINE:
            return self.baseline is not None
        return ratio_key(ratio) in self.results.get(group, {})

    def record(self, group, ratio, value, index=None):
        if group == BASELINE:
            self.baseline = value
        else:
            self.results.setdefault(group, {})[ratio_key(ratio)] = value
            if index is not None:
                self.indices[group] = int(index)

    def renamed(self, deps):
        """A copy with group names of `deps`, matched by group index.

        Models built by the same code have the same graph digest (and so the
        same cache key) even when Keras named their layers differently.
        """
        out = SensitivityCache(self.key, self.baseline)
        for name, values in self.results.items():
            index = self.indices.get(name)
            new = deps.group_at(index).name if index is not None else name
            out.results[new] = dict(values)
            out.indices[new] = index
        return out

    def metric(self, group, ratio):
        return self.results[group][ratio_key(ratio)]

    def drop(self, group, ratio):
        """Relative metric loss of pruning `group` by `ratio` (positive is worse)."""
        value = self.metric(group, ratio)
        scale = abs(self.baseline) if self.baseline else 1.0
        delta = self.baseline - value if self.mode == "max" else value - self.baseline
        return delta / scale

    def missing_steps(self, steps):
        return [s for s in steps if not self.has(*s)]

    def merge(self, other):
        if other.key != self.key:
            raise errors.AnalysisCacheError("Cannot merge analyses made with different keys.")
        if self.baseline is None:
            self.baseline = other.baseline
        for group, values in other.results.items():
            self.results.setdefault(group, {}).update(values)
        self.indices.update(other.indices)

    # Persistence ------------------------------------------------------------------

    def to_json(self):
        return {"format": FORMAT, "key": self.key, "baseline": self.baseline,
                "results": self.results, "indices": self.indices}

    def save(self, path):
        atomic.write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path):
        """Reads a cache file; raises `AnalysisCacheError` with the fix if corrupted."""
        fix = (f"Delete {path!r} (finished steps in it will be recomputed) or run "
               "ana(..., forced=True).")
        try:
            with open(path) as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise errors.AnalysisCacheError(
                f"Sensitivity cache {path!r} is corrupted ({e}). {fix}") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(
                data.get("key"), dict) or not isinstance(data.get("results"), dict):
            raise errors.AnalysisCacheError(
                f"{path!r} is not a vai_optimizer_tf sensitivity cache. {fix}")
        return cls(data["key"], data.get("baseline"), data["results"], data.get("indices"))

    @staticmethod
    def file_name(shard=None):
        if shard is None:
            return "sensitivity.json"
        return f"sensitivity.shard-{shard[0]}-of-{shard[1]}.json"

    @classmethod
    def merged_from(cls, folder, key):
        """Merges every cache file in `folder` whose key equals `key`.

        Returns:
          `(cache, stale_paths)`: the merged cache (None if no file matched) and
          the files that belong to another model, weights or grid.
        """
        merged, stale = None, []
        for path in sorted(glob.glob(os.path.join(folder, "sensitivity*.json"))):
            cache = cls.load(path)
            if cache.key != key:
                stale.append(path)
                continue
            if merged is None:
                merged = cls(key)
            merged.merge(cache)
        return merged, stale

    # Reports ------------------------------------------------------------------

    def table(self, model_name, groups):
        """The sensitivity table: one row per group, one column per ratio."""
        ratios = self.ratios
        width = max([len(g) for g in groups] + [len(model_name)])
        header = f"{model_name:<{width}}  {'baseline':>9}" + "".join(
            f"{'-' + format(r * 100, '.0f') + '%':>9}" for r in ratios)
        lines = [header]
        for group in groups:
            cells = []
            for r in ratios:
                value = self.results.get(group, {}).get(ratio_key(r))
                cells.append(f"{value:>9.4f}" if value is not None else f"{'-':>9}")
            base = f"{self.baseline:>9.4f}" if self.baseline is not None else f"{'-':>9}"
            lines.append(f"{group:<{width}}  {base}" + "".join(cells))
        return "\n".join(lines)

    def to_csv(self, groups):
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["group", "baseline"] + [f"{r:g}" for r in self.ratios])
        for group in groups:
            writer.writerow([group, self.baseline] + [
                self.results.get(group, {}).get(ratio_key(r), "") for r in self.ratios])
        return out.getvalue()

    def plot(self, path, groups, model_name):
        """Saves a PNG of the curves; returns False when matplotlib is missing."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return False
        fig, ax = plt.subplots(figsize=(8, 5))
        for group in groups:
            xs = [0.0] + [r for r in self.ratios if self.has(group, r)]
            ys = [self.baseline] + [self.metric(group, r) for r in xs[1:]]
            if len(xs) > 1 and all(isinstance(y, (int, float)) and math.isfinite(y) for y in ys):
                ax.plot(xs, ys, marker=".", linewidth=1, label=group)
        ax.set_xlabel("fraction of the group's channels pruned")
        ax.set_ylabel("metric")
        ax.set_title(f"Sensitivity of {model_name}")
        if len(groups) <= 20:
            ax.legend(fontsize=6)
        fig.tight_layout()
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        return True
