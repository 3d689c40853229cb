"""The offers service's own tables (SQLAlchemy Core).

Money is ``shared.runtime.db.Money`` (exact; text on SQLite, so money is never compared in
SQL here: the handlers compare Decimals in Python). Rates (``apr``,
``monthly_fee_rate``) are not money: they are kept as their decimal text.
Boolean ``open`` flags exist so that the end of day can select what is still owed
(and which offers are still open) without arithmetic on money columns.
"""

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)
from sqlalchemy.schema import CreateColumn

from shared.runtime.db import (
    ID_COLUMN,
    Migration,
    Money,
    alter_column_types,
    create_tables,
    qualified_table,
)
from shared.runtime.retention import archive_tables

metadata = MetaData()

#: The local view of each account (last ``account.upserted`` wins; the topic is compacted).
accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(ID_COLUMN), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("segment", String(32), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("credit_limit", Money, nullable=False),
    Column("installment_limit", Money, nullable=True),  # None: the policy's share
    Column("risk_score", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("auto_convert_enabled", Boolean, nullable=False),
    Column("auto_convert_threshold", Money, nullable=True),
    Column("auto_convert_tenor", Integer, nullable=True),
    Column("event_id", String(64), nullable=False),
    # pre_approval (second release; all three None: not pre-approved). The discount is a
    # share of the monthly rate, kept as its decimal text (not money).
    Column("pre_approval_limit", Money, nullable=True),
    Column("pre_approval_valid_to", Date, nullable=True),
    Column("pre_approval_fee_discount", String(24), nullable=True),
)

#: The account's money position with us: credit from overpayments (and refunds of
#: principal already paid) and the delinquency flag (the business date of the last
#: end of day that found it overdue; None when it is not known to be overdue).
positions = Table(
    "positions",
    metadata,
    Column("account_id", String(ID_COLUMN), primary_key=True),
    Column("credit", Money, nullable=False),
    Column("overdue_as_of", Date, nullable=True),
)

#: Every recorded purchase seen (dedupe on purchase_id) and what became of it.
purchases = Table(
    "purchases",
    metadata,
    Column("purchase_id", String(ID_COLUMN), primary_key=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("mcc", String(4), nullable=False),
    Column("merchant_id", String(ID_COLUMN), nullable=False),
    Column("category", String(ID_COLUMN), nullable=True),
    Column("posted_on", Date, nullable=False),
    Column("refunded_total", Money, nullable=False),
    # offered | not_eligible | auto_converted | fraud_review (flagged, review open) |
    # fraud_confirmed
    Column("outcome", String(16), nullable=False),
    Column("event_id", String(64), nullable=False),
    # the date the purchase was considered as of, when not its posting date: a flagged
    # purchase the fraud team cleared counts from the review's closed_on (offer expiry,
    # due dates)
    Column("considered_on", Date, nullable=True),
)

#: The fraud team's closed reviews (``purchase.review-closed``), one per purchase (the
#: first wins). Kept also when the purchase is not recorded yet: it applies on arrival.
fraud_reviews = Table(
    "fraud_reviews",
    metadata,
    Column("purchase_id", String(ID_COLUMN), primary_key=True),
    Column("account_id", String(ID_COLUMN), nullable=False),
    Column("outcome", String(16), nullable=False),  # cleared | confirmed_fraud
    Column("closed_on", Date, nullable=False),
    Column("event_id", String(64), nullable=False),
)

#: Offers made; status open | accepted | declined | expired | refunded.
offers = Table(
    "offers",
    metadata,
    Column("offer_id", String(140), primary_key=True),
    Column("purchase_id", String(ID_COLUMN), nullable=False, unique=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("principal", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("expires_on", Date, nullable=False),
    Column("promotion", String(ID_COLUMN), nullable=True),
    Column("status", String(16), nullable=False),
    Column("open", Boolean, nullable=False),
    Column("event_id", String(64), nullable=False),
    Index("ix_offers_open_expires_on", "open", "expires_on"),
)

offer_options = Table(
    "offer_options",
    metadata,
    Column("offer_id", String(140), primary_key=True),
    Column("tenor_months", Integer, primary_key=True),
    Column("fee_model", String(16), nullable=False),
    Column("monthly_fee_rate", String(24), nullable=False),
    Column("total_fee", Money, nullable=False),
    Column("first_installment", Money, nullable=False),
    Column("regular_installment", Money, nullable=False),
    Column("apr", String(24), nullable=False),
)

#: Plans; status active | completed | paid_off | cancelled.
#: principal_returned / fee_returned add up what refunds took off the plan.
plans = Table(
    "plans",
    metadata,
    Column("plan_id", String(140), primary_key=True),
    Column("purchase_id", String(ID_COLUMN), nullable=False, unique=True),
    Column("offer_id", String(140), nullable=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("principal", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("tenor_months", Integer, nullable=False),
    Column("total_fee", Money, nullable=False),
    Column("apr", String(24), nullable=False),
    Column("auto_converted", Boolean, nullable=False),
    Column("redeem_points", BigInteger, nullable=False),
    Column("posted_on", Date, nullable=False),
    Column("plan_order", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("principal_returned", Money, nullable=False),
    Column("fee_returned", Money, nullable=False),
    Column("event_id", String(64), nullable=False),
    # points spent on this plan's fee waivers (points.redeemed) and given back so far
    # (points_to_restore of its plan.adjusted / plan.cancelled): restored <= redeemed
    Column("points_redeemed", BigInteger, nullable=False, server_default="0"),
    Column("points_restored", BigInteger, nullable=False, server_default="0"),
)

#: One row per scheduled installment; ``open`` while anything is left to pay on it.
installments = Table(
    "installments",
    metadata,
    Column("plan_id", String(140), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("account_id", String(ID_COLUMN), nullable=False),
    Column("due_date", Date, nullable=False),
    Column("principal", Money, nullable=False),
    Column("fee", Money, nullable=False),
    Column("principal_paid", Money, nullable=False),
    Column("fee_paid", Money, nullable=False),
    Column("fee_waived", Money, nullable=False),
    Column("open", Boolean, nullable=False),
    Index("ix_installments_account_open", "account_id", "open"),
    Index("ix_installments_open_due_date", "open", "due_date"),
)

#: Payments applied (dedupe on payment_id).
payments = Table(
    "payments",
    metadata,
    Column("payment_id", String(ID_COLUMN), primary_key=True),
    Column("account_id", String(ID_COLUMN), nullable=False, index=True),
    Column("amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("received_on", Date, nullable=False),
    Column("event_id", String(64), nullable=False),
)

#: Refunds applied (dedupe on refund_id).
refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", String(ID_COLUMN), primary_key=True),
    Column("purchase_id", String(ID_COLUMN), nullable=False, index=True),
    Column("account_id", String(ID_COLUMN), nullable=False),
    Column("amount", Money, nullable=False),
    Column("refunded_on", Date, nullable=False),
    Column("event_id", String(64), nullable=False),
)

#: Business dates closed (each processed once).
business_days = Table(
    "business_days",
    metadata,
    Column("business_date", Date, primary_key=True),
    Column("event_id", String(64), nullable=False),
)

#: Fee waivers bought with points (one per points.redeemed event).
waivers = Table(
    "waivers",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("plan_id", String(140), nullable=False, index=True),
    Column("points", BigInteger, nullable=False),
    Column("amount", Money, nullable=False),
)


def add_columns(table: Table, *names: str) -> Callable[[Connection], None]:
    """A migration step that adds ``names`` (as defined in ``table``) where missing: a
    database created at version 1 by this code has them already (``create_all``)."""

    def _apply(conn: Connection) -> None:
        name = qualified_table(conn, table.name)
        if conn.dialect.name == "postgresql":
            for column in names:
                spec = CreateColumn(table.c[column]).compile(dialect=conn.dialect)
                conn.execute(text(f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {spec}"))
            return
        present = {row[1] for row in conn.execute(text(f"PRAGMA table_info({name})"))}
        for column in names:
            if column not in present:
                spec = CreateColumn(table.c[column]).compile(dialect=conn.dialect)
                conn.execute(text(f"ALTER TABLE {name} ADD COLUMN {spec}"))

    return _apply


def _second_release(conn: Connection) -> None:
    """Pre-approval, fraud reviews, points restored (CONTRACT 5.1)."""
    add_columns(
        accounts, "pre_approval_limit", "pre_approval_valid_to", "pre_approval_fee_discount"
    )(conn)
    add_columns(purchases, "considered_on")(conn)
    add_columns(plans, "points_redeemed", "points_restored")(conn)
    create_tables(metadata)(conn)  # fraud_reviews (create_all skips existing tables)
    plans_table, waivers_table = qualified_table(conn, "plans"), qualified_table(conn, "waivers")
    conn.execute(
        text(
            f"UPDATE {plans_table} SET points_redeemed = (SELECT COALESCE(SUM(w.points), 0)"
            f" FROM {waivers_table} w WHERE w.plan_id = {plans_table}.plan_id)"
        )
    )


MIGRATIONS = [
    Migration(1, "offers, plans, installments and account views", create_tables(metadata)),
    # schemas.limits: points are 64-bit (a redemption of 3,000,000,000 points overflowed).
    Migration(2, "plans.redeem_points BIGINT", alter_column_types(plans, "redeem_points")),
    Migration(3, "waivers.points BIGINT", alter_column_types(waivers, "points")),
    Migration(4, "pre-approval, fraud reviews, points restored", _second_release),
]


# --- retention (#16; services/offers/retention.py) -------------------------------------

archive_metadata = MetaData()

#: ``installments_archive``: the schedules of finished plans (every installment paid or
#: removed, the plan completed, paid off or cancelled). The plan rows stay: an account's
#: plans are few, and they answer a late refund (credit), ``plan_order`` and "already
#: converted" exactly as before.
ARCHIVES = archive_tables(archive_metadata, installments, key="plan_id")

MIGRATIONS.append(Migration(5, "retention: installments_archive", create_tables(archive_metadata)))
