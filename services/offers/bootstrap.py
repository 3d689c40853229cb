"""Wiring of the offers service: ``build(settings)`` is its composition root.

Importing this module reads no environment and no file; ``build`` does (the policy
file named by the settings).
"""

from __future__ import annotations

from functools import partial

from services.offers.handlers import HANDLERS, PRELOAD
from services.offers.policy import load_policy
from services.offers.repository import OffersRepository
from services.offers.tables import MIGRATIONS
from shared.runtime import Service
from shared.runtime.settings import Settings


def build(settings: Settings) -> Service:
    """The offers service, wired for ``settings``."""
    return Service(
        name="offers",
        handlers=HANDLERS,
        migrations=MIGRATIONS,
        policy=load_policy(settings.policy_file),
        repository=partial(OffersRepository, preload=PRELOAD),
    )
