"""Wiring of the purchases service."""

from services.purchases.handlers import HANDLERS
from services.purchases.repository import PurchasesRepository
from services.purchases.tables import MIGRATIONS
from shared.runtime import Service

SERVICE = Service(
    name="purchases",
    consumes=["card.purchases.v1"],
    handlers=HANDLERS,
    migrations=MIGRATIONS,
    repository=PurchasesRepository,
)
