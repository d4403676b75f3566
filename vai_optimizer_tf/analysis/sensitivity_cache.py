"""`SensitivityCache`: the results of a sensitivity analysis, and their JSON form.

A cache holds the metric per (group, pruning ratio) step, plus the baseline,
for one *analysis key*: the graph digest, the weights digest, the criterion
and the mode, i.e. everything a step's value depends on. The ratio grid is
not part of the key, so analyses over different grids share every step they
have in common. Each step carries the time it was recorded; when files of
several processes are merged, the latest record of a step wins (so
`ana(..., forced=True)` supersedes older values). The files themselves are
managed by `AnalysisStore`.
"""

import csv
import io
import json
import math
import numbers

from vai_optimizer_tf import errors
from vai_optimizer_tf.utils import atomic

FORMAT = "vai_optimizer_tf.sensitivity"
VERSION = 2
BASELINE = "__baseline__"
KEY_FIELDS = ("graph_digest", "weights_digest", "criterion", "mode")


def ratio_key(ratio):
    return f"{ratio:.4f}"


def normalize_key(key):
    """The analysis key without the fields values do not depend on (older keys had `ratios`)."""
    return {name: key.get(name) for name in KEY_FIELDS}


class SensitivityCache:
    """Metric values per group and pruning ratio, tied to one model and its weights.

    Args:
      key: Dict identifying the analysis: `graph_digest`, `weights_digest`,
        `criterion`, `mode`. A `ratios` entry (older caches) becomes the grid.
      baseline: Metric of the unpruned model, or None until measured.
      results: Group name -> {ratio key -> metric}.
      indices: Group name -> the group's index in graph order.
      ratios: The grid this cache is a view of (reports and `missing_steps()`
        use it). Defaults to every ratio with a result.
      times: Group name (or `"__baseline__"`) -> {ratio key -> time the step
        was recorded, in seconds since the epoch}.
      groups: The analysed group names (for `missing_steps()`). Defaults to
        the groups with a result.
    """

    def __init__(self, key, baseline=None, results=None, indices=None, ratios=None,
                 times=None, groups=None):
        key = dict(key)
        legacy_grid = key.pop("ratios", None)
        self.key = key
        self.baseline = baseline
        self.results = {g: dict(r) for g, r in (results or {}).items()}
        self.indices = dict(indices or {})
        self.times = {g: dict(t) for g, t in (times or {}).items()}
        grid = ratios if ratios is not None else legacy_grid
        self._grid = sorted({round(float(r), 4) for r in grid}) if grid is not None else None
        self._groups = list(groups) if groups is not None else None

    @property
    def ratios(self):
        """The ratio grid: the one this cache views, else every ratio with a result."""
        if self._grid is not None:
            return list(self._grid)
        return sorted({float(r) for values in self.results.values() for r in values})

    @property
    def groups(self):
        """The analysed group names."""
        return list(self._groups) if self._groups is not None else list(self.results)

    @property
    def mode(self):
        return self.key["mode"]

    def ratios_of(self, group):
        """The grid ratios at which `group` has a result."""
        return [r for r in self.ratios if self.has(group, r)]

    def time_of(self, group, ratio):
        """When a step was recorded (0.0 for files without times), or None if absent."""
        if not self.has(group, ratio):
            return None
        key = ratio_key(0.0 if group == BASELINE else ratio)
        return float(self.times.get(group, {}).get(key, 0.0))

    def has(self, group, ratio, since=None):
        """Whether the step is recorded (at or after time `since`, when given)."""
        if group == BASELINE:
            present = self.baseline is not None
        else:
            present = ratio_key(ratio) in self.results.get(group, {})
        if not present or since is None:
            return present
        return self.time_of(group, ratio) >= since

    def record(self, group, ratio, value, index=None, time=None):
        """Stores one step's metric (and when it was measured)."""
        key = ratio_key(0.0 if group == BASELINE else ratio)
        if group == BASELINE:
            self.baseline = value
        else:
            self.results.setdefault(group, {})[key] = value
            if index is not None:
                self.indices[group] = int(index)
        if time is not None:
            self.times.setdefault(group, {})[key] = float(time)

    def view(self, ratios, groups=None):
        """A copy whose grid (and analysed groups) are the given ones."""
        return SensitivityCache(self.key, self.baseline, self.results, self.indices, ratios,
                                self.times, groups if groups is not None else self._groups)

    def renamed(self, deps):
        """A copy with group names of `deps`, matched by group index.

        Models built by the same code have the same graph digest (and so the
        same cache key) even when Keras named their layers differently.
        """
        def new_name(name):
            index = self.indices.get(name)
            return deps.group_at(index).name if index is not None else name

        out = SensitivityCache(self.key, self.baseline, ratios=self._grid)
        out._groups = [new_name(g) for g in self._groups] if self._groups is not None else None
        for name, values in self.results.items():
            out.results[new_name(name)] = dict(values)
            if name in self.indices:
                out.indices[new_name(name)] = self.indices[name]
        for name, values in self.times.items():
            out.times[name if name == BASELINE else new_name(name)] = dict(values)
        return out

    def metric(self, group, ratio):
        return self.results[group][ratio_key(ratio)]

    def drop(self, group, ratio):
        """Relative metric loss of pruning `group` by `ratio` (positive is worse)."""
        value = self.metric(group, ratio)
        scale = abs(self.baseline) if self.baseline else 1.0
        delta = self.baseline - value if self.mode == "max" else value - self.baseline
        return delta / scale

    def missing_steps(self, steps=None):
        """The `(group, ratio)` steps without a result, the baseline as `("__baseline__", 0.0)`.

        Args:
          steps: The steps to check. Defaults to the baseline and every
            analysed group at every ratio of the grid.
        """
        if steps is None:
            steps = [(BASELINE, 0.0)] + [(g, r) for g in self.groups for r in self.ratios]
        return [s for s in steps if not self.has(*s)]

    def merge(self, other):
        """Adds `other`'s steps; of two records of one step, the later one wins."""
        if normalize_key(other.key) != normalize_key(self.key):
            raise errors.AnalysisCacheError("Cannot merge analyses made with different keys.")
        if other.baseline is not None and (
                self.baseline is None
                or other.time_of(BASELINE, 0.0) > self.time_of(BASELINE, 0.0)):
            self.record(BASELINE, 0.0, other.baseline, time=other.time_of(BASELINE, 0.0))
        for group, values in other.results.items():
            for key in values:
                ratio = float(key)
                theirs = other.time_of(group, ratio)
                if not self.has(group, ratio) or theirs > self.time_of(group, ratio):
                    self.record(group, ratio, values[key], other.indices.get(group), theirs)
        for group, index in other.indices.items():
            self.indices.setdefault(group, index)

    # Persistence ------------------------------------------------------------------

    def to_json(self):
        return {"format": FORMAT, "version": VERSION, "key": self.key,
                "baseline": self.baseline, "results": self.results, "indices": self.indices,
                "times": self.times}

    @classmethod
    def from_json(cls, data, source="<dict>", fix=""):
        """Builds a cache from `to_json()` output.

        Raises:
          AnalysisCacheError: naming `source` and the `fix`, when `data` is not
            a well-formed cache (wrong types included).
        """
        problem = _problem(data)
        if problem is not None:
            raise errors.AnalysisCacheError(
                f"Sensitivity cache {source} is corrupted: {problem}. {fix}".rstrip())
        def canonical(table):  # "0.25" and "0.2500" name the same step
            return {g: {ratio_key(float(r)): v for r, v in values.items()}
                    for g, values in table.items()}

        return cls(normalize_key(data["key"]), data.get("baseline"),
                   canonical(data["results"]), data.get("indices"),
                   times=canonical(data.get("times", {})))

    @classmethod
    def load(cls, path, fix=None):
        """Reads a cache file.

        Raises:
          AnalysisCacheError: naming the file and the fix if it is corrupted.
        """
        if fix is None:
            fix = f"Delete {path!r}; the steps it held are recomputed by the next ana()."
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise errors.AnalysisCacheError(
                f"Sensitivity cache {path!r} is corrupted (not valid JSON: {e}). {fix}") from e
        return cls.from_json(data, repr(path), fix)

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


