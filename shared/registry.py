"""The one place that knows the services: their names, how each is built, its consumer
group (with the topic prefix) and the topics it consumes.

Layer order (imports point down only; tests/unit/test_architecture.py enforces it)::

    cli  ->  tools  ->  ops  ->  localstack  ->  registry  ->  services  ->  runtime  ->  schemas

Everything above the services asks this module, never ``services.<name>`` directly.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from services.collections.bootstrap import build as build_collections
from services.collections.cli import app as collections_app
from services.collections.retention import GROUPS as collections_retention
from services.offers.bootstrap import build as build_offers
from services.offers.retention import GROUPS as offers_retention
from services.points.bootstrap import build as build_points
from services.purchases.bootstrap import build as build_purchases
from services.reminders.bootstrap import build as build_reminders
from services.reminders.retention import GROUPS as reminders_retention
from shared.runtime import Service
from shared.runtime.retention import ArchiveGroup
from shared.runtime.settings import Settings

#: Service name -> its composition root, in pipeline order.
BUILDERS: dict[str, Callable[[Settings], Service]] = {
    "purchases": build_purchases,
    "offers": build_offers,
    "points": build_points,
    "reminders": build_reminders,
    "collections": build_collections,
}
SERVICE_NAMES: tuple[str, ...] = tuple(BUILDERS)
#: What each service archives (``services/<name>/retention.py``); every service's inbox
#: is pruned (README "Retention").
RETENTION: dict[str, tuple[ArchiveGroup, ...]] = {
    "purchases": (),
    "offers": offers_retention,
    "points": (),
    "reminders": reminders_retention,
    "collections": collections_retention,
}
#: Commands a service brings to ``installments`` (name -> typer app, help).
SERVICE_CLIS: dict[str, tuple[typer.Typer, str]] = {
    "collections": (collections_app, "Collections: open cases by level, risk reserve."),
}


class UnknownService(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown service {name!r}; one of: {', '.join(SERVICE_NAMES)}")


def build(name: str, settings: Settings) -> Service:
    """The service ``name``, wired for ``settings``."""
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise UnknownService(name) from None
    return builder(settings)


def group_name(settings: Settings, name: str) -> str:
    """The consumer group of service ``name`` as the runtime names it (topic prefix included)."""
    if name not in BUILDERS:
        raise UnknownService(name)
    return settings.consumer_group(name)


def service_names() -> list[str]:
    return list(SERVICE_NAMES)


def load_service(name: str, settings: Settings | None = None) -> Service:
    """``build`` with the process's settings when none are given."""
    return build(name, settings or Settings())


def consumed_topics(settings: Settings, name: str) -> list[str]:
    """The contract topics service ``name`` consumes (from its handler table)."""
    return build(name, settings).consumes


def groups(settings: Settings) -> dict[str, list[str]]:
    """Consumer group -> the contract topics it consumes, for every service."""
    return {group_name(settings, name): consumed_topics(settings, name) for name in BUILDERS}
