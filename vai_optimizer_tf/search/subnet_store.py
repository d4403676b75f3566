"""`SubnetStore`: the scored candidates of one subnet search, on disk.

    <workspace>/<folder>/subnets-<W>-<K>.<writer>.json   one file per writing process
    <workspace>/<folder>/claims/<W>-<K>/<index>.<n>.claim  candidates being scored now

`W` is the weights digest and `K` a digest of the whole search key (graph,
weights, target, seed, excludes, divisibility, criterion, calibration). Every
process writes only its own file, atomically after every candidate, and
readers merge all files of a key, so a search killed at any moment resumes
and concurrent or sharded searches never lose each other's candidates. A
file of another key is never read as ours, never renamed and never deleted.
"""

import glob
import hashlib
import json
import math
import os

from vai_optimizer_tf import errors
from vai_optimizer_tf.utils import atomic
from vai_optimizer_tf.utils.step_claims import file_safe, new_writer_id

FORMAT = "vai_optimizer_tf.subnets"
_PREFIX = "subnets-"


def key_id(key):
    """`<weights digest>-<key digest>`: names the files and claims of one search key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return f"{file_safe(key['weights_digest'])}-{digest}"


class SubnetStore:
    """The result files of one search key, and this process's own file.

    Records map a candidate index to `{"widths": {group index: width},
    "flops_reduction": float, "score": float}`; widths are keyed by group
    index so models whose layers Keras named differently share results.

    Args:
      folder: The search folder, e.g. `<workspace>/one_step`.
      key: The search key (JSON-serializable dict with `weights_digest`).
      writer: This process's writer id. Defaults to a new unique one.
    """

    def __init__(self, folder, key, writer=None):
        self.folder = os.fspath(folder)
        self.key = json.loads(json.dumps(key))
        self.key_id = key_id(self.key)
        self.writer = writer or new_writer_id()
        self._own = {}

    @property
    def own_path(self):
        return os.path.join(self.folder, f"{_PREFIX}{self.key_id}.{self.writer}.json")

    @property
    def claims_folder(self):
        return os.path.join(self.folder, "claims", self.key_id)

    def paths(self):
        """Every result file of this key, this process's own included."""
        return sorted(glob.glob(os.path.join(glob.escape(self.folder),
                                             f"{_PREFIX}{self.key_id}.*.json")))

    def _fix(self, path):
        return (f"Delete {path!r}: the candidates it held are scored again by the next "
                "search(), and no other file is affected.")

    def load(self, path):
        """One file of this key: index -> record. Raises `AnalysisCacheError` if corrupted."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise errors.AnalysisCacheError(
                f"Search cache {path!r} is corrupted ({e}). {self._fix(path)}") from e
        problem = _problem(data, self.key)
        if problem:
            raise errors.AnalysisCacheError(
                f"Search cache {path!r} is corrupted: {problem}. {self._fix(path)}")
        return {int(i): _record(r) for i, r in data["subnets"].items()}

    def read(self):
        """Every candidate scored for this key, by any process: index -> record."""
        merged = {}
        for path in self.paths():
            try:
                merged.update(self.load(path))
            except FileNotFoundError:
                continue
        merged.update(self._own)
        return merged

    def record(self, index, widths, flops_reduction, score):
        """Adds one scored candidate to this process's file, atomically."""
        self._own[int(index)] = {"widths": {int(k): int(v) for k, v in widths.items()},
                                 "flops_reduction": float(flops_reduction),
                                 "score": float(score)}
        data = {"format": FORMAT, "key": self.key, "writer": self.writer,
                "subnets": {str(i): {"widths": {str(k): v for k, v in r["widths"].items()},
                                     "flops_reduction": r["flops_reduction"],
                                     "score": r["score"]}
                            for i, r in sorted(self._own.items())}}
        atomic.write_json_atomic(self.own_path, data)


def _record(raw):
    return {"widths": {int(k): int(v) for k, v in raw["widths"].items()},
            "flops_reduction": float(raw["flops_reduction"]), "score": float(raw["score"])}


def _is_int_text(text):
    return isinstance(text, str) and text.isdigit()


def _is_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _problem(data, key):
    """What is wrong with a loaded file, or None."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return "it is not a vai_optimizer_tf subnet-search file"
    if data.get("key") != key:
        return "its key does not match its file name"
    subnets = data.get("subnets")
    if not isinstance(subnets, dict):
        return "`subnets` is not an object"
    for index, record in subnets.items():
        where = f"subnet {index!r}"
        if not _is_int_text(index) or not isinstance(record, dict):
            return f"{where} is not an index with a record"
        widths = record.get("widths")
        if not isinstance(widths, dict) or not all(
                _is_int_text(k) and isinstance(v, int) and not isinstance(v, bool) and v > 0
                for k, v in widths.items()):
            return f"{where} has malformed `widths`"
        for field in ("flops_reduction", "score"):
            if not _is_number(record.get(field)):
                return f"{where} has a malformed `{field}`"
    return None
