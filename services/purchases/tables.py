"""The purchases service's own tables."""

from collections.abc import Callable

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, func, select
from sqlalchemy.engine import Connection

from schemas.limits import ID_MAX
from services.purchases.policy import DEFAULT_POLICY
from shared.runtime.db import Migration, Money

metadata = MetaData()

purchases = Table(
    "purchases",
    metadata,
    Column("purchase_id", String(ID_MAX), primary_key=True),
    Column("account_id", String(ID_MAX), nullable=False, index=True),
    Column("amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("merchant_id", String(ID_MAX), nullable=False),
    Column("mcc", String(4), nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False),
    Column("refunded_total", Money, nullable=False),
    Column("event_id", String(64), nullable=False),
)

refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", String(ID_MAX), primary_key=True),
    Column("purchase_id", String(ID_MAX), nullable=False, index=True),
    Column("account_id", String(ID_MAX), nullable=False),
    Column("amount", Money, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("refunded_at", DateTime(timezone=True), nullable=False),
    Column("event_id", String(64), nullable=False),
)

# --- screening state (second release; CONTRACT §5.1), bounded -------------------------
#
# Per (account, card token): the posting times of the purchases within the velocity window
# of the card's latest one (older rows are deleted as newer purchases arrive). Keyed by
# account too: an account's purchases are one partition's, in order, so screening is
# deterministic on replay even if two accounts shared a token (each then has its own
# window).
screening_card_times = Table(
    "screening_card_times",
    metadata,
    Column("purchase_id", String(ID_MAX), primary_key=True),
    Column("account_id", String(ID_MAX), nullable=False, index=True),
    Column("card_token", String(ID_MAX), nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False),
)

# Per account: its last ``spike_history`` recorded amounts (``seq`` counts the account's
# recorded purchases; older rows are deleted).
screening_amounts = Table(
    "screening_amounts",
    metadata,
    Column("account_id", String(ID_MAX), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("amount", Money, nullable=False),
)

# Per account: every merchant it has bought from (one row per distinct merchant).
screening_merchants = Table(
    "screening_merchants",
    metadata,
    Column("account_id", String(ID_MAX), primary_key=True),
    Column("merchant_id", String(ID_MAX), primary_key=True),
)


def _create(*tables: Table) -> Callable[[Connection], None]:
    def _apply(conn: Connection) -> None:
        metadata.create_all(conn, tables=list(tables))

    return _apply


def _screening_state(conn: Connection) -> None:
    """Create the screening tables and fill them from the purchases already recorded: each
    account's merchants, and its last amounts (by posting time; as many as the default
    policy's history). Card times are not backfilled (the first release kept no card
    token): velocity counts from the upgrade on."""
    metadata.create_all(conn, tables=[screening_card_times, screening_amounts, screening_merchants])
    conn.execute(
        screening_merchants.insert().from_select(
            ["account_id", "merchant_id"],
            select(purchases.c.account_id, purchases.c.merchant_id).distinct(),
        )
    )
    ranked = select(
        purchases.c.account_id,
        purchases.c.amount,
        func.row_number()
        .over(
            partition_by=purchases.c.account_id,
            order_by=(purchases.c.posted_at.desc(), purchases.c.purchase_id.desc()),
        )
        .label("rank"),
    ).subquery()
    keep = DEFAULT_POLICY.spike_history
    conn.execute(
        screening_amounts.insert().from_select(
            ["account_id", "seq", "amount"],
            select(ranked.c.account_id, keep + 1 - ranked.c.rank, ranked.c.amount).where(
                ranked.c.rank <= keep
            ),
        )
    )


MIGRATIONS = [
    Migration(1, "purchases and refunds", _create(purchases, refunds)),
    Migration(2, "screening state (card times, amounts, merchants)", _screening_state),
]
