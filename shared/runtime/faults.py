"""Fail points: crash the process at a named step, once, to test recovery.

Off unless ``INSTALLMENTS_FAULT_POINT`` names a point. The fault fires once per
marker file (``INSTALLMENTS_FAULT_MARKER``), so the restarted process runs on.
Points: ``after_db_commit`` (state committed, nothing published, Kafka offsets
not committed), ``after_publish`` (events sent, outbox rows not yet deleted) and
``while_writing`` (a batch's state, inbox, outbox and offsets written, its transaction
not committed).

With the loop's overlap (:mod:`shared.runtime.runner`) a batch is written and published
by the writer thread while the loop goes on with the next one. ``while_writing`` and
``after_db_commit`` then wait (at most :data:`RENDEZVOUS_S`) until the loop has reached
the next batch (decoded it; started its handlers), so the crash lands with batch N in
the writer and batch N+1 in the loop's hands (:func:`reached` notes the loop's steps).
"""

from __future__ import annotations

import os
import signal
import threading

POINTS = ("after_db_commit", "after_publish", "while_writing")

#: How long a point waits for the step of the loop it names before crashing anyway.
RENDEZVOUS_S = 5.0

#: A poison fault: every process dies (SIGKILL, like a segfault) on a record whose value
#: contains these bytes (``INSTALLMENTS_FAULT_POISON``); read once, at import.
_POISON = os.environ.get("INSTALLMENTS_FAULT_POISON", "").encode() or None

_steps: dict[str, threading.Event] = {}
_steps_lock = threading.Lock()


def _step(name: str) -> threading.Event:
    with _steps_lock:
        return _steps.setdefault(name, threading.Event())


def reached(step: str) -> None:
    """The loop reached ``step`` (a point waiting for it may fire). Free when no fault
    point is set."""
    if os.environ.get("INSTALLMENTS_FAULT_POINT") is None:
        return
    _step(step).set()


def restart_steps() -> None:
    """The loop handed a batch to the writer: the steps it reaches from now on are the
    next batch's."""
    if os.environ.get("INSTALLMENTS_FAULT_POINT") is None:
        return
    with _steps_lock:
        for step in _steps.values():
            step.clear()


def maybe_crash(point: str, *, after: str | None = None) -> None:
    """SIGKILL the process if ``point`` is the configured fault point (once per marker).
    ``after``: first wait (at most :data:`RENDEZVOUS_S`) until the loop has reached that
    step since it last handed a batch to the writer (:func:`restart_steps`)."""
    if os.environ.get("INSTALLMENTS_FAULT_POINT") != point:
        return
    marker = os.environ.get("INSTALLMENTS_FAULT_MARKER")
    if marker and os.path.exists(marker):
        return
    met = _step(after).wait(RENDEZVOUS_S) if after is not None else False
    if marker:
        # What the marker says: the point, and the loop's step it met (or "alone").
        with open(marker, "w") as fh:
            fh.write(point if after is None else f"{point} {after if met else 'alone'}")
    os.kill(os.getpid(), signal.SIGKILL)


def maybe_die_on(value: bytes | None) -> None:
    """Kill the process when ``value`` holds the configured poison bytes (tests only)."""
    if _POISON is not None and value is not None and _POISON in value:
        os.kill(os.getpid(), signal.SIGKILL)
