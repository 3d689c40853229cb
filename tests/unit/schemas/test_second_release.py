"""The payloads the second release adds or extends (contract section 4.1): their rules."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import InvalidEvent, decode, topic_for
from tests.builders.examples import PAYLOADS, envelope, key_for, raw, second_release_payload


def _data(event_type: str, **changes: Any) -> dict[str, Any]:
    data = second_release_payload(event_type)
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def accepted(event_type: str, **changes: Any) -> Any:
    message = envelope(event_type, data=_data(event_type, **changes))
    return decode(topic_for(event_type), key_for(event_type), raw(message)).data


def refused(event_type: str, **changes: Any) -> str:
    message = envelope(event_type, data=_data(event_type, **changes))
    with pytest.raises(InvalidEvent) as caught:
        decode(topic_for(event_type), key_for(event_type), raw(message))
    return caught.value.reason


# ------------------------------------------------------------------ account.upserted


def pre_approval(**fields: Any) -> dict[str, Any]:
    return {"limit": "5000.00", "valid_to": "2027-03-31", "fee_discount": "0.20", **fields}


@pytest.mark.parametrize("share", ["0", "0.0", "0.20", "0.99999999"])
def test_fee_discount_is_a_share_below_one(share: str) -> None:
    data = accepted("account.upserted", pre_approval=pre_approval(fee_discount=share))
    assert 0 <= data.pre_approval.fee_discount < 1


@pytest.mark.parametrize("share", ["1", "1.00", "1.5", "-0.1", "0.123456789", ".2", 0.2, 0])
def test_fee_discount_outside_zero_to_one_is_refused(share: Any) -> None:
    reason = refused("account.upserted", pre_approval=pre_approval(fee_discount=share))
    assert reason.startswith("data.pre_approval.fee_discount: ")


def test_pre_approval_limit_follows_the_currency_and_fields_are_required() -> None:
    reason = refused("account.upserted", pre_approval=pre_approval(limit="10.001"))
    assert "pre_approval.limit" in reason and "USD" in reason
    assert "data.pre_approval.limit: money must be" in refused(
        "account.upserted", pre_approval=pre_approval(limit=5000)
    )
    for field in ("limit", "valid_to", "fee_discount"):
        partial = pre_approval()
        del partial[field]
        assert refused("account.upserted", pre_approval=partial) == (
            f"data.pre_approval.{field}: required field is missing"
        )
    jpy = accepted(
        "account.upserted",
        currency="JPY",
        credit_limit="100000",
        installment_limit="80000",
        auto_convert={"enabled": False, "threshold": "0", "tenor_months": 3},
        pre_approval=pre_approval(limit="50000"),
    )
    assert jpy.pre_approval.limit == 50000


# ------------------------------------------------------------------ purchases


def test_risk_flags_default_to_empty_and_are_distinct_codes_in_contract_order() -> None:
    assert accepted("purchase.recorded", risk_flags=None).risk_flags == []
    assert accepted("purchase.recorded", risk_flags=[]).risk_flags == []
    every = ["velocity", "amount_spike", "cnp_new_merchant"]
    assert accepted("purchase.recorded", risk_flags=every).risk_flags == every
    assert "order" in refused("purchase.recorded", risk_flags=["amount_spike", "velocity"])
    assert "distinct" in refused("purchase.recorded", risk_flags=["velocity", "velocity"])
    assert refused("purchase.recorded", risk_flags=["stolen"]).startswith("data.risk_flags[0]")


def test_purchase_flagged_needs_at_least_one_flag() -> None:
    assert accepted("purchase.flagged").flags == ["velocity", "cnp_new_merchant"]
    assert refused("purchase.flagged", flags=[]).startswith("data.flags: ")
    assert "order" in refused("purchase.flagged", flags=["cnp_new_merchant", "velocity"])
    assert refused("purchase.flagged", amount="0.00").startswith("data.amount: ")


@pytest.mark.parametrize("outcome", ["cleared", "confirmed_fraud"])
def test_review_closed_outcomes(outcome: str) -> None:
    assert accepted("purchase.review-closed", outcome=outcome).outcome == outcome


def test_review_closed_rejects_other_outcomes_and_needs_a_date() -> None:
    assert refused("purchase.review-closed", outcome="open").startswith("data.outcome: ")
    assert refused("purchase.review-closed", closed_on="2026-11-30T10:00:00Z").startswith(
        "data.closed_on: "
    )


# ------------------------------------------------------------------ offers


def test_offer_made_pre_approved_defaults_to_false() -> None:
    assert accepted("offer.made", pre_approved=None).pre_approved is False
    assert accepted("offer.made", pre_approved=True).pre_approved is True
    assert refused("offer.made", pre_approved="true").startswith("data.pre_approved: ")


def test_not_eligible_reason_fraud_review() -> None:
    data = accepted("offer.not-eligible", reasons=["fraud_review", "mcc_excluded"])
    assert data.reasons == ["fraud_review", "mcc_excluded"]


@pytest.mark.parametrize(
    "reason",
    [
        "unknown_offer",
        "expired",
        "declined",
        "already_converted",
        "refunded",
        "superseded",
        "invalid_tenor",
        "not_eligible",
    ],
)
def test_offer_rejected_reasons_of_the_contract(reason: str) -> None:
    assert accepted("offer.rejected", reason=reason, purchase_id="pur-1").reason == reason


def test_offer_expired_fields() -> None:
    assert list(PAYLOADS["offer.expired"]) == [
        "offer_id",
        "purchase_id",
        "account_id",
        "business_date",
    ]
    assert refused("offer.expired", business_date=None).endswith("required field is missing")


# ------------------------------------------------------------------ plans and points


def test_plan_adjusted_example_and_points_to_restore_default() -> None:
    data = accepted("plan.adjusted")
    assert data.points_to_restore == 300
    assert accepted("plan.adjusted", points_to_restore=None).points_to_restore == 0
    assert refused("plan.adjusted", points_to_restore=-1).startswith("data.points_to_restore")


def test_plan_adjusted_rules() -> None:
    assert "fee_returned must not exceed fee_reduced" in refused(
        "plan.adjusted", fee_returned="5.00"
    )
    lines = PAYLOADS["plan.adjusted"]["schedule"]
    assert "increasing" in refused("plan.adjusted", schedule=[lines[1], lines[0]])
    assert "increasing" in refused("plan.adjusted", schedule=[lines[0], lines[0]])
    wrong = {**lines[0], "amount": "1.00"}
    assert "principal + fee" in refused("plan.adjusted", schedule=[wrong])
    assert refused("plan.adjusted", schedule=[]).startswith("data.schedule: ")
    assert refused("plan.adjusted", reason="early_payoff").startswith("data.reason: ")
    assert refused("plan.adjusted", principal_reduced="0.00").startswith("data.principal_reduced: ")
    assert "decimal places" in refused("plan.adjusted", fee_reduced="4.505")


def test_plan_cancelled_points_to_restore() -> None:
    assert accepted("plan.cancelled").points_to_restore == 200
    assert accepted("plan.cancelled", points_to_restore=None).points_to_restore == 0
    assert refused("plan.cancelled", points_to_restore=-5).startswith("data.points_to_restore")
    assert refused("plan.cancelled", points_to_restore="5").startswith("data.points_to_restore")


@pytest.mark.parametrize("reason", ["plan_cancelled", "plan_adjusted"])
def test_points_restored_reasons(reason: str) -> None:
    assert accepted("points.restored", reason=reason).reason == reason


def test_points_restored_rules_and_the_other_points_reasons_unchanged() -> None:
    assert refused("points.restored", reason="refund").startswith("data.reason: ")
    assert refused("points.restored", points=0).startswith("data.points: ")
    assert accepted("points.restored", balance_after=-3).balance_after == -3
    reason = refused("points.reversed", reason="plan_adjusted")
    assert reason.startswith("data.reason: ")


# ------------------------------------------------------------------ collections


@pytest.mark.parametrize(
    "outcome", ["reached", "no_answer", "wrong_party", "dispute", "dispute_resolved"]
)
def test_contact_without_a_promise_has_no_promise_fields(outcome: str) -> None:
    bare = dict.fromkeys(("promised_amount", "currency", "promised_date"))
    data = accepted("contact.recorded", outcome=outcome, **bare)
    assert (data.promised_amount, data.currency, data.promised_date) == (None, None, None)
    for field, value in (
        ("promised_amount", "10.00"),
        ("currency", "USD"),
        ("promised_date", "2027-01-20"),
    ):
        others = {name: None for name in bare if name != field}
        reason = refused("contact.recorded", outcome=outcome, **others, **{field: value})
        assert f"{field} must be absent unless outcome is promise_to_pay" in reason


@pytest.mark.parametrize("missing", ["promised_amount", "currency", "promised_date"])
def test_a_promise_to_pay_needs_all_three_promise_fields(missing: str) -> None:
    reason = refused("contact.recorded", **{missing: None})
    assert "required when outcome is promise_to_pay" in reason


def test_contact_recorded_rules() -> None:
    data = accepted("contact.recorded")
    assert str(data.promised_amount) == "340.84" and str(data.promised_date) == "2027-01-20"
    assert "decimal places" in refused("contact.recorded", promised_amount="1.001")
    assert refused("contact.recorded", promised_amount="0.00").startswith("data.promised_amount: ")
    assert refused("contact.recorded", outcome="hung_up").startswith("data.outcome: ")
    assert "opaque" in refused("contact.recorded", agent_ref="agent@example.com")
    assert "subject" in refused("contact.recorded", account_id="acc-other")


def test_promise_kept_and_broken() -> None:
    assert accepted("promise.kept").paid_amount == 400
    assert (
        accepted("promise.kept", paid_amount="340.84").paid_amount
        == accepted("promise.kept").promised_amount
    )
    assert "at least promised_amount" in refused("promise.kept", paid_amount="340.83")
    assert accepted("promise.broken", paid_amount="0.00").paid_amount == 0
    assert "below promised_amount" in refused("promise.broken", paid_amount="340.84")
    assert "decimal places" in refused("promise.broken", paid_amount="1.001")
