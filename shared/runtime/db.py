"""Database plumbing shared by every service.

Each service owns its data: on PostgreSQL its own schema (named after the
service) inside the database of ``DATABASE_URL``; on SQLite its own file. No
service reads another's tables; they share only events.

Also here, written once: the ``Money`` column type, explicit versioned migrations,
bulk writes (COPY on PostgreSQL), and creating or dropping a database. The runtime's
own tables (inbox, outbox, stored offsets, crash counting) are in
:mod:`shared.runtime.store`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg.types.array import ListBinaryDumper
from sqlalchemy import (
    JSON,
    BigInteger,
    Engine,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    and_,
    any_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.types import TypeDecorator

from schemas.limits import REMINDER_ID_MAX
from shared.runtime.settings import Settings


class Money(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC on PostgreSQL (keeps the scale it is given), text on SQLite.

    Never a float. Unconstrained NUMERIC keeps "40.00" as 40.00, so amounts come
    back with their currency's digits, and holds any amount or sum of amounts the
    schemas allow exactly (:mod:`schemas.limits`: 12 digits a single amount, 18 a sum;
    PostgreSQL's unconstrained NUMERIC has up to 131072 digits before the point).
    """

    impl = Numeric()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"money must be a Decimal, got {type(value).__name__}")
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value) if isinstance(value, str) else value


#: Width of the services' id columns (VARCHAR): an id of any kind the schemas accept fits
#: (:mod:`schemas.limits`; ``REMINDER_ID_MAX`` is the longest kind). Columns are only
#: ever widened: a deployed database may hold ids accepted before the limits.
ID_COLUMN = REMINDER_ID_MAX


def utcnow() -> datetime:
    """Wall-clock time for bookkeeping columns only (never for business rules)."""
    return datetime.now(UTC)


BigId = BigInteger().with_variant(Integer, "sqlite")

# --- runtime tables (in every service's schema) ------------------------------


@dataclass(frozen=True)
class Migration:
    """One explicit, versioned schema change."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def create_tables(metadata: MetaData) -> Callable[[Connection], None]:
    """A migration step that creates the tables of ``metadata`` (for version 1)."""

    def _apply(conn: Connection) -> None:
        metadata.create_all(conn)

    return _apply


def qualified_table(conn: Connection, name: str) -> str:
    """``name`` as raw SQL must spell it: in the service's schema on PostgreSQL (text()
    statements do not go through the engine's schema_translate_map)."""
    if conn.dialect.name != "postgresql":
        return f'"{name}"'
    schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(None)
    return f'"{schema}"."{name}"' if schema else f'"{name}"'


def alter_column_types(table: Table, *columns: str) -> Callable[[Connection], None]:
    """A migration step that gives existing ``columns`` of ``table`` the type they have in
    the table's current definition (to widen them: ``INTEGER`` -> ``BIGINT``,
    ``VARCHAR(64)`` -> ``VARCHAR(128)``; never to narrow one).

    PostgreSQL: one ``ALTER TABLE ... ALTER COLUMN ... TYPE ...`` statement for all of
    them (one table rewrite, under an exclusive lock). SQLite (the demo): nothing; it
    enforces neither VARCHAR lengths nor integer widths (INTEGER holds 64 bits).
    """
    missing = [name for name in columns if name not in table.c]
    if missing:
        raise ValueError(f"{table.name} has no column {missing[0]!r}")

    def _apply(conn: Connection) -> None:
        if conn.dialect.name != "postgresql":
            return
        changes = ", ".join(
            f'ALTER COLUMN "{name}" TYPE {table.c[name].type.compile(dialect=conn.dialect)}'
            for name in columns
        )
        conn.execute(text(f"ALTER TABLE {qualified_table(conn, table.name)} {changes}"))

    return _apply


def service_database_url(settings: Settings, service: str) -> str:
    """The URL a service connects to (SQLite: its own file)."""
    return settings.database_url.replace("{service}", service)


def make_engine(settings: Settings, service: str, **kwargs: Any) -> Engine:
    """An engine bound to the service's own schema (PostgreSQL) or file (SQLite)."""
    url = service_database_url(settings, service)
    # SQLAlchemy puts a failed statement's parameters (row values: account ids, names,
    # amounts) into the exception's text, which ends up in logs and dead letters.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine

    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    # Bulk inserts go through psycopg's executemany (pipelined, one prepared statement)
    # instead of one giant multi-row VALUES statement that psycopg must parse anew.
    kwargs.setdefault("use_insertmanyvalues", False)
    # No server-side prepared statements: after 5 runs psycopg would prepare, and
    # PostgreSQL's generic plan for "= ANY($1)" on a young (un-analyzed) inbox is a
    # sequential scan: seconds instead of milliseconds per batch.
    kwargs.setdefault("connect_args", {"prepare_threshold": None})
    base = create_engine(url, **kwargs)
    binary_arrays(base)
    with base.begin() as conn:
        # IF NOT EXISTS is not safe against a concurrent creator (two processes of a
        # service starting on a fresh database: one fails on a unique violation):
        # serialise on an advisory lock first.
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"installments-schema:{service}"},
        )
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{service}"'))
    return base.execution_options(schema_translate_map={None: service})


