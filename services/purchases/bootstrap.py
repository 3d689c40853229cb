"""Wiring of the purchases service: ``build(settings)`` is its composition root.

Importing this module reads no environment and no file; ``build`` does (the policy
file named by the settings).
"""

from __future__ import annotations

from functools import partial

from services.purchases.handlers import HANDLERS, PRELOAD
from services.purchases.policy import load_policy
from services.purchases.repository import PurchasesRepository
from services.purchases.tables import MIGRATIONS
from shared.runtime import Service
from shared.runtime.settings import Settings


def build(settings: Settings) -> Service:
    """The purchases service, wired for ``settings``."""
    return Service(
        name="purchases",
        handlers=HANDLERS,
        migrations=MIGRATIONS,
        policy=load_policy(settings.policy_file),
        repository=partial(PurchasesRepository, preload=PRELOAD),
    )
