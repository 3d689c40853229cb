"""Wiring of the offers service."""

from services.offers.handlers import HANDLERS
from services.offers.policy import load_policy
from services.offers.repository import OffersRepository
from services.offers.tables import MIGRATIONS
from shared.runtime import Service
from shared.runtime.settings import Settings

SERVICE = Service(
    name="offers",
    consumes=[
        "purchases.recorded.v1",
        "card.accounts.v1",
        "installments.decisions.v1",
        "card.payments.v1",
        "card.business-days.v1",
        "points.ledger.v1",
    ],
    handlers=HANDLERS,
    migrations=MIGRATIONS,
    policy=load_policy(Settings().policy_file),
    repository=OffersRepository,
)
