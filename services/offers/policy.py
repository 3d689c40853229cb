"""The offers policy: every number the offer and plan rules use, with the contract's defaults.

`load_policy(path)` reads overrides from the `offers:` section of the YAML file shared by all
services (`INSTALLMENTS_POLICY_FILE`); no file, no section or a key left out: the default.
Write rates and amounts as strings ("0.0075"); YAML floats also work (via their decimal text).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.runtime.policy import load_section


class Promotion(BaseModel):
    """A merchant-funded promotion: a purchase at `merchant_id` (or in `category`) posted
    between `valid_from` and `valid_to` (both inclusive) gets `monthly_fee_rate` (0 by
    default) for the listed tenors. At least one of merchant_id / category is required."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    merchant_id: str | None = None
    category: str | None = None
    tenors: list[int]
    monthly_fee_rate: Decimal = Field(default=Decimal("0"), ge=0)
    valid_from: date
    valid_to: date

    @model_validator(mode="after")
    def _check(self) -> Promotion:
        if self.merchant_id is None and self.category is None:
            raise ValueError(f"promotion {self.id}: needs a merchant_id or a category")
        if self.valid_to < self.valid_from:
            raise ValueError(f"promotion {self.id}: valid_to is before valid_from")
        return self

    def applies_to(self, merchant_id: str | None, category: str | None, posted_on: date) -> bool:
        """True when the purchase's merchant or category matches and it was posted in time."""
        matches = (self.merchant_id is not None and self.merchant_id == merchant_id) or (
            self.category is not None and self.category == category
        )
        return matches and self.valid_from <= posted_on <= self.valid_to


class OffersPolicy(BaseModel):
    """Offer eligibility, pricing and plan rules. Defaults are the contract's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Eligibility
    min_amount: Decimal = Field(default=Decimal("500.00"), ge=0)
    min_amount_by_segment: dict[str, Decimal] = {"young": Decimal("300.00")}
    excluded_mccs: frozenset[int] = frozenset({6010, 6011, 6051, 4829, 7995})
    min_risk_score: int = 600
    installment_limit_share: Decimal = Field(default=Decimal("0.80"), ge=0)

    # Pricing
    tenors: list[int] = [3, 6, 12, 24]
    extra_tenors_by_tier: dict[str, list[int]] = {"diamond": [36]}
    monthly_fee_rates: dict[int, Decimal] = {
        3: Decimal("0.0075"),
        6: Decimal("0.0070"),
        12: Decimal("0.0060"),
        24: Decimal("0.0060"),
        36: Decimal("0.0060"),
    }
    segment_rate_multipliers: dict[str, Decimal] = {"high_net_worth": Decimal("0.80")}
    rate_places: int = Field(default=6, ge=0)  # a monthly rate is rounded to this many places
    # Pre-approval (CONTRACT 5.1): a pre-approved rate is rate × (1 - fee_discount), then ×
    # the segment multiplier, each step rounded half up to this many places.
    pre_approval_rate_places: int = Field(default=4, ge=0)
    fee_model: Literal["flat_monthly"] = "flat_monthly"
    promotions: list[Promotion] = []

    # Offers, plans and end of day
    offer_validity_days: int = Field(default=30, ge=0)
    due_soon_days: int = Field(default=7, ge=0)
    remainder_placement: Literal["first", "last"] = "first"
    early_payoff_waives_fees: bool = True

    # Plausibility of business time (CONTRACT §6: an implausible date is dead-lettered, an
    # implausible jump of business date is held). A business-day.closed more than
    # `max_business_day_jump_days` after the last closed one, or before it, is held (Reject
    # `business_date_jump`) until an operator re-drives it with a confirmation. Purchase,
    # payment and refund dates (posted_at / received_at / refunded_at, in UTC) must lie
    # within [last closed business date - `max_event_days_before_business_date`,
    # + `max_event_days_after_business_date`] and, always (also before the first business
    # day), within [`earliest_event_date`, `latest_event_date`]; else `date_out_of_range`.
    max_business_day_jump_days: int = Field(default=7, ge=1)
    max_event_days_before_business_date: int = Field(default=400, ge=0)
    max_event_days_after_business_date: int = Field(default=31, ge=0)
    earliest_event_date: date = date(2000, 1, 1)
    latest_event_date: date = date(2199, 12, 31)

    # Fee waivers bought with points (`points.redeemed` carries points, not money): how many
    # points buy 1.00 of fee. Keep it equal to the points service's points_per_currency_unit.
    points_per_currency_unit: int = Field(default=100, gt=0)

    @model_validator(mode="after")
    def _every_tenor_has_a_rate(self) -> OffersPolicy:
        offered = set(self.tenors).union(*self.extra_tenors_by_tier.values())
        missing = sorted(t for t in offered if t not in self.monthly_fee_rates)
        if missing:
            raise ValueError(f"monthly_fee_rates has no rate for tenor(s) {missing}")
        if any(t < 1 for t in offered):
            raise ValueError("tenors must be at least 1 month")
        if any(r < 0 for r in self.monthly_fee_rates.values()):
            raise ValueError("monthly fee rates must not be negative")
        return self

    @model_validator(mode="after")
    def _event_window_is_not_empty(self) -> OffersPolicy:
        if self.latest_event_date < self.earliest_event_date:
            raise ValueError("latest_event_date is before earliest_event_date")
        return self

    def tenors_for(self, tier: str) -> list[int]:
        """The tenors offered to an account of `tier`, ascending."""
        return sorted(set(self.tenors) | set(self.extra_tenors_by_tier.get(tier, [])))

    def promotion_for(
        self, merchant_id: str | None, category: str | None, posted_on: date
    ) -> Promotion | None:
        """The first listed promotion that applies to such a purchase, None when none does."""
        return next(
            (p for p in self.promotions if p.applies_to(merchant_id, category, posted_on)), None
        )

    def min_amount_for(self, segment: str | None) -> Decimal:
        """The smallest purchase amount that can be converted for `segment`."""
        if segment is None:
            return self.min_amount
        return self.min_amount_by_segment.get(segment, self.min_amount)


def load_policy(path: str | Path | None) -> OffersPolicy:
    """The policy from the `offers` section of the YAML file at `path` (None, an empty file
    or no such section: the defaults). Raises on an unknown key or a bad value."""
    return load_section(OffersPolicy, path, "offers")
