"""new_event: deterministic ids, causation and correlation, subject and time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import EVENT_ID_NAMESPACE, Envelope, decode, encode, new_event, topic_for
from schemas.codec import event_id
from schemas.payloads import OfferDeclined, PlanCompleted, PurchasePosted, PurchaseRecorded
from tests.builders.examples import ACCOUNT, CAUSE_ID, EVENT_ID, PAYLOADS, envelope, raw


@pytest.fixture
def cause() -> Envelope[PurchasePosted]:
    return decode("card.purchases.v1", ACCOUNT.encode(), raw(envelope("purchase.posted")))


def recorded(cause: Envelope[PurchasePosted], rule: str = "recorded") -> Envelope[PurchaseRecorded]:
    data = PurchaseRecorded(**cause.data.model_dump())
    return new_event(
        "purchase.recorded", subject=ACCOUNT, data=data, source="purchases", cause=cause, rule=rule
    )


def test_ids_are_deterministic_and_differ_by_rule(cause: Envelope[PurchasePosted]) -> None:
    first, again, other = recorded(cause), recorded(cause), recorded(cause, "other")
    assert first.id == again.id
    assert encode(first) == encode(again)
    assert first.id != other.id
    assert first.id == str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{EVENT_ID}:recorded"))


def test_ids_differ_by_cause(cause: Envelope[PurchasePosted]) -> None:
    other_cause = decode(
        "card.purchases.v1",
        ACCOUNT.encode(),
        raw(envelope("purchase.posted", id=str(uuid.uuid4()))),
    )
    assert recorded(cause).id != recorded(other_cause).id


def test_causation_correlation_time_and_round_trip(cause: Envelope[PurchasePosted]) -> None:
    out = recorded(cause)
    assert out.causation_id == cause.id
    assert out.correlation_id == CAUSE_ID  # the cause's correlation id is carried on
    assert out.time == cause.time
    assert out.source == "purchases" and out.subject == ACCOUNT
    assert isinstance(out.data, PurchaseRecorded)
    wire = encode(out)
    assert encode(decode(topic_for("purchase.recorded"), ACCOUNT.encode(), wire)) == wire

    uncorrelated = decode(
        "card.purchases.v1", ACCOUNT.encode(), raw(envelope("purchase.posted", correlation_id=None))
    )
    assert recorded(uncorrelated).correlation_id == uncorrelated.id


def test_subject_defaults_and_checks(cause: Envelope[PurchasePosted]) -> None:
    declined = OfferDeclined(offer_id="off-1", account_id=ACCOUNT)
    out = new_event("offer.declined", data=declined, source="app", cause=cause, rule="x")
    assert out.subject == ACCOUNT
    # no account_id in the payload: the cause's subject
    out = new_event(
        "plan.completed",
        data=PlanCompleted(plan_id="plan-1"),
        source="offers",
        cause=cause,
        rule="done",
    )
    assert out.subject == ACCOUNT
    with pytest.raises(ValueError, match="subject must equal data.account_id"):
        new_event(
            "offer.declined",
            subject="acc-other",
            data=declined,
            source="app",
            cause=cause,
            rule="x",
        )


def test_without_cause(cause: Envelope[PurchasePosted]) -> None:
    time = datetime(2026, 11, 28, tzinfo=UTC)
    out = new_event(
        "plan.completed",
        subject=ACCOUNT,
        data=PlanCompleted(plan_id="p"),
        source="offers",
        cause=None,
        rule="seed",
        time=time,
    )
    assert out.id == str(uuid.uuid5(EVENT_ID_NAMESPACE, "seed"))
    assert out.causation_id is None and out.correlation_id is None and out.time == time
    with pytest.raises(ValueError, match="time="):
        new_event(
            "plan.completed",
            subject=ACCOUNT,
            data=PlanCompleted(plan_id="p"),
            source="offers",
            cause=None,
            rule="seed",
        )


def test_wrong_payload_type_and_dict_payload(cause: Envelope[PurchasePosted]) -> None:
    with pytest.raises(TypeError, match="PurchaseRecorded"):
        new_event("purchase.recorded", data=cause.data, source="purchases", cause=cause, rule="r")
    with pytest.raises(KeyError):
        new_event("purchase.deleted", data=cause.data, source="purchases", cause=cause, rule="r")
    out = new_event(
        "purchase.recorded",
        data=PAYLOADS["purchase.recorded"],
        source="purchases",
        cause=cause,
        rule="r",
    )
    assert isinstance(out.data, PurchaseRecorded)


def test_payload_account_id_reads_the_field_or_gives_none():
    from schemas.envelope import payload_account_id
    from schemas.registry import EVENT_TYPES

    declined = EVENT_TYPES["offer.declined"].model_validate(PAYLOADS["offer.declined"])
    assert payload_account_id(declined) == declined.account_id
    due_soon = EVENT_TYPES["installment.due-soon"].model_validate(PAYLOADS["installment.due-soon"])
    assert payload_account_id(due_soon) is None  # installment.due-soon has no account_id
    assert payload_account_id({"account_id": "acc-1"}) is None  # a raw mapping is not a payload


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
@settings(max_examples=500)
def test_event_ids_are_uuid5_of_the_namespace(name: str) -> None:
    """schemas.codec.event_id spells uuid5 out without the UUID object: the same
    characters for any name (non-ASCII, NUL, the longest ids)."""
    assert event_id(name) == str(uuid.uuid5(EVENT_ID_NAMESPACE, name))


def test_an_emitted_events_id_is_uuid5_of_its_cause_and_rule(
    cause: Envelope[PurchasePosted],
) -> None:
    assert recorded(cause).id == str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{cause.id}:recorded"))
