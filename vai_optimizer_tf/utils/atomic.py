"""Atomic writes: a reader never sees a half-written file or folder.

Every file and folder the library writes (models in every format, specs,
caches, plots) goes through `atomic_path`: the writer fills a temporary path
next to the target, and only a complete result is renamed onto the target.
A process killed at any moment leaves the previous version or the new one.

What a kill can leave behind:

* `.NAME.tmp-XXXXXXXX[.ext]`: a temporary file or folder of an interrupted
  write (or of a replaced folder being deleted). Never read; safe to delete.
* `NAME.old-XXXXXXXX`: only where a folder cannot be swapped atomically (not
  Linux, or a filesystem without `renameat2(RENAME_EXCHANGE)`), when the kill
  lands between moving the previous folder aside and renaming the new one in.
  `NAME` is then missing and `NAME.old-XXXXXXXX` is the complete previous
  folder: rename it back (`mv NAME.old-XXXXXXXX NAME`).
"""

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
import sys

_TMP_MARK = ".tmp-"
_OLD_MARK = ".old-"
# Linux can swap two paths in one system call; elsewhere folders are replaced in two renames.
_EXCHANGE_SUPPORTED = sys.platform.startswith("linux")


def _unique(folder, make):
    """Calls `make(candidate_suffix)` until it creates a path that did not exist."""
    for _ in range(100):
        try:
            return make(secrets.token_hex(4))
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a unique temporary name in {folder!r}.")


def _sibling(path, mark, token):
    """A name next to `path`: `.model.tmp-1a2b3c4d.keras` (hidden, extension kept) for
    temporaries, `serving.old-1a2b3c4d` (visible) for a folder set aside."""
    folder, base = os.path.split(os.path.abspath(path))
    if mark == _OLD_MARK:
        return os.path.join(folder, f"{base}{mark}{token}")
    root, ext = os.path.splitext(base)
    return os.path.join(folder, f".{root}{mark}{token}{ext}")


def _rename_to_new_sibling(src, path, mark):
    """Renames `src` to a fresh `_sibling(path, mark, ...)` name and returns that name."""

    def attempt(token):
        target = _sibling(path, mark, token)
        if os.path.lexists(target):
            raise FileExistsError(target)
        os.rename(src, target)
        return target

    return _unique(os.path.dirname(os.path.abspath(path)), attempt)


def _create_file(name):
    # O_EXCL: never reuse a name; mode 0o666 lets the umask decide, as open() does.
    os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return name


def _create_folder(name):
    os.mkdir(name, 0o777)
    return name


def _fsync(path):
    """Flushes a file, or a folder tree, to disk before it is renamed into place."""
    if os.path.isdir(path):
        for root, _, files in os.walk(path):
            for name in files:
                _fsync_one(os.path.join(root, name))
            _fsync_one(root)
    else:
        _fsync_one(path)


