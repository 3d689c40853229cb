"""Fail points: crash the process at a named step, once, to test recovery.

Off unless ``INSTALLMENTS_FAULT_POINT`` names a point. The fault fires once per
marker file (``INSTALLMENTS_FAULT_MARKER``), so the restarted process runs on.
Points: ``after_db_commit`` (state committed, nothing published, Kafka offsets
not committed) and ``after_publish`` (events sent, outbox rows not yet deleted).
"""

from __future__ import annotations

import os
import signal

POINTS = ("after_db_commit", "after_publish")

#: A poison fault: every process dies (SIGKILL, like a segfault) on a record whose value
#: contains these bytes (``INSTALLMENTS_FAULT_POISON``); read once, at import.
_POISON = os.environ.get("INSTALLMENTS_FAULT_POISON", "").encode() or None


def maybe_crash(point: str) -> None:
    if os.environ.get("INSTALLMENTS_FAULT_POINT") != point:
        return
    marker = os.environ.get("INSTALLMENTS_FAULT_MARKER")
    if marker:
        if os.path.exists(marker):
            return
        with open(marker, "w") as fh:
            fh.write(point)
    os.kill(os.getpid(), signal.SIGKILL)


def maybe_die_on(value: bytes | None) -> None:
    """Kill the process when ``value`` holds the configured poison bytes (tests only)."""
    if _POISON is not None and value is not None and _POISON in value:
        os.kill(os.getpid(), signal.SIGKILL)
