"""One valid example payload per event type, and helpers to build raw messages.

Written from the contract (sections 4 and 4.1) by hand: the tests never read the contract
file. The first-release examples are kept as a first-release producer writes them (no
second-release field), so they double as the compatibility check that such input still
validates; :data:`SECOND_RELEASE_FIELDS` holds the fields the second release adds to them,
and the new event types have examples of their own (:data:`SECOND_RELEASE_TYPES`).
"""

from __future__ import annotations

import copy
import json
from typing import Any

ACCOUNT = "acc-000123"
EVENT_ID = "3f0c2b1e-8a5d-4c3b-9e21-6f7a8b9c0d1e"
CAUSE_ID = "9b2d7e4a-1c3f-4a5b-8d6e-0f1a2b3c4d5e"

SCHEDULE_3 = [
    {"seq": 1, "due_date": "2026-12-28", "principal": "333.34", "fee": "7.50", "amount": "340.84"},
    {"seq": 2, "due_date": "2027-01-28", "principal": "333.33", "fee": "7.50", "amount": "340.83"},
    {"seq": 3, "due_date": "2027-02-28", "principal": "333.33", "fee": "7.50", "amount": "340.83"},
]

#: event type -> a valid ``data`` object (as parsed JSON).
PAYLOADS: dict[str, dict[str, Any]] = {
    "account.upserted": {
        "account_id": ACCOUNT,
        "status": "active",
        "segment": "white_collar",
        "tier": "gold",
        "credit_limit": "10000.00",
        "installment_limit": "8000.00",
        "risk_score": 720,
        "currency": "USD",
        "auto_convert": {"enabled": True, "threshold": "1500.00", "tenor_months": 6},
        "contact": {"channel": "sms", "locale": "en-US", "contact_ref": "ctc-77812"},
    },
    "purchase.posted": {
        "purchase_id": "pur-000001",
        "account_id": ACCOUNT,
        "card_token": "tok_8f3a9c2e7d",
        "card_last4": "1111",
        "amount": "1234.50",
        "currency": "USD",
        "merchant": {
            "merchant_id": "m-42",
            "name": "Electro World",
            "mcc": "5732",
            "category": "electronics",
        },
        "channel": "pos",
        "posted_at": "2026-11-28T09:30:00Z",
    },
    "purchase.refunded": {
        "refund_id": "ref-1",
        "purchase_id": "pur-000001",
        "account_id": ACCOUNT,
        "amount": "200.00",
        "currency": "USD",
        "refunded_at": "2026-11-29T10:00:00Z",
    },
    "payment.received": {
        "payment_id": "pay-1",
        "account_id": ACCOUNT,
        "amount": "340.84",
        "currency": "USD",
        "received_at": "2026-12-27T08:00:00Z",
    },
    "business-day.closed": {"business_date": "2026-11-28"},
    "offer.accepted": {
        "offer_id": "off-1",
        "account_id": ACCOUNT,
        "tenor_months": 12,
        "redeem_points": 500,
    },
    "offer.declined": {"offer_id": "off-1", "account_id": ACCOUNT},
    "purchase.recorded": {
        "purchase_id": "pur-000001",
        "account_id": ACCOUNT,
        "card_token": "tok_8f3a9c2e7d",
        "card_last4": "1111",
        "amount": "1234.50",
        "currency": "USD",
        "merchant": {"merchant_id": "m-42", "name": "Electro World", "mcc": "5732"},
        "channel": "ecommerce",
        "posted_at": "2026-11-28T09:30:00Z",
    },
    "refund.recorded": {
        "refund_id": "ref-1",
        "purchase_id": "pur-000001",
        "account_id": ACCOUNT,
        "amount": "200.00",
        "currency": "USD",
        "refunded_at": "2026-11-29T10:00:00Z",
        "refunded_total": "200.00",
        "fully_refunded": False,
    },
    "offer.made": {
        "offer_id": "off-1",
        "purchase_id": "pur-000001",
        "account_id": ACCOUNT,
        "principal": "1000.00",
        "currency": "USD",
        "expires_on": "2026-12-28",
        "promotion": "promo-7",
        "options": [
            {
                "tenor_months": 3,
                "fee_model": "flat_monthly",
                "monthly_fee_rate": "0.0075",
                "total_fee": "22.50",
                "first_installment": "340.84",
                "regular_installment": "340.83",
                "apr": "13.45",
            },
            {
                "tenor_months": 12,
                "fee_model": "flat_monthly",
                "monthly_fee_rate": "0.0060",
                "total_fee": "72.00",
                "first_installment": "89.37",
                "regular_installment": "89.33",
                "apr": "13.03",
            },
        ],
    },
    "offer.not-eligible": {
        "purchase_id": "pur-000002",
        "account_id": ACCOUNT,
        "reasons": ["amount_below_minimum", "mcc_excluded"],
    },
    "offer.expired": {
        "offer_id": "off-1",
        "purchase_id": "pur-000001",
        "account_id": ACCOUNT,
        "business_date": "2026-12-29",
    },
    "offer.rejected": {"offer_id": "off-9", "account_id": ACCOUNT, "reason": "unknown_offer"},
    "plan.created": {
        "plan_id": "plan-1",
        "offer_id": "off-1",
        "purchase_id": "pur-000001",
        "account_id": ACCOUNT,
        "principal": "1000.00",
        "currency": "USD",
        "tenor_months": 3,
        "total_fee": "22.50",
        "apr": "13.45",
        "auto_converted": False,
        "redeem_points": 0,
        "schedule": SCHEDULE_3,
    },
    "installment.paid": {
        "plan_id": "plan-1",
        "seq": 1,
        "amount": "340.84",
        "currency": "USD",
        "paid_on": "2026-12-27",
    },
    "fee.waived": {"plan_id": "plan-1", "amount": "5.00", "currency": "USD", "points": 500},
    "plan.completed": {"plan_id": "plan-1"},
    "plan.cancelled": {
        "plan_id": "plan-1",
        "reason": "refund",
        "principal_returned": "200.00",
        "fee_returned": "0.00",
        "currency": "USD",
    },
    "installment.due-soon": {
        "plan_id": "plan-1",
        "seq": 1,
        "due_date": "2026-12-28",
        "amount_outstanding": "340.84",
        "currency": "USD",
        "days_until_due": 7,
        "business_date": "2026-12-21",
    },
    "account.delinquency": {
        "account_id": ACCOUNT,
        "business_date": "2027-01-05",
        "days_past_due": 8,
        "overdue_amount": "340.84",
        "currency": "USD",
        "oldest_unpaid_due_date": "2026-12-28",
    },
    "points.accrued": {
        "account_id": ACCOUNT,
        "points": 1481,
        "balance_after": 1481,
        "reason": "purchase",
        "purchase_id": "pur-000001",
    },
    "points.reversed": {
        "account_id": ACCOUNT,
        "points": 240,
        "balance_after": -40,
        "reason": "refund",
        "purchase_id": "pur-000001",
    },
    "points.redeemed": {
        "account_id": ACCOUNT,
        "points": 500,
        "balance_after": 981,
        "reason": "fee_redemption",
        "plan_id": "plan-1",
    },
    "points.redemption-rejected": {
        "account_id": ACCOUNT,
        "points": 5000,
        "balance_after": 981,
        "reason": "fee_redemption",
        "plan_id": "plan-1",
        "why": "insufficient_points",
    },
    "points.restored": {
        "account_id": ACCOUNT,
        "plan_id": "plan-1",
        "points": 300,
        "balance_after": 1281,
        "reason": "plan_adjusted",
    },
    "reminder.requested": {
        "reminder_id": "rem-1",
        "account_id": ACCOUNT,
        "plan_id": "plan-1",
        "seq": 1,
        "due_date": "2026-12-28",
        "amount_due": "340.84",
        "currency": "USD",
        "days_before_due": 7,
        "channel": "sms",
        "template": "installment_due",
        "contact_ref": "ctc-77812",
    },
    "escalation.raised": {
        "case_id": "case-1",
        "account_id": ACCOUNT,
        "level": 2,
        "action": "sms_push",
        "bucket": "M1",
        "days_past_due": 8,
        "overdue_amount": "340.84",
        "currency": "USD",
        "business_date": "2027-01-05",
    },
    "escalation.resolved": {
        "case_id": "case-1",
        "account_id": ACCOUNT,
        "resolution": "charged_off",
        "business_date": "2027-06-26",
        "amount": "1022.50",
        "currency": "USD",
    },
    "promise.kept": {
        "case_id": "case-1",
        "account_id": ACCOUNT,
        "contact_id": "contact-1",
        "promised_amount": "340.84",
        "paid_amount": "400.00",
        "currency": "USD",
        "business_date": "2027-01-10",
    },
    "promise.broken": {
        "case_id": "case-1",
        "account_id": ACCOUNT,
        "contact_id": "contact-1",
        "promised_amount": "340.84",
        "paid_amount": "100.00",
        "currency": "USD",
        "business_date": "2027-01-24",
    },
    # --- second release: new input events
    "purchase.review-closed": {
        "purchase_id": "pur-000001",
        "account_id": ACCOUNT,
        "outcome": "cleared",
        "closed_on": "2026-11-30",
    },
    "contact.recorded": {
        "contact_id": "contact-1",
        "case_id": "case-1",
        "account_id": ACCOUNT,
        "outcome": "promise_to_pay",
        "contacted_on": "2027-01-06",
        "agent_ref": "agent-17",
        "promised_amount": "340.84",
        "currency": "USD",
        "promised_date": "2027-01-20",
    },
    # --- second release: new emitted events
    "purchase.flagged": {
        "purchase_id": "pur-000001",
        "account_id": ACCOUNT,
        "amount": "1234.50",
        "currency": "USD",
        "flags": ["velocity", "cnp_new_merchant"],
        "posted_at": "2026-11-28T09:30:00Z",
    },
    "plan.adjusted": {
        "plan_id": "plan-1",
        "account_id": ACCOUNT,
        "reason": "refund",
        "refund_id": "ref-1",
        "principal_reduced": "200.00",
        "fee_reduced": "4.50",
        "fee_returned": "0.00",
        "currency": "USD",
        "schedule": [
            {
                "seq": 2,
                "due_date": "2027-01-28",
                "principal": "233.34",
                "fee": "6.00",
                "amount": "239.34",
            },
            {
                "seq": 3,
                "due_date": "2027-02-28",
                "principal": "233.33",
                "fee": "6.00",
                "amount": "239.33",
            },
        ],
        "points_to_restore": 300,
    },
}

