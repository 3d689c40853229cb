"""The offers mixed-batch scenario: three batches of mixed events on three accounts, run
in ONE ``h.process(...)`` call by one harness and record by record by another, in the order
the runtime applies a batch (partition by partition, in the order each partition first
appears in the batch); the emitted events (ids, payloads, topics, dead-letter headers) must
be the same.

Shared by ``tests/unit/offers/test_handlers_batch.py`` (SQLite) and
``tests/integration/test_offers.py`` (PostgreSQL, where the repository writes with COPY and
executemany).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from services.offers.policy import OffersPolicy
from tests.builders import messages as f
from tests.builders.offers import (
    ACCOUNTS,
    DAYS,
    DECISIONS,
    PAYMENTS,
    POINTS,
    RECORDED,
    auto_convert,
    points_redeemed,
    purchase_recorded,
    refund_recorded,
)
from tests.harness import Harness

Message = tuple[str, dict[str, Any]]


def _purchase(acc: str, amount: str, pid: str, posted: str = "2026-01-15") -> Message:
    return RECORDED, purchase_recorded(
        acc, amount, purchase_id=pid, posted_at=f"{posted}T10:00:00Z"
    )


def _pay(
    acc: str, amount: str, on: str, payment_id: str | None = None, currency: str = "USD"
) -> Message:
    message = f.payment(acc, amount, received_at=f"{on}T10:00:00Z", payment_id=payment_id)
    message["data"]["currency"] = currency
    return PAYMENTS, message


def mixed_batches() -> list[list[Message]]:
    """Three batches of mixed events on three accounts (see the comments for what each
    record meets from the records before it in its batch)."""
    # acc-1 auto-converts >= 1000.00 at 6 months; acc-2's installment limit is 1600.00
    batch1: list[Message] = [
        (ACCOUNTS, f.account("acc-1", auto_convert=auto_convert("1000.00", 6))),
        (ACCOUNTS, f.account("acc-2", credit_limit="2000.00")),
        (ACCOUNTS, f.account("acc-3")),
        _purchase("acc-2", "1200.00", "p1"),  # offer (the account is from this batch)
        _purchase("acc-1", "1500.00", "p2"),  # auto-converted: plan at once
        _purchase("acc-3", "800.00", "p3"),  # offer, refunded below
        (RECORDED, refund_recorded("acc-3", "p3", "100.00", refund_id="r3")),
        _purchase("acc-2", "600.00", "p4"),  # offer
        _purchase("acc-3", "700.00", "p5"),  # offer, declined below
        _purchase("acc-2", "1200.00", "p1"),  # the same purchase again: ignored
        (DECISIONS, f.offer_accepted("acc-2", "off-p1", 3)),  # plan (order 1)
        (DECISIONS, f.offer_accepted("acc-2", "off-p1", 3)),  # already_converted
        (DECISIONS, f.offer_accepted("acc-3", "off-p3", 3)),  # refunded
        (DECISIONS, f.offer_accepted("acc-2", "off-p4", 3)),  # 1200 + 600 > 1600: not_eligible
        (DECISIONS, f.offer_declined("acc-3", "off-p5")),
        (DECISIONS, f.offer_declined("acc-3", "off-p5")),  # ignored
        (DECISIONS, f.offer_accepted("acc-3", "off-p5", 6)),  # declined
        (DECISIONS, f.offer_accepted("acc-1", "off-nope", 3)),  # unknown_offer
        _pay("acc-2", "409.00", "2026-02-15", "pay-1"),  # pays the plan made in this batch
        _pay("acc-2", "409.00", "2026-02-15", "pay-1"),  # the same payment id: ignored
        _pay("acc-1", "1600.00", "2026-02-20", "pay-2"),  # early payoff of the auto plan
        _pay("acc-3", "50.00", "2026-02-20", "pay-3"),  # nothing owed: credit
        (DAYS, f.business_day("2026-03-10")),  # due-soon for p1, off-p4 expires
        (POINTS, points_redeemed("acc-2", "plan-p1", 500)),  # 5.00 off fees due after Mar 10
    ]
    batch2: list[Message] = [
        _pay("acc-2", "404.00", "2026-03-15", "pay-4"),  # installment 2 (fee cut by points)
        _purchase("acc-2", "1000.00", "p6", "2026-03-16"),  # 400 owed + 1000 <= 1600: offer
        (
            RECORDED,
            refund_recorded(
                "acc-2", "p1", "200.00", refund_id="r1", refunded_at="2026-03-17T10:00:00Z"
            ),
        ),
        _purchase("acc-3", "900.00", "p7", "2026-03-16"),  # credit 50 stays credit: offer
        (ACCOUNTS, f.account("acc-2", credit_limit="2000.00", status="blocked")),
        (DECISIONS, f.offer_accepted("acc-2", "off-p6", 3)),  # account blocked: not_eligible
        (DECISIONS, f.offer_accepted("acc-3", "off-p7", 3)),  # plan; the credit pays later
        (DAYS, f.business_day("2026-04-16")),  # credit pays acc-3; acc-2 overdue; expiries
        (DAYS, f.business_day("2026-04-16")),  # the same date again: ignored
    ]
    # a refusal makes the runtime split the batch at the refused record
    batch3: list[Message] = [
        # 200.00 of principal left on installment 3 after the refund, 4.50 of its fee
        _pay("acc-2", "204.50", "2026-04-17", "pay-5"),  # completes plan-p1, cures acc-2
        _pay("acc-2", "10.00", "2026-04-17", "pay-6", currency="EUR"),  # DLQ
        (POINTS, points_redeemed("acc-3", "plan-p7", 300)),
        (POINTS, points_redeemed("acc-3", "plan-p1", 300)),  # not acc-3's plan: DLQ
        _purchase("acc-1", "2000.00", "p8", "2026-04-17"),  # auto plan (order 2)
    ]
    return [batch1, batch2, batch3]


def runtime_order(messages: list[Message]) -> list[Message]:
    """The order the runtime applies a batch in: partition by partition (all ours are
    partition 0 of their topic), in the order each first appears."""
    topics = list(dict.fromkeys(topic for topic, _ in messages))
    return [m for topic in topics for m in messages if m[0] == topic]


def _emitted(out: list[Any]) -> list[tuple[str, bytes, dict[str, str]]]:
    return [(e.topic, e.value, e.headers) for e in out]


def check_batches_match_one_by_one(make_harness: Callable[[str], Harness]) -> list[list[Any]]:
    """Run :func:`mixed_batches` both ways; assert the same output; return the batch
    harness's emitted events per batch (for the caller's own checks)."""
    batched, single = make_harness("batched"), make_harness("single")
    for h in (batched, single):  # batch 2 closes Apr 16 after Mar 10: a 37-day jump, allowed
        service = h.runner.service
        policy = (service.policy or OffersPolicy()).model_copy(
            update={"max_business_day_jump_days": 40}
        )
        h.runner.service = dataclasses.replace(service, policy=policy)
    transactions = []
    real = batched.runner._transaction

    def counting(decoded: list[Any], *, isolated: bool) -> Any:
        transactions.append(isolated)
        return real(decoded, isolated=isolated)

    batched.runner._transaction = counting  # type: ignore[method-assign]
    results = []
    try:
        for messages in mixed_batches():
            transactions.clear()
            out = batched.process(*(batched.publish(t, m) for t, m in messages))
            one_by_one = [e for t, m in runtime_order(messages) for e in single.feed(t, m)]
            assert _emitted(out) == _emitted(one_by_one)
            results.append((out, list(transactions)))
    finally:
        batched.close()
        single.close()
    # batches 1 and 2 went through the fast path (one transaction); so did batch 3: its
    # refused records change nothing before they refuse (the repository counts its
    # changes), so they are dead-lettered inside the batch's transaction, no split
    assert [t for _, t in results][:2] == [[False], [False]]
    assert results[2][1] == [False]
    return [out for out, _ in results]


def summarise(out: list[Any]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for e in out:
        if e.event is None:
            rows.append(("dlq", e.topic, e.headers["error.reason"]))
            continue
        d, kind = e.event.data, e.event.type
        if kind == "offer.rejected":
            rows.append((kind, d.offer_id, d.reason))
        elif kind == "offer.not-eligible":
            rows.append((kind, d.purchase_id, *d.reasons))
        elif kind in ("offer.made", "offer.expired"):
            rows.append((kind, d.offer_id))
        elif kind == "plan.created":
            rows.append((kind, d.plan_id, d.auto_converted))
        elif kind in ("installment.paid", "installment.due-soon"):
            rows.append((kind, d.plan_id, d.seq))
        elif kind == "plan.cancelled":
            rows.append((kind, d.plan_id, d.reason))
        elif kind == "plan.adjusted":
            rows.append((kind, d.plan_id, str(d.principal_reduced), str(d.fee_reduced)))
        elif kind == "account.delinquency":
            rows.append((kind, d.account_id, d.days_past_due))
        elif kind == "plan.completed":
            rows.append((kind, d.plan_id))
        elif kind == "fee.waived":
            rows.append((kind, d.plan_id, str(d.amount)))
        else:
            raise AssertionError(f"unexpected {kind}")
    return rows


EXPECTED = [
    [
        ("offer.made", "off-p1"),
        ("plan.created", "plan-p2", True),
        ("offer.made", "off-p3"),
        ("offer.made", "off-p4"),
        ("offer.made", "off-p5"),
        ("plan.created", "plan-p1", False),
        ("offer.rejected", "off-p1", "already_converted"),
        ("offer.rejected", "off-p3", "refunded"),
        ("offer.rejected", "off-p4", "not_eligible"),
        ("offer.rejected", "off-p5", "declined"),
        ("offer.rejected", "off-nope", "unknown_offer"),
        ("installment.paid", "plan-p1", 1),
        ("installment.paid", "plan-p2", 1),
        ("installment.paid", "plan-p2", 2),
        ("installment.paid", "plan-p2", 3),
        ("installment.paid", "plan-p2", 4),
        ("installment.paid", "plan-p2", 5),
        ("installment.paid", "plan-p2", 6),
        ("plan.cancelled", "plan-p2", "early_payoff"),
        ("offer.expired", "off-p4"),
        ("installment.due-soon", "plan-p1", 2),
        ("fee.waived", "plan-p1", "5.00"),
    ],
    [
        ("installment.paid", "plan-p1", 2),
        ("offer.made", "off-p6"),
        ("plan.adjusted", "plan-p1", "200.00", "4.50"),  # the partial refund r1
        ("offer.made", "off-p7"),
        ("offer.rejected", "off-p6", "not_eligible"),
        ("plan.created", "plan-p7", False),
        ("offer.expired", "off-p6"),
        ("account.delinquency", "acc-2", 1),
        ("installment.due-soon", "plan-p7", 1),  # the credit (50.00) paid part of it
    ],
    [
        ("installment.paid", "plan-p1", 3),
        ("plan.completed", "plan-p1"),
        ("account.delinquency", "acc-2", 0),
        ("dlq", PAYMENTS + ".dlq", "payment currency differs from the account's currency"),
        ("fee.waived", "plan-p7", "3.00"),
        (
            "dlq",
            POINTS + ".dlq",
            "points.redeemed names a plan this service does not know for the account",
        ),
        ("plan.created", "plan-p8", True),
    ],
]
