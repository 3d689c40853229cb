"""Retention: keep a service's hot tables bounded as the business grows (README
"Retention"). Plumbing written once; each service declares what it may archive in its own
``services/<name>/retention.py`` (a tuple of :class:`ArchiveGroup`).

Two steps, each in short transactions of at most ``retention_chunk_rows`` rows:

1. **Inbox pruning.** Inbox rows (the dedupe ids of applied events) older than
   ``retention_inbox_days`` are deleted, oldest first, through the ``processed_at`` index.
   The stored offsets still drop every re-delivery of a record below them; the inbox
   only matters for an id arriving again at a *new* offset (a producer re-sending, an
   outbox re-published after a crash, a re-drive) and for a replay that moves the stored
   offsets back. ``inbox_horizon`` keeps, per partition, the highest offset pruned: a
   replay to or below it is refused by ``installments replay`` (it would re-apply
   events whose dedupe row is gone).
2. **Archiving.** Items a service declares finished for ``retention_archive_after_days``
   business days (its own business clock, never the wall clock) move, with their child
   rows, from each table into ``<table>_archive`` (same columns): out of the hot tables
   and their indexes. A repository that may be asked about an archived item by id calls
   :func:`restore` first (the item moves back and the event is handled exactly as if it
   had never left); others answer "unknown", which the service must handle with no
   effect (each service's ``retention.py`` says which, per group).

Concurrency: a batch transaction of a service that archives holds a shared advisory
lock from its repository's ``load`` (:func:`hold_off_archiving`) to its commit; an
archive chunk holds the exclusive one, so an item is never moved between a batch's read
and its write. Only one retention run per service at a time (a session lock).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    Column,
    Engine,
    Index,
    MetaData,
    Table,
    and_,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    tuple_,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from shared.runtime.db import Prebuilt, among, utcnow
from shared.runtime.retention_tables import inbox_horizon
from shared.runtime.settings import Settings
from shared.runtime.store import inbox

log = structlog.get_logger("retention")

ARCHIVE_SUFFIX = "_archive"


# --- what a service declares ------------------------------------------------------


def archive_tables(metadata: MetaData, *tables: Table, key: str) -> dict[str, Table]:
    """``<table>_archive`` for each table, in ``metadata``: the same columns and primary
    key (no defaults, no unique constraints, no autoincrement), indexed on ``key`` when
    the primary key does not start with it. Name -> archive table."""
    made: dict[str, Table] = {}
    for table in tables:
        columns = [
            Column(
                c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, autoincrement=False
            )
            for c in table.columns
        ]
        archive = Table(f"{table.name}{ARCHIVE_SUFFIX}", metadata, *columns)
        pk = [c.name for c in table.primary_key.columns]
        if not pk or pk[0] != key:
            Index(f"ix_{table.name}{ARCHIVE_SUFFIX}_{key}", archive.c[key])
        made[table.name] = archive
    return made


@dataclass(frozen=True)
class ArchiveGroup:
    """One kind of finished item a service moves out of its hot tables.

    ``root`` enumerates the items (by its column ``key``, in key order, a chunk at a
    time); ``finished(cutoff)`` is the SQL condition on ``root`` under which an item
    may move (finished, and nothing of it dated on or after ``cutoff``: the service's
    business clock less ``retention_archive_after_days``); ``tables`` are the tables
    whose rows of the item move (each has the column ``key``; the root among them or
    not), the first one holding a row for every archived item (:func:`restore` probes
    its archive); ``archives`` their ``<table>_archive`` (:func:`archive_tables`);
    ``clock`` reads the service's business clock (None: no business date yet, nothing
    moves).
    """

    name: str
    root: Table
    key: str
    tables: tuple[Table, ...]
    archives: Mapping[str, Table]
    finished: Callable[[date], ColumnElement[bool]]
    clock: Callable[[Connection], date | None]
    #: what an event naming an archived item gets (for the report and the docs)
    on_reference: str = "restored, then handled as if never archived"

    def archive_of(self, table: Table) -> Table:
        return self.archives[table.name]


# --- locks --------------------------------------------------------------------------


def _lock_key(conn: Connection) -> str:
    schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(None)
    return f"installments-retention:{schema or 'public'}"


#: built once: a ``text()`` is parsed for its parameters each time it is built
_HOLD_OFF = text("SELECT pg_advisory_xact_lock_shared(hashtext(:k))")


def hold_off_archiving(conn: Connection) -> None:
    """In a batch transaction, before it reads the service's state: no archive chunk
    moves anything until this transaction ends (a shared advisory lock on PostgreSQL;
    SQLite's single writer serialises anyway)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_HOLD_OFF, {"k": _lock_key(conn)})


def _lock_out_batches(conn: Connection, patience_s: float = 5.0) -> None:
    """The exclusive counterpart, for one archive chunk. Tried without queueing first
    (a queued exclusive request would hold up every new batch behind it), then waited."""
    if conn.dialect.name != "postgresql":
        return
    key = _lock_key(conn)
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        if conn.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"), {"k": key}
        ).scalar():
            return
        time.sleep(0.02)
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})


