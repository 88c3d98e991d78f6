"""SIGTERM as a request to stop between commits.

A scheduler (or an operator) stops a job with SIGTERM. The handler only notes the request; a Delta
commit in progress (the move of staged files and the commit itself) finishes, and :class:`Terminated`
is raised right after it, or before the next write of a stage's data (:func:`stop_if_requested`, called
by the lake's write path) and before the monthly run's next stage. Nothing is raised inside a Spark
call: a stage busy computing stops at its next write. Stages record the run as ``interrupted`` and the
job exits with 143 (128 + SIGTERM).

SIGKILL cannot be handled and needs nothing: a commit is atomic, and the leases of a killed run are taken
over as soon as its pid is gone (:mod:`pipelines.core.lease`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

EXIT_TERMINATED = 143


class Terminated(BaseException):
    """The job was asked to stop (SIGTERM); raised between commits."""


_lock = threading.Lock()  # the commit count
_in_commit = 0
_requested = False
_delivered = False


def requested() -> bool:
    """True once SIGTERM arrived."""
    return _requested


def _deliver() -> None:
    global _delivered
    _delivered = True
    raise Terminated("stopped by SIGTERM")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # only a flag: raising here could land inside a Spark (py4j) call and leave its connection unusable
    global _requested
    _requested = True


def stop_if_requested(what: str) -> None:
    """Raise :class:`Terminated` before ``what`` (a write of data, a stage) once SIGTERM arrived, in any
    thread (run records, appends, still go through)."""
    if _requested:
        global _delivered
        _delivered = True
        raise Terminated(f"stopped by SIGTERM before {what}")


@contextlib.contextmanager
def commit_section() -> Iterator[None]:
    """A commit that SIGTERM lets finish; the stop is raised when the last one in progress ends."""
    global _in_commit
    with _lock:
        _in_commit += 1
    ok = False
    try:
        yield
        ok = True
    finally:
        with _lock:
            _in_commit -= 1
            deliver = ok and _requested and not _delivered and _in_commit == 0
        if deliver:
            _deliver()


def install() -> None:
    """Handle SIGTERM in this process (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def reset() -> None:
    """Forget a delivered request (a test running several jobs in one process)."""
    global _requested, _delivered
    with _lock:
        _requested = _delivered = False
