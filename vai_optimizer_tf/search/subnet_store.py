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

    Subclasses store other records (the once-for-all search keys candidates
    by their configuration) by overriding `FORMAT`, `PREFIX`,
    `parse_id`, `format_id` and `parse_record` (which returns the record or
    a string saying what is wrong).

    Args:
      folder: The search folder, e.g. `<workspace>/one_step`.
      key: The search key (JSON-serializable dict with `weights_digest`).
      writer: This process's writer id. Defaults to a new unique one.
    """

    FORMAT = FORMAT
    PREFIX = _PREFIX

    def __init__(self, folder, key, writer=None):
        self.folder = os.fspath(folder)
        self.key = json.loads(json.dumps(key))
        self.key_id = key_id(self.key)
        self.writer = writer or new_writer_id()
        self._own = {}

    # Record format (overridden by subclasses) ------------------------------------------

    @staticmethod
    def parse_id(text):
        """A candidate id from its JSON key, or None when malformed."""
        return int(text) if _is_int_text(text) else None

    @staticmethod
    def format_id(candidate_id):
        return str(int(candidate_id))

    @staticmethod
    def parse_record(raw):
        """The record stored as `raw`, or a string saying what is wrong with it."""
        if not isinstance(raw, dict):
            return "is not a record"
        widths = raw.get("widths")
        if not isinstance(widths, dict) or not all(
                _is_int_text(k) and isinstance(v, int) and not isinstance(v, bool) and v > 0
                for k, v in widths.items()):
            return "has malformed `widths`"
        problem = number_fields_problem(raw, ("flops_reduction", "score"))
        if problem:
            return problem
        return {"widths": {int(k): int(v) for k, v in widths.items()},
                "flops_reduction": float(raw["flops_reduction"]), "score": float(raw["score"])}

    @staticmethod
    def record_to_json(record):
        out = dict(record)
        out["widths"] = {str(k): v for k, v in record["widths"].items()}
        return out

    # Files ------------------------------------------------------------------------------

    @property
    def own_path(self):
        return os.path.join(self.folder, f"{self.PREFIX}{self.key_id}.{self.writer}.json")

    @property
    def claims_folder(self):
        return os.path.join(self.folder, "claims", self.key_id)

    def paths(self):
        """Every result file of this key, this process's own included."""
        return sorted(glob.glob(os.path.join(glob.escape(self.folder),
                                             f"{self.PREFIX}{self.key_id}.*.json")))

    def _fix(self, path):
        return (f"Delete {path!r}: the candidates it held are scored again by the next "
                "search(), and no other file is affected.")

    def load(self, path):
        """One file of this key: id -> record. Raises `AnalysisCacheError` if corrupted."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise errors.AnalysisCacheError(
                f"Search cache {path!r} is corrupted ({e}). {self._fix(path)}") from e
        records = self._records(data)
        if isinstance(records, str):
            raise errors.AnalysisCacheError(
                f"Search cache {path!r} is corrupted: {records}. {self._fix(path)}")
        return records

    def _records(self, data):
        """The records of a loaded file, or a string saying what is wrong."""
        if not isinstance(data, dict) or data.get("format") != self.FORMAT:
            return "it is not a vai_optimizer_tf subnet-search file"
        if data.get("key") != self.key:
            return "its key does not match its file name"
        subnets = data.get("subnets")
        if not isinstance(subnets, dict):
            return "`subnets` is not an object"
        records = {}
        for text, raw in subnets.items():
            candidate = self.parse_id(text)
            if candidate is None:
                return f"subnet {text!r} is not an index with a record"
            record = self.parse_record(raw)
            if isinstance(record, str):
                return f"subnet {text!r} {record}"
            records[candidate] = record
        return records

    def read(self):
        """Every candidate scored for this key, by any process: id -> record."""
        merged = {}
        for path in self.paths():
            try:
                merged.update(self.load(path))
            except FileNotFoundError:
                continue
        merged.update(self._own)
        return merged

    def add(self, candidate_id, record):
        """Adds one scored candidate's record to this process's file, atomically."""
        self._own[candidate_id] = record
        data = {"format": self.FORMAT, "key": self.key, "writer": self.writer,
                "subnets": {self.format_id(i): self.record_to_json(r)
                            for i, r in sorted(self._own.items())}}
        atomic.write_json_atomic(self.own_path, data)

    def record(self, index, widths, flops_reduction, score):
        """Adds one scored one-step candidate to this process's file, atomically."""
        self.add(int(index), {"widths": {int(k): int(v) for k, v in widths.items()},
                              "flops_reduction": float(flops_reduction), "score": float(score)})


def _is_int_text(text):
    return isinstance(text, str) and text.isdigit()


def _is_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def number_fields_problem(raw, fields):
    """What is wrong with the number fields of a raw record, or None."""
    for field in fields:
        if not _is_number(raw.get(field)):
            return f"has a malformed `{field}`"
    return None
