"""Step 4's marking sent (shared.runtime.runner): the outbox rows a batch published are
deleted by the next batch's transaction, not by a transaction of their own; an empty
poll or stopping marks what no batch carried. With and without the write overlap, on
real PostgreSQL (the stand-in consumer and producer of test_write_overlap)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from shared.runtime import metrics
from shared.runtime.store import outbox
from tests.integration.test_write_overlap import _close, _ids, _recorded_ids, _setup

pytestmark = pytest.mark.integration


def _batches_left(runner: Any) -> list[str]:
    with runner.engine.connect() as conn:
        return sorted({r[0] for r in conn.execute(select(outbox.c.batch))})


def _turn(runner: Any) -> None:
    runner.run_once()
    if runner._writer is not None:
        runner._writer.drain()  # the batch handed off is committed and published


@pytest.fixture(params=[False, True], ids=["loop", "overlap"])
def overlap(request: Any) -> bool:
    return bool(request.param)


def _runner(pg_database: str, overlap: bool, n: int) -> Any:
    runner, consumer, producer = _setup(pg_database, {0: _ids(0, n)}, per_poll=3)
    if not overlap:
        runner._writer.stop()
        runner._writer = None
    own: list[list[str]] = []
    real = runner._mark_sent

    def noted(batches: list[str]) -> None:
        own.append(list(batches))
        real(batches)

    runner._mark_sent = noted
    return runner, consumer, producer, own


def test_each_batch_is_marked_sent_by_the_next_ones_transaction(pg_database, overlap):
    runner, consumer, producer, own = _runner(pg_database, overlap, 9)
    try:
        _turn(runner)  # batch 1: committed and published, its rows still in the outbox
        first = _batches_left(runner)
        assert len(first) == 1 and len(producer.sent) == 3
        # published rows are out: not an outbox backlog for the readiness gauge
        assert metrics._readiness(runner)[1]["outbox_backlog"] == 0
        _turn(runner)
        second = _batches_left(runner)
        assert len(second) == 1 and second != first  # batch 2's transaction deleted 1's
        assert own == []  # no transaction of their own while batches follow
        while not consumer.caught_up():
            _turn(runner)
        _turn(runner)
        assert len(_recorded_ids(producer)) == 9
        assert len(_batches_left(runner)) <= 1
        _turn(runner)  # an empty poll: what no batch carried is marked on its own
        assert _batches_left(runner) == []
        assert len(own) == 1 and len(own[0]) == 1
        assert runner._published_batches == set()
    finally:
        _close(runner)


def test_stopping_marks_the_last_batch_sent(pg_database, overlap):
    runner, consumer, producer, own = _runner(pg_database, overlap, 3)
    _turn(runner)
    assert len(_batches_left(runner)) == 1 and len(producer.sent) == 3
    runner.close()
    assert len(own) == 1
    with runner.engine.connect() as conn:
        assert conn.execute(select(outbox.c.seq)).all() == []


def test_leftovers_skip_the_rows_this_process_published(pg_database, overlap):
    """A rebalance publishes the outbox rows a dead peer left: not this process's own,
    published and waiting for the next batch to mark them sent."""
    runner, consumer, producer, own = _runner(pg_database, overlap, 3)
    try:
        _turn(runner)
        assert len(producer.sent) == 3
        assert runner.publish_pending() == 0
        assert len(producer.sent) == 3  # nothing published twice
    finally:
        _close(runner)
