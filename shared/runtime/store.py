"""The runtime's own tables, in every service's schema: the inbox (dedupe, with each
applied record's content digest), the outbox (events and dead letters to publish), the
stored offsets (the source of truth for progress, advanced compare-and-set) and the
crash-counting notes; their migrations, and ``migrate`` (the runtime's migrations,
then the service's).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

from shared.runtime.db import (
    BigId,
    Migration,
    Prebuilt,
    create_tables,
    qualified_table,
    utcnow,
)
from shared.runtime.retention_tables import add_inbox_retention

runtime_metadata = MetaData()

inbox = Table(
    "inbox",
    runtime_metadata,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False),
    # Content digest of the applied record (runtime migration 2): the same id arriving
    # with other content is a conflict (DLQ), not a duplicate. NULL for older rows.
    Column("digest", String(32), nullable=True),
)

outbox = Table(
    "outbox",
    runtime_metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("batch", String(32), nullable=False, index=True),  # one id per runtime batch
    Column("event_id", String(64), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

consumer_offsets = Table(
    "consumer_offsets",
    runtime_metadata,
    Column("consumer", String(100), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: Crash counting (runtime migration 3): per partition, the offset a process started on
#: and how many processes started there without getting past it. A record that keeps
#: killing the process (not an exception: those are dead-lettered at once) is tried
#: alone, then dead-lettered after ``poison_max_attempts`` deaths.
poison_watch = Table(
    "poison_watch",
    runtime_metadata,
    Column("consumer", String(100), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, nullable=False),
    # The last offset of the batch that started there: after a death, the records up to
    # it are tried one at a time.
    Column("last_offset", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

schema_migrations = Table(
    "schema_migrations",
    MetaData(),
    Column("component", String(50), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


# --- migrations ---------------------------------------------------------------


def _add_inbox_digest(conn: Connection) -> None:
    table = qualified_table(conn, "inbox")
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS digest VARCHAR(32)"))
        return
    # SQLite: a database created at version 1 by this code has the column already.
    columns = {row[1] for row in conn.execute(text(f"PRAGMA table_info({table})"))}
    if "digest" not in columns:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN digest VARCHAR(32)"))


RUNTIME_MIGRATIONS = [
    Migration(1, "inbox, outbox, consumer offsets", create_tables(runtime_metadata)),
    Migration(2, "inbox content digest", _add_inbox_digest),
    Migration(3, "poison watch (crash counting)", create_tables(runtime_metadata)),
    # retention (#16): inbox pruning by processed_at, and the pruned horizon replay checks
    Migration(4, "inbox retention: processed_at index, pruned horizon", add_inbox_retention),
]


def migrate(engine: Engine, service_migrations: Iterable[Migration]) -> list[str]:
    """Apply the runtime's and the service's missing migrations, in order.

    Returns the names of the migrations applied. Safe to run concurrently from
    several processes on PostgreSQL (an advisory lock serialises them).
    """
    applied: list[str] = []
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(current_schema()))"))
        schema_migrations.create(conn, checkfirst=True)
        done = {
            (row.component, row.version)
            for row in conn.execute(
                select(schema_migrations.c.component, schema_migrations.c.version)
            )
        }
        for component, steps in (
            ("runtime", RUNTIME_MIGRATIONS),
            ("service", list(service_migrations)),
        ):
            for step in sorted(steps, key=lambda m: m.version):
                if (component, step.version) in done:
                    continue
                step.apply(conn)
                conn.execute(
                    insert(schema_migrations).values(
                        component=component,
                        version=step.version,
                        name=step.name,
                        applied_at=utcnow(),
                    )
                )
                applied.append(f"{component}:{step.version} {step.name}")
    return applied


# --- engines --------------------------------------------------------------------


def stored_offsets(conn: Connection, consumer: str, topic: str) -> dict[int, int]:
    """Next offset to process per partition of ``topic`` for ``consumer`` (all processes)."""
    rows = conn.execute(
        select(consumer_offsets.c.partition, consumer_offsets.c.next_offset).where(
            consumer_offsets.c.consumer == consumer, consumer_offsets.c.topic == topic
        )
    )
    return {row.partition: row.next_offset for row in rows}


# One statement per batch for the stored offsets, whatever the number of partitions: a
# statement per partition cost a round trip each (5 ms of a 15 ms batch at low load).
# Built once (Core, so the per-service schema_translate_map applies); arrays bound.
def _pg_offset_statements() -> tuple[Any, Any]:
    from sqlalchemy import any_, func
    from sqlalchemy.dialects.postgresql import ARRAY

    c = consumer_offsets.c
    load = select(c.topic, c.partition, c.next_offset).where(
        c.consumer == bindparam("p_consumer"),
        c.topic == any_(bindparam("p_topics", type_=ARRAY(String))),
    )
    v = (
        func.unnest(
            bindparam("p_topics", type_=ARRAY(String)),
            bindparam("p_partitions", type_=ARRAY(Integer)),
            bindparam("p_expected", type_=ARRAY(BigInteger)),
            bindparam("p_next", type_=ARRAY(BigInteger)),
        )
        .table_valued("topic", "partition", "expected", "next_offset")
        .render_derived(name="v")
    )
    advance = (
        update(consumer_offsets)
        .where(
            c.consumer == bindparam("p_consumer"),
            c.topic == v.c.topic,
            c.partition == v.c.partition,
            c.next_offset == v.c.expected,
        )
        .values(next_offset=v.c.next_offset, updated_at=bindparam("p_now"))
    )
    return load, advance


_PG_LOAD_OFFSETS, _PG_ADVANCE_OFFSETS = _pg_offset_statements()


def load_offsets(
    conn: Connection, consumer: str, tps: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """Stored next offset of each (topic, partition) of ``tps`` that has one."""
    wanted = set(tps)
    if not wanted:
        return {}
    if conn.dialect.name == "postgresql":
        topics = sorted({t for t, _ in wanted})
        rows = conn.execute(_PG_LOAD_OFFSETS, {"p_consumer": consumer, "p_topics": topics}).all()
    else:
        rows = conn.execute(
            select(
                consumer_offsets.c.topic,
                consumer_offsets.c.partition,
                consumer_offsets.c.next_offset,
            ).where(
                consumer_offsets.c.consumer == consumer,
                consumer_offsets.c.topic.in_(sorted({t for t, _ in wanted})),
            )
        ).all()
    found = {(r.topic, r.partition): r.next_offset for r in rows}
    return {tp: offset for tp, offset in found.items() if tp in wanted}


def load_poison_marks(
    conn: Connection, consumer: str, tps: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], Any]:
    """The crash-counting notes (``poison_watch`` rows) of ``tps`` that have one."""
    wanted = set(tps)
    if not wanted:
        return {}
    rows = conn.execute(
        select(poison_watch).where(
            poison_watch.c.consumer == consumer,
            poison_watch.c.topic.in_(sorted({t for t, _ in wanted})),
        )
    )
    return {(r.topic, r.partition): r for r in rows if (r.topic, r.partition) in wanted}


def note_poison_mark(
    conn: Connection,
    consumer: str,
    topic: str,
    partition: int,
    offset: int,
    last_offset: int,
    attempts: int,
    now: datetime,
) -> None:
    """Write a partition's crash-counting note (one row per partition)."""
    key = (
        poison_watch.c.consumer == consumer,
        poison_watch.c.topic == topic,
        poison_watch.c.partition == partition,
    )
    values = {"offset": offset, "last_offset": last_offset, "attempts": attempts, "updated_at": now}
    if conn.execute(update(poison_watch).where(*key).values(**values)).rowcount == 0:
        conn.execute(
            insert(poison_watch).values(
                consumer=consumer, topic=topic, partition=partition, **values
            )
        )


