"""The purchases service's own tables."""

from sqlalchemy import Column, DateTime, MetaData, String, Table

from schemas.limits import ID_MAX
from shared.runtime.db import Migration, Money, create_tables

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

MIGRATIONS = [Migration(1, "purchases and refunds", create_tables(metadata))]
