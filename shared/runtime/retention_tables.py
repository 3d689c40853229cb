"""The runtime's retention bookkeeping (runtime migration 4), apart from
:mod:`shared.runtime.store` so that the store only names the migration step.

- an index on ``inbox.processed_at``: pruning deletes the rows older than the window in
  bounded chunks, oldest first, found by this index (never a scan of the inbox);
- ``inbox_horizon``: per consumer and partition, the highest offset whose inbox row was
  pruned. A replay that moves a stored offset back to or below it would re-read records
  whose dedupe row is gone: ``installments replay`` refuses that
  (:mod:`shared.ops.replay`).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, text
from sqlalchemy.engine import Connection

from shared.runtime.db import qualified_table

retention_metadata = MetaData()

INBOX_PROCESSED_AT_INDEX = "ix_inbox_processed_at"

inbox_horizon = Table(
    "inbox_horizon",
    retention_metadata,
    Column("consumer", String(100), primary_key=True),
    Column("topic", String(255), primary_key=True),
    Column("partition", Integer, primary_key=True),
    # every inbox row of this partition at or below this offset may have been pruned
    Column("pruned_through", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def add_inbox_retention(conn: Connection) -> None:
    """Runtime migration 4: the ``processed_at`` index and ``inbox_horizon``.

    On a database whose inbox is already large, build the index beforehand without
    blocking writers (``CREATE INDEX CONCURRENTLY ix_inbox_processed_at ON
    <service>.inbox (processed_at)``): this step keeps an index of that name.
    """
    table = qualified_table(conn, "inbox")
    conn.execute(
        text(f"CREATE INDEX IF NOT EXISTS {INBOX_PROCESSED_AT_INDEX} ON {table} (processed_at)")
    )
    retention_metadata.create_all(conn)
