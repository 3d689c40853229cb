"""The loop's overlap (#16): batch N is written, committed and published by the writer
thread while the loop polls and decodes batch N+1 (shared.runtime.runner, steps 6-10).

Real PostgreSQL, a stand-in consumer over an in-memory log (poll, pause, seek, resume as
kafka-python does them) and a stand-in producer, so the failure paths are driven
deterministically: a value the database refuses when batch N is written (the loop takes
N over through the split path and fetches N+1 again), a transient failure and fencing at
N's commit. Every record has exactly one effect and the events go out in order. The
crash points with a real broker and process are in test_purchases.py.

Also here, with and without the overlap: step 4's marking sent. A batch's published outbox
rows are deleted by the next batch's transaction, not a transaction of their own; an empty
poll or stopping marks what no batch carried.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from typing import Any

import pytest
from kafka import TopicPartition
from sqlalchemy import Column, MetaData, String, Table, insert, select
from sqlalchemy.exc import OperationalError

from shared.runtime import Context, Fenced, Runner, Service, metrics
from shared.runtime.db import Migration, create_tables
from shared.runtime.runner import _Writer
from shared.runtime.settings import Settings
from shared.runtime.store import load_offsets, migrate, outbox
from tests.builders import messages as f
from tests.harness import FakeRecord

pytestmark = pytest.mark.integration

TOPIC = "card.purchases.v1"
WIDTH = 12  # narrower than the schema's id limit: a longer id is refused at save()

metadata = MetaData()
notes = Table("notes", metadata, Column("purchase_id", String(WIDTH), primary_key=True))


class NotesRepository:
    """Writes the batch's notes in save() (on the writer thread when the loop overlaps)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.rows: list[dict[str, str]] = []

    def load(self, events: list[Any]) -> None:
        pass

    def save(self) -> None:
        if self.rows:
            self.session.execute(insert(notes), self.rows)


def note(ctx: Context, event: Any) -> None:
    ctx.repo.rows.append({"purchase_id": event.data.purchase_id})
    ctx.emit("purchase.recorded", _recorded(event), rule="recorded")


def _recorded(event: Any) -> Any:
    from schemas.payloads import PurchaseRecorded

    return PurchaseRecorded(**event.data.model_dump())


PROBE = Service(
    name="probe",
    handlers={"purchase.posted": note},
    migrations=[Migration(1, "notes", create_tables(metadata))],
    repository=NotesRepository,
)


class LogConsumer:
    """A consumer over an in-memory log: poll from positions, pause, seek, resume."""

    def __init__(self, log: dict[TopicPartition, list[FakeRecord]], per_poll: int) -> None:
        self.log = log
        self.position = {tp: 0 for tp in log}
        self.paused_tps: set[TopicPartition] = set()
        self.per_poll = per_poll
        self.commits: list[dict[TopicPartition, Any]] = []

    def poll(self, timeout_ms: int = 0, max_records: int = 0) -> dict[TopicPartition, list[Any]]:
        time.sleep(0.005)  # the network
        out: dict[TopicPartition, list[Any]] = {}
        for tp in sorted(self.log):
            if tp in self.paused_tps:
                continue
            start = self.position[tp]
            recs = self.log[tp][start : start + self.per_poll]
            if recs:
                out[tp] = recs
                self.position[tp] = start + len(recs)
        return out

    def assignment(self) -> set[TopicPartition]:
        return set(self.log)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_tps.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_tps.difference_update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position[tp] = offset

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in tps}

    def commit_async(self, offsets: dict[TopicPartition, Any], callback: Any) -> None:
        self.commits.append(offsets)

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.log if tp.topic == topic}

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log.get(tp, [])) for tp in tps}

    def close(self, autocommit: bool = False) -> None:
        pass

    def caught_up(self) -> bool:
        return all(self.position[tp] >= len(recs) for tp, recs in self.log.items())


class Future:
    def get(self, timeout: float | None = None) -> None:
        return None


class ListProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.lock = threading.Lock()

    def send(self, topic: str, key: bytes | None, value: bytes, headers: Any) -> Future:
        with self.lock:
            self.sent.append((topic, key, value))
        return Future()

    def flush(self) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


def _setup(pg_database: str, ids_by_partition: dict[int, list[str]], per_poll: int) -> Any:
    settings = Settings(
        database_url=pg_database, environment="test", retry_backoff_max_s=0.5, poll_timeout_ms=1
    )
    topic = settings.topic(TOPIC)
    log: dict[TopicPartition, list[FakeRecord]] = {}
    import json

    for partition, ids in ids_by_partition.items():
        tp = TopicPartition(topic, partition)
        log[tp] = [
            FakeRecord(
                topic,
                partition,
                offset,
                f"acc-{partition}".encode(),
                json.dumps(f.purchase(f"acc-{partition}", purchase_id=pid)).encode(),
            )
            for offset, pid in enumerate(ids)
        ]
    consumer = LogConsumer(log, per_poll)
    runner = Runner(PROBE, settings, consumer=consumer)  # type: ignore[arg-type]
    migrate(runner.engine, PROBE.migrations)
    producer = ListProducer()
    runner._producer = producer  # type: ignore[assignment]
    runner._writer = _Writer(runner)
    return runner, consumer, producer


