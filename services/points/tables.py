"""The points service's own tables.

- ``accounts``: the tier in force (from ``account.upserted``) and whether the account
  ever had a plan (the first-plan bonus is paid once). The row is also the per-account
  lock: the batch repository (``repository.py``) creates the rows a batch touches and
  locks them all (``SELECT ... FOR UPDATE``, in account id order) before it reads the
  balances, because one account's events arrive on three topics and their partitions may
  be owned by different processes.
- ``purchases``: per recorded purchase, the tier that applied, the points earned and
  the points reversed so far (refunds), with the refunded total seen.
- ``plans``: per plan, the first-plan bonus granted and reversed so far (by the refunds
  of the plan's purchase: indexed by ``purchase_id``, migration 3), the principal
  returned by cancellations, and the redemption (requested, spent, fee amount).
- ``restorations`` (second release): one row per ``plan.adjusted`` (key
  ``adjusted:<refund_id>``) and per ``plan.cancelled`` asking points back (key
  ``cancelled``): the points asked (``points_to_restore``) and given (capped at what was
  redeemed for the plan less what earlier rows gave). The key makes a restoration
  happen once per cause even when the event is re-published under a new id; the sum of
  ``restored`` per plan is what was given back so far.
- ``ledger``: APPEND-ONLY. One row per points movement (signed ``points``), with the id
  of the ``points.*`` event that announced it and ``balance_after``. The balance is
  always ``SUM(points)`` of an account's rows; nothing is ever updated or deleted
  (migration 2 installs triggers that refuse UPDATE and DELETE).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Connection

from shared.runtime.db import ID_COLUMN, Migration, Money, alter_column_types, create_tables

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(ID_COLUMN), primary_key=True),
    # None until the account is upserted (a purchase or plan may arrive first).
    Column("tier", String(16), nullable=True),
    Column("had_plan", Boolean, nullable=False, default=False),
    Column("first_plan_id", String(ID_COLUMN), nullable=True),
)

purchases = Table(
    "purchases",
    metadata,
    Column("purchase_id", String(ID_COLUMN), primary_key=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    # The tier in force when the purchase was recorded, and whether it was assumed
    # (policy.unknown_account_tier) because the account was not known yet.
    Column("tier", String(16), nullable=False),
    Column("tier_assumed", Boolean, nullable=False),
    Column("points_earned", BigInteger, nullable=False),
    Column("points_reversed", BigInteger, nullable=False),
    Column("refunded_total", Money, nullable=False),
    Column("event_id", String(64), nullable=False),
)

plans = Table(
    "plans",
    metadata,
    Column("plan_id", String(ID_COLUMN), primary_key=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    # Indexed: a refund.recorded finds the purchase's plan with a bonus (migration 3 adds
    # the index to databases created before it; a new database gets it in migration 1).
    Column("purchase_id", String(ID_COLUMN), nullable=False, index=True),
    Column("principal", Money, nullable=False),
    Column("total_fee", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    # First-plan bonus: granted (0 unless the account's first plan) and reversed so far
    # by the refunds of the purchase (floor(bonus x refunded / amount) in all).
    Column("bonus_points", BigInteger, nullable=False),
    # "purchase": the purchase's recorded points; "principal": computed from the plan's
    # principal and the account's tier because plan.created arrived before the purchase.
    Column("bonus_basis", String(16), nullable=False),
    Column("bonus_reversed", BigInteger, nullable=False),
    Column("principal_returned", Money, nullable=False),
    Column("redeem_requested", BigInteger, nullable=False),
    Column("points_redeemed", BigInteger, nullable=False),
    Column("fee_redeemed", Money, nullable=False),
    Column("event_id", String(64), nullable=False),
)

restorations = Table(
    "restorations",
    metadata,
    Column("plan_id", String(ID_COLUMN), primary_key=True),
    Column("cause_key", String(200), primary_key=True),  # cancelled | adjusted:<refund_id>
    Column("account_id", String(ID_COLUMN), nullable=False),
    Column("reason", String(32), nullable=False),  # plan_cancelled | plan_adjusted
    Column("requested", BigInteger, nullable=False),
    Column("restored", BigInteger, nullable=False),
    Column("cause_id", String(64), nullable=False),
    Column("event_id", String(64), nullable=True),  # the points.restored, when any
)

ledger = Table(
    "ledger",
    metadata,
    Column(
        "entry_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("points", BigInteger, nullable=False),  # signed: > 0 credit, < 0 debit
    Column("balance_after", BigInteger, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("purchase_id", String(ID_COLUMN), nullable=True),
    Column("plan_id", String(ID_COLUMN), nullable=True),
    Column("event_id", String(64), nullable=False),  # the points.* event announcing it
    Column("cause_id", String(64), nullable=False),  # the event that caused it
    Column("created_at", DateTime(timezone=True), nullable=False),  # bookkeeping only
    UniqueConstraint("event_id", name="ledger_event_id_key"),
)


def _forbid_ledger_changes(conn: Connection) -> None:
    """Make the ledger append-only in the database itself: UPDATE and DELETE fail."""
    if conn.dialect.name == "postgresql":
        schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(None)
        table = f'"{schema}".ledger' if schema else "ledger"
        function = f'"{schema}".ledger_append_only' if schema else "ledger_append_only"
        conn.execute(
            text(
                f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'the points ledger is append-only'; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON {table}"
                f" FOR EACH ROW EXECUTE FUNCTION {function}()"
            )
        )
    elif conn.dialect.name == "sqlite":
        for op in ("UPDATE", "DELETE"):
            conn.execute(
                text(
                    f"CREATE TRIGGER IF NOT EXISTS ledger_no_{op.lower()} BEFORE {op} ON ledger"
                    " BEGIN SELECT RAISE(ABORT, 'the points ledger is append-only'); END"
                )
            )


def _index_plans_by_purchase(conn: Connection) -> None:
    """The index of ``plans.purchase_id`` (refunds reverse the first-plan bonus).

    ``IF NOT EXISTS``: migration 1 creates the tables from the current metadata, so a
    database created after this change has the index already.
    """
    schema = None
    if conn.dialect.name == "postgresql":
        schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(None)
    table = f'"{schema}".plans' if schema else "plans"
    conn.execute(text(f"CREATE INDEX IF NOT EXISTS {PLANS_BY_PURCHASE} ON {table} (purchase_id)"))


def _all_steps(*steps: Callable[[Connection], None]) -> Callable[[Connection], None]:
    def _apply(conn: Connection) -> None:
        for step in steps:
            step(conn)

    return _apply


#: The name SQLAlchemy gives ``index=True`` on plans.purchase_id (``ix_<table>_<column>``).
PLANS_BY_PURCHASE = "ix_plans_purchase_id"

MIGRATIONS = [
    Migration(1, "accounts, purchases, plans, ledger", create_tables(metadata)),
    Migration(2, "ledger is append-only", _forbid_ledger_changes),
    Migration(3, "plans indexed by purchase_id", _index_plans_by_purchase),
    # schemas.limits: points are 64-bit (the points of an amount of 3,000,000,000.00
    # overflowed the 32-bit columns).
    Migration(
        4,
        "points columns BIGINT",
        _all_steps(
            alter_column_types(purchases, "points_earned", "points_reversed"),
            alter_column_types(
                plans, "bonus_points", "bonus_reversed", "redeem_requested", "points_redeemed"
            ),
            alter_column_types(ledger, "points", "balance_after"),
        ),
    ),
    # second release: points given back when a cancellation or adjustment removes
    # waived fees (a database created before it gets the new table; create_all skips
    # the existing ones).
    Migration(5, "restorations", create_tables(metadata)),
]
