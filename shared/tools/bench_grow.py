"""The benchmark's pre-grown database: a service's schema as a year of a mid-size issuer
leaves it (by default 1 M accounts, 5 M installments, 20 M inbox rows), so that a run
measures the per-event cost of the tables a running issuer has, not of empty ones.

Built once per service and size as a PostgreSQL template database
(``bench_grown_v<N>_<service>_<accounts>_<installments>_<inbox>``); each run clones it
(``CREATE DATABASE … TEMPLATE``, a file copy) and drops the clone afterwards.

How it is filled:

- the service's REAL migrations run first (the runtime's and the service's, whatever
  they are in the tree: tables added later, e.g. archive tables, exist too), then every
  table of the service's schema is filled generically from the catalogue: one
  ``INSERT … SELECT … FROM generate_series`` per table, server side (no row crosses the
  wire: faster than COPY from a client), with its primary key, unique constraints and
  indexes dropped first and rebuilt after (a sorted index build instead of millions of
  random insertions), then ``VACUUM ANALYZE`` (hint bits and statistics set, so the
  measured run does not pay for them);
- rows per table: the inbox ``inbox`` rows (with the consumer group and input topic of the
  grown run: its dedupe look-ups hit the same index the grown rows are in), tables of
  installments, schedule lines, reminders and ledger lines ``installments`` rows, the
  business days 365, every other table ``accounts`` rows (accounts, positions, purchases,
  plans, offers, cases: one a year per account);
- values: the business days closed are the year up to the day before the input's
  (:data:`LAST_CLOSED_DAY`); ``account_id`` spreads the rows over ``accounts`` accounts
  (``g-acc-<n>``, never an id of the benchmark's input, which has letters only); other
  strings are unique (``g-`` and an md5: random order, as uuids and hashed ids are);
  booleans mostly false (finished plans, paid installments), statuses closed/sent, dates
  over one year, money and small integers varied; integer and date columns of a primary
  key are unique.
  The rows are of other accounts than the input's, as in a real issuer where a batch
  touches a few thousand of a million accounts: what grows is the indexes the look-ups
  and inserts go through and the tables the set-based statements scan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import create_engine, text

from shared import registry
from shared.runtime.db import make_engine
from shared.runtime.settings import Settings
from shared.runtime.store import migrate

#: Bump when the rows the grower writes change: templates of older versions are not used.
GROWER_VERSION = 3

#: The last business day a grown database has closed: the day before the benchmark's
#: input (``bench_workloads.DAY0``, 2026-03-02), as for an issuer running a year to it.
LAST_CLOSED_DAY = date(2026, 3, 1)

#: Runtime tables not grown: a running service keeps them small (outbox rows are deleted
#: once published; one offset and poison row per partition).
NOT_GROWN = {"outbox", "consumer_offsets", "poison_watch", "schema_migrations"}


def grown(table: str) -> bool:
    """Whether the grower fills ``table``: the inbox and the service's hot tables. Not
    the runtime's other tables, nor a retention policy's (``*_archive``, the inbox's
    pruning horizon): the grown database is a year of state with no retention run, as
    every table grows today; a retention run over it is what would move rows out."""
    return table not in NOT_GROWN and not table.endswith("_archive") and "horizon" not in table


_GROWS_LIKE_INSTALLMENTS = ("installment", "schedule_line", "reminder", "ledger")

_CONSTANT_STRINGS = {
    "currency": "USD",
    "mcc": "5732",
    "tier": "gold",
    "segment": "standard",
    "channel": "sms",
    "locale": "en-US",
    "fee_model": "flat",
}


@dataclass(frozen=True)
class GrowSize:
    """How big the grown database is."""

    accounts: int = 1_000_000
    installments: int = 5_000_000
    inbox: int = 20_000_000

    def rows(self, table: str, primary_key: list[str]) -> int:
        if table == "inbox":
            return self.inbox
        if "business_day" in table:
            return 365
        if any(word in table for word in _GROWS_LIKE_INSTALLMENTS):
            return self.installments
        return self.accounts

    def label(self) -> str:
        return f"{self.accounts}_{self.installments}_{self.inbox}"


#: ``--quick``: a few seconds to build, for smoke tests of the machinery.
QUICK_SIZE = GrowSize(accounts=2_000, installments=10_000, inbox=40_000)


def template_name(service: str, size: GrowSize) -> str:
    return f"bench_grown_v{GROWER_VERSION}_{service}_{size.label()}"


def column_expression(
    table: str,
    column: str,
    data_type: str,
    max_length: int | None,
    in_primary_key: bool,
    size: GrowSize,
    inbox_values: dict[str, str],
) -> str:
    """The SQL expression of one column's value for row ``i`` (of ``generate_series``)."""
    if table == "inbox" and column in inbox_values:
        return _literal(inbox_values[column])
    if table == "inbox" and column == "partition":
        return "(i % 6)"
    if table == "inbox" and column == "offset":
        return "i::bigint"
    if data_type in ("character varying", "text", "character"):
        if column == "account_id":
            value = f"'g-acc-' || (i % {size.accounts})"
        elif column in _CONSTANT_STRINGS:
            value = _literal(_CONSTANT_STRINGS[column])
        elif column == "status":
            value = _literal("sent" if "reminder" in table else "closed")
        elif max_length is not None and max_length < 12:
            value = "'g'"
        else:
            value = f"'g-' || md5(i::text || {_literal(table + '.' + column)})"
        return f"left({value}, {max_length})" if max_length else value
    if data_type in ("integer", "bigint", "smallint"):
        return "i" if in_primary_key else "(1 + i % 12)"
    if data_type == "numeric":
        return "((i % 250000) / 100.0)::numeric"
    if data_type == "boolean":
        return "(i % 10 = 0)"
    if data_type == "date":
        if "business_day" in table:  # the year of days closed before the input's first
            return f"(date {_literal(str(LAST_CLOSED_DAY))} - (365 - i))"
        return "(date '1900-01-01' + i)" if in_primary_key else "(date '2025-03-02' + i % 365)"
    if data_type.startswith("timestamp"):
        return "(timestamptz '2025-03-02 00:00:00+00' + (i % 31536000) * interval '1 second')"
    if data_type in ("json", "jsonb"):
        return f"'[]'::{data_type}"
    if data_type == "bytea":
        return "'\\x00'::bytea"
    if data_type == "double precision" or data_type == "real":
        return "(i % 1000)::float8"
    raise ValueError(f"the grower has no value for {table}.{column} ({data_type})")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def grow_schema(
    conn: Any,
    schema: str,
    size: GrowSize,
    inbox_values: dict[str, str],
    log: Callable[[str], None],
) -> dict[str, int]:
    """Fill every table of ``schema`` (an autocommit connection); rows per table."""
    conn.execute(text("SET maintenance_work_mem = '512MB'"))
    conn.execute(text("SET synchronous_commit = off"))
    tables = [
        row[0]
        for row in conn.execute(
            text(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = :s AND table_type = 'BASE TABLE' ORDER BY table_name"
            ),
            {"s": schema},
        )
        if grown(row[0])
    ]
    counts: dict[str, int] = {}
    for table in tables:
        qualified = f'"{schema}"."{table}"'
        pk = [
            row[0]
            for row in conn.execute(
                text(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                    " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                    " WHERE i.indrelid = CAST(:t AS regclass) AND i.indisprimary"
                ),
                {"t": qualified},
            )
        ]
        columns = conn.execute(
            text(
                "SELECT column_name, data_type, character_maximum_length, column_default,"
                " is_identity FROM information_schema.columns"
                " WHERE table_schema = :s AND table_name = :t ORDER BY ordinal_position"
            ),
            {"s": schema, "t": table},
        ).all()
        names, exprs = [], []
        for name, data_type, max_length, default, identity in columns:
            if identity == "YES" or (default or "").startswith("nextval("):
                continue  # its sequence numbers it
            names.append(f'"{name}"')
            exprs.append(
                column_expression(
                    table, name, data_type, max_length, name in pk, size, inbox_values
                )
            )
        rows = size.rows(table, pk)
        started = time.monotonic()
        constraints = conn.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = CAST(:t AS regclass) AND contype IN ('p', 'u')"
            ),
            {"t": qualified},
        ).all()
        indexes = conn.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s"
                " AND tablename = :t AND indexname NOT IN"
                " (SELECT conname FROM pg_constraint WHERE conrelid = CAST(:q AS regclass))"
            ),
            {"s": schema, "t": table, "q": qualified},
        ).all()
        for name, _ in indexes:
            conn.execute(text(f'DROP INDEX "{schema}"."{name}"'))
        for name, _ in constraints:
            conn.execute(text(f'ALTER TABLE {qualified} DROP CONSTRAINT "{name}"'))
        conn.execute(
            text(
                f"INSERT INTO {qualified} ({', '.join(names)})"
                f" SELECT {', '.join(exprs)} FROM generate_series(1, {rows}) AS g(i)"
            )
        )
        for name, definition in constraints:
            conn.execute(text(f'ALTER TABLE {qualified} ADD CONSTRAINT "{name}" {definition}'))
        for _, definition in indexes:
            conn.execute(text(definition))
        conn.execute(text(f"VACUUM ANALYZE {qualified}"))
        counts[table] = rows
        log(f"  grown {schema}.{table}: {rows:,} rows in {time.monotonic() - started:.0f} s")
    return counts


