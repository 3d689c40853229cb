"""Every schema-valid extreme is APPLIED on real PostgreSQL, by every consuming service.

Each field of each event a service consumes gets the most extreme value its type allows,
found by walking the pydantic fields (a new field is covered without touching this
test): ids and free text of the maximum length (non-ASCII, text with a tab), the largest
amount (or sum) of the currency, the largest integer. Only the fields that must agree
with another event for it to apply (the account's tier, the accepted tenor, a schedule
that adds up, dates of the business calendar) are set by the scenario. The events go
through the real runtime batch path (``Runner.process_batch`` via tests/harness.py)
into PostgreSQL: nothing may be dead-lettered and nothing may raise.
"""

from __future__ import annotations

import typing
import uuid
from datetime import date
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from pydantic import AfterValidator, BaseModel
from pydantic.fields import FieldInfo
from sqlalchemy import select

from schemas import limits
from schemas.money import _MoneyMarker
from schemas.registry import ENVELOPES, topic_for
from schemas.types import _check_id, _check_text
from shared.runtime.store import inbox
from tests.harness import Harness

pytestmark = pytest.mark.integration

TIME = "2026-11-28T09:30:00Z"
_FILL = "é東x"  # non-ASCII: VARCHAR(n) counts characters, not bytes


def _constraints(annotation: Any, metadata: list[Any]) -> list[Any]:
    found: list[Any] = []
    for item in metadata:
        found.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Annotated:
            found.extend(_constraints(arg.__origin__, list(arg.__metadata__)))
    return found


def _longest(name: str, length: int, *, text: bool = False) -> str:
    head = f"{name}\t" if text else f"{name}-"
    body = (head + _FILL * length)[:length]
    return body


