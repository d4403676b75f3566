"""`AnalysisStore`: the files of one sensitivity analysis in a workspace.

    <workspace>/ana/sensitivity-<W>-<K>.<writer>.json   one file per writing process
    <workspace>/ana/claims/<W>-<K>/<step>.<n>.claim      steps being evaluated now

`W` is the weights digest and `K` a digest of the whole analysis key (graph,
weights, criterion, mode). Every process writes only its own file, named by
host, pid and a random suffix, and rewrites it atomically after every step;
readers merge all the files of a key. No process renames, deletes or
overwrites another process's file, or a file of another key. The one
exception is `ana(..., forced=True)`, which moves *unreadable* files of its
own key aside (to `<file>.corrupted`): they hold no readable work.
"""

import glob
import hashlib
import json
import os

from vai_optimizer_tf import errors
from vai_optimizer_tf.analysis.sensitivity_cache import SensitivityCache, normalize_key
from vai_optimizer_tf.utils import atomic
from vai_optimizer_tf.utils.step_claims import file_safe as _safe, new_writer_id

_PREFIX = "sensitivity-"


def key_id(key):
    """`<weights digest>-<key digest>`: names the files and claims of one analysis key."""
    key = normalize_key(key)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return f"{_safe(key['weights_digest'])}-{digest}"


def _key_id_of(path):
    name = os.path.basename(path)
    return name[len(_PREFIX):].split(".", 1)[0]


class AnalysisStore:
    """The result files of one analysis key, and this process's own file.

    Args:
      folder: `<workspace>/ana`.
      key: The analysis key (`graph_digest`, `weights_digest`, `criterion`,
        `mode`).
      writer: This process's writer id. Defaults to a new unique one.
    """

    def __init__(self, folder, key, writer=None):
        self.folder = os.fspath(folder)
        self.key = normalize_key(key)
        self.key_id = key_id(self.key)
        self.writer = writer or new_writer_id()

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

    def fix(self, path):
        """How to get past the corrupted file `path`; both ways work."""
        options = [] if self.key["mode"] == "max" else [f"mode={self.key['mode']!r}"]
        if self.key["criterion"] != "l1":
            options.insert(0, f"criterion={self.key['criterion']!r}")
        call = ", ".join(["eval_fn", "forced=True"] + options)
        return (f"Delete {path!r}: the steps it held are recomputed by the next ana(). Or run "
                f"runner.ana({call}) on the model with these weights (weights digest "
                f"{self.key['weights_digest']}): it moves unreadable files aside and recomputes "
                "every step.")

    def load(self, path):
        """One file of this key; raises `AnalysisCacheError` (with the fix) if corrupted."""
        cache = SensitivityCache.load(path, fix=self.fix(path))
        if cache.key != self.key:
            raise errors.AnalysisCacheError(
                f"Sensitivity cache {path!r} is corrupted: its key {cache.key} does not match "
                f"its file name ({self.key_id}). {self.fix(path)}")
        return cache

    def read(self):
        """All the steps of this key, from every process's file, merged.

        Returns:
          A `SensitivityCache` (empty when nothing is recorded yet).

        Raises:
          AnalysisCacheError: when a file is corrupted; the message names it
            and the fix.
        """
        merged = SensitivityCache(self.key)
        for path in self.paths():
            try:
                merged.merge(self.load(path))
            except FileNotFoundError:
                continue  # moved aside by a forced run between glob and open
        return merged

    def save(self, cache):
        """Writes this process's own steps, atomically."""
        data = cache.to_json()
        data["writer"] = self.writer
        atomic.write_json_atomic(self.own_path, data)

    def quarantine_corrupted(self):
        """Moves unreadable files of this key aside; returns their new paths."""
        moved = []
        for path in self.paths():
            try:
                self.load(path)
            except FileNotFoundError:
                continue
            except errors.AnalysisCacheError:
                target = f"{path}.corrupted"
                try:
                    os.rename(path, target)
                except FileNotFoundError:
                    continue  # another forced run moved it first
                moved.append(target)
        return moved


def analysis_keys(folder, graph_digest, weights_digest):
    """The keys analysed for these weights, newest first.

    Raises:
      AnalysisCacheError: when every file of a key is corrupted.
    """
    by_key = {}
    pattern = os.path.join(glob.escape(folder), f"{_PREFIX}{_safe(weights_digest)}-*.*.json")
    for path in glob.glob(pattern):
        try:
            by_key.setdefault(_key_id_of(path), []).append((os.path.getmtime(path), path))
        except FileNotFoundError:
            continue
    found = []
    for files in by_key.values():
        files.sort(reverse=True)
        key, error = None, None
        for _, path in files:
            try:
                key = SensitivityCache.load(path).key
                break
            except FileNotFoundError:
                continue
            except errors.AnalysisCacheError as e:
                error = error or e
        if key is None and error is not None:
            raise error
        if key is not None and key["graph_digest"] == graph_digest:
            found.append((files[0][0], key))
    return [key for _, key in sorted(found, key=lambda item: -item[0])]


def graph_digests(folder):
    """Graph digests of every readable analysis file in `folder` (for messages)."""
    digests = set()
    for path in glob.glob(os.path.join(glob.escape(folder), f"{_PREFIX}*.json")):
        try:
            digests.add(SensitivityCache.load(path).key["graph_digest"])
        except (OSError, errors.AnalysisCacheError):
            continue
    return digests
