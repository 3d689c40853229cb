"""A peer that died between its database commit and its publish leaves outbox rows: the
process that takes over its partitions sends them, without waiting for a restart.

Found by the fault suite: a purchases process of a "storm" was killed after committing a
batch and before publishing it; no purchases process started again before the end, so
its ``purchase.recorded`` stayed in the outbox and the purchase had neither an effect nor
a dead letter. Outbox rows used to be sent only when a process started.
"""

from __future__ import annotations

import time
import uuid

from sqlalchemy import func, select

from shared.runtime.db import bulk_insert, utcnow
from shared.runtime.store import outbox
from tests.builders.services import PURCHASES as SERVICE
from tests.support import Collector, ServiceThread

OUT = "purchases.recorded.v1"


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_a_dead_peers_outbox_rows_go_out_when_its_partitions_are_taken_over(settings):
    first = ServiceThread(SERVICE, settings).start()
    second = ServiceThread(SERVICE, settings).start()
    out = Collector(settings, OUT)
    try:
        # Both in the group, each with part of the partitions.
        _wait(
            lambda: bool(first.runner.assigned) and bool(second.runner.assigned),
            60,
            "both processes to hold partitions",
        )
        # What a peer leaves when it dies after its commit and before its publish.
        event_id = str(uuid.uuid4())
        with first.runner.engine.begin() as conn:
            bulk_insert(
                conn,
                outbox,
                [
                    {
                        "batch": uuid.uuid4().hex,
                        "event_id": event_id,
                        "topic": settings.topic(OUT),
                        "key": b"acc-leftover",
                        "value": b'{"id": "' + event_id.encode() + b'"}',
                        "headers": [],
                        "created_at": utcnow(),
                    }
                ],
            )
        # The peer is gone: its partitions go to the first process.
        second.stop()
        out.wait_for(
            lambda rs: any(r.key == b"acc-leftover" for r in rs),
            60,
            "the dead peer's row, sent by the process that took its partitions",
        )

        def outbox_empty() -> bool:  # a row is deleted once the broker acknowledged it
            with first.runner.engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 0

        _wait(outbox_empty, 30, "the sent row to leave the outbox")
        assert [r.value for r in out.records if r.key == b"acc-leftover"] == [
            b'{"id": "' + event_id.encode() + b'"}'
        ]
    finally:
        out.close()
        first.stop()
        if second.thread.is_alive():
            second.stop()
