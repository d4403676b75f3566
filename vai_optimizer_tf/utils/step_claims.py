"""`StepClaims`: which process is evaluating which analysis step, across machines.

Before evaluating a step, a process claims it by creating
`<claims>/<step>.<n>.claim` atomically and exclusively (a hard link of a
complete temporary file, or `O_CREAT | O_EXCL` where links are not
supported): of several processes, exactly one succeeds. Both are reliable on
local and NFS file systems, unlike `flock`. The claim names the host (and its
boot id), the pid and the writer; a heartbeat thread refreshes its
modification time while the step runs. A claim stops blocking others when it
is *stale*: its process is gone (same host), or it was not refreshed for
`CLAIM_TIMEOUT` seconds, timed by the file system's clock (any host). A stale
claim `n` is taken over by creating claim `n + 1`, again exclusively, so a
run killed at any moment never blocks a rerun, and no claim file of another
process is ever deleted.
"""

import contextlib
import json
import os
import re
import secrets
import socket
import tempfile
import threading

CLAIM_TIMEOUT = 600.0  # seconds without a heartbeat after which a claim is stale
HEARTBEAT = 30.0  # seconds between refreshes of a held claim
# Writers of this process that may hold claims. A claim with this host and pid
# whose writer is not here was left by a killed process that had the same pid
# (a restarted container, for one).
_live_writers = set()


def _this_host():
    """The host name, plus the boot id where Linux has one (two machines may share a name)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}" if boot else socket.gethostname()


def file_safe(text):
    """`text` with every character but letters, digits, `_` and `-` replaced by `_`."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(text))


def new_writer_id():
    """A name no other process uses: host, pid and a random suffix."""
    host = file_safe(socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


class StepClaims:
    """Claims on the steps of one analysis, held by one writer.

    Args:
      folder: The claims folder of the analysis key.
      writer: This process's writer id.
    """

    def __init__(self, folder, writer):
        self.folder = os.fspath(folder)
        self.writer = writer
        self.host = _this_host()
        self.held = None
        self._lock = threading.Lock()
        _live_writers.add(writer)

    def _path(self, step, generation):
        return os.path.join(self.folder, f"{step}.{generation}.claim")

    def _generations(self, step):
        prefix = f"{step}."
        out = []
        for name in os.listdir(self.folder):
            if name.startswith(prefix) and name.endswith(".claim"):
                middle = name[len(prefix):-len(".claim")]
                if middle.isdigit():
                    out.append(int(middle))
        return out

    def _now(self):
        """The file system's clock (claims are timed by it, not by this host's clock)."""
        probe = os.path.join(self.folder, f".now-{self.writer}")
        with open(probe, "w"):
            pass
        return os.stat(probe).st_mtime

    def is_stale(self, path):
        """Whether the claim at `path` no longer blocks others."""
        try:
            mtime = os.stat(path).st_mtime
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except FileNotFoundError:
            return True
        except (ValueError, OSError):
            info = {}
        if not isinstance(info, dict):
            info = {}
        pid = info.get("pid")
        if info.get("host") == self.host and isinstance(pid, int):
            if pid == os.getpid():
                return info.get("writer") not in _live_writers
            if not _pid_alive(pid):
                return True
        return self._now() - mtime > CLAIM_TIMEOUT

    def try_claim(self, step):
        """Claims `step` unless a live claim holds it; returns whether this writer holds it."""
        os.makedirs(self.folder, exist_ok=True)
        generations = self._generations(step)
        generation = 0
        if generations:
            top = max(generations)
            if not self.is_stale(self._path(step, top)):
                return False
            generation = top + 1
        path = self._path(step, generation)
        if not self._create_exclusive(path):
            return False
        with self._lock:
            self.held = path
        return True

    def _create_exclusive(self, path):
        info = json.dumps({"host": self.host, "pid": os.getpid(), "writer": self.writer})
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-claim-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(info)
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            except OSError:
                pass  # no hard links here: fall back to O_EXCL
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(info)
            return True
        finally:
            os.unlink(tmp)

    def release(self):
        """Gives up the claim this writer holds (its own file), if any."""
        with self._lock:
            path, self.held = self.held, None
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _refresh(self):
        with self._lock:
            if self.held is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.utime(self.held)

    @contextlib.contextmanager
    def heartbeat(self):
        """Refreshes the held claim every `HEARTBEAT` seconds; releases it on exit."""
        stop = threading.Event()

        def beat():
            while not stop.wait(HEARTBEAT):
                self._refresh()

        thread = threading.Thread(target=beat, name="vai-claim-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self.release()
            _live_writers.discard(self.writer)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.folder, f".now-{self.writer}"))