def binary_arrays(engine: Engine) -> None:
    """Send the array parameters of ``engine``'s PostgreSQL connections in the binary
    format (:func:`make_engine` does it; tests that build their own engine call it).

    Every id of a batch goes through one (``among``, ``update_rows``, the key pairs).
    psycopg's text-format array dumper quotes and escapes each element in Python, about
    1 µs an element; the binary one writes lengths and bytes, about 0.2 µs (measured,
    ``docs/benchmarks``). The values PostgreSQL receives are the same: every array
    parameter is cast to its column's array type in the statement (SQLAlchemy's psycopg
    dialect renders the casts), and an element type that differs (text for a varchar)
    is converted by that cast."""

    def _register(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.adapters.register_dumper(list, ListBinaryDumper)

    event.listen(engine, "connect", _register)


def bulk_insert(
    conn: Connection, table: Table, rows: list[dict[str, Any]], *, binary: bool = False
) -> None:
    """Insert many rows in one go: COPY on PostgreSQL, executemany elsewhere.

    COPY streams the rows without per-row statements or a giant VALUES list to parse:
    it is the cheapest way to write a batch's inbox, outbox and state rows. ``binary``:
    COPY's binary format, for the runtime's inbox and outbox rows. Text spells every
    byte of the outbox's event as two hex digits that PostgreSQL decodes again, and
    every timestamp as a string; binary halved the client CPU per inbox and per outbox
    row (docs/benchmarks, "Binary COPY"). For the services' state rows (decimals,
    short strings) it measured no better, or worse: they stay text.
    """
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), rows)
        return
    import json as _json
    from operator import itemgetter

    names = [c.name for c in table.columns if c.name in rows[0]]
    json_at = [i for i, name in enumerate(names) if isinstance(table.c[name].type, JSON)]
    schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(
        table.schema, table.schema
    )
    target = f'"{schema}"."{table.name}"' if schema else f'"{table.name}"'
    columns = ", ".join(f'"{name}"' for name in names)
    # One C-level getter per row instead of a Python loop over the columns (this
    # function writes every state, inbox and outbox row: measured in docs/benchmarks).
    values = itemgetter(*names) if len(names) > 1 else (lambda row, n=names[0]: (row[n],))
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    options = " (FORMAT BINARY)" if binary else ""
    with cursor.copy(f"COPY {target} ({columns}) FROM STDIN{options}") as copy:
        write = copy.write_row
        if binary:
            # each value is dumped for its column's type (JSON: psycopg serialises it)
            copy.set_types(_copy_types(table, tuple(names), conn.dialect))
            json_at = []
        if not json_at:
            for row in rows:
                write(values(row))
            return
        for row in rows:
            out = list(values(row))
            for i in json_at:
                out[i] = _json.dumps(out[i])
            write(out)


_COPY_TYPES: dict[tuple[Table, tuple[str, ...]], list[str]] = {}


def _copy_types(table: Table, names: tuple[str, ...], dialect: Dialect) -> list[str]:
    """PostgreSQL's names of the types of ``names`` (``VARCHAR(32)`` -> ``varchar``), as
    a binary COPY needs them."""
    found = _COPY_TYPES.get((table, names))
    if found is None:
        found = _COPY_TYPES[(table, names)] = [
            table.c[n].type.compile(dialect=dialect).partition("(")[0].strip().lower()
            for n in names
        ]
    return found


class Among:
    """What :class:`Prebuilt` hands its builder: ``among(column, name="ids")`` is
    ``column IN :name`` with the values bound at execution, as :func:`among` writes it
    for the statement's dialect (``among.dialect``): one array parameter on PostgreSQL
    (``= ANY(:name)``), an expanding ``IN`` elsewhere."""

    __slots__ = ("dialect",)

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    def __call__(self, column: Any, name: str = "ids") -> Any:
        if self.dialect == "postgresql":
            return column == any_(bindparam(name, type_=ARRAY(column.type)))
        return column.in_(bindparam(name, expanding=True))


class Prebuilt:
    """A statement built once per dialect, its ids bound at each execution.

    Building ``select(...).where(among(...))`` anew for every batch costs about as much
    CPU as executing it (SQLAlchemy generates the new statement's cache key each time):
    measured 235 against 132 us per statement, and a batch runs a dozen of them
    (docs/benchmarks, "Prebuilt statements"). ``build`` receives an :class:`Among` and
    returns the statement::

        _ACCOUNTS = Prebuilt(lambda among: select(accounts).where(among(accounts.c.account_id)))
        rows = _ACCOUNTS.rows(session, dialect, account_ids)
    """

    __slots__ = ("_build", "_built")

    def __init__(self, build: Callable[[Among], Any]) -> None:
        self._build = build
        self._built: dict[str, Any] = {}

    def __call__(self, dialect: str) -> Any:
        statement = self._built.get(dialect)
        if statement is None:
            statement = self._built[dialect] = self._build(Among(dialect))
        return statement

    def rows(self, executor: Any, dialect: str, ids: Iterable[Any]) -> Any:
        """Run it on ``executor`` (a Session or a Connection) with ``ids`` as "ids": its
        rows as a list (or, a statement without rows such as a DELETE, its result).

        The rows are fetched in one call: iterating a result fetches them one by one,
        about 0.8 µs a row more through SQLAlchemy and psycopg (measured; a batch's
        loads return hundreds of rows). The repositories' other batch reads end in
        ``.all()`` for the same reason."""
        result = executor.execute(self(dialect), {"ids": list(ids)})
        return result.all() if result.returns_rows else result


