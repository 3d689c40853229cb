"""Poison isolation in the runtime, on real PostgreSQL (issue #11).

A probe service stores each purchase id in a column narrower than the schema allows, so
a schema-valid id makes PostgreSQL refuse the write (StringDataRightTruncation), once
inside a handler and once when a batch repository writes its state at the end. Either
way, the one record is dead-lettered with the database's reason, every other record of
the batch is applied, and the batch is split rather than replayed record by record.
The runtime's batch path runs through :class:`tests.harness.Harness` (no broker needed
for this part; the crash-loop and end-to-end cases run on the broker in test_poison.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from kafka import TopicPartition
from sqlalchemy import Column, MetaData, String, Table, insert, select

from shared.runtime import Context, Service
from shared.runtime.db import Migration, create_tables
from shared.runtime.records import BatchResult
from shared.runtime.store import load_offsets
from tests.builders import messages as f
from tests.harness import Harness

pytestmark = pytest.mark.integration

PURCHASES = "card.purchases.v1"
WIDTH = 12  # narrower than the schema's id limit on purpose

metadata = MetaData()
notes = Table("notes", metadata, Column("purchase_id", String(WIDTH), primary_key=True))
MIGRATIONS = [Migration(1, "notes", create_tables(metadata))]


def note_in_handler(ctx: Context, event: Any) -> None:
    ctx.session.execute(insert(notes).values(purchase_id=event.data.purchase_id))


class NotesRepository:
    """Writes the batch's notes only in save(), as the real services' repositories do."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.rows: list[dict[str, str]] = []

    def load(self, events: list[Any]) -> None:
        pass

    def save(self) -> None:
        if self.rows:
            self.session.execute(insert(notes), self.rows)


def note_in_repository(ctx: Context, event: Any) -> None:
    ctx.repo.rows.append({"purchase_id": event.data.purchase_id})


def probe(handler: Any, repository: Any = None) -> Service:
    return Service(
        name="probe",
        handlers={"purchase.posted": handler},
        migrations=MIGRATIONS,
        repository=repository,
    )


def stored(h: Harness) -> set[str]:
    with h.runner.engine.connect() as conn:
        return {row[0] for row in conn.execute(select(notes.c.purchase_id))}


def count_transactions(h: Harness) -> list[int]:
    sizes: list[int] = []
    real = h.runner._transaction

    def counting(decoded: list[Any], *, isolated: bool) -> Any:
        sizes.append(len(decoded))
        return real(decoded, isolated=isolated)

    h.runner._transaction = counting  # type: ignore[method-assign]
    return sizes


def purchases(ids: list[str]) -> list[dict[str, Any]]:
    return [f.purchase("acc-1", purchase_id=pid) for pid in ids]


def test_a_value_refused_inside_a_handler_is_dead_lettered_alone(tmp_path, pg_database):
    h = Harness(probe(note_in_handler), tmp_path, database_url=pg_database)
    try:
        sizes = count_transactions(h)
        long_id = "p" * (WIDTH + 8)
        records = [h.publish(PURCHASES, m) for m in purchases(["a1", "a2", long_id, "a3", "a4"])]
        out = h.process(*records)
        dead = [e for e in out if e.topic == PURCHASES + ".dlq"]
        assert len(dead) == 1
        assert dead[0].headers["original.offset"] == "2"
        assert dead[0].headers["error.reason"].startswith("handler error: DataError")
        assert stored(h) == {"a1", "a2", "a3", "a4"}
        # split at the failing record: all, the two before it, it alone, the two after
        assert sizes == [5, 2, 1, 2]
        # the partition moved on: a re-delivery of the batch changes nothing
        assert h.process(*records) == []
    finally:
        h.close()


def test_a_value_refused_when_the_state_is_written_is_found_by_halving(tmp_path, pg_database):
    h = Harness(probe(note_in_repository, NotesRepository), tmp_path, database_url=pg_database)
    try:
        sizes = count_transactions(h)
        ids = [f"b{i}" for i in range(100)]
        ids[37] = "q" * (WIDTH + 1)
        out = h.feed(PURCHASES, *purchases(ids))
        dead = [e for e in out if e.topic == PURCHASES + ".dlq"]
        assert len(dead) == 1
        assert dead[0].headers["original.offset"] == "37"
        reason = dead[0].headers["error.reason"]
        assert reason.startswith("storage error: StringDataRightTruncation"), reason
        assert "q" * WIDTH not in reason  # the engine hides the parameters
        assert stored(h) == set(ids) - {ids[37]}
        # a binary search, not a replay of 100 single-record transactions
        assert len(sizes) <= 2 * 7 + 1, sizes
        assert sum(1 for s in sizes if s == 1) <= 2
    finally:
        h.close()


