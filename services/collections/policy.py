"""Collections policy: the escalation ladder, the legal guard, buckets, charge-off and
risk-reserve rates as data (CONTRACT §5 "Collections").

Defaults are the contract's. Override in the policy file (``INSTALLMENTS_POLICY_FILE``,
YAML), section ``collections``; a ladder rung or a bucket may be written as a mapping
or as a list::

    collections:
      ladder:                       # [min_dpd, level, action]; levels 1, 2, 3, ... in order
        - [1, 1, sms]
        - [8, 2, sms_push]
        - [15, 3, call]
        - [31, 4, letter]
        - [61, 5, agency]
        - [91, 6, legal]
      legal_level: 6                # the guarded level
      legal_min_overdue: "50000.00"
      legal_min_contacts: 2         # contacts, each >= legal_contact_gap_days after the previous
      legal_contact_gap_days: 30
      contact_actions: [sms, sms_push, call, letter]   # raised levels that count as contacts
      contact_outcomes: [reached, no_answer, wrong_party]  # contact.recorded outcomes that do
      promise_max_days: 30          # promised_date <= contacted_on + this (else DLQ)
      promise_grace_days: 3         # a promise holds the ladder before promised_date + this;
                                    # the close of promised_date + this decides it
      dispute_max_days: 30          # a dispute holds through the close of contacted_on + this
      buckets:                      # [name, min_dpd, max_dpd or null]; contiguous from DPD 1
        - [M1, 1, 30]
        - [M2, 31, 60]
        - [M3, 61, 90]
        - [M4+, 91, null]
      charge_off_dpd: 180
      reserve_rates: {current: "0.01", M1: "0.05", M2: "0.20", M3: "0.50", M4+: "1.00"}
      minor_unit: "0.01"

Unknown keys are rejected.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.runtime.policy import load_section

SECTION = "collections"
CURRENT = "current"  # the reserve bucket of exposures not past due


class Rung(BaseModel):
    """One step of the ladder: from ``min_dpd`` days past due, ``level`` / ``action``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_dpd: int = Field(ge=1)
    level: int = Field(ge=1)
    action: str

    @model_validator(mode="before")
    @classmethod
    def _from_sequence(cls, value: Any) -> Any:
        if isinstance(value, Sequence) and not isinstance(value, str):
            return dict(zip(("min_dpd", "level", "action"), value, strict=True))
        return value


class Bucket(BaseModel):
    """A delinquency bucket: DPD from ``min_dpd`` to ``max_dpd`` (None: no upper bound)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    min_dpd: int = Field(ge=1)
    max_dpd: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_sequence(cls, value: Any) -> Any:
        if isinstance(value, Sequence) and not isinstance(value, str):
            return dict(zip(("name", "min_dpd", "max_dpd"), value, strict=True))
        return value


def _default_ladder() -> tuple[Rung, ...]:
    rows = [(1, 1, "sms"), (8, 2, "sms_push"), (15, 3, "call"),
            (31, 4, "letter"), (61, 5, "agency"), (91, 6, "legal")]  # fmt: skip
    return tuple(Rung(min_dpd=d, level=lv, action=a) for d, lv, a in rows)


def _default_buckets() -> tuple[Bucket, ...]:
    rows = [("M1", 1, 30), ("M2", 31, 60), ("M3", 61, 90), ("M4+", 91, None)]
    return tuple(Bucket(name=n, min_dpd=lo, max_dpd=hi) for n, lo, hi in rows)


class CollectionsPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ladder: tuple[Rung, ...] = Field(default_factory=_default_ladder)
    legal_level: int = 6
    legal_min_overdue: Decimal = Field(default=Decimal("50000.00"), ge=0)
    legal_min_contacts: int = Field(default=2, ge=0)
    legal_contact_gap_days: int = Field(default=30, ge=0)
    contact_actions: tuple[str, ...] = ("sms", "sms_push", "call", "letter")
    contact_outcomes: tuple[str, ...] = ("reached", "no_answer", "wrong_party")
    promise_max_days: int = Field(default=30, ge=0)
    promise_grace_days: int = Field(default=3, ge=0)
    dispute_max_days: int = Field(default=30, ge=0)
    buckets: tuple[Bucket, ...] = Field(default_factory=_default_buckets)
    charge_off_dpd: int = Field(default=180, ge=1)
    reserve_rates: dict[str, Decimal] = Field(
        default_factory=lambda: {
            CURRENT: Decimal("0.01"),
            "M1": Decimal("0.05"),
            "M2": Decimal("0.20"),
            "M3": Decimal("0.50"),
            "M4+": Decimal("1.00"),
        }
    )
    minor_unit: Decimal = Field(default=Decimal("0.01"), gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> CollectionsPolicy:
        # The ladder: levels 1..n in order, thresholds strictly increasing.
        if not self.ladder:
            raise ValueError("the ladder needs at least one rung")
        if [r.level for r in self.ladder] != list(range(1, len(self.ladder) + 1)):
            raise ValueError("ladder levels must be 1, 2, 3, ... in order")
        thresholds = [r.min_dpd for r in self.ladder]
        if any(b <= a for a, b in itertools.pairwise(thresholds)):
            raise ValueError("ladder min_dpd must be strictly increasing")
        if self.legal_level not in {r.level for r in self.ladder}:
            raise ValueError(f"legal_level {self.legal_level} is not a ladder level")
        # Buckets: contiguous from DPD 1, only the last one open-ended.
        if not self.buckets:
            raise ValueError("at least one bucket is required")
        expected_min = 1
        for i, bucket in enumerate(self.buckets):
            if bucket.min_dpd != expected_min:
                raise ValueError(f"bucket {bucket.name} must start at DPD {expected_min}")
            last = i == len(self.buckets) - 1
            if bucket.max_dpd is None:
                if not last:
                    raise ValueError(f"only the last bucket may be open-ended ({bucket.name})")
            else:
                if bucket.max_dpd < bucket.min_dpd:
                    raise ValueError(f"bucket {bucket.name}: max_dpd < min_dpd")
                expected_min = bucket.max_dpd + 1
        if self.buckets[-1].max_dpd is not None:
            raise ValueError("the last bucket must be open-ended (max_dpd: null)")
        names = [CURRENT] + [b.name for b in self.buckets]
        if len(set(names)) != len(names):
            raise ValueError("bucket names must be distinct and not 'current'")
        # Reserve rates: exactly one per bucket plus 'current', each in [0, 1].
        if set(self.reserve_rates) != set(names):
            raise ValueError(f"reserve_rates needs exactly the keys {names}")
        for name, rate in self.reserve_rates.items():
            if not Decimal(0) <= rate <= Decimal(1):
                raise ValueError(f"reserve rate {name} must be between 0 and 1")
        return self

    def rung(self, level: int) -> Rung:
        return self.ladder[level - 1]


DEFAULT_POLICY = CollectionsPolicy()


def load_policy(path: str | Path | None) -> CollectionsPolicy:
    """The policy from the ``collections`` section of the YAML file at ``path``
    (``None``, an empty file or no such section: the contract's defaults)."""
    return load_section(CollectionsPolicy, path, SECTION)
