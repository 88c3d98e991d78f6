"""Named points where a test can kill the process, to prove that a kill anywhere leaves the lake whole.

``CHURNLAKE_FAULT=<point>[@<table>]`` in a job's environment sends the job SIGKILL (no handler, no
``finally``, no flush) when it reaches that point, for that table's folder name or any. The points:
``staged`` (a write's files are in ``_staging``, nothing moved), ``moving`` (the first file moved into
the table, the commit not written), ``committed`` (the commit written, staging not cleaned up; the next
table of a multi-table stage not written), ``registered`` (a trained model version registered, no alias
moved, no run recorded). Unset, a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "CHURNLAKE_FAULT"
POINTS = ("staged", "moving", "committed", "registered")


def fault_point(point: str, target: str = "") -> None:
    """SIGKILL this process when :data:`FAULT_ENV` names ``point`` (and ``target``'s last path part)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    want, _, where = spec.partition("@")
    if want == point and (not where or target.rstrip("/").rsplit("/", 1)[-1] == where):
        os.kill(os.getpid(), signal.SIGKILL)
