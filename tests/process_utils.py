"""Helpers for tests that count evaluations and run worker processes."""

import os
import time


class CountingEval:
    """Wraps an eval_fn and counts its calls."""

    def __init__(self, fn):
        self.fn = fn
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        return self.fn(model)


def logged_calls(log):
    """The pid of every eval_fn call worker processes appended to `log`, in order."""
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [line.strip() for line in f]


def start_together(tmp_path, start_worker, count, timeout=300):
    """Starts `count` workers (`start_worker(barrier) -> Popen`), releases them at once when
    all are ready, and waits for them to succeed."""
    barrier = str(tmp_path / "go")
    procs = [start_worker(barrier) for _ in range(count)] if callable(start_worker) else [
        make(barrier) for make in start_worker]
    deadline = time.time() + timeout
    while (len([f for f in os.listdir(tmp_path) if f.startswith("go.ready-")]) < len(procs)
           and time.time() < deadline):
        time.sleep(0.05)
    open(barrier, "w").close()
    for p in procs:
        assert p.wait(timeout=timeout) == 0, p.stderr.read().decode()[-2000:]
    return procs
