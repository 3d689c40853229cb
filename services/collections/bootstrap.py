"""Wiring of the collections service."""

from services.collections.handlers import HANDLERS
from services.collections.policy import load_policy
from services.collections.repository import CollectionsRepository
from services.collections.tables import MIGRATIONS
from shared.runtime import Service
from shared.runtime.settings import Settings

SERVICE = Service(
    name="collections",
    consumes=["installments.plans.v1"],
    handlers=HANDLERS,
    migrations=MIGRATIONS,
    policy=load_policy(Settings().policy_file),
    repository=CollectionsRepository,
)