def _run(runner: Runner, consumer: LogConsumer, *, turns: int = 200) -> None:
    for _ in range(turns):
        runner.run_once()
        if consumer.caught_up() and not runner.pending_seek:
            break
    runner.run_once()  # settle the last batch
    assert runner._writer is not None
    runner._writer.drain()
    assert runner._writer.error is None
    runner.run_once()  # an idle turn: the Kafka commit of what the writer finished


def _close(runner: Runner) -> None:
    if runner._writer is not None:
        runner._writer.stop()
    runner.engine.dispose()


def _notes(runner: Runner) -> list[str]:
    with runner.engine.connect() as conn:
        return [r[0] for r in conn.execute(select(notes.c.purchase_id))]


def _outbox_left(runner: Runner) -> int:
    with runner.engine.connect() as conn:
        return len(conn.execute(select(outbox.c.seq)).all())


def _stored(runner: Runner, consumer: LogConsumer) -> dict[int, int]:
    with runner.engine.connect() as conn:
        found = load_offsets(conn, runner.group, [(tp.topic, tp.partition) for tp in consumer.log])
    return {p: o for (_, p), o in found.items()}


def _recorded_ids(producer: ListProducer) -> list[str]:
    import json

    return [
        json.loads(value)["data"]["purchase_id"]
        for topic, _, value in producer.sent
        if not topic.endswith(".dlq")
    ]


def _ids(partition: int, n: int) -> list[str]:
    return [f"p{partition}-{i}" for i in range(n)]


def test_batches_are_written_while_the_next_is_decoded_each_record_once_in_order(pg_database):
    ids = {0: _ids(0, 60), 1: _ids(1, 45)}
    runner, consumer, producer = _setup(pg_database, ids, per_poll=7)
    moments: list[tuple[str, float, str]] = []
    real_write, real_decode = runner._write, runner._decode

    def slow_write(handled: Any) -> Any:
        moments.append(("write", time.monotonic(), threading.current_thread().name))
        time.sleep(0.05)  # a slow database: the loop must go on meanwhile
        try:
            return real_write(handled)
        finally:
            moments.append(("committed", time.monotonic(), threading.current_thread().name))

    def noted_decode(rec: Any) -> Any:
        moments.append(("decode", time.monotonic(), threading.current_thread().name))
        return real_decode(rec)

    runner._write = slow_write  # type: ignore[method-assign]
    runner._decode = noted_decode  # type: ignore[method-assign]
    try:
        _run(runner, consumer)
        everything = ids[0] + ids[1]
        assert sorted(_notes(runner)) == sorted(everything)
        recorded = _recorded_ids(producer)
        assert Counter(recorded) == Counter(everything)  # each published once
        for partition in ids:  # in order per partition (per account)
            assert [r for r in recorded if r.startswith(f"p{partition}-")] == ids[partition]
        assert _outbox_left(runner) == 0  # all marked sent
        assert _stored(runner, consumer) == {0: 60, 1: 45}
        # the writes ran on the writer thread, and records were decoded while one ran
        assert {t for kind, _, t in moments if kind == "write"} == {"writer"}
        spans, start = [], None
        for kind, at, _ in moments:
            if kind == "write":
                start = at
            elif kind == "committed" and start is not None:
                spans.append((start, at))
        decoded_during = [
            at for kind, at, _ in moments if kind == "decode" and any(a < at < b for a, b in spans)
        ]
        assert decoded_during, "no record was decoded while a batch was being written"
        # Kafka commits come after the writer published, and never go back
        last: dict[TopicPartition, int] = defaultdict(int)
        for commit in consumer.commits:
            for tp, om in commit.items():
                assert om.offset >= last[tp]
                last[tp] = om.offset
        assert {tp.partition: o for tp, o in last.items()} == {0: 60, 1: 45}
    finally:
        _close(runner)


