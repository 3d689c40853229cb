"""Points policy: the configurable numbers of the points rules (CONTRACT §5 "Points").

Every default below is the contract's default. A deployment overrides them in the
policy file (``INSTALLMENTS_POLICY_FILE``, YAML), section ``points``::

    points:
      points_per_unit: 1            # points per 1.00 of purchase amount (before the tier)
      tier_multipliers: {silver: 1.0, gold: 1.2, platinum: 1.5, diamond: 2.0}
      first_plan_bonus_factor: 1    # bonus = factor x the purchase's points (1 = double points)
      points_per_currency_unit: 100 # redemption: 100 points buy 1.00 of fee
      minor_unit: "0.01"            # fee amounts are quantized to this
      unknown_account_tier: silver  # tier for a purchase of an account not (yet) upserted

Unknown keys are rejected (a typo must not silently fall back to a default).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.runtime.policy import load_section

SECTION = "points"


class PointsPolicy(BaseModel):
    """The numbers behind accrual, the first-plan bonus and redemption."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    points_per_unit: Decimal = Field(default=Decimal("1"), ge=0)
    tier_multipliers: dict[str, Decimal] = Field(
        default_factory=lambda: {
            "silver": Decimal("1.0"),
            "gold": Decimal("1.2"),
            "platinum": Decimal("1.5"),
            "diamond": Decimal("2.0"),
        }
    )
    first_plan_bonus_factor: Decimal = Field(default=Decimal("1"), ge=0)
    points_per_currency_unit: int = Field(default=100, gt=0)
    minor_unit: Decimal = Field(default=Decimal("0.01"), gt=0)
    #: Tier applied to a purchase whose account has not been seen on card.accounts.v1
    #: yet (the two topics are not ordered with each other). Must be a known tier.
    unknown_account_tier: str = "silver"

    @field_validator("tier_multipliers")
    @classmethod
    def _multipliers_not_negative(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        if not value:
            raise ValueError("at least one tier multiplier is required")
        for tier, multiplier in value.items():
            if multiplier < 0:
                raise ValueError(f"tier {tier!r}: multiplier must be >= 0")
        return value

    @model_validator(mode="after")
    def _unknown_account_tier_is_known(self) -> PointsPolicy:
        if self.unknown_account_tier not in self.tier_multipliers:
            raise ValueError(
                f"unknown_account_tier {self.unknown_account_tier!r} has no tier multiplier"
            )
        return self


DEFAULT_POLICY = PointsPolicy()


def load_policy(path: str | Path | None) -> PointsPolicy:
    """The policy from the ``points`` section of the YAML file at ``path``.

    ``None``, an empty file or a file without a ``points`` section give the
    contract's defaults; keys present in the section override them one by one.
    """
    return load_section(PointsPolicy, path, SECTION)
