"""The topic registry: exactly contract section 3.

- :data:`TOPICS`: topic name -> :class:`TopicSpec` (producer, event types, key rule,
  compaction). Every event type is published to exactly one topic.
- :data:`EVENT_TYPES`: event type -> payload class (contract order).
- :data:`ENVELOPES`: event type -> the concrete envelope class for it
  (``Envelope[Payload]`` with ``type`` fixed to that event type).
- :func:`topic_for`, :func:`dlq_topic`, :data:`INPUT_TOPICS` (topics written by actors
  outside the project: the card system, the customer channel and, since the second
  release, the fraud team and the collections team).

Keys: ``"account"`` means the Kafka key is the account id (= envelope ``subject``);
``"business-day"`` means the key is the literal ``business-day`` (and so is the
subject). Producers are named as envelope ``source`` values: ``card-system``,
``customer-channel``, ``fraud-team``, ``collections-team`` and the services' own names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import create_model

from schemas import payloads as p
from schemas.envelope import Envelope

__all__ = [
    "TopicSpec",
    "TOPICS",
    "EVENT_TYPES",
    "ENVELOPES",
    "INPUT_TOPICS",
    "EXTERNAL_PRODUCERS",
    "BUSINESS_DAY_KEY",
    "topic_for",
    "dlq_topic",
    "consumer_group",
]

#: The Kafka key (and subject) of ``business-day.closed``.
BUSINESS_DAY_KEY = "business-day"

#: Producers outside the project.
EXTERNAL_PRODUCERS = frozenset(
    {"card-system", "customer-channel", "fraud-team", "collections-team"}
)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One row of contract section 3."""

    name: str
    producer: str
    event_types: frozenset[str]
    key: Literal["account", "business-day"]
    compacted: bool


def _topic(
    name: str,
    producer: str,
    *event_types: str,
    key: Literal["account", "business-day"] = "account",
    compacted: bool = False,
) -> TopicSpec:
    return TopicSpec(name, producer, frozenset(event_types), key, compacted)


#: Topic name -> spec, in contract order.
TOPICS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        _topic("card.accounts.v1", "card-system", "account.upserted", compacted=True),
        _topic("card.purchases.v1", "card-system", "purchase.posted", "purchase.refunded"),
        _topic("card.payments.v1", "card-system", "payment.received"),
        _topic("card.business-days.v1", "card-system", "business-day.closed", key="business-day"),
        _topic("installments.decisions.v1", "customer-channel", "offer.accepted", "offer.declined"),
        _topic("fraud.reviews.v1", "fraud-team", "purchase.review-closed"),
        _topic("collections.outcomes.v1", "collections-team", "contact.recorded"),
        _topic(
            "purchases.recorded.v1",
            "purchases",
            "purchase.recorded",
            "refund.recorded",
            "purchase.flagged",
        ),
        _topic(
            "installments.offers.v1",
            "offers",
            "offer.made",
            "offer.not-eligible",
            "offer.expired",
            "offer.rejected",
        ),
        _topic(
            "installments.plans.v1",
            "offers",
            "plan.created",
            "plan.adjusted",
            "installment.paid",
            "fee.waived",
            "plan.completed",
            "plan.cancelled",
            "installment.due-soon",
            "account.delinquency",
        ),
        _topic(
            "points.ledger.v1",
            "points",
            "points.accrued",
            "points.reversed",
            "points.redeemed",
            "points.redemption-rejected",
            "points.restored",
        ),
        _topic("reminders.outbound.v1", "reminders", "reminder.requested"),
        _topic(
            "collections.escalations.v1",
            "collections",
            "escalation.raised",
            "escalation.resolved",
            "promise.kept",
            "promise.broken",
        ),
    )
}

#: Event type -> payload class, in contract order.
EVENT_TYPES: dict[str, type[p.Payload]] = {
    cls.EVENT_TYPE: cls
    for cls in (
        p.AccountUpserted,
        p.PurchasePosted,
        p.PurchaseRefunded,
        p.PaymentReceived,
        p.BusinessDayClosed,
        p.OfferAccepted,
        p.OfferDeclined,
        p.PurchaseReviewClosed,
        p.ContactRecorded,
        p.PurchaseRecorded,
        p.RefundRecorded,
        p.PurchaseFlagged,
        p.OfferMade,
        p.OfferNotEligible,
        p.OfferExpired,
        p.OfferRejected,
        p.PlanCreated,
        p.PlanAdjusted,
        p.InstallmentPaid,
        p.FeeWaived,
        p.PlanCompleted,
        p.PlanCancelled,
        p.InstallmentDueSoon,
        p.AccountDelinquency,
        p.PointsAccrued,
        p.PointsReversed,
        p.PointsRedeemed,
        p.PointsRedemptionRejected,
        p.PointsRestored,
        p.ReminderRequested,
        p.EscalationRaised,
        p.EscalationResolved,
        p.PromiseKept,
        p.PromiseBroken,
    )
}

#: Topics written by actors outside the project (:data:`EXTERNAL_PRODUCERS`).
INPUT_TOPICS: frozenset[str] = frozenset(
    name for name, spec in TOPICS.items() if spec.producer in EXTERNAL_PRODUCERS
)

_TOPIC_OF: dict[str, str] = {
    event_type: spec.name for spec in TOPICS.values() for event_type in spec.event_types
}


def _envelope_class(event_type: str, payload: type[p.Payload]) -> type[Envelope[p.Payload]]:
    name = payload.__name__ + "Envelope"
    # A model built at run time: its type is known only as "some Envelope". Called
    # through Any so the check does not depend on pydantic's overloads of the day.
    make: Any = create_model
    cls: type[Envelope[p.Payload]] = make(
        name,
        __base__=Envelope[payload],  # type: ignore[valid-type]
        __module__=__name__,
        type=(Literal[event_type], ...),
    )
    cls.__doc__ = f"The envelope of a ``{event_type}`` event (``data: {payload.__name__}``)."
    return cls


#: Event type -> its envelope class (``type`` is that literal, ``data`` that payload).
ENVELOPES: dict[str, type[Envelope[p.Payload]]] = {
    event_type: _envelope_class(event_type, payload) for event_type, payload in EVENT_TYPES.items()
}


def topic_for(event_type: str) -> str:
    """The one topic ``event_type`` is published to (``KeyError`` for an unknown type)."""
    try:
        return _TOPIC_OF[event_type]
    except KeyError:
        raise KeyError(f"unknown event type {event_type!r}") from None


def consumer_group(service: str) -> str:
    """The Kafka consumer group of one of the project's services (the AsyncAPI document
    publishes it); a topic prefix, when set, comes in front (``Settings.consumer_group``)."""
    return f"installments-{service}"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of a consumed topic: ``<topic>.dlq``."""
    return f"{topic}.dlq"


def _check_registry() -> None:
    """Import-time consistency: every event type has a class and exactly one topic."""
    on_topics = [t for spec in TOPICS.values() for t in spec.event_types]
    if len(on_topics) != len(set(on_topics)):
        raise RuntimeError("an event type is listed on two topics")
    if set(on_topics) != set(EVENT_TYPES):
        raise RuntimeError("TOPICS and EVENT_TYPES list different event types")


_check_registry()
