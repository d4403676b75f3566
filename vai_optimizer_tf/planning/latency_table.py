"""`LatencyTable`: measured latency of each layer at each width, cached in the workspace.

    <workspace>/latency/<device>-b<batch>-<K>/<writer>.json

`K` is a digest of everything a time depends on besides the layer itself:
the device, the batch size, the TensorFlow version, the CPU model and the
number of threads. A table measured on another machine, TensorFlow or batch
size is never used; it stays beside this one. Entries are keyed by the
unit's signature (its layers' configs and shapes) and widths, so units of
the same shape share them, across models too.

Building the table is a benchmark: each unit is timed at the widths the
planner may choose (see `latency_units.axis_widths`), with a progress bar.
Every process writes only its own file, atomically, after each unit, and
readers merge every file of the key: concurrent runs never lose each other's
work, and a killed run resumes with the units it had not measured.
"""

import glob
import hashlib
import json
import logging
import os
import platform

from vai_optimizer_tf import errors
from vai_optimizer_tf.analysis.analysis_store import new_writer_id
from vai_optimizer_tf.planning.latency_timer import check_device, default_threads
from vai_optimizer_tf.utils import atomic

TABLE_VERSION = 1
_FLOOR_SECONDS = 1e-7
logger = logging.getLogger("vai_optimizer_tf")


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo on Linux), else `platform.processor()`."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def table_key(device, batch_size, threads=None, tf_version=None, cpu=None):
    """What a measured time depends on besides the layer: the table's key.

    Args:
      device: `"tf"` or `"tflite"`.
      batch_size: The batch size.
      threads: Threads. Defaults to the CPU count.
      tf_version: Defaults to the installed TensorFlow's.
      cpu: CPU model name. Defaults to this machine's.

    Returns:
      A dict.
    """
    if tf_version is None:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        tf_version = tf.__version__
    return {"version": TABLE_VERSION, "device": check_device(device),
            "batch_size": int(batch_size), "tf_version": str(tf_version),
            "cpu": str(cpu if cpu is not None else cpu_model()),
            "threads": int(threads or default_threads())}


