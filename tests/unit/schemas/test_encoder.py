"""The trusted way out (#16): events built with ``model_construct`` and written by
``schemas.encoder`` are byte for byte what validation and pydantic's writer give.

For every event type, from its example and from hypothesis-drawn variants of it (free
text with quotes, backslashes, control characters and any Unicode; money with fewer
decimal places than the currency, absent optional fields), and in the test environment
for every event a service emits (``Context.emit``; the harness tests run that way).
"""

from __future__ import annotations

import copy
import os
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas import ENVELOPES, EVENT_TYPES, decode, encode, new_event, topic_for
from schemas.codec import encode_with_pydantic
from schemas.encoder import SharedList, pydantic_json, to_json
from schemas.payloads import OfferMade, OfferOption, PlanCompleted, PointsAccrued
from shared.runtime.api import checked_encoding
from tests.builders.examples import PAYLOADS, envelope, key_for, raw, second_release_payload

EVENT_TYPE_NAMES = sorted(ENVELOPES)
WEIRD = 'a"b\\c d é€😀\u2028/'


def decoded(event_type: str, data: dict[str, Any]) -> Any:
    message = envelope(event_type, data)
    return decode(topic_for(event_type), key_for(event_type), raw(message), strict=True)


def full_example(event_type: str) -> dict[str, Any]:
    return second_release_payload(event_type)


@pytest.mark.parametrize("event_type", EVENT_TYPE_NAMES)
def test_every_event_type_is_written_as_pydantic_writes_it(event_type: str) -> None:
    for data in (copy.deepcopy(PAYLOADS[event_type]), full_example(event_type)):
        env = decoded(event_type, data)
        assert to_json(env) == pydantic_json(env)
        assert encode(env) == encode_with_pydantic(env)


def test_no_contract_class_falls_back_to_pydantic() -> None:
    from schemas import encoder

    for event_type in EVENT_TYPE_NAMES:
        to_json(decoded(event_type, full_example(event_type)))
    fallbacks = [
        cls.__name__
        for cls, writer in encoder._WRITERS.items()
        if writer.__qualname__.startswith("_fallback")
    ]
    assert fallbacks == []


# --- hypothesis: variants of each example ---------------------------------------------


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in _leaves(value, (*path, key))]
    if isinstance(node, list):
        return [leaf for i, value in enumerate(node) for leaf in _leaves(value, (*path, i))]
    return [(path, node)]


def _set(node: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        node = node[key]
    if value is _ABSENT:
        del node[path[-1]]
    else:
        node[path[-1]] = value


_ABSENT = object()


def _accepts(event_type: str, data: dict[str, Any], path: tuple[Any, ...], value: Any) -> bool:
    candidate = copy.deepcopy(data)
    _set(candidate, path, value)
    try:
        decoded(event_type, candidate)
    except Exception:  # noqa: BLE001 - InvalidEvent: the field does not take such a value
        return False
    return True


def _paths(event_type: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[Any]]:
    """(free-text paths, money paths, optional paths) of the event type's full example."""
    data = full_example(event_type)
    text, money, optional = [], [], []
    for path, value in _leaves(data):
        if isinstance(path[-1], str) and _accepts(event_type, data, path, _ABSENT):
            optional.append(path)
        if type(value) is not str or path[-1] in ("account_id",):
            continue  # account_id must equal the subject
        if _accepts(event_type, data, path, WEIRD):
            text.append(path)
        elif _accepts(event_type, data, path, "7.5") and not _accepts(event_type, data, path, "x"):
            money.append(path)
    return text, money, optional


PATHS = {event_type: _paths(event_type) for event_type in EVENT_TYPE_NAMES}
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from('"\\/\u2028'),
    min_size=1,
    max_size=24,
)


