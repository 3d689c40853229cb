"""Wiring of the points service: ``build(settings)`` is its composition root.

Importing this module reads no environment and no file; ``build`` does (the policy
file named by the settings).
"""

from __future__ import annotations

from functools import partial

from services.points.handlers import HANDLERS, PRELOAD
from services.points.policy import load_policy
from services.points.repository import PointsRepository
from services.points.tables import MIGRATIONS
from shared.runtime import Service
from shared.runtime.settings import Settings


def build(settings: Settings) -> Service:
    """The points service, wired for ``settings``."""
    return Service(
        name="points",
        handlers=HANDLERS,
        migrations=MIGRATIONS,
        policy=load_policy(settings.policy_file),
        repository=partial(PointsRepository, preload=PRELOAD),
    )
