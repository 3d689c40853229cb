"""Wiring of the reminders service: ``build(settings)`` is its composition root.

Importing this module reads no environment and no file; ``build`` does (the policy
file named by the settings).
"""

from __future__ import annotations

from functools import partial

from services.reminders.handlers import HANDLERS, PRELOAD
from services.reminders.policy import load_policy
from services.reminders.repository import RemindersRepository
from services.reminders.tables import MIGRATIONS
from shared.runtime import Service
from shared.runtime.settings import Settings


def build(settings: Settings) -> Service:
    """The reminders service, wired for ``settings``."""
    return Service(
        name="reminders",
        handlers=HANDLERS,
        migrations=MIGRATIONS,
        policy=load_policy(settings.policy_file),
        repository=partial(RemindersRepository, preload=PRELOAD),
    )
