"""The reminders service's own tables.

- ``accounts``: the latest ``account.upserted`` contact of each account (channel,
  locale, opaque contact reference; never a phone number or e-mail).
- ``plans``: plans the service has heard of and whether they still take reminders
  (``active``; ``completed`` / ``cancelled`` stop them).
- ``installments``: what the service knows of each installment: due date, amount
  outstanding, paid or not, and the newest business date of an ``installment.due-soon``
  seen for it (an older one is stale).
- ``schedule_lines`` (second release): the latest ``plan.adjusted`` schedule of each
  adjusted plan, one row per installment it ever listed; ``in_schedule`` false for an
  installment a later adjustment left out. A plan without rows was never adjusted.
- ``business_days``: every ``business-day.closed`` seen; the newest is the service's
  business clock: a due-soon for an older business date is stale.
- ``reminders``: one row per (plan, seq, offset) handled: ``sent`` (a
  ``reminder.requested`` went out) or ``skipped`` with a reason (``superseded`` by a more
  urgent one after an outage, ``account_unknown``). The primary key makes every offset
  at most once per installment.
"""

from sqlalchemy import Boolean, Column, Date, Integer, MetaData, String, Table

from shared.runtime.db import ID_COLUMN, Migration, Money, create_tables
from shared.runtime.retention import archive_tables

metadata = MetaData()

ACTIVE, COMPLETED, CANCELLED = "active", "completed", "cancelled"
SENT, SKIPPED = "sent", "skipped"
SUPERSEDED, ACCOUNT_UNKNOWN = "superseded", "account_unknown"

business_days = Table(
    "business_days",
    metadata,
    Column("business_date", Date, primary_key=True),
    Column("event_id", String(64), nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(ID_COLUMN), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("locale", String(40), nullable=False),
    Column("contact_ref", String(ID_COLUMN), nullable=False),
    Column("status", String(16), nullable=False),
    Column("event_id", String(64), nullable=False),
)

plans = Table(
    "plans",
    metadata,
    Column("plan_id", String(ID_COLUMN), primary_key=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("event_id", String(64), nullable=False),
)

installments = Table(
    "installments",
    metadata,
    Column("plan_id", String(ID_COLUMN), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("due_date", Date, nullable=True),  # unknown when installment.paid came first
    Column("amount_outstanding", Money, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("paid", Boolean, nullable=False),
    Column("paid_on", Date, nullable=True),
    Column("last_business_date", Date, nullable=True),  # newest due-soon seen
)

schedule_lines = Table(
    "schedule_lines",
    metadata,
    Column("plan_id", String(ID_COLUMN), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("account_id", String(ID_COLUMN), nullable=False),
    Column("due_date", Date, nullable=False),
    Column("amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("in_schedule", Boolean, nullable=False),
    Column("event_id", String(64), nullable=False),  # the plan.adjusted that wrote it
)

reminders = Table(
    "reminders",
    metadata,
    Column("plan_id", String(ID_COLUMN), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("offset_days", Integer, primary_key=True),  # days before due
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("status", String(16), nullable=False),  # sent | skipped
    Column("reason", String(32), nullable=True),  # why skipped
    Column("reminder_id", String(200), nullable=False),
    Column("business_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("channel", String(16), nullable=True),
    Column("template", String(200), nullable=True),
    Column("amount_due", Money, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("cause_event_id", String(64), nullable=False),
    Column("event_id", String(64), nullable=True),  # the reminder.requested id when sent
)

# --- retention (#16; services/reminders/retention.py) ---------------------------------

archive_metadata = MetaData()

#: ``<table>_archive``: a closed plan (completed or cancelled) with its installments, the
#: reminders handled for them and its adjusted schedule. ``plans`` first: every archived
#: plan has its row there (``shared.runtime.retention.restore`` probes it).
ARCHIVES = archive_tables(
    archive_metadata, plans, installments, reminders, schedule_lines, key="plan_id"
)

MIGRATIONS = [
    Migration(
        1, "business days, accounts, plans, installments, reminders", create_tables(metadata)
    ),
    # second release: plan.adjusted (create_all skips the tables that exist)
    Migration(2, "schedule_lines", create_tables(metadata)),
    Migration(3, "retention: closed plans' archive tables", create_tables(archive_metadata)),
]
