"""The five services, built once with the default settings (as ``python -m services.<name>``
would build them), for tests that run them through the harness or on the real broker."""

from __future__ import annotations

from shared import registry
from shared.runtime.settings import Settings

_DEFAULTS = Settings(environment="test")

PURCHASES = registry.build("purchases", _DEFAULTS)
OFFERS = registry.build("offers", _DEFAULTS)
POINTS = registry.build("points", _DEFAULTS)
REMINDERS = registry.build("reminders", _DEFAULTS)
COLLECTIONS = registry.build("collections", _DEFAULTS)