@st.composite
def variants(draw: Any) -> tuple[str, dict[str, Any]]:
    event_type = draw(st.sampled_from(EVENT_TYPE_NAMES))
    data = full_example(event_type)
    text, money, optional = PATHS[event_type]
    for path in text:
        if draw(st.booleans()):
            _set(data, path, draw(TEXT))
    for path in money:
        if draw(st.booleans()):
            units = draw(st.integers(min_value=0, max_value=10**9))
            places = draw(st.integers(min_value=0, max_value=2))
            _set(data, path, str(Decimal(units).scaleb(-places)))
    for path in optional:
        if draw(st.integers(0, 3)) == 0:
            try:
                _set(data, path, _ABSENT)
            except (KeyError, IndexError):
                pass
    return event_type, data


def _loosened(model: Any) -> Any:
    """A copy built with ``model_construct`` as a handler builds it, its money written with
    as few digits as possible (``12.50`` -> ``12.5``), so the trusted path must quantize."""
    values = {}
    for name, value in model.__dict__.items():
        if isinstance(value, BaseModel):
            value = _loosened(value)
        elif isinstance(value, list):
            value = [_loosened(v) if isinstance(v, BaseModel) else v for v in value]
        elif isinstance(value, Decimal) and name in type(model).__money_fields__:
            value = value.normalize() if value.normalize().as_tuple().exponent <= 0 else value
        values[name] = value
    return type(model).model_construct(**values)