def _is_number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_ratio_text(text, allow_zero):
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and (0 < value < 1 or (allow_zero and value == 0))


def _problem(data):
    """What is wrong with a cache's JSON data, or None."""
    if not isinstance(data, dict):
        return f"expected a JSON object, found {type(data).__name__}"
    if data.get("format") != FORMAT:
        return f"\"format\" is {data.get('format')!r}, expected {FORMAT!r}"
    key = data.get("key")
    if not isinstance(key, dict):
        return "\"key\" must be an object"
    for name in KEY_FIELDS:
        if not isinstance(key.get(name), str):
            return f"key field {name!r} must be a string, found {key.get(name)!r}"
    if key["mode"] not in ("max", "min"):
        return f"key field 'mode' must be 'max' or 'min', found {key['mode']!r}"
    if data.get("baseline") is not None and not _is_number(data["baseline"]):
        return f"\"baseline\" must be a finite number or null, found {data['baseline']!r}"
    if "results" not in data:
        return "\"results\" is missing"
    for field, expected in (("results", "a finite number"), ("times", "a time in seconds")):
        table = data.get(field, {})
        if not isinstance(table, dict):
            return f"{field!r} must be an object, found {table!r}"
        for group, values in table.items():
            if not isinstance(values, dict):
                return f"{field}[{group!r}] must be an object of ratio -> value, found {values!r}"
            for ratio, value in values.items():
                if not _is_ratio_text(ratio, allow_zero=group == BASELINE and field == "times"):
                    return f"{field}[{group!r}] has ratio {ratio!r}, expected a number in (0, 1)"
                if not _is_number(value):
                    return f"{field}[{group!r}][{ratio!r}] must be {expected}, found {value!r}"
    indices = data.get("indices", {})
    if not isinstance(indices, dict):
        return f"\"indices\" must be an object, found {indices!r}"
    for group, index in indices.items():
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            return f"indices[{group!r}] must be a non-negative integer, found {index!r}"
    return None

