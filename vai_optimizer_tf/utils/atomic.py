"""Atomic file writes: a reader never sees a half-written file."""

import json
import os
import tempfile


def write_text_atomic(path, text):
    """Writes `text` to `path` through a temporary file and a rename.

    A process killed at any moment leaves either the old file or the new one,
    never a truncated mix, because `os.replace` is atomic on POSIX.

    Args:
        path: Destination file path. Its folder is created if missing.
        text: The string to write.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        # mkstemp creates 0600 files; give the result the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


def write_json_atomic(path, obj):
    """Writes `obj` as indented JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
