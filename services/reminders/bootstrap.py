"""Wiring of the reminders service."""

from services.reminders.handlers import HANDLERS
from services.reminders.policy import load_policy
from services.reminders.repository import RemindersRepository
from services.reminders.tables import MIGRATIONS
from shared.runtime import Service
from shared.runtime.settings import Settings

SERVICE = Service(
    name="reminders",
    consumes=["installments.plans.v1", "card.accounts.v1", "card.business-days.v1"],
    handlers=HANDLERS,
    migrations=MIGRATIONS,
    policy=load_policy(Settings().policy_file),
    repository=RemindersRepository,
)