def test_same_id_with_other_content_is_a_conflict_and_same_content_a_duplicate(
    tmp_path, pg_database
):
    h = Harness(probe(note_in_handler), tmp_path, database_url=pg_database)
    try:
        first = f.purchase("acc-1", purchase_id="c1")
        assert h.feed(PURCHASES, first) == []
        assert h.feed(PURCHASES, first) == []  # the same bytes again: a plain duplicate
        changed = json.loads(json.dumps(first))
        changed["data"]["amount"] = "9999.00"
        out = h.feed(PURCHASES, changed)
        assert [e.topic for e in out] == [PURCHASES + ".dlq"]
        assert out[0].headers["error.reason"].startswith("duplicate_id_conflict")
        assert stored(h) == {"c1"}
    finally:
        h.close()


def test_a_dead_letter_always_fits_what_the_producer_may_send(tmp_path, pg_database):
    h = Harness(probe(note_in_handler), tmp_path, database_url=pg_database)
    try:
        limit = h.settings.kafka_max_request_bytes
        value = b'{"pad": "' + b"x" * (limit - 100) + b'"}'
        pan_key = b"4111 1111 1111 1111"
        out = h.process(h.publish(PURCHASES, value, key=pan_key))
        assert len(out) == 1
        letter = out[0]
        assert "over the 65536-byte limit" in letter.headers["error.reason"]
        assert letter.headers["error.truncated"] == "true"
        assert letter.headers["original.size"] == str(len(value))
        assert letter.headers["original.sha256"] == hashlib.sha256(value).hexdigest()
        assert value.startswith(letter.value) and len(letter.value) <= h.settings.max_message_bytes
        # the key with a card number is masked in the dead letter
        rows = h.runner._dead_letter(
            h.runner._decode(h.publish(PURCHASES, b"{}", key=pan_key)), "x", None
        )
        assert b"4111" not in rows["key"]
    finally:
        h.close()


def test_a_record_that_keeps_killing_the_process_is_dead_lettered(tmp_path, pg_database):
    """Crash counting across process lives: each new Harness is a new process on the
    same database, reading from the stored offset. The first death is in a 10-record
    batch; the next process tries those records one at a time; the record that kills
    the process poison_max_attempts times alone is dead-lettered without running its
    handler, and the others are applied."""
    service = probe(note_in_handler)
    log: dict[tuple[str, int], int] = {}

    def new_process() -> Harness:
        h = Harness(service, tmp_path, database_url=pg_database, poison_max_attempts=2)
        h.log_end.update(log)
        return h

    h = new_process()
    records = [h.publish(PURCHASES, m) for m in purchases([f"d{i}" for i in range(10)])]
    log.update(h.log_end)
    h.close()
    tp = TopicPartition(records[0].topic, records[0].partition)
    poison = records[4]

    def next_offset(h: Harness) -> int:
        with h.runner.engine.connect() as conn:
            return load_offsets(conn, h.runner.group, [tp]).get((tp.topic, tp.partition), 0)

    deaths, lives, batches, letters, done = 0, 0, [], [], False
    while not done and lives < 8:
        lives += 1
        h = new_process()
        h.runner._poison_fresh.add(tp)  # assigned: its first batch is noted
        while True:
            position = next_offset(h)
            if position == len(records):
                done = True
                break
            out = BatchResult()
            chosen = h.runner._watch_for_poison(records[position:], out)
            batches.append([r.offset for r in chosen])
            letters += out.sent
            if poison in chosen:
                deaths += 1  # SIGKILL: nothing of this batch is committed
                break
            if chosen:
                h.process(*chosen)
        h.close()
    assert done
    assert deaths == 3  # in the first batch, then twice alone (poison_max_attempts=2)
    assert batches[0] == list(range(10))  # the first life: one batch
    assert batches[1:6] == [[0], [1], [2], [3], [4]]  # then one record at a time
    assert batches[6] == [4] and batches[7] == []  # dies alone again; dead-lettered
    assert batches[8:] == [[5], [6], [7], [8], [9]]  # careful up to the batch that died
    h = new_process()
    assert len(letters) == 1
    assert dict(letters[0]["headers"])["error.reason"].startswith("poison: ")
    assert dict(letters[0]["headers"])["original.offset"] == "4"
    assert stored(h) == {f"d{i}" for i in range(10)} - {"d4"}
    h.close()
