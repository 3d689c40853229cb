"""The topic registry is exactly contract section 3; payload field names section 4."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from schemas import EVENT_TYPES, INPUT_TOPICS, TOPICS, TopicSpec, dlq_topic, topic_for

SECTION_3 = {
    "card.accounts.v1": ("card-system", {"account.upserted"}),
    "card.purchases.v1": ("card-system", {"purchase.posted", "purchase.refunded"}),
    "card.payments.v1": ("card-system", {"payment.received"}),
    "card.business-days.v1": ("card-system", {"business-day.closed"}),
    "installments.decisions.v1": ("customer-channel", {"offer.accepted", "offer.declined"}),
    "fraud.reviews.v1": ("fraud-team", {"purchase.review-closed"}),
    "collections.outcomes.v1": ("collections-team", {"contact.recorded"}),
    "purchases.recorded.v1": (
        "purchases",
        {"purchase.recorded", "refund.recorded", "purchase.flagged"},
    ),
    "installments.offers.v1": (
        "offers",
        {"offer.made", "offer.not-eligible", "offer.expired", "offer.rejected"},
    ),
    "installments.plans.v1": (
        "offers",
        {
            "plan.created",
            "plan.adjusted",
            "installment.paid",
            "fee.waived",
            "plan.completed",
            "plan.cancelled",
            "installment.due-soon",
            "account.delinquency",
        },
    ),
    "points.ledger.v1": (
        "points",
        {
            "points.accrued",
            "points.reversed",
            "points.redeemed",
            "points.redemption-rejected",
            "points.restored",
        },
    ),
    "reminders.outbound.v1": ("reminders", {"reminder.requested"}),
    "collections.escalations.v1": (
        "collections",
        {"escalation.raised", "escalation.resolved", "promise.kept", "promise.broken"},
    ),
}


def test_topics_are_exactly_section_3() -> None:
    assert list(TOPICS) == list(SECTION_3)
    for name, (producer, event_types) in SECTION_3.items():
        spec = TOPICS[name]
        assert isinstance(spec, TopicSpec)
        assert (spec.name, spec.producer, spec.event_types) == (name, producer, event_types)
        assert spec.key == ("business-day" if name == "card.business-days.v1" else "account")
        assert spec.compacted == (name == "card.accounts.v1")
        for event_type in event_types:
            assert topic_for(event_type) == name


def test_event_types_input_topics_and_dlq() -> None:
    assert set(EVENT_TYPES) == set().union(*(types for _, types in SECTION_3.values()))
    assert INPUT_TOPICS == {
        "card.accounts.v1",
        "card.purchases.v1",
        "card.payments.v1",
        "card.business-days.v1",
        "installments.decisions.v1",
        "fraud.reviews.v1",
        "collections.outcomes.v1",
    }
    assert dlq_topic("card.purchases.v1") == "card.purchases.v1.dlq"
    with pytest.raises(KeyError):
        topic_for("purchase.deleted")


# Section 4 field names; "+" marks the documented additions (money needs its currency,
# and the payloads the contract leaves open).
SECTION_4 = {
    "account.upserted": "account_id status segment tier credit_limit installment_limit "
    "risk_score currency auto_convert contact pre_approval",
    "purchase.posted": "purchase_id account_id card_token card_last4 amount currency merchant "
    "channel posted_at",
    "purchase.refunded": "refund_id purchase_id account_id amount currency refunded_at",
    "payment.received": "payment_id account_id amount currency received_at",
    "business-day.closed": "business_date",
    "offer.accepted": "offer_id account_id tenor_months redeem_points",
    "offer.declined": "offer_id account_id",
    "purchase.review-closed": "purchase_id account_id outcome closed_on",
    "contact.recorded": "contact_id case_id account_id outcome contacted_on agent_ref "
    "promised_amount currency promised_date",
    "purchase.recorded": "purchase_id account_id card_token card_last4 amount currency merchant "
    "channel posted_at risk_flags",
    "refund.recorded": "refund_id purchase_id account_id amount currency refunded_at "
    "+refunded_total +fully_refunded",
    "purchase.flagged": "purchase_id account_id amount currency flags posted_at",
    "offer.made": "offer_id purchase_id account_id principal currency expires_on promotion options "
    "pre_approved",
    "offer.not-eligible": "purchase_id account_id reasons",
    "offer.expired": "offer_id purchase_id account_id business_date",
    "offer.rejected": "offer_id account_id purchase_id reason",
    "plan.created": "plan_id offer_id purchase_id account_id principal currency tenor_months "
    "total_fee apr auto_converted redeem_points schedule",
    "plan.adjusted": "plan_id account_id reason refund_id principal_reduced fee_reduced "
    "fee_returned currency schedule points_to_restore",
    "installment.paid": "plan_id seq amount +currency paid_on",
    "fee.waived": "plan_id amount +currency points",
    "plan.completed": "plan_id",
    "plan.cancelled": "plan_id reason principal_returned fee_returned +currency points_to_restore",
    "installment.due-soon": "plan_id seq due_date amount_outstanding +currency days_until_due "
    "business_date",
    "account.delinquency": "account_id business_date days_past_due overdue_amount +currency "
    "oldest_unpaid_due_date",
    "points.accrued": "account_id points balance_after reason purchase_id plan_id",
    "points.reversed": "account_id points balance_after reason purchase_id plan_id",
    "points.redeemed": "account_id points balance_after reason plan_id",
    "points.redemption-rejected": "account_id points balance_after reason plan_id +why",
    "points.restored": "account_id plan_id points balance_after reason",
    "reminder.requested": "reminder_id account_id plan_id seq due_date amount_due +currency "
    "days_before_due channel template contact_ref",
    "escalation.raised": "case_id account_id level action bucket days_past_due overdue_amount "
    "+currency business_date",
    "escalation.resolved": "case_id account_id resolution business_date amount +currency",
    "promise.kept": "case_id account_id contact_id promised_amount paid_amount currency "
    "business_date",
    "promise.broken": "case_id account_id contact_id promised_amount paid_amount currency "
    "business_date",
}
NESTED = {
    "AutoConvert": "enabled threshold tenor_months",
    "Contact": "channel locale contact_ref",
    "Merchant": "merchant_id name mcc category",
    "OfferOption": "tenor_months fee_model monthly_fee_rate total_fee first_installment "
    "regular_installment apr",
    "ScheduleLine": "seq due_date principal fee amount",
    "PreApproval": "limit valid_to fee_discount",
}


@pytest.mark.parametrize("event_type", list(SECTION_4))
def test_payload_field_names(event_type: str) -> None:
    expected = [name.lstrip("+") for name in SECTION_4[event_type].split()]
    assert list(EVENT_TYPES[event_type].model_fields) == expected


def test_nested_field_names() -> None:
    import schemas.payloads as payloads

    for name, fields in NESTED.items():
        assert list(getattr(payloads, name).model_fields) == fields.split()


def test_every_model_forbids_unknown_fields_and_is_frozen() -> None:
    import schemas.payloads as payloads

    for name in payloads.__all__:
        cls = getattr(payloads, name)
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            assert cls.model_config["extra"] == "forbid", name
            assert cls.model_config["frozen"] is True, name