@settings(
    max_examples=int(os.environ.get("ENCODER_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(variants())
def test_variants_are_written_as_pydantic_writes_them(variant: tuple[str, dict[str, Any]]) -> None:
    event_type, data = variant
    try:
        env = decoded(event_type, data)
    except Exception:  # noqa: BLE001 - a variant the contract refuses (sums, PANs...)
        assume(False)
        raise
    assert to_json(env) == pydantic_json(env)
    # a service's way out: built without validation, money loosened, then settled
    fields = {"source": "offers", "cause": env, "rule": "r", "subject": env.subject}
    trusted = new_event(event_type, data=_loosened(env.data), trusted=True, **fields)
    validated = new_event(event_type, data=env.data, **fields)
    assert encode(trusted) == encode_with_pydantic(validated)
    assert checked_encoding(event_type, _loosened(env.data), fields)[1] == encode(trusted)


# --- the trusted constructor and the checks of the test environment -------------------


def test_model_construct_matches_pydantics() -> None:
    for cls in [*EVENT_TYPES.values(), *ENVELOPES.values()]:
        fields = cls.model_fields
        values = {name: f"v-{name}" for name in list(fields)[::2]}
        ours = cls.model_construct(**values, unknown="ignored")
        theirs = BaseModel.model_construct.__func__(cls, **values, unknown="ignored")  # type: ignore[attr-defined]
        assert ours.__dict__ == theirs.__dict__
        assert list(ours.__dict__) == list(theirs.__dict__)
        assert ours.model_fields_set == theirs.model_fields_set
        assert ours.__pydantic_extra__ is None and ours.__pydantic_private__ is None


def _cause() -> Any:
    return decoded("purchase.posted", copy.deepcopy(PAYLOADS["purchase.posted"]))


def test_the_test_environment_refuses_a_malformed_event() -> None:
    fields = {"source": "points", "cause": _cause(), "rule": "r", "subject": "acc-000123"}
    bad = PointsAccrued.model_construct(
        account_id="acc-000123", points=-5, balance_after=1, reason="purchase"
    )
    with pytest.raises(ValidationError):
        checked_encoding("points.accrued", bad, fields)
    missing = PointsAccrued.model_construct(account_id="acc-000123", points=5, reason="purchase")
    with pytest.raises(ValidationError):
        checked_encoding("points.accrued", missing, fields)
    # the trusted path alone does not look (production): same bytes as a valid event would
    new_event("points.accrued", data=bad, trusted=True, **fields)


def test_trusted_money_is_quantized_or_refused() -> None:
    cause = _cause()
    fields = {"source": "offers", "cause": cause, "rule": "r"}
    option = dict(
        tenor_months=3,
        fee_model="flat_monthly",
        monthly_fee_rate=Decimal("0.0075"),
        total_fee=Decimal("0"),
        first_installment=Decimal("-0") + Decimal("5"),
        regular_installment=Decimal("5.0"),
        apr=Decimal("0"),
    )
    made = dict(
        offer_id="off-1",
        purchase_id="p-1",
        account_id="acc-000123",
        principal=Decimal("15"),
        currency="USD",
        expires_on=datetime(2026, 1, 1).date(),
    )
    data = OfferMade.model_construct(**made, options=[OfferOption.model_construct(**option)])
    value = encode(new_event("offer.made", data=data, trusted=True, **fields))
    assert b'"principal":"15.00"' in value and b'"total_fee":"0.00"' in value
    assert b'"regular_installment":"5.00"' in value
    assert value == checked_encoding("offer.made", data, fields)[1]
    too_precise = OfferMade.model_construct(
        **{**made, "principal": Decimal("15.001")},
        options=[OfferOption.model_construct(**option)],
    )
    with pytest.raises(ValueError):
        new_event("offer.made", data=too_precise, trusted=True, **fields)
    negative = OfferMade.model_construct(
        **made, options=[OfferOption.model_construct(**{**option, "total_fee": Decimal("-1")})]
    )
    with pytest.raises(ValueError):
        new_event("offer.made", data=negative, trusted=True, **fields)


def test_negative_zero_money_is_written_as_zero() -> None:
    fields = {"source": "offers", "cause": _cause(), "rule": "r"}
    data = PlanCompleted.model_construct(plan_id="plan-1")
    assert encode(new_event("plan.completed", data=data, trusted=True, **fields))
    delinquency = EVENT_TYPES["account.delinquency"].model_construct(
        account_id="acc-000123",
        business_date=datetime(2026, 1, 1).date(),
        days_past_due=0,
        overdue_amount=Decimal("-0.00"),
        currency="USD",
    )
    value = encode(new_event("account.delinquency", data=delinquency, trusted=True, **fields))
    assert b'"overdue_amount":"0.00"' in value


def test_a_shared_list_is_written_once_and_as_a_list() -> None:
    fields = {"source": "offers", "cause": _cause(), "rule": "r"}
    options = SharedList(
        [
            OfferOption.model_construct(
                tenor_months=tenor,
                fee_model="flat_monthly",
                monthly_fee_rate=Decimal("0.0075"),
                total_fee=Decimal("10.00"),
                first_installment=Decimal("100.00"),
                regular_installment=Decimal("100.00"),
                apr=Decimal("13.03"),
            )
            for tenor in (3, 6)
        ]
    )
    made = OfferMade.model_construct(
        offer_id="off-1",
        purchase_id="p-1",
        account_id="acc-000123",
        principal=Decimal("300.00"),
        currency="USD",
        expires_on=datetime(2026, 1, 1).date(),
        options=options,
    )
    first = checked_encoding("offer.made", made, fields)[1]
    assert options.json is not None and options.quantum == Decimal("0.01")
    again = checked_encoding("offer.made", made, {**fields, "rule": "other"})[1]
    assert first.split(b'"data":')[1] == again.split(b'"data":')[1]
    assert pydantic_json(made) == to_json(made)


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_times_are_written_in_utc_with_z(when: datetime) -> None:
    data = PlanCompleted.model_construct(plan_id="plan-1")
    env = new_event(
        "plan.completed",
        subject="acc-1",
        data=data,
        source="offers",
        cause=None,
        rule="x",
        time=when,
        trusted=True,
    )
    checked = new_event(
        "plan.completed",
        subject="acc-1",
        data=data,
        source="offers",
        cause=None,
        rule="x",
        time=when,
    )
    assert encode(env) == encode_with_pydantic(checked)
