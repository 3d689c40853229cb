"""Raw contract messages for tests, written as an outside system would write them."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support import envelope


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def account(account_id: str, **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "account_id": account_id,
        "status": "active",
        "segment": "standard",
        "tier": "silver",
        "credit_limit": "10000.00",
        "risk_score": 720,
        "currency": "USD",
        "contact": {"channel": "sms", "locale": "en-US", "contact_ref": f"cref-{account_id}"},
    }
    data.update(over)
    return envelope("account.upserted", account_id, data)


def purchase(
    account_id: str,
    amount: str = "1200.00",
    *,
    purchase_id: str | None = None,
    posted_at: str = "2026-01-15T10:00:00Z",
    mcc: str = "5732",
    merchant_id: str = "m-electro",
    category: str | None = "electronics",
    event_id: str | None = None,
    **over: Any,
) -> dict[str, Any]:
    merchant: dict[str, Any] = {"merchant_id": merchant_id, "name": "Electro World", "mcc": mcc}
    if category:
        merchant["category"] = category
    purchase_id = purchase_id or new_id("pur")
    data: dict[str, Any] = {
        "purchase_id": purchase_id,
        "account_id": account_id,
        # A card of its own per purchase by default: five default purchases on one card
        # within ten minutes would be flagged `velocity` (screening, contract 5.1).
        "card_token": f"tok_{purchase_id}",
        "card_last4": "4242",
        "amount": amount,
        "currency": "USD",
        "merchant": merchant,
        "channel": "pos",
        "posted_at": posted_at,
    }
    data.update(over)
    return envelope("purchase.posted", account_id, data, event_id=event_id, time_=posted_at)


def card_burst(
    account_id: str,
    count: int,
    *,
    card_token: str = "tok_abc123",
    start: str = "2026-01-15T10:00:00Z",
    every_s: int = 60,
    amount: str = "25.00",
    **over: Any,
) -> list[dict[str, Any]]:
    """``count`` purchases on one card, ``every_s`` seconds apart from ``start`` (screening:
    the velocity rule)."""
    from datetime import datetime, timedelta

    t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return [
        purchase(
            account_id,
            amount,
            card_token=card_token,
            posted_at=(t0 + timedelta(seconds=i * every_s)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **over,
        )
        for i in range(count)
    ]


def refund(
    account_id: str,
    purchase_id: str,
    amount: str,
    *,
    refund_id: str | None = None,
    refunded_at: str = "2026-01-20T10:00:00Z",
) -> dict[str, Any]:
    return envelope(
        "purchase.refunded",
        account_id,
        {
            "refund_id": refund_id or new_id("ref"),
            "purchase_id": purchase_id,
            "account_id": account_id,
            "amount": amount,
            "currency": "USD",
            "refunded_at": refunded_at,
        },
        time_=refunded_at,
    )


def payment(
    account_id: str,
    amount: str,
    *,
    received_at: str = "2026-02-15T10:00:00Z",
    payment_id: str | None = None,
) -> dict[str, Any]:
    return envelope(
        "payment.received",
        account_id,
        {
            "payment_id": payment_id or new_id("pay"),
            "account_id": account_id,
            "amount": amount,
            "currency": "USD",
            "received_at": received_at,
        },
        time_=received_at,
    )


def business_day(date: str) -> dict[str, Any]:
    return envelope(
        "business-day.closed",
        "business-day",
        {"business_date": date},
        time_=f"{date}T23:59:00Z",
    )


def offer_accepted(
    account_id: str, offer_id: str, tenor: int, redeem_points: int | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {"offer_id": offer_id, "account_id": account_id, "tenor_months": tenor}
    if redeem_points is not None:
        data["redeem_points"] = redeem_points
    return envelope("offer.accepted", account_id, data, source="customer-app")


def offer_declined(account_id: str, offer_id: str) -> dict[str, Any]:
    return envelope(
        "offer.declined",
        account_id,
        {"offer_id": offer_id, "account_id": account_id},
        source="customer-app",
    )