def _fsync_one(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a dangling link written by the caller: nothing to flush
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _exchange(a, b):
    """Atomically swaps paths `a` and `b` (Linux `renameat2`); False when unsupported."""
    if not _EXCHANGE_SUPPORTED:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:  # glibc < 2.28
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # kernel or filesystem without RENAME_EXCHANGE
    raise OSError(code, os.strerror(code), b)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def _replace_folder(new, path):
    """Puts folder `new` at `path`, replacing what is there; see the module docstring."""
    for _ in range(100):
        try:
            os.rename(new, path)  # `path` missing (or an empty folder): one atomic rename
            return
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise
        try:
            exchanged = _exchange(new, path)  # if so, the previous folder is at `new`'s name
        except FileNotFoundError:
            continue  # another writer moved `path` away meanwhile; try again
        if exchanged:
            _remove(new)
            return
        try:  # from here until the next rename, `path` is missing
            aside = _rename_to_new_sibling(path, path, _OLD_MARK)
        except FileNotFoundError:
            continue  # another writer moved it first; try again
        try:
            os.rename(new, path)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                os.rename(aside, path)  # put the previous folder back, then fail
                raise
            # Another writer's newer folder won the race: drop the previous one.
            _remove(_rename_to_new_sibling(aside, path, _TMP_MARK))
            continue
        # Rename to a hidden temporary name first, so a kill during the deletion never
        # leaves a half-deleted folder that looks like a recoverable `NAME.old-*`.
        os.rename(aside, new)
        _remove(new)
        return
    raise OSError(f"Could not replace {path!r}: other processes keep replacing it.")


@contextlib.contextmanager
def atomic_path(path, directory=False):
    """Yields a temporary path next to `path`; the result replaces `path` on success.

    Write the file (or folder) to the yielded path. When the block ends
    without an exception, the result is flushed to disk and renamed onto
    `path` in one step, so readers and a killed process only ever see the
    previous version or the complete new one. On an exception the temporary
    path is deleted and `path` is untouched.

    Files are replaced with `os.replace` (atomic on POSIX and Windows). An
    existing folder is swapped in atomically on Linux (`renameat2` with
    `RENAME_EXCHANGE`) and the previous one deleted; elsewhere the previous
    folder is moved aside to `NAME.old-XXXXXXXX`, the new one renamed in, and
    the old one deleted (see the module docstring for what a kill leaves).

    The temporary name keeps the extension (`.model.tmp-1a2b3c4d.keras`), so
    writers that pick the format from it (Keras, matplotlib) work unchanged.
    New files and folders get the permissions the umask gives, like `open()`.

    Args:
      path: The destination file or folder. Its parent folder is created if
        missing.
      directory: `True` when the writer produces a folder (a SavedModel);
        the yielded path is then an existing empty folder. Defaults to `False`
        (the yielded path is an existing empty file the writer overwrites).

    Yields:
      The temporary path, as a string.

    Raises:
      IsADirectoryError: if `directory=False` and `path` is a folder.
      NotADirectoryError: if `directory=True` and `path` is a file.

    Example:

    ```python
    import os
    import tempfile
    from vai_optimizer_tf.utils import atomic

    path = os.path.join(tempfile.mkdtemp(), "report.txt")
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("complete\\n")
    print(open(path).read())   # complete
    ```
    """
    path = os.fspath(path)
    if not directory and os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "Cannot write a file over a folder", path)
    if directory and os.path.lexists(path) and not os.path.isdir(path):
        raise NotADirectoryError(errno.ENOTDIR, "Cannot write a folder over a file", path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    create = _create_folder if directory else _create_file
    tmp = _unique(folder, lambda token: create(_sibling(path, _TMP_MARK, token)))
    try:
        yield tmp
        _fsync(tmp)
        if directory:
            _replace_folder(tmp, path)
        else:
            os.replace(tmp, path)
        _fsync_one(folder)  # the rename itself reaches the disk
    except BaseException:
        _remove(tmp)
        raise


def write_bytes_atomic(path, data):
    """Writes `data` to `path` through a temporary file and a rename.

    Args:
      path: Destination file path. Its folder is created if missing.
      data: The bytes to write.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text_atomic(path, text):
    """Writes `text` to `path` through a temporary file and a rename.

    A process killed at any moment leaves either the old file or the new one,
    never a truncated mix.

    Args:
      path: Destination file path. Its folder is created if missing.
      text: The string to write.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def write_json_atomic(path, obj):
    """Writes `obj` as indented JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


class OutputExistsError(FileExistsError):
    """A `FileExistsError` whose message is one readable sentence; `filename` is the path."""

    def __str__(self):
        return self.strerror


def check_writable(paths, overwrite):
    """Raises `FileExistsError` for the first existing path when `overwrite` is False.

    Args:
      paths: The files or folders a call is about to write.
      overwrite: Whether replacing them is allowed.

    Raises:
      FileExistsError: (an `OutputExistsError`) if `overwrite` is False and
        one of `paths` exists; the exception's `filename` is that path.
    """
    if overwrite:
        return
    for path in paths:
        path = os.fspath(path)
        if os.path.lexists(path):
            raise OutputExistsError(errno.EEXIST, f"{path!r} already exists. Pass overwrite=True "
                                    "to replace it, or choose another path.", path)