def test_a_value_refused_at_the_commit_is_taken_over_by_the_split_path(pg_database):
    """Batch N fails on the writer (a value the database refuses in save()): nothing of it
    is kept; the loop applies N again itself, split, dead-letters the one record and
    fetches the batch it had decoded meanwhile again, from the stored offsets."""
    ids = {0: _ids(0, 30), 1: _ids(1, 30)}
    bad = "q" * (WIDTH + 3)
    ids[0][4] = bad
    runner, consumer, producer = _setup(pg_database, ids, per_poll=10)
    seeks: list[tuple[TopicPartition, int]] = []
    real_seek = consumer.seek

    def noted_seek(tp: TopicPartition, offset: int) -> None:
        seeks.append((tp, offset))
        real_seek(tp, offset)

    consumer.seek = noted_seek  # type: ignore[method-assign]
    try:
        _run(runner, consumer)
        good = [i for i in ids[0] + ids[1] if i != bad]
        assert sorted(_notes(runner)) == sorted(good)
        assert Counter(_recorded_ids(producer)) == Counter(good)
        for partition in ids:
            assert [r for r in _recorded_ids(producer) if r.startswith(f"p{partition}-")] == [
                i for i in ids[partition] if i != bad
            ]
        dead = [value for topic, _, value in producer.sent if topic.endswith(".dlq")]
        assert len(dead) == 1 and bad.encode() in dead[0]
        assert _stored(runner, consumer) == {0: 30, 1: 30}
        assert _outbox_left(runner) == 0
        # the batch decoded while N failed was thrown away and fetched again from offset 10
        assert (TopicPartition(runner.settings.topic(TOPIC), 0), 10) in seeks
    finally:
        _close(runner)


@pytest.mark.parametrize("failure", ["transient", "fenced"])
def test_a_failed_commit_is_retried_from_the_stored_offsets(pg_database, failure):
    """A transient error (PostgreSQL restarting) or fencing at N's commit: N is not kept,
    N+1 (decoded meanwhile) is thrown away, both are fetched again from the database's
    offsets and applied once."""
    ids = {0: _ids(0, 25), 1: _ids(1, 25)}
    runner, consumer, producer = _setup(pg_database, ids, per_poll=8)
    real_write = runner._write
    failed: list[int] = []

    def failing_write(handled: Any) -> Any:
        if len(failed) < 1 and any(d.record.offset >= 8 for d in handled.decoded):
            failed.append(1)
            handled.session.close()
            if failure == "transient":
                raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
            raise Fenced("another process moved a stored offset")
        return real_write(handled)

    runner._write = failing_write  # type: ignore[method-assign]
    try:
        _run(runner, consumer)
        assert failed == [1]
        everything = ids[0] + ids[1]
        assert sorted(_notes(runner)) == sorted(everything)
        assert Counter(_recorded_ids(producer)) == Counter(everything)
        assert _stored(runner, consumer) == {0: 25, 1: 25}
    finally:
        _close(runner)


def test_stopping_waits_for_the_writer(pg_database):
    """close(): every batch handed off is committed and published first (step 10)."""
    ids = {0: _ids(0, 20)}
    runner, consumer, producer = _setup(pg_database, ids, per_poll=20)
    real_write = runner._write

    def slow_write(handled: Any) -> Any:
        time.sleep(0.3)
        return real_write(handled)

    runner._write = slow_write  # type: ignore[method-assign]
    try:
        runner.run_once()  # handed off; the writer is still sleeping
        assert runner._inflight is not None
        runner.close()
        assert sorted(_notes(runner)) == sorted(ids[0])
        assert len(_recorded_ids(producer)) == 20
        tp = TopicPartition(runner.settings.topic(TOPIC), 0)
        assert consumer.commits and consumer.commits[-1][tp].offset == 20  # the final commit
    finally:
        _close(runner)


@pytest.mark.parametrize("error", ["topic_deleted", "timeout"])
def test_a_partition_whose_beginning_is_unknown_waits_and_is_sought_again(pg_database, error):
    """A partition assigned with no stored offset is sought to its beginning. When the
    broker cannot say where that is (a timeout, or the topic deleted under the service:
    kafka-python 3.0.12 then raises KeyError), the loop retries later instead of stopping;
    every record is then applied once."""
    from kafka.errors import KafkaTimeoutError

    ids = {0: _ids(0, 10), 1: _ids(1, 10)}
    runner, consumer, producer = _setup(pg_database, ids, per_poll=5)
    real_beginning = consumer.beginning_offsets
    calls: list[list[TopicPartition]] = []

    def unknown_at_first(tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        calls.append(list(tps))
        if len(calls) <= 2:
            if error == "timeout":
                raise KafkaTimeoutError("ListOffsets timed out")
            raise KeyError(tps[0])
        return real_beginning(tps)

    consumer.beginning_offsets = unknown_at_first  # type: ignore[method-assign]
    assigned = consumer.assignment()
    runner.pending_seek.update(assigned)  # as a new assignment leaves them
    consumer.pause(*assigned)
    try:
        _run(runner, consumer)
        assert len(calls) >= 3
        everything = ids[0] + ids[1]
        assert sorted(_notes(runner)) == sorted(everything)
        assert Counter(_recorded_ids(producer)) == Counter(everything)
        assert _stored(runner, consumer) == {0: 10, 1: 10}
    finally:
        _close(runner)


# --- marking sent (step 4), with and without the overlap ---------------------------


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
