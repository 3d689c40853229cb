"""The benchmark's workloads: the input events of each service, generated (deterministic
ids, letters-only business ids), and which service each workload measures."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

NS = uuid.UUID("3b0b1a9e-4c55-4f0e-9d4e-0b7a2f6c1d11")
DAY0 = date(2026, 3, 2)


def _env(kind: str, subject: str, data: dict[str, Any], n: int, source: str) -> bytes:
    return json.dumps(
        {
            "id": str(uuid.uuid5(NS, f"{kind}:{subject}:{n}")),
            "type": kind,
            "source": source,
            "time": "2026-03-02T10:00:00Z",
            "subject": subject,
            "schema_version": 1,
            "data": data,
        },
        separators=(",", ":"),
    ).encode()


def _letters(n: int) -> str:
    """An id of letters only (never mistaken for a card number)."""
    out = ""
    while True:
        out = "abcdefghijklmnopqrstuvwxyz"[n % 26] + out
        n //= 26
        if n == 0:
            return out


def accounts(count: int) -> Iterator[tuple[str, str, bytes]]:
    for i in range(count):
        acc = f"acc-{_letters(i)}"
        yield (
            "card.accounts.v1",
            acc,
            _env(
                "account.upserted",
                acc,
                {
                    "account_id": acc,
                    "status": "active",
                    "segment": "standard",
                    "tier": ["silver", "gold", "platinum", "diamond"][i % 4],
                    "credit_limit": "1000000.00",
                    "risk_score": 750,
                    "currency": "USD",
                    "contact": {"channel": "sms", "locale": "en-US", "contact_ref": f"cref-{acc}"},
                },
                0,
                "card-system",
            ),
        )


#: Purchase ``i`` is posted ``i // 4`` seconds after 08:00 of DAY0 (wrapping after 16 hours,
#: so every posting stays on DAY0): four purchases a second across the accounts, each
#: account's purchases ``n_accounts / 4`` seconds apart. Posted all at one instant (as
#: before), every purchase of an account fell in the velocity window of the others: the
#: screen flagged all but the first four and kept every one of them as state, which grew
#: through the run (the purchases service's cost per event with it).
_POSTED_FROM = 8 * 3600
_POSTED_SPAN = 16 * 3600


def _posted_at(i: int) -> str:
    second = _POSTED_FROM + (i // 4) % _POSTED_SPAN
    return f"{DAY0.isoformat()}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"


def _purchase(i: int, n_accounts: int) -> tuple[str, dict[str, Any]]:
    acc = f"acc-{_letters(i % n_accounts)}"
    return acc, {
        "purchase_id": f"pur-{_letters(i)}",
        "account_id": acc,
        "card_token": f"tok-{acc}",
        "card_last4": "4242",
        "amount": f"{500 + i % 3000}.{i % 100:02d}",
        "currency": "USD",
        "merchant": {
            "merchant_id": "m-electro",
            "name": "Electro World",
            "mcc": "5732",
            "category": "electronics",
        },
        "channel": "pos",
        "posted_at": _posted_at(i),
    }


def purchases_posted(n: int, n_accounts: int) -> Iterator[tuple[str, str, bytes]]:
    for i in range(n):
        acc, data = _purchase(i, n_accounts)
        yield "card.purchases.v1", acc, _env("purchase.posted", acc, data, i, "card-system")


def purchases_with_rejects(
    n: int, n_accounts: int, share: float = 0.01
) -> Iterator[tuple[str, str, bytes]]:
    """``purchases_posted`` with ``share`` of the records replaced by refunds of purchases
    never recorded: each is rejected by the handler (dead-lettered), one in a hundred."""
    every = max(1, round(1 / share))
    for i, (topic, acc, value) in enumerate(purchases_posted(n, n_accounts)):
        if i % every == every - 1:
            data = {
                "refund_id": f"ref-{_letters(i)}",
                "purchase_id": f"pur-never-{_letters(i)}",
                "account_id": acc,
                "amount": "10.00",
                "currency": "USD",
                "refunded_at": "2026-03-02T11:00:00Z",
            }
            value = _env("purchase.refunded", acc, data, i, "card-system")
        yield topic, acc, value


def purchases_recorded(n: int, n_accounts: int) -> Iterator[tuple[str, str, bytes]]:
    for i in range(n):
        acc, data = _purchase(i, n_accounts)
        yield "purchases.recorded.v1", acc, _env("purchase.recorded", acc, data, i, "purchases")


def due_soon(n: int, n_accounts: int) -> Iterator[tuple[str, str, bytes]]:
    for i in range(n):
        acc = f"acc-{_letters(i % n_accounts)}"
        due = DAY0 + timedelta(days=7)
        days_left = (7, 3, 1, 0)[(i // n_accounts) % 4]
        yield (
            "installments.plans.v1",
            acc,
            _env(
                "installment.due-soon",
                acc,
                {
                    "plan_id": f"plan-{_letters(i % n_accounts)}",
                    "seq": 1 + (i // (4 * n_accounts)),
                    "due_date": due.isoformat(),
                    "amount_outstanding": "125.50",
                    "currency": "USD",
                    "days_until_due": days_left,
                    "business_date": (due - timedelta(days=days_left)).isoformat(),
                },
                i,
                "offers",
            ),
        )


def delinquencies(n: int, n_accounts: int) -> Iterator[tuple[str, str, bytes]]:
    for i in range(n):
        acc = f"acc-{_letters(i % n_accounts)}"
        dpd = 1 + i // n_accounts
        oldest = DAY0
        yield (
            "installments.plans.v1",
            acc,
            _env(
                "account.delinquency",
                acc,
                {
                    "account_id": acc,
                    "business_date": (oldest + timedelta(days=dpd)).isoformat(),
                    "days_past_due": dpd,
                    "overdue_amount": "250.00",
                    "currency": "USD",
                    "oldest_unpaid_due_date": oldest.isoformat(),
                },
                i,
                "offers",
            ),
        )


#: service -> (number of accounts to preload, generator of its input events)
WORKLOADS: dict[str, Callable[[int], tuple[int, Iterator[tuple[str, str, bytes]]]]] = {
    "purchases": lambda n: (0, purchases_posted(n, max(1, n // 10))),
    # the same input with 1 % of it rejected by the handler (split, not replayed)
    "purchases-rejects": lambda n: (0, purchases_with_rejects(n, max(1, n // 10))),
    "offers": lambda n: (n // 10, purchases_recorded(n, max(1, n // 10))),
    "points": lambda n: (n // 10, purchases_recorded(n, max(1, n // 10))),
    "reminders": lambda n: (n // 8, due_soon(n, max(1, n // 8))),
    "collections": lambda n: (n // 100, delinquencies(n, max(1, n // 100))),
}


#: Workloads that measure a service on another input than its default.
WORKLOAD_SERVICE = {"purchases-rejects": "purchases"}


def service_of(workload: str) -> str:
    return WORKLOAD_SERVICE.get(workload, workload)


def with_reject_workloads(services: list[str]) -> list[str]:
    """The workloads to run for ``services``: each variant right after its service's own
    (purchases-rejects after purchases), so it is measured against it in the same run."""
    out: list[str] = []
    for name in services:
        if name not in out:
            out.append(name)
        out += [w for w, s in WORKLOAD_SERVICE.items() if s == name and w not in services]
    return out
