"""Small helpers the CLI commands share."""

from __future__ import annotations

import importlib

from shared.runtime.settings import Settings


def groups_of_pipeline(settings: Settings) -> dict[str, list[str]]:
    """Consumer group -> contract topics it consumes, for every service present."""
    from shared.cli import available_services

    groups = {}
    for name in available_services():
        service = importlib.import_module(f"services.{name}.bootstrap").SERVICE
        groups[settings.topic_prefix + service.consumer_group] = list(service.consumes)
    return groups
