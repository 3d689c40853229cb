"""The collections service's own tables.

- ``cases``: one row per collections case with its current state (``open``,
  ``cured``, ``charged_off``, ``closed`` = a charged-off case whose account became
  current again), highest level, last reported bucket / DPD / overdue amount.
- ``case_events``: the append-only history of every case (kept for audit): ``opened``,
  ``raised`` (one per level, in order), ``resolved`` (cured / charged_off), ``closed``.
  Rows are only ever inserted; the levels a case has had are read from here.
- ``positions``: each account's latest ``account.delinquency`` report (DPD, overdue
  amount, business date): the DPD bucket of the risk reserve, and the newest business
  date seen (an older report is stale).
- ``plans`` / ``plan_installments``: the installment principal of every plan (from
  ``plan.created``'s schedule), marked paid by ``installment.paid`` and closed by
  ``plan.completed`` / ``plan.cancelled``: the outstanding principal per account. A
  charge-off sets the account's active plans ``charged_off``: their principal is
  written off, no longer outstanding. ``plan.adjusted`` (second release) rewrites the
  principal of the installments its schedule lists and marks the unpaid ones it leaves
  out ``removed`` (migration 2): no longer outstanding either.
"""

from sqlalchemy import Boolean, Column, Date, Integer, MetaData, String, Table, false, text
from sqlalchemy.engine import Connection

from shared.runtime.db import ID_COLUMN, BigId, Migration, Money, create_tables, qualified_table

metadata = MetaData()

OPEN, CURED, CHARGED_OFF, CLOSED = "open", "cured", "charged_off", "closed"
OPENED, RAISED, RESOLVED = "opened", "raised", "resolved"
ACTIVE, COMPLETED, CANCELLED = "active", "completed", "cancelled"  # plans (or CHARGED_OFF)

cases = Table(
    "cases",
    metadata,
    Column("case_id", String(200), primary_key=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("opened_on", Date, nullable=False),
    Column("level", Integer, nullable=False),  # highest level raised (0: none yet)
    Column("action", String(16), nullable=True),  # of that level
    Column("bucket", String(8), nullable=True),
    Column("days_past_due", Integer, nullable=False),
    Column("overdue_amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("business_date", Date, nullable=False),  # of the latest report applied
    Column("resolution", String(16), nullable=True),
    Column("resolved_on", Date, nullable=True),
    Column("written_off", Money, nullable=True),
)

case_events = Table(
    "case_events",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("case_id", String(200), nullable=False, index=True),
    Column("account_id", String(ID_COLUMN), nullable=False),
    Column("kind", String(16), nullable=False),  # opened | raised | resolved | closed
    Column("business_date", Date, nullable=False),
    Column("level", Integer, nullable=True),
    Column("action", String(16), nullable=True),
    Column("bucket", String(8), nullable=True),
    Column("resolution", String(16), nullable=True),
    Column("days_past_due", Integer, nullable=False),
    Column("overdue_amount", Money, nullable=False),
    Column("amount", Money, nullable=True),  # written off, for charged_off
    Column("currency", String(3), nullable=False),
    Column("cause_event_id", String(64), nullable=False),
    Column("event_id", String(64), nullable=True),  # the escalation.* event emitted
)

positions = Table(
    "positions",
    metadata,
    Column("account_id", String(ID_COLUMN), primary_key=True),
    Column("business_date", Date, nullable=False),
    Column("days_past_due", Integer, nullable=False),
    Column("overdue_amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("oldest_unpaid_due_date", Date, nullable=True),
    Column("event_id", String(64), nullable=False),
)

plans = Table(
    "plans",
    metadata,
    Column("plan_id", String(ID_COLUMN), primary_key=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("principal", Money, nullable=False),
    Column("status", String(16), nullable=False),
    Column("event_id", String(64), nullable=False),
)

plan_installments = Table(
    "plan_installments",
    metadata,
    Column("plan_id", String(ID_COLUMN), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("due_date", Date, nullable=False),
    Column("principal", Money, nullable=False),
    Column("paid", Boolean, nullable=False),
    Column("paid_on", Date, nullable=True),
    # left out of a plan.adjusted schedule while unpaid: no longer outstanding
    Column("removed", Boolean, nullable=False, default=False, server_default=false()),
)


def _add_removed(conn: Connection) -> None:
    """``plan_installments.removed`` on a database created before it (migration 1 of a
    newer database creates it already)."""
    table = qualified_table(conn, "plan_installments")
    if conn.dialect.name == "postgresql":
        conn.execute(
            text(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS removed BOOLEAN"
                 " NOT NULL DEFAULT false")
        )  # fmt: skip
        return
    columns = {row[1] for row in conn.execute(text(f"PRAGMA table_info({table})"))}
    if "removed" not in columns:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN removed BOOLEAN NOT NULL DEFAULT 0"))


MIGRATIONS = [
    Migration(
        1, "cases, case_events, positions, plans, plan_installments", create_tables(metadata)
    ),
    Migration(2, "plan_installments.removed (plan.adjusted)", _add_removed),
]