#: The event types the second release adds (contract section 4.1).
SECOND_RELEASE_TYPES = frozenset(
    {
        "purchase.review-closed",
        "contact.recorded",
        "purchase.flagged",
        "plan.adjusted",
        "points.restored",
        "promise.kept",
        "promise.broken",
    }
)

#: event type -> the fields the second release adds to its first-release example.
SECOND_RELEASE_FIELDS: dict[str, dict[str, Any]] = {
    "account.upserted": {
        "pre_approval": {"limit": "5000.00", "valid_to": "2027-03-31", "fee_discount": "0.20"}
    },
    "purchase.recorded": {"risk_flags": ["amount_spike"]},
    "offer.made": {"pre_approved": True},
    "plan.cancelled": {"points_to_restore": 200},
}

#: event type -> the second release's defaulted fields, as the project writes them when a
#: first-release example is decoded and encoded again (defaults are written, not omitted).
WRITTEN_DEFAULTS: dict[str, dict[str, Any]] = {
    "purchase.recorded": {"risk_flags": []},
    "offer.made": {"pre_approved": False},
    "plan.cancelled": {"points_to_restore": 0},
}


def second_release_payload(event_type: str) -> dict[str, Any]:
    """The example ``data`` of ``event_type`` with the second release's added fields (a
    deep copy: a test may change it without changing the next test's example)."""
    return copy.deepcopy({**PAYLOADS[event_type], **SECOND_RELEASE_FIELDS.get(event_type, {})})


SOURCES = {
    "card.accounts.v1": "card-system",
    "card.purchases.v1": "card-system",
    "card.payments.v1": "card-system",
    "card.business-days.v1": "card-system",
    "installments.decisions.v1": "customer-channel",
    "fraud.reviews.v1": "fraud-team",
    "collections.outcomes.v1": "collections-team",
}


def envelope(event_type: str, data: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A valid envelope (as parsed JSON) for ``event_type``; ``fields`` override it."""
    subject = "business-day" if event_type == "business-day.closed" else ACCOUNT
    message = {
        "id": EVENT_ID,
        "type": event_type,
        "source": "card-system",
        "time": "2026-11-28T09:30:00Z",
        "subject": subject,
        "schema_version": 1,
        "correlation_id": CAUSE_ID,
        "causation_id": CAUSE_ID,
        "data": copy.deepcopy(PAYLOADS[event_type]) if data is None else data,
    }
    message.update(fields)
    return message


def raw(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode("utf-8")


def key_for(event_type: str) -> bytes:
    return b"business-day" if event_type == "business-day.closed" else ACCOUNT.encode()