def ensure_template(
    admin_url: str,
    service: str,
    size: GrowSize,
    topic_prefix: str,
    log: Callable[[str], None],
) -> tuple[str, float]:
    """The grown template database of ``service`` (built when missing); returns its name
    and the seconds spent building it (0 when it was there)."""
    name = template_name(service, size)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if found:
                return name, 0.0
            building = f"{name}_building"
            conn.execute(text(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{building}"'))
        started = time.monotonic()
        log(f"{service}: building the grown database {name} (once; kept as a template)")
        url = f"{admin_url.rpartition('/')[0]}/{building}"
        settings = Settings(database_url=url, topic_prefix=topic_prefix)
        built = registry.build(service, settings)
        engine = make_engine(settings, service)
        migrate(engine, built.migrations)
        engine.dispose()
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        inbox_values = {
            "consumer": registry.group_name(settings, service),
            "topic": settings.topic(built.consumes[0]),
        }
        with engine.connect() as conn:
            grow_schema(conn, service, size, inbox_values, log)
        engine.dispose()
        with admin.connect() as conn:
            # Only a complete build gets the template's name.
            conn.execute(text(f'ALTER DATABASE "{building}" RENAME TO "{name}"'))
            conn.execute(text(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true'))
        return name, time.monotonic() - started
    finally:
        admin.dispose()


def grown_prefix(service: str) -> str:
    """The topic prefix of a service's grown runs: fixed, since the grown inbox rows
    carry the consumer group it names (the topics are deleted and made again per run)."""
    return f"bench-grown-{service}."
