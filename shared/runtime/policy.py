"""The services' policy file: one YAML mapping with a section per service.

Every number of the business rules has a default in the service's policy model
(``services/<name>/policy.py``); ``INSTALLMENTS_POLICY_FILE`` names a YAML file whose
section overrides them key by key, for example::

    offers:
      min_amount: "400.00"
    reminders:
      offsets_days: [5, 2, 0]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

PolicyT = TypeVar("PolicyT", bound=BaseModel)


def policy_section(path: str | Path, name: str) -> dict[str, Any]:
    """The mapping under ``name`` in the YAML file at ``path`` (empty when the file is
    empty or has no such section). Raises ``ValueError`` when the file or the section
    is not a mapping."""
    document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(document, dict):
        raise ValueError(f"{path}: the policy file must be a YAML mapping of sections")
    section = document.get(name) or {}
    if not isinstance(section, dict):
        raise ValueError(f"{path}: section {name!r} must be a mapping")
    return section


def load_section(model: type[PolicyT], path: str | Path | None, name: str) -> PolicyT:
    """``model`` validated from section ``name`` of the policy file at ``path`` (``None``,
    an empty file or no such section: the model's defaults). Raises on an unknown key
    or a bad value (pydantic's ``ValidationError``)."""
    if path is None:
        return model()
    return model.model_validate(policy_section(path, name))