def _nested(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def extreme(model: type[BaseModel], base: dict[str, Any], digits: int = 2) -> dict[str, Any]:
    """``base`` with every field set to the extreme of its type (see the module doc)."""
    out = dict(base)
    for name, f in model.model_fields.items():
        nested = _nested(f.annotation)
        if nested is not None:
            if isinstance(base.get(name), dict):
                out[name] = extreme(nested, base[name], digits)
            continue
        found = _constraints(f.annotation, f.metadata)
        funcs = [c.func for c in found if isinstance(c, AfterValidator)]
        max_len = max((c.max_length for c in found if hasattr(c, "max_length")), default=None)
        le = [c.le for c in found if hasattr(c, "le")]
        money = [c for c in found if isinstance(c, _MoneyMarker)]
        if money:
            out[name] = str(limits.money_max(money[0].integer_digits, digits))
        elif _check_id in funcs and max_len:
            out[name] = _longest(name, max_len)
        elif _check_text in funcs and max_len:
            out[name] = _longest(name, max_len, text=True)
        elif le and typing.get_origin(f.annotation) is not list:
            out[name] = le[0]
    return out


ACCOUNT = extreme(
    ENVELOPES["account.upserted"].model_fields["data"].annotation, {"account_id": ""}
)["account_id"]
PURCHASE = _longest("purchase_id", limits.ID_MAX)
assert len(ACCOUNT) == len(PURCHASE) == limits.ID_MAX
AMOUNT = str(limits.money_max(limits.AMOUNT_INTEGER_DIGITS, 2))


def message(event_type: str, data: dict[str, Any], **fixed: Any) -> dict[str, Any]:
    """An envelope whose data is ``data`` at its extremes, then ``fixed`` (coherence)."""
    envelope = ENVELOPES[event_type]
    model = envelope.model_fields["data"].annotation
    payload = {**extreme(model, data), **fixed}
    subject = "business-day" if event_type == "business-day.closed" else ACCOUNT
    env = {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "source": _longest("source", limits.ID_MAX),
        "time": TIME,
        "subject": subject,
        "schema_version": 1,
        "correlation_id": _longest("correlation", limits.ID_MAX),
        "causation_id": _longest("causation", limits.ID_MAX),
        "data": payload,
    }
    envelope.model_validate(env)  # schema-valid: the point of the test
    return env


def schedule(principal: str, tenor: int, fee: str = "7.50") -> list[dict[str, Any]]:
    """A schedule adding up to ``principal`` (remainder on the first line)."""
    total = Decimal(principal)
    each = (total / tenor).quantize(Decimal("0.01"), ROUND_DOWN)
    first = total - each * (tenor - 1)
    lines = []
    for seq in range(1, tenor + 1):
        part = first if seq == 1 else each
        year, month = divmod(11 + seq, 12)
        due = date(2026 + year, month + 1, 28).isoformat()
        amount = part + Decimal(fee)
        lines.append(
            {"seq": seq, "due_date": due, "principal": str(part), "fee": fee, "amount": str(amount)}
        )
    return lines


def plan_created(plan_id: str, tenor: int, redeem_points: int, **fixed: Any) -> dict[str, Any]:
    lines = schedule(AMOUNT, tenor)
    total_fee = str(sum(Decimal(line["fee"]) for line in lines))
    return message(
        "plan.created",
        {"currency": "USD", "auto_converted": False},
        plan_id=plan_id,
        offer_id=fixed.pop("offer_id", "off-" + PURCHASE),
        purchase_id=PURCHASE,
        account_id=ACCOUNT,
        principal=AMOUNT,
        tenor_months=tenor,
        total_fee=total_fee,
        apr="13.45",
        redeem_points=redeem_points,
        schedule=lines,
        **fixed,
    )


ACCOUNT_BASE = {
    "status": "active",
    "segment": "white_collar",
    "tier": "diamond",
    "currency": "USD",
    "auto_convert": {"enabled": False, "threshold": "1.00", "tenor_months": 6},
    "contact": {"channel": "sms", "locale": "en-US", "contact_ref": "x"},
}
LOCALE = "abc" + "-abcdefgh" * 4
assert len(LOCALE) == limits.LOCALE_MAX


def account() -> dict[str, Any]:
    env = message("account.upserted", ACCOUNT_BASE, risk_score=1000)
    env["data"]["auto_convert"]["tenor_months"] = 6
    env["data"]["contact"]["locale"] = LOCALE
    return env


def purchase_data() -> dict[str, Any]:
    return {
        "currency": "USD",
        "card_last4": "1111",
        "channel": "pos",
        "posted_at": TIME,
        "merchant": {"name": "x", "mcc": "5732", "merchant_id": "x", "category": "x"},
    }


def refund_recorded() -> dict[str, Any]:
    return message(
        "refund.recorded",
        {"currency": "USD", "refunded_at": "2026-11-29T10:00:00Z", "fully_refunded": True},
        purchase_id=PURCHASE,
    )


def business_day(day: str) -> dict[str, Any]:
    return message("business-day.closed", {"business_date": day})


def _run(service: Any, tmp_path: Any, pg_database: str, messages: list[dict[str, Any]]) -> Harness:
    harness = Harness(service, tmp_path, database_url=pg_database)
    try:
        for env in messages:
            record = harness.publish(topic_for(env["type"]), env)
            out = harness.process(record)
            dead = [e for e in out if e.topic.endswith(".dlq")]
            assert dead == [], (env["type"], [e.headers for e in dead])
        with harness.runner.engine.connect() as conn:  # every one applied, on PostgreSQL
            assert conn.dialect.name == "postgresql"
            applied = conn.execute(select(inbox.c.event_id)).scalars().all()
        assert sorted(applied) == sorted(env["id"] for env in messages)
    finally:
        harness.close()
    return harness


def test_purchases_apply_the_extremes(pg_database, tmp_path):
    from tests.builders.services import PURCHASES as SERVICE

    _run(
        SERVICE,
        tmp_path,
        pg_database,
        [
            message("purchase.posted", purchase_data(), purchase_id=PURCHASE),
            message(
                "purchase.refunded",
                {"currency": "USD", "refunded_at": "2026-11-29T10:00:00Z"},
                purchase_id=PURCHASE,
            ),
        ],
    )


def test_offers_apply_the_extremes(pg_database, tmp_path):
    from tests.builders.services import OFFERS as SERVICE

    plan_id = "plan-" + PURCHASE
    _run(
        SERVICE,
        tmp_path,
        pg_database,
        [
            account(),
            message("purchase.recorded", purchase_data(), purchase_id=PURCHASE),
            message(
                "offer.accepted", {}, offer_id="off-" + PURCHASE, account_id=ACCOUNT, tenor_months=3
            ),
            message("offer.declined", {}),  # the longest offer id: unknown, rejected (applied)
            message(
                "points.redeemed",
                {"reason": "fee_redemption"},
                plan_id=plan_id,
                account_id=ACCOUNT,
            ),
            message("payment.received", {"currency": "USD", "received_at": TIME}),
            refund_recorded(),
            business_day("2026-11-28"),
        ],
    )


def test_points_apply_the_extremes(pg_database, tmp_path):
    from services.points.tables import ledger, plans
    from tests.builders.services import POINTS as SERVICE

    plan_id = _longest("plan_id", limits.DERIVED_ID_MAX)
    harness = _run(
        SERVICE,
        tmp_path,
        pg_database,
        [
            account(),
            message("purchase.recorded", purchase_data(), purchase_id=PURCHASE),
            plan_created(plan_id, 3, limits.COUNT_MAX),
            refund_recorded(),
            message("plan.cancelled", {"reason": "refund", "currency": "USD"}, plan_id=plan_id),
        ],
    )
    with harness.runner.engine.connect() as conn:
        assert conn.execute(select(plans.c.redeem_requested)).scalar_one() == limits.COUNT_MAX
        # diamond: floor(amount x 2) points, and the same again as first-plan bonus (after
        # the plan's fee was redeemed: 22.50 of fee for 2,250 of the points requested)
        earned = int(Decimal(AMOUNT) * 2)
        balances = list(conn.execute(select(ledger.c.balance_after)).scalars())
        assert max(balances) == 2 * earned - 2250 > 2**32
    harness.close()


def test_reminders_apply_the_extremes(pg_database, tmp_path):
    from tests.builders.services import REMINDERS as SERVICE

    plan_id = _longest("plan_id", limits.DERIVED_ID_MAX)
    _run(
        SERVICE,
        tmp_path,
        pg_database,
        [
            business_day("2026-12-21"),
            account(),
            message(
                "installment.due-soon",
                {"currency": "USD"},
                plan_id=plan_id,
                due_date="2026-12-28",
                days_until_due=7,
                business_date="2026-12-21",
            ),
            message("installment.paid", {"currency": "USD", "paid_on": "2026-12-27"}),
            message("plan.completed", {}),
            message("plan.cancelled", {"reason": "early_payoff", "currency": "USD"}),
        ],
    )


def test_collections_apply_the_extremes(pg_database, tmp_path):
    from tests.builders.services import COLLECTIONS as SERVICE

    plan_id = _longest("plan_id", limits.DERIVED_ID_MAX)
    _run(
        SERVICE,
        tmp_path,
        pg_database,
        [
            plan_created(plan_id, limits.TENOR_MAX, limits.COUNT_MAX),
            message(
                "installment.paid",
                {"currency": "USD", "paid_on": "2027-01-27"},
                plan_id=plan_id,
            ),
            message(
                "account.delinquency",
                {"currency": "USD"},
                business_date="2027-03-05",
                oldest_unpaid_due_date="2027-01-28",
            ),
            message("plan.completed", {}),
            message("plan.cancelled", {"reason": "refund", "currency": "USD"}, plan_id=plan_id),
        ],
    )
