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

Second release (migration 3, ``contact.recorded`` from collections.outcomes.v1; all four
are read-only for anyone but this service):

- ``contacts``: every contact outcome accepted, one row per ``contact_id``: ``case_id``,
  ``account_id``, ``outcome`` (reached | no_answer | wrong_party | promise_to_pay |
  dispute | dispute_resolved), ``contacted_on``, ``agent_ref``, ``event_id`` (the
  ``contact.recorded``). Outcomes reached / no_answer / wrong_party count as contacts
  for the legal guard, as do the contact actions raised (``case_events``).
- ``promises``: one row per ``promise_to_pay`` (keyed by its ``contact_id``):
  ``promised_amount`` / ``currency`` / ``promised_date``, ``contacted_on``, ``status``
  (``open`` | ``kept`` | ``broken`` | ``void`` = its case was resolved while it was
  open), and once decided ``paid_amount``, ``decided_on`` (the business date of the
  promise event) and ``event_id`` (the ``promise.kept`` / ``promise.broken`` emitted).
  A promise holds the case's ladder at the close of any business date before
  ``promised_date + 3`` (``hold_until`` stores that first date not held).
- ``disputes``: one row per ``dispute`` (keyed by its ``contact_id``): it holds the
  case's ladder through the close of ``hold_through`` (``contacted_on + 30``) unless
  ``resolved_by`` (the ``dispute_resolved`` contact id, ``resolved_on`` its date).
- ``payments``: the payments collections knows of, one row per ``installment.paid``
  (plan_id, seq, account_id, amount, currency, paid_on): what is paid towards a promise
  (from its ``contacted_on`` on).
"""

from sqlalchemy import Boolean, Column, Date, Integer, MetaData, String, Table, false, text
from sqlalchemy.engine import Connection

from shared.runtime.db import ID_COLUMN, BigId, Migration, Money, create_tables, qualified_table
from shared.runtime.retention import archive_tables

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


contacts = Table(
    "contacts",
    metadata,
    Column("contact_id", String(ID_COLUMN), primary_key=True),
    Column("case_id", String(200), nullable=False, index=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("outcome", String(32), nullable=False),
    Column("contacted_on", Date, nullable=False),
    Column("agent_ref", String(ID_COLUMN), nullable=False),
    Column("event_id", String(64), nullable=False),
)

promises = Table(
    "promises",
    metadata,
    Column("contact_id", String(ID_COLUMN), primary_key=True),
    Column("case_id", String(200), nullable=False, index=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("contacted_on", Date, nullable=False),
    Column("promised_date", Date, nullable=False),
    Column("promised_amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("hold_until", Date, nullable=False),  # promised_date + grace: first close not held
    Column("status", String(16), nullable=False),  # open | kept | broken | void
    Column("paid_amount", Money, nullable=True),
    Column("decided_on", Date, nullable=True),
    Column("event_id", String(64), nullable=True),  # the promise.kept / promise.broken
)

disputes = Table(
    "disputes",
    metadata,
    Column("contact_id", String(ID_COLUMN), primary_key=True),
    Column("case_id", String(200), nullable=False, index=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("contacted_on", Date, nullable=False),
    Column("hold_through", Date, nullable=False),
    Column("resolved_by", String(ID_COLUMN), nullable=True),
    Column("resolved_on", Date, nullable=True),
)

payments = Table(
    "payments",
    metadata,
    Column("plan_id", String(ID_COLUMN), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("paid_on", Date, nullable=False),
    Column("event_id", String(64), nullable=False),
)

SECOND_RELEASE = (contacts, promises, disputes, payments)


def _create_second_release(conn: Connection) -> None:
    """The contact-outcome tables on a database created before them (migration 1 of a
    newer database creates them already: ``create_all`` skips existing tables)."""
    metadata.create_all(conn, tables=list(SECOND_RELEASE))


#: The collections console's work queue reads open cases by days past due or by amount,
#: a page at a time (migration 4; services/collections/console/queries.py).
QUEUE_INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ix_cases_console_dpd", ("status", "days_past_due", "case_id")),
    ("ix_cases_console_amount", ("status", "overdue_amount", "case_id")),
)


def _index_the_queue(conn: Connection) -> None:
    table = qualified_table(conn, "cases")
    for name, columns in QUEUE_INDEXES:
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(columns)})"))


# --- retention (#16; services/collections/retention.py) -------------------------------

archive_metadata = MetaData()

#: ``<table>_archive``: cured and closed cases with their history, contacts, promises and
#: disputes (``cases`` first: ``shared.runtime.retention.restore`` probes it) ...
CASE_ARCHIVES = archive_tables(
    archive_metadata, cases, case_events, contacts, promises, disputes, key="case_id"
)
#: ... and completed or cancelled plans with their installments.
PLAN_ARCHIVES = archive_tables(archive_metadata, plans, plan_installments, key="plan_id")

MIGRATIONS = [
    Migration(
        1, "cases, case_events, positions, plans, plan_installments", create_tables(metadata)
    ),
    Migration(2, "plan_installments.removed (plan.adjusted)", _add_removed),
    Migration(
        3,
        "contacts, promises, disputes, payments (contact.recorded)",
        _create_second_release,
    ),  # fmt: skip
    Migration(4, "the console's work-queue indexes on cases", _index_the_queue),
    Migration(
        5, "retention: finished cases' and plans' archive tables", create_tables(archive_metadata)
    ),
]
