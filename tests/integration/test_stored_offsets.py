"""Stored offsets: one compare-and-set statement per batch, and fencing of a zombie.

Run on PostgreSQL (the production path: arrays, one UPDATE ... FROM unnest) and on
SQLite (the demo's path: a statement per partition).
"""

from __future__ import annotations

import pytest
from kafka import TopicPartition

from shared.runtime import Fenced
from shared.runtime.db import utcnow
from shared.runtime.store import advance_offsets, load_offsets
from tests.builders import messages as f
from tests.builders.services import PURCHASES as SERVICE
from tests.harness import Harness

pytestmark = pytest.mark.integration
IN = "card.purchases.v1"


@pytest.fixture(params=["postgresql", "sqlite"])
def h(request, tmp_path):
    if request.param == "postgresql":
        harness = Harness(SERVICE, tmp_path, database_url=request.getfixturevalue("pg_database"))
    else:
        harness = Harness(SERVICE, tmp_path)
    yield harness
    harness.close()


def _feed(h: Harness, partition: int, n: int) -> None:
    recs = [h.publish(IN, f.purchase(f"acc-{partition}"), partition=partition) for _ in range(n)]
    h.process(*recs)


def test_offsets_advance_together_and_only_from_the_expected_value(h):
    _feed(h, 0, 3)
    _feed(h, 1, 2)
    topic = h.settings.topic(IN)
    with h.runner.engine.begin() as conn:
        assert load_offsets(conn, h.runner.group, [(topic, 0), (topic, 1), (topic, 2)]) == {
            (topic, 0): 3,
            (topic, 1): 2,
        }
        moved = advance_offsets(
            conn, h.runner.group, [(topic, 0, 3, 10), (topic, 1, 99, 20)], utcnow()
        )
        assert moved == 1  # partition 1 did not hold 99: not moved
        assert load_offsets(conn, h.runner.group, [(topic, 0), (topic, 1)]) == {
            (topic, 0): 10,
            (topic, 1): 2,
        }


def test_a_process_whose_stored_offset_was_moved_by_another_is_fenced(h, monkeypatch):
    _feed(h, 0, 2)
    stale = {TopicPartition(h.settings.topic(IN), 0): 1}  # what a paused zombie still believes
    monkeypatch.setattr(h.runner, "_load_offsets", lambda conn, tps: dict(stale))
    rec = h.publish(IN, f.purchase("acc-0"), partition=0)
    with pytest.raises(Fenced):
        h.runner.process_batch([rec])
    monkeypatch.undo()
    # nothing of the fenced batch was written: the record is still to do, once
    assert len(h.process(rec)) == 1
    assert h.process(rec) == []


def test_an_event_id_another_consumer_committed_meanwhile_is_a_duplicate(h, monkeypatch):
    """The same event id in two partitions, read by two processes at once (a producer that
    sent it twice, the second time with another partitioner): the transaction whose inbox
    look-up came before the other's commit meets the inbox's primary key at its own
    commit. That record is a duplicate to skip, not a record to dead-letter."""
    message = f.purchase("acc-0")
    assert [e.topic for e in h.feed(IN, message, partition=0)] == ["purchases.recorded.v1"]
    real = h.runner._seen_ids
    calls: list[list[str]] = []

    def looked_up_before_the_other_commit(conn, ids):
        calls.append(ids)
        return {} if len(calls) == 1 else real(conn, ids)

    monkeypatch.setattr(h.runner, "_seen_ids", looked_up_before_the_other_commit)
    assert h.feed(IN, message, partition=1) == []  # no second effect, no dead letter
    assert len(calls) == 2  # refused once by the inbox's key, then seen


def test_two_processes_applying_the_same_event_at_once_give_one_effect(pg_database, tmp_path):
    """Truly at once, on PostgreSQL: process A has written the event (its inbox row and
    its state), not committed; process B looks the id up (not there yet), runs the
    handler and writes, and waits on A's uncommitted key; A commits. B's transaction is
    refused by a unique key; it is tried again, finds the id, and skips it as a duplicate:
    one effect, no dead letter (before: a dead letter with a storage error)."""
    import threading
    import time

    from shared.runtime import faults

    a = Harness(SERVICE, tmp_path, database_url=pg_database)
    b = Harness(SERVICE, tmp_path, database_url=pg_database)
    message = f.purchase("acc-9")
    a_wrote, b_looked = threading.Event(), threading.Event()
    real_crash, real_write = faults.maybe_crash, b.runner._write

    def hold_a_before_its_commit(point, *, after=None):
        if point == "while_writing" and threading.current_thread().name == "A":
            a_wrote.set()
            assert b_looked.wait(30)
            time.sleep(0.5)  # B is now blocked on A's uncommitted key
        return real_crash(point, after=after)

    def b_write(handled):
        b_looked.set()
        return real_write(handled)

    b.runner._write = b_write  # type: ignore[method-assign]
    results: dict[str, list] = {}
    faults.maybe_crash = hold_a_before_its_commit  # type: ignore[assignment]
    try:
        ta = threading.Thread(
            name="A", target=lambda: results.update(a=a.feed(IN, message, partition=0))
        )
        ta.start()
        assert a_wrote.wait(30)
        results["b"] = b.feed(IN, message, partition=1)
        ta.join(30)
    finally:
        faults.maybe_crash = real_crash  # type: ignore[assignment]
        a.close()
        b.close()
    assert [e.topic for e in results["a"]] == ["purchases.recorded.v1"]
    assert results["b"] == []  # no second effect, no dead letter
