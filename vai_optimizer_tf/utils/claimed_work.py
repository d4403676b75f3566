"""Work shared by processes through a folder: claim a step, do it, record it, repeat.

Any number of processes, on one machine or on several sharing a folder, may
run the same list of steps at once. Each round a process re-reads what every
process has recorded, claims the first step nobody finished or holds
(`StepClaims`), does it and records it in its own file. Steps that other live
processes hold are waited for, so when `run_claimed` returns every step is
finished, by this process or another, and no step was done twice unless a
process died holding it.
"""

import logging
import time

POLL_SECONDS = 0.5  # how often a process waiting for other processes' steps looks again
logger = logging.getLogger("vai_optimizer_tf")


def run_claimed(steps, claims, read, is_done, step_id, do_step, progress=None, what="steps"):
    """Runs every step of `steps` that no process has finished.

    Args:
      steps: The steps, in order of preference.
      claims: A `StepClaims` of this process's writer.
      read: `fn() -> merged` record of every process.
      is_done: `fn(merged, step) -> bool`.
      step_id: `fn(step) -> str`, a file-name-safe id of a step.
      do_step: `fn(step)`: does the step and records it in this process's
        file (so the next `read` sees it).
      progress: Optional Keras `Progbar` over `len(steps)`.
      what: Name of the steps in log messages.

    Returns:
      The last `read()`, with every step done.
    """
    steps = list(steps)
    waiting = False
    with claims.heartbeat():
        while True:
            merged = read()
            todo = [s for s in steps if not is_done(merged, s)]
            if progress is not None:
                progress.update(len(steps) - len(todo))
            if not todo:
                return merged
            step = _claim(claims, todo, read, is_done, step_id)
            if step is None:
                if not waiting:
                    logger.info("Waiting for %d %s that other processes are running.",
                                len(todo), what)
                waiting = True
                time.sleep(POLL_SECONDS)
                continue
            waiting = False
            try:
                do_step(step)
            finally:
                claims.release()


def _claim(claims, todo, read, is_done, step_id):
    """Claims the first step of `todo` no live process holds, or returns None."""
    for step in todo:
        if not claims.try_claim(step_id(step)):
            continue
        # Another process may have finished it between our read and our claim.
        if is_done(read(), step):
            claims.release()
            continue
        return step
    return None
