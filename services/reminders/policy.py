"""Reminders policy: when reminders go out and which template each uses
(CONTRACT §5 "Reminders").

Defaults are the contract's. Override in the policy file (``INSTALLMENTS_POLICY_FILE``,
YAML), section ``reminders``::

    reminders:
      offsets: [7, 3, 1, 0]          # days before the due date
      templates: {7: due_in_7_days, 3: due_in_3_days, 1: due_in_1_day, 0: due_today}
      max_business_day_jump_days: 7  # a larger jump of business date is held (DLQ)

An offset without a configured template gets ``due_in_<n>_days`` (``due_in_1_day``,
``due_today``). The channel is not policy: it is the account's ``contact.channel``.
Unknown keys are rejected.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.runtime.policy import load_section

SECTION = "reminders"


class RemindersPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    offsets: tuple[int, ...] = (7, 3, 1, 0)
    templates: dict[int, str] = Field(
        default_factory=lambda: {
            7: "due_in_7_days",
            3: "due_in_3_days",
            1: "due_in_1_day",
            0: "due_today",
        }
    )

    #: A business-day.closed more than this many days after the last closed one (or before
    #: it) is held: dead-lettered with reason ``business_date_jump`` until an operator
    #: re-drives it with a confirmation (see ``domain.business_date_jump``).
    max_business_day_jump_days: int = Field(default=7, ge=1)

    @field_validator("offsets")
    @classmethod
    def _offsets_distinct_not_negative(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("at least one reminder offset is required")
        if any(offset < 0 for offset in value):
            raise ValueError("reminder offsets are days before due: >= 0")
        if len(set(value)) != len(value):
            raise ValueError("reminder offsets must be distinct")
        return tuple(sorted(value, reverse=True))

    def template_for(self, offset: int) -> str:
        """The notification template for the reminder ``offset`` days before due."""
        if offset in self.templates:
            return self.templates[offset]
        if offset == 0:
            return "due_today"
        if offset == 1:
            return "due_in_1_day"
        return f"due_in_{offset}_days"


DEFAULT_POLICY = RemindersPolicy()


def load_policy(path: str | Path | None) -> RemindersPolicy:
    """The policy from the ``reminders`` section of the YAML file at ``path``
    (``None``, an empty file or no such section: the contract's defaults)."""
    return load_section(RemindersPolicy, path, SECTION)