# --- moving rows ----------------------------------------------------------------------


def _same_row(a: Table, b: Table) -> ColumnElement[bool]:
    return and_(*(a.c[c.name] == b.c[c.name] for c in a.primary_key.columns))


def move_to_archive(conn: Connection, group: ArchiveGroup, ids: Sequence[Any]) -> None:
    """Move every row of the items ``ids`` from ``group.tables`` into their archives.
    A row already archived under the same primary key (archived, restored, archived
    again) is replaced by the hot one, which is newer."""
    if not ids:
        return
    dialect = conn.dialect.name
    for table in group.tables:
        archive = group.archive_of(table)
        names = [c.name for c in table.columns]
        conn.execute(
            delete(archive).where(
                among(archive.c[group.key], ids, dialect),
                exists().where(_same_row(table, archive)),
            )
        )
        conn.execute(
            insert(archive).from_select(
                names,
                select(*(table.c[n] for n in names)).where(among(table.c[group.key], ids, dialect)),
            )
        )
        conn.execute(delete(table).where(among(table.c[group.key], ids, dialect)))


@functools.cache
def _probe(archive: Table, key: str) -> Prebuilt:
    """:func:`restore`'s probe, run by every batch: built once per archive table."""
    return Prebuilt(lambda among: select(archive.c[key]).where(among(archive.c[key])))


def restore(conn: Connection, group: ArchiveGroup, ids: Iterable[Any]) -> set[Any]:
    """Bring the archived items among ``ids`` back into the hot tables (in the caller's
    transaction, which holds :func:`hold_off_archiving`); returns those found. One
    indexed probe when none is archived (the usual case). A hot row written meanwhile
    under the same primary key wins over its archived copy."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    dialect = conn.dialect.name
    probe = _probe(group.archive_of(group.tables[0]), group.key)
    found = sorted({r[0] for r in probe.rows(conn, dialect, wanted)})
    if not found:
        return set()
    for table in group.tables:
        archive = group.archive_of(table)
        names = [c.name for c in table.columns]
        conn.execute(
            insert(table).from_select(
                names,
                select(*(archive.c[n] for n in names)).where(
                    among(archive.c[group.key], found, dialect),
                    ~exists().where(_same_row(table, archive)),
                ),
            )
        )
        conn.execute(delete(archive).where(among(archive.c[group.key], found, dialect)))
    log.info("archived items restored", group=group.name, items=len(found))
    return set(found)


# --- a run ------------------------------------------------------------------------------


Progress = Callable[[str], None]


@dataclass
class RetentionReport:
    """What one run pruned and moved (or would have, with ``dry_run``)."""

    service: str
    dry_run: bool
    inbox_cutoff: datetime
    inbox_pruned: int = 0
    archive_cutoff: dict[str, date | None] = field(default_factory=dict)
    archived: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None  # why nothing ran (another run holds the service)

    def lines(self) -> list[str]:
        verb = "would prune" if self.dry_run else "pruned"
        if self.skipped:
            return [f"{self.service}: skipped ({self.skipped})"]
        out = [
            f"{self.service}: inbox: {verb} {self.inbox_pruned} row(s) processed before"
            f" {self.inbox_cutoff.isoformat(timespec='seconds')}"
        ]
        verb = "would move" if self.dry_run else "moved"
        for name, count in self.archived.items():
            cutoff = self.archive_cutoff.get(name)
            when = f"finished before {cutoff.isoformat()}" if cutoff else "no business date yet"
            out.append(f"{self.service}: {name}: {verb} {count} to the archive ({when})")
        return out


def prune_inbox(
    engine: Engine,
    cutoff: datetime,
    chunk: int,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> int:
    """Delete inbox rows processed before ``cutoff``, ``chunk`` rows a transaction,
    oldest first; raise each partition's ``inbox_horizon`` to the highest offset
    deleted. Returns how many rows (would) go."""
    if dry_run:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(inbox).where(inbox.c.processed_at < cutoff)
                ).scalar_one()
            )
    total = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                select(
                    inbox.c.consumer,
                    inbox.c.event_id,
                    inbox.c.topic,
                    inbox.c.partition,
                    inbox.c.offset,
                )
                .where(inbox.c.processed_at < cutoff)
                .order_by(inbox.c.processed_at)
                .limit(chunk)
            ).all()
            if not rows:
                return total
            conn.execute(
                delete(inbox).where(
                    tuple_(inbox.c.consumer, inbox.c.event_id).in_(
                        [(r.consumer, r.event_id) for r in rows]
                    )
                )
            )
            highest: dict[tuple[str, str, int], int] = {}
            for r in rows:
                k = (r.consumer, r.topic, r.partition)
                highest[k] = max(highest.get(k, -1), r.offset)
            _raise_horizon(conn, highest)
        total += len(rows)
        if progress is not None:
            progress(f"inbox: {total} row(s) pruned")
        if len(rows) < chunk:
            return total


def _raise_horizon(conn: Connection, highest: dict[tuple[str, str, int], int]) -> None:
    now = utcnow()
    h = inbox_horizon.c
    consumers = sorted({k[0] for k in highest})
    known = {
        (r.consumer, r.topic, r.partition): r.pruned_through
        for r in conn.execute(select(inbox_horizon).where(h.consumer.in_(consumers)))
    }
    for (consumer, topic, partition), offset in sorted(highest.items()):
        where = (h.consumer == consumer, h.topic == topic, h.partition == partition)
        if (consumer, topic, partition) not in known:
            conn.execute(
                insert(inbox_horizon).values(
                    consumer=consumer,
                    topic=topic,
                    partition=partition,
                    pruned_through=offset,
                    updated_at=now,
                )
            )
        elif offset > known[(consumer, topic, partition)]:
            conn.execute(
                inbox_horizon.update().where(*where).values(pruned_through=offset, updated_at=now)
            )


def pruned_horizon(conn: Connection, consumer: str) -> dict[tuple[str, int], int]:
    """(topic, partition) -> the highest offset whose inbox row may have been pruned."""
    rows = conn.execute(select(inbox_horizon).where(inbox_horizon.c.consumer == consumer))
    return {(r.topic, r.partition): r.pruned_through for r in rows}


def archive_cutoff(conn: Connection, group: ArchiveGroup, after_days: int) -> date | None:
    """The first business date an item's rows may not reach to be archived now."""
    clock = group.clock(conn)
    return None if clock is None else clock - timedelta(days=after_days)


