"""Wiring of the collections service: ``build(settings)`` is its composition root.

Importing this module reads no environment and no file; ``build`` does (the policy
file named by the settings).
"""

from __future__ import annotations

from functools import partial

from services.collections.handlers import HANDLERS, PRELOAD
from services.collections.policy import load_policy
from services.collections.repository import CollectionsRepository
from services.collections.tables import MIGRATIONS
from shared.runtime import Service
from shared.runtime.settings import Settings


def build(settings: Settings) -> Service:
    """The collections service, wired for ``settings``."""
    return Service(
        name="collections",
        handlers=HANDLERS,
        migrations=MIGRATIONS,
        policy=load_policy(settings.policy_file),
        repository=partial(CollectionsRepository, preload=PRELOAD),
    )
