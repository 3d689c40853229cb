from datetime import date
from decimal import Decimal as D

import pytest
from pydantic import ValidationError

from services.offers.policy import OffersPolicy, Promotion, load_policy


def test_defaults_are_the_contracts():
    p = OffersPolicy()
    assert p.min_amount == D("500.00") and p.min_amount_for("young") == D("300.00")
    assert p.min_amount_for("standard") == D("500.00") and p.min_amount_for(None) == D("500.00")
    assert p.excluded_mccs == {6010, 6011, 6051, 4829, 7995}
    assert p.min_risk_score == 600 and p.installment_limit_share == D("0.80")
    assert p.tenors_for("gold") == [3, 6, 12, 24]
    assert p.tenors_for("diamond") == [3, 6, 12, 24, 36]
    assert p.monthly_fee_rates == {
        3: D("0.0075"),
        6: D("0.0070"),
        12: D("0.0060"),
        24: D("0.0060"),
        36: D("0.0060"),
    }
    assert p.segment_rate_multipliers == {"high_net_worth": D("0.80")}
    assert p.promotions == []
    assert (p.offer_validity_days, p.due_soon_days) == (30, 7)
    assert p.remainder_placement == "first" and p.early_payoff_waives_fees is True
    assert p.fee_model == "flat_monthly"


def test_load_policy_without_a_path_is_the_default():
    assert load_policy(None) == OffersPolicy()


def test_load_policy_overrides_from_yaml(tmp_path):
    f = tmp_path / "policy.yaml"
    f.write_text(
        """
points: {anything: 1}
offers:
 min_amount: "750.00"
 monthly_fee_rates: {3: 0.0080, 6: "0.0070", 12: "0.0060", 24: "0.0060", 36: "0.0060"}
 remainder_placement: last
 promotions:
   - {id: promo-tv, category: electronics, tenors: [3, 6],
      valid_from: 2026-11-01, valid_to: 2026-12-31}
"""
    )
    p = load_policy(str(f))
    assert p.min_amount == D("750.00")
    assert p.monthly_fee_rates[3] == D("0.0080")  # a YAML float goes through its text
    assert p.remainder_placement == "last"
    assert p.promotions[0].monthly_fee_rate == D("0")
    assert p.promotions[0].valid_to == date(2026, 12, 31)
    assert p.min_risk_score == 600  # untouched keys keep their default


def test_a_file_without_an_offers_section_is_the_default(tmp_path):
    f = tmp_path / "policy.yaml"
    f.write_text("points:\n  anything: 1\n")
    assert load_policy(f) == OffersPolicy()


def test_an_unknown_key_in_the_offers_section_is_refused(tmp_path):
    f = tmp_path / "policy.yaml"
    f.write_text("offers:\n  min_risk_scor: 650\n")
    with pytest.raises(ValidationError):
        load_policy(f)


def test_an_empty_file_is_the_default(tmp_path):
    f = tmp_path / "policy.yaml"
    f.write_text("")
    assert load_policy(str(f)) == OffersPolicy()


@pytest.mark.parametrize(
    "override",
    [
        {"no_such_key": 1},
        {"tenors": [3, 48]},  # 48 has no rate
        {"monthly_fee_rates": {3: "-0.01", 6: "0", 12: "0", 24: "0", 36: "0"}},
        {"remainder_placement": "middle"},
    ],
)
def test_bad_policies_are_refused(override):
    with pytest.raises(ValidationError):
        OffersPolicy(**override)


def test_a_promotion_needs_a_target_and_a_sane_window():
    with pytest.raises(ValidationError):
        Promotion(id="p", tenors=[3], valid_from=date(2026, 1, 1), valid_to=date(2026, 2, 1))
    with pytest.raises(ValidationError):
        Promotion(
            id="p",
            category="x",
            tenors=[3],
            valid_from=date(2026, 2, 1),
            valid_to=date(2026, 1, 1),
        )
