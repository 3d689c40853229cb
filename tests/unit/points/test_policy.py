from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.points.domain import points_for_purchase, redeem
from services.points.policy import DEFAULT_POLICY, PointsPolicy, load_policy


def test_defaults_are_the_contracts() -> None:
    policy = load_policy(None)
    assert policy == DEFAULT_POLICY == PointsPolicy()
    assert policy.tier_multipliers == {
        "silver": Decimal("1.0"),
        "gold": Decimal("1.2"),
        "platinum": Decimal("1.5"),
        "diamond": Decimal("2.0"),
    }
    assert policy.points_per_currency_unit == 100
    assert policy.first_plan_bonus_factor == 1


def test_yaml_section_overrides(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "offers: {min_amount: '500.00'}\n"
        "points:\n"
        "  tier_multipliers: {silver: 1, gold: 1.25}\n"
        "  points_per_currency_unit: 50\n"
    )
    policy = load_policy(path)
    assert policy.tier_multipliers == {"silver": Decimal("1"), "gold": Decimal("1.25")}
    assert points_for_purchase(Decimal("999.99"), "gold", policy) == 1249
    assert redeem(1000, 1000, Decimal("100.00"), policy).fee_amount == Decimal("20.00")


def test_missing_section_or_empty_file_gives_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    other = tmp_path / "other.yaml"
    other.write_text("reminders: {offsets: [3, 0]}\n")
    assert load_policy(empty) == DEFAULT_POLICY
    assert load_policy(str(other)) == DEFAULT_POLICY


def test_unknown_keys_and_bad_values_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("points: {tier_multiplier: {gold: 2}}\n")
    with pytest.raises(ValidationError):
        load_policy(path)
    path.write_text("points: {tier_multipliers: {gold: -1}}\n")
    with pytest.raises(ValidationError):
        load_policy(path)