def archive_group(
    engine: Engine,
    group: ArchiveGroup,
    cutoff: date,
    chunk: int,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> int:
    """Move the items of ``group`` finished before ``cutoff``: the root scanned in key
    order ``chunk`` keys at a time; in each window the finished ones move in one short
    transaction (holding out the service's batches). Returns how many (would) move."""
    key = group.root.c[group.key]
    last: Any = None
    moved = 0
    while True:
        with engine.connect() as conn:
            window_query = select(key).order_by(key).limit(chunk)
            if last is not None:
                window_query = window_query.where(key > last)
            window = [r[0] for r in conn.execute(window_query)]
        if not window:
            return moved
        with engine.begin() as conn:
            if not dry_run:
                _lock_out_batches(conn)
            ids = [
                r[0]
                for r in conn.execute(
                    select(key)
                    .where(among(key, window, conn.dialect.name), group.finished(cutoff))
                    .order_by(key)
                )
            ]
            if not dry_run:
                move_to_archive(conn, group, ids)
        moved += len(ids)
        last = window[-1]
        if progress is not None and ids:
            verb = "would move" if dry_run else "moved"
            progress(f"{group.name}: {verb} {moved} so far")
        if len(window) < chunk:
            return moved


def run_retention(
    engine: Engine,
    service: str,
    groups: Sequence[ArchiveGroup],
    settings: Settings,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> RetentionReport:
    """One retention run for a service: prune its inbox, then move each group's finished
    items. Skipped (``report.skipped``) while another run holds the service."""
    now = now or utcnow()
    report = RetentionReport(
        service=service,
        dry_run=dry_run,
        inbox_cutoff=now - timedelta(days=settings.retention_inbox_days),
    )
    chunk = settings.retention_chunk_rows
    with engine.connect() as guard:
        if guard.dialect.name == "postgresql":
            key = _lock_key(guard) + ":run"
            got = guard.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": key})
            if not got.scalar():
                report.skipped = "another retention run of this service is in progress"
                return report
        try:
            report.inbox_pruned = prune_inbox(
                engine, report.inbox_cutoff, chunk, dry_run=dry_run, progress=progress
            )
            for group in groups:
                with engine.connect() as conn:
                    cutoff = archive_cutoff(conn, group, settings.retention_archive_after_days)
                report.archive_cutoff[group.name] = cutoff
                report.archived[group.name] = (
                    0
                    if cutoff is None
                    else archive_group(
                        engine, group, cutoff, chunk, dry_run=dry_run, progress=progress
                    )
                )
        finally:
            if guard.dialect.name == "postgresql":
                guard.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": key})
                guard.commit()
    log.info(
        "retention run",
        service=service,
        dry_run=dry_run,
        inbox_pruned=report.inbox_pruned,
        archived=report.archived,
    )
    return report