def key_id(key):
    """`<device>-b<batch>-<digest>`: the folder name of a key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return f"{key['device']}-b{key['batch_size']}-{digest}"


def signature_id(signature):
    """A short digest of a unit signature."""
    return hashlib.sha256(signature.encode()).hexdigest()[:20]


def _point_id(point):
    return ",".join(str(int(w)) for w in point)


class LatencyTable:
    """Measured seconds per (unit signature, widths), for one key.

    Args:
      folder: `<workspace>/latency`.
      key: A `table_key(...)` dict.
      writer: This process's writer id. Defaults to a new unique one.

    Example:

    ```python
    table = LatencyTable(os.path.join(workspace, "latency"), table_key("tflite", 1))
    table.fill({unit: [(64, 32), (64, 64)]}, measure)   # times what is missing
    table.get(unit.signature, (64, 32))
    ```
    """

    def __init__(self, folder, key, writer=None):
        self.folder = os.path.join(os.fspath(folder), key_id(key))
        self.key = dict(key)
        self.writer = writer or new_writer_id()
        self._own = {"key": self.key, "units": {}, "models": {}}
        self._merged = None

    @property
    def own_path(self):
        return os.path.join(self.folder, f"{self.writer}.json")

    def paths(self):
        """Every file of this key, this process's own included."""
        return sorted(glob.glob(os.path.join(glob.escape(self.folder), "*.json")))

    def _read(self, path):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise errors.AnalysisCacheError(
                f"Latency table file {path!r} is corrupted ({e}). Delete it; the layers it held "
                "are measured again.") from e
        if not isinstance(data, dict) or data.get("key") != self.key or not isinstance(
                data.get("units"), dict):
            raise errors.AnalysisCacheError(
                f"Latency table file {path!r} does not hold a table of this key. Delete it; the "
                "layers it held are measured again.")
        return data

    def reload(self):
        """Reads and merges every file of the key (other processes' work included)."""
        merged = {"units": {}, "models": {}}
        for path in self.paths():
            data = self._own if path == self.own_path else self._read(path)
            for sid, entry in data["units"].items():
                target = merged["units"].setdefault(sid, {"points": {}, "error": None})
                target["points"].update(entry.get("points", {}))
                target["error"] = target["error"] or entry.get("error")
            merged["models"].update(data.get("models", {}))
        for sid, entry in self._own["units"].items():
            target = merged["units"].setdefault(sid, {"points": {}, "error": None})
            target["points"].update(entry.get("points", {}))
            target["error"] = target["error"] or entry.get("error")
        merged["models"].update(self._own["models"])
        self._merged = merged
        return merged

    def _data(self):
        return self._merged if self._merged is not None else self.reload()

    def get(self, signature, point):
        """Seconds of the unit with `signature` at `point` (widths), or None."""
        entry = self._data()["units"].get(signature_id(signature))
        if entry is None:
            return None
        return entry["points"].get(_point_id(point))

    def points(self, signature):
        """Widths tuple -> seconds, every point measured for `signature`."""
        entry = self._data()["units"].get(signature_id(signature))
        if entry is None:
            return {}
        return {tuple(int(w) for w in k.split(",")): v for k, v in entry["points"].items()}

    def error(self, signature):
        """Why the unit could not be timed on its own, or None."""
        entry = self._data()["units"].get(signature_id(signature))
        return entry["error"] if entry else None

    def add(self, signature, seconds_by_point, error=None):
        """Records measured points of one unit and rewrites this process's file atomically."""
        entry = self._own["units"].setdefault(signature_id(signature),
                                              {"signature": signature, "points": {}})
        for point, seconds in seconds_by_point.items():
            entry["points"][_point_id(point)] = max(float(seconds), _FLOOR_SECONDS)
        if error:
            entry["error"] = str(error)
        self._save()

    def model_seconds(self, digest):
        """The measured end-to-end seconds of the model with graph `digest`, or None."""
        return self._data()["models"].get(digest)

    def set_model_seconds(self, digest, seconds):
        """Records a model's measured end-to-end seconds."""
        self._own["models"][digest] = float(seconds)
        self._save()

    def _save(self):
        atomic.write_json_atomic(self.own_path, self._own)
        self._merged = None

    def missing(self, requests):
        """The part of `requests` (unit -> points) not measured yet, by signature."""
        out = {}
        for unit, points in requests.items():
            if self.error(unit.signature):
                continue
            have = self.points(unit.signature)
            _, todo = out.setdefault(unit.signature, (unit, []))
            for point in points:
                point = tuple(int(w) for w in point)
                if point not in have and point not in todo:
                    todo.append(point)
        return {s: v for s, v in out.items() if v[1]}

    def fill(self, requests, measure, verbose=1):
        """Measures every requested point not in the table yet, with a progress bar.

        Args:
          requests: `LatencyUnit` -> list of `(in_width, out_width)` points.
            Units with equal signatures are measured once.
          measure: `fn(unit, points) -> seconds list` (a `UnitBenchmark`).
          verbose: 1 shows a progress bar, 0 is silent. Defaults to `1`.

        Returns:
          The number of points measured.
        """
        todo = self.missing(requests)
        total = sum(len(points) for _, points in todo.values())
        if not total:
            return 0
        bar = None
        if verbose:
            from tf_keras.utils import Progbar  # pylint: disable=import-outside-toplevel
            print(f"Measuring the latency table ({self.key['device']}, batch "
                  f"{self.key['batch_size']}): {total} layer timings for {len(todo)} layer "
                  f"shapes, cached in {self.folder}")
            bar = Progbar(total, unit_name="timing")
        done = 0
        for signature, (unit, points) in todo.items():
            try:
                seconds = measure(unit, points)
            except Exception as e:  # pylint: disable=broad-except
                # A layer that cannot be rebuilt or timed alone counts as a constant.
                logger.warning("Cannot time %s on its own (%s: %s); its time counts as a "
                               "constant.", unit.describe(), type(e).__name__, e)
                self.add(signature, {}, error=f"{type(e).__name__}: {e}")
            else:
                self.add(signature, dict(zip(points, seconds)))
            done += len(points)
            if bar is not None:
                bar.update(done)
        return total
