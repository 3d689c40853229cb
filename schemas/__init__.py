"""The event contract in code: envelope, payloads, topic registry, codec.

Everything the services need::

    from schemas import Envelope, InvalidEvent, decode, encode, new_event, topic_for
    from schemas.payloads import PurchasePosted, PurchaseRecorded, ...

- :mod:`schemas.envelope`: :class:`Envelope` (generic in its payload).
- :mod:`schemas.payloads`: one class per event type; enums as ``Literal`` aliases.
- :mod:`schemas.money`: money (``Decimal`` from JSON strings only; currency digits),
  ``Rate`` decimal strings, the ISO 4217 table.
- :mod:`schemas.types`: ids, counts, dates, UTC times.
- :mod:`schemas.registry`: topics, event types, envelope classes (contract section 3).
- :mod:`schemas.guard`: depth / PAN / surrogate checks on the raw JSON.
- :mod:`schemas.codec`: :func:`decode`, :func:`encode`, :func:`new_event`,
  :class:`InvalidEvent`.
- :mod:`schemas.export`: ``python -m schemas.export [--check]`` writes/checks the JSON
  Schemas in ``schemas/json/``.
"""

from schemas.codec import EVENT_ID_NAMESPACE, InvalidEvent, decode, encode, new_event
from schemas.envelope import Envelope
from schemas.money import MINOR_UNITS
from schemas.payloads import (
    AccountDelinquency,
    AccountUpserted,
    AutoConvert,
    BusinessDayClosed,
    Contact,
    ContactRecorded,
    EscalationRaised,
    EscalationResolved,
    FeeWaived,
    InstallmentDueSoon,
    InstallmentPaid,
    Merchant,
    OfferAccepted,
    OfferDeclined,
    OfferExpired,
    OfferMade,
    OfferNotEligible,
    OfferOption,
    OfferRejected,
    Payload,
    PaymentReceived,
    PlanAdjusted,
    PlanCancelled,
    PlanCompleted,
    PlanCreated,
    PointsAccrued,
    PointsRedeemed,
    PointsRedemptionRejected,
    PointsRestored,
    PointsReversed,
    PreApproval,
    PromiseBroken,
    PromiseKept,
    PurchaseFlagged,
    PurchasePosted,
    PurchaseRecorded,
    PurchaseRefunded,
    PurchaseReviewClosed,
    RefundRecorded,
    ReminderRequested,
    ScheduleLine,
)
from schemas.registry import (
    ENVELOPES,
    EVENT_TYPES,
    INPUT_TOPICS,
    TOPICS,
    TopicSpec,
    dlq_topic,
    topic_for,
)

__all__ = [
    # codec
    "Envelope",
    "InvalidEvent",
    "decode",
    "encode",
    "new_event",
    "EVENT_ID_NAMESPACE",
    # registry
    "TOPICS",
    "TopicSpec",
    "EVENT_TYPES",
    "ENVELOPES",
    "INPUT_TOPICS",
    "topic_for",
    "dlq_topic",
    "MINOR_UNITS",
    # payloads
    "Payload",
    "AccountUpserted",
    "AutoConvert",
    "Contact",
    "PurchasePosted",
    "Merchant",
    "PurchaseRefunded",
    "PaymentReceived",
    "BusinessDayClosed",
    "OfferAccepted",
    "OfferDeclined",
    "PurchaseRecorded",
    "RefundRecorded",
    "OfferMade",
    "OfferOption",
    "OfferNotEligible",
    "OfferExpired",
    "OfferRejected",
    "PlanCreated",
    "ScheduleLine",
    "InstallmentPaid",
    "FeeWaived",
    "PlanCompleted",
    "PlanCancelled",
    "InstallmentDueSoon",
    "AccountDelinquency",
    "PointsAccrued",
    "PointsReversed",
    "PointsRedeemed",
    "PointsRedemptionRejected",
    "ReminderRequested",
    "EscalationRaised",
    "EscalationResolved",
    # second release
    "PreApproval",
    "PurchaseReviewClosed",
    "ContactRecorded",
    "PurchaseFlagged",
    "PlanAdjusted",
    "PointsRestored",
    "PromiseKept",
    "PromiseBroken",
]