def advance_offsets(
    conn: Connection,
    consumer: str,
    changes: list[tuple[str, int, int, int]],
    now: datetime,
) -> int:
    """Compare-and-set stored offsets: each (topic, partition, expected, next) moves
    from ``expected`` to ``next`` only if it still holds ``expected``. Returns how many
    moved (fewer than ``len(changes)`` means another process moved one: fenced)."""
    if not changes:
        return 0
    if conn.dialect.name == "postgresql":
        topics, partitions, expected, nexts = (list(col) for col in zip(*changes, strict=True))
        result = conn.execute(
            _PG_ADVANCE_OFFSETS,
            {
                "p_consumer": consumer,
                "p_topics": topics,
                "p_partitions": partitions,
                "p_expected": expected,
                "p_next": nexts,
                "p_now": now,
            },
        )
        return int(result.rowcount)
    moved = 0
    for topic, partition, old, new in changes:
        result = conn.execute(
            update(consumer_offsets)
            .where(
                consumer_offsets.c.consumer == consumer,
                consumer_offsets.c.topic == topic,
                consumer_offsets.c.partition == partition,
                consumer_offsets.c.next_offset == old,
            )
            .values(next_offset=new, updated_at=now)
        )
        moved += int(result.rowcount)
    return moved


#: Marking sent (the runtime's step 4): the outbox rows of published batches.
_DELETE_SENT = Prebuilt(lambda among: delete(outbox).where(among(outbox.c.batch)))


def delete_sent(conn: Connection, batches: list[str]) -> None:
    """Mark ``batches`` sent: delete their outbox rows (one array parameter)."""
    _DELETE_SENT.rows(conn, conn.dialect.name, batches)