def among(column: Any, values: Iterable[Any], dialect: str) -> Any:
    """``column IN values`` as one array parameter on PostgreSQL (``= ANY(:values)``).

    A long ``IN (...)`` list is a new statement for every length, parsed anew by the
    driver each time; one array parameter keeps the statement (and its plan) the same.
    """
    values = list(values)
    if dialect == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def update_rows(
    conn: Connection,
    table: Table,
    keys: tuple[str, ...],
    columns: tuple[str, ...],
    rows: list[dict[str, Any]],
) -> None:
    """Write ``columns`` of ``rows`` (dicts holding ``keys`` and ``columns``) by key.

    PostgreSQL: ONE ``UPDATE ... FROM unnest(arrays)`` statement, one array parameter per
    column, whatever the number of rows (an executemany was a round trip per row: half of
    the reminders service's database time). Elsewhere (SQLite): executemany.
    """
    if not rows:
        return
    names = (*keys, *columns)
    if conn.dialect.name == "postgresql":
        arrays = [
            bindparam(f"a_{n}", [r[n] for r in rows], type_=ARRAY(table.c[n].type)) for n in names
        ]
        v = func.unnest(*arrays).table_valued(*names).render_derived(name="v")
        conn.execute(
            update(table)
            .where(and_(*(table.c[k] == v.c[k] for k in keys)))
            .values({n: v.c[n] for n in columns})
        )
        return
    conn.execute(
        update(table)
        .where(and_(*(table.c[k] == bindparam(f"b_{k}") for k in keys)))
        .values({n: bindparam(f"b_{n}") for n in columns}),
        [{f"b_{n}": r[n] for n in names} for r in rows],
    )


def _key_pairs(
    table: Table, names: tuple[str, str], keys: Iterable[tuple[Any, Any]] | None = None
) -> Any:
    """PostgreSQL: the pairs as two array parameters (``k_first``, ``k_second``: bound at
    execution by :func:`key_params` when ``keys`` is None) joined through ``unnest`` as
    the derived table ``k``."""
    a, b = (table.c[n] for n in names)
    first = second = None
    if keys is not None:
        bound = key_params(keys, "postgresql")
        first, second = bound["k_first"], bound["k_second"]
    return (
        func.unnest(
            bindparam("k_first", first, type_=ARRAY(a.type)),
            bindparam("k_second", second, type_=ARRAY(b.type)),
        )
        .table_valued("first", "second")
        .render_derived(name="k")
    )


def restrict_to_keys(
    query: Any,
    table: Table,
    names: tuple[str, str],
    keys: Iterable[tuple[Any, Any]] | None,
    dialect: str,
) -> Any:
    """``query`` on ``table`` limited to rows whose (``names``) pair is one of ``keys``.

    PostgreSQL: a join on ``unnest`` of two array parameters (one statement and plan
    whatever the number of keys). Elsewhere: a row-value ``IN`` list. ``keys=None``
    leaves the pairs to bind at execution (:func:`key_params`): for :class:`Prebuilt`.
    """
    a, b = (table.c[n] for n in names)
    if dialect == "postgresql":
        k = _key_pairs(table, names, keys)
        return query.join(k, (a == k.c.first) & (b == k.c.second))
    if keys is None:
        return query.where(tuple_(a, b).in_(bindparam("k_pairs", expanding=True)))
    return query.where(tuple_(a, b).in_(sorted(keys)))


def delete_keys(table: Table, names: tuple[str, str], dialect: str) -> Any:
    """``DELETE`` of the rows of ``table`` whose (``names``) pair is one of the pairs bound
    at execution (:func:`key_params`), as :func:`restrict_to_keys` reads them: one
    statement whatever their number. For :class:`Prebuilt`."""
    a, b = (table.c[n] for n in names)
    if dialect == "postgresql":
        k = _key_pairs(table, names)
        return delete(table).where(and_(a == k.c.first, b == k.c.second))
    return delete(table).where(tuple_(a, b).in_(bindparam("k_pairs", expanding=True)))


def key_params(keys: Iterable[tuple[Any, Any]], dialect: str) -> dict[str, Any]:
    """The parameters of a :func:`restrict_to_keys` statement built with ``keys=None``."""
    ordered = sorted(keys)
    if dialect == "postgresql":
        return {"k_first": [x for x, _ in ordered], "k_second": [y for _, y in ordered]}
    return {"k_pairs": ordered}


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the PostgreSQL server of ``server_url``; its URL."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{server_url.rpartition('/')[0]}/{name}"


def drop_databases(server_url: str, names: Iterable[str]) -> None:
    """Drop these databases of the server of ``server_url`` (connections closed)."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
