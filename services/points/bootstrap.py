"""Wiring of the points service."""

from services.points.handlers import HANDLERS
from services.points.policy import load_policy
from services.points.repository import PointsRepository
from services.points.tables import MIGRATIONS
from shared.runtime import Service
from shared.runtime.settings import Settings

SERVICE = Service(
    name="points",
    consumes=["purchases.recorded.v1", "card.accounts.v1", "installments.plans.v1"],
    handlers=HANDLERS,
    migrations=MIGRATIONS,
    policy=load_policy(Settings().policy_file),
    repository=PointsRepository,
)
