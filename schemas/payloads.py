"""One payload class per event type: the ``data`` of the envelope (contract section 4).

Field names are exactly the contract's. Rules common to every model here:

- tolerant reader (contract section 2; :class:`schemas.types.ContractModel`): a
  consumer's read (:func:`schemas.codec.decode`) ignores unknown fields at every level;
  otherwise (``extra="forbid"``) an unknown field is rejected, so a payload built in
  Python, i.e. every event the project emits, has exactly the contract's fields.
- strict types: a JSON integer field takes only an integer (not ``"3"``, ``3.0`` or
  ``true``), a boolean only ``true``/``false``, a string only a string; enums are
  ``Literal[...]``; models are frozen (an event is a fact).
- money is ``Money`` (>= 0) or ``PositiveMoney`` (> 0) from :mod:`schemas.money`,
  checked against the payload's ``currency``; a sum over an account's plans is
  ``Total`` / ``PositiveTotal`` (more digits); rates (``apr``, ``monthly_fee_rate``)
  are ``Rate`` decimal strings; dates ``Date``, times ``UtcDateTime``.
- ids from outside are ``Id``; ids the project derives are ``DerivedId`` (offer, plan,
  case) and ``ReminderId``; sizes come from :mod:`schemas.limits`.
- each class has ``EVENT_TYPE`` (its ``type`` string); :mod:`schemas.registry` maps
  type strings to classes.

Additions to the contract (documented per class):

- ``currency`` on every project-emitted payload that carries money but has no currency
  in section 4 (``installment.paid``, ``fee.waived``, ``plan.cancelled``,
  ``installment.due-soon``, ``account.delinquency``, ``reminder.requested``,
  ``escalation.raised``, ``escalation.resolved``). Section 2 requires every amount to
  come "plus a currency": the minor-unit digit rule cannot be checked without it.
- payloads the contract leaves open (``purchase.recorded``, ``refund.recorded``,
  ``points.redemption-rejected``) and the reason-code lists are defined here; see each
  class.

Second release (contract section 4.1, all additive): ``AccountUpserted.pre_approval``
(:class:`PreApproval`), ``PurchaseRecorded.risk_flags``, ``OfferMade.pre_approved``,
``PlanCancelled.points_to_restore``, ``NotEligibleReason`` ``fraud_review``, and the
event types ``purchase.flagged`` (:class:`PurchaseFlagged`), ``purchase.review-closed``
(:class:`PurchaseReviewClosed`, from the fraud team), ``plan.adjusted``
(:class:`PlanAdjusted`), ``points.restored`` (:class:`PointsRestored`),
``contact.recorded`` (:class:`ContactRecorded`, from the collections team),
``promise.kept`` / ``promise.broken`` (:class:`PromiseKept`, :class:`PromiseBroken`).
New fields have defaults (or are optional), so a first-release producer's message
still validates.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StrictInt,
    WithJsonSchema,
    model_validator,
)

from schemas.limits import LOCALE_MAX, TENOR_MAX
from schemas.money import (
    Currency,
    GrandTotal,
    Money,
    MoneyModel,
    PositiveMoney,
    PositiveTotal,
    Rate,
    Total,
)
from schemas.types import (
    ContractModel,
    Count,
    Date,
    Days,
    DerivedId,
    Digits4,
    Id,
    PositiveCount,
    PositiveDays,
    ReminderId,
    Seq,
    ShortText,
    SignedCount,
    StrictBool,
    Text,
    UtcDateTime,
    tolerant_json_schema,
)

__all__ = [
    # bases
    "Payload",
    "Part",
    # enums
    "AccountStatus",
    "Segment",
    "Tier",
    "ContactChannel",
    "PurchaseChannel",
    "FeeModel",
    "NotEligibleReason",
    "OfferRejectedReason",
    "CancelReason",
    "AdjustReason",
    "RiskFlag",
    "ReviewOutcome",
    "ContactOutcome",
    "RestoreReason",
    "AccrualReason",
    "ReversalReason",
    "RedemptionReason",
    "RedemptionRejectedWhy",
    "EscalationAction",
    "Bucket",
    "Resolution",
    # nested
    "AutoConvert",
    "Contact",
    "Merchant",
    "OfferOption",
    "ScheduleLine",
    "PreApproval",
    # payloads
    "AccountUpserted",
    "PurchasePosted",
    "PurchaseRefunded",
    "PaymentReceived",
    "BusinessDayClosed",
    "OfferAccepted",
    "OfferDeclined",
    "PurchaseReviewClosed",
    "ContactRecorded",
    "PurchaseRecorded",
    "RefundRecorded",
    "PurchaseFlagged",
    "OfferMade",
    "OfferNotEligible",
    "OfferExpired",
    "OfferRejected",
    "PlanCreated",
    "PlanAdjusted",
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
    "PointsRestored",
    "ReminderRequested",
    "EscalationRaised",
    "EscalationResolved",
    "PromiseKept",
    "PromiseBroken",
]

_CONFIG = ConfigDict(
    strict=True, extra="forbid", frozen=True, json_schema_extra=tolerant_json_schema
)


class Payload(MoneyModel, ContractModel):
    """Base of every event payload (the envelope's ``data``)."""

    model_config = _CONFIG
    EVENT_TYPE: ClassVar[str] = ""


class Part(MoneyModel, ContractModel):
    """Base of nested objects inside a payload; money in them uses the payload's currency."""

    model_config = _CONFIG
    money_currency_field: ClassVar[str | None] = None


# --- enums (contract section 4 where it lists them; ours where it does not) ---------

AccountStatus = Literal["active", "blocked", "closed"]
Segment = Literal["young", "middle_class", "white_collar", "high_net_worth", "standard"]
Tier = Literal["silver", "gold", "platinum", "diamond"]
ContactChannel = Literal["sms", "email", "push"]
PurchaseChannel = Literal["pos", "ecommerce", "moto"]
FeeModel = Literal["flat_monthly", "amortized"]

#: Why a recorded purchase gets no offer (section 5 "Offers", one code per failed rule).
NotEligibleReason = Literal[
    "account_unknown",  # no account.upserted seen for the account
    "account_not_active",  # status blocked or closed
    "amount_below_minimum",  # < 500.00 (300.00 for segment young)
    "mcc_excluded",  # cash, quasi-cash, transfers, gambling
    "overdue_installment",  # the account has an overdue installment
    "risk_score_too_low",  # < 600
    "installment_limit_exceeded",  # outstanding principal + amount > installment_limit
    "currency_mismatch",  # purchase currency differs from the account's
    "purchase_refunded",  # refunded before an offer was made
    "already_converted",  # the purchase already has a plan
    "fraud_review",  # flagged (risk_flags) and the fraud team has not cleared it (5.1)
]

#: Why an ``offer.accepted`` (or a decline) could not be applied.
OfferRejectedReason = Literal[
    "unknown_offer",  # no such offer (for this account)
    "expired",  # accepted after expires_on
    "declined",  # the offer was declined before
    "already_converted",  # the purchase already has a plan (offer accepted before)
    "refunded",  # the purchase was refunded meanwhile
    "superseded",  # a newer offer replaced this one
    "invalid_tenor",  # tenor_months is not one of the offer's options
    "not_eligible",  # the account stopped being eligible (e.g. became overdue)
]

CancelReason = Literal["refund", "early_payoff"]
#: ``plan.adjusted.reason`` (a partial refund of a converted purchase; section 5.1).
AdjustReason = Literal["refund"]

#: ``purchase.recorded.risk_flags`` / ``purchase.flagged.flags`` (section 5.1), listed in
#: this order.
RiskFlag = Literal["velocity", "amount_spike", "cnp_new_merchant"]
#: ``purchase.review-closed.outcome`` (the fraud team's decision).
ReviewOutcome = Literal["cleared", "confirmed_fraud"]
#: ``contact.recorded.outcome`` (the collections team's contact with the customer).
ContactOutcome = Literal[
    "reached", "no_answer", "wrong_party", "promise_to_pay", "dispute", "dispute_resolved"
]
#: ``points.restored.reason`` (points given back when a plan's waived fees are removed).
RestoreReason = Literal["plan_cancelled", "plan_adjusted"]

#: ``reason`` per points event (the contract's list, split by the event it belongs to).
AccrualReason = Literal["purchase", "first_installment_bonus"]
ReversalReason = Literal["refund", "plan_cancelled"]
RedemptionReason = Literal["fee_redemption"]
#: Why a redemption was rejected (``points.redemption-rejected.why``).
RedemptionRejectedWhy = Literal["insufficient_points", "nothing_to_waive"]

EscalationAction = Literal["sms", "sms_push", "call", "letter", "agency", "legal"]
Bucket = Literal["M1", "M2", "M3", "M4+"]
Resolution = Literal["cured", "charged_off"]

# --- small field types --------------------------------------------------------------

TenorMonths = Annotated[StrictInt, Field(ge=1, le=TENOR_MAX)]
RiskScore = Annotated[StrictInt, Field(ge=0, le=1000)]
Level = Annotated[StrictInt, Field(ge=1, le=6)]
Locale = Annotated[
    str,
    Field(
        strict=True,
        max_length=LOCALE_MAX,
        pattern=r"^[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{1,8}){0,4}$",
    ),
]
Category = ShortText


def _opaque_ref(value: str) -> str:
    # The contract forbids phone numbers and e-mail addresses in events.
    if "@" in value or re.fullmatch(r"\+[0-9 ()-]{6,}", value):
        raise ValueError("must be an opaque reference, not an e-mail address or phone number")
    return value


ContactRef = Annotated[Id, AfterValidator(_opaque_ref)]
#: ``contact.recorded.agent_ref``: an opaque reference to the collections agent.
AgentRef = ContactRef


def _below_one(value: Decimal) -> Decimal:
    if value >= 1:
        raise ValueError('must be a decimal share below 1, like "0.20"')
    return value


#: A share of a rate, ``0 <= x < 1`` (``pre_approval.fee_discount``: ``"0.20"`` = 20 % off).
Share = Annotated[
    Rate,
    AfterValidator(_below_one),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^0(\.[0-9]{1,8})?$",
            "description": "A decimal share string, 0 <= x < 1, at most 8 decimal places "
            '(e.g. "0.20").',
        }
    ),
]


_RISK_FLAG_ORDER = list(typing.get_args(RiskFlag))


def _canonical_flags(flags: Sequence[str], field: str) -> None:
    """Risk flags are distinct and listed in :data:`RiskFlag` order (section 5.1)."""
    if not flags:
        return  # the common case: a clean purchase
    order = _RISK_FLAG_ORDER
    if list(flags) != sorted(set(flags), key=order.index):
        raise ValueError(f"{field} must be distinct and in the order {', '.join(order)}")


# --- input events: card system ------------------------------------------------------


class AutoConvert(Part):
    """``account.upserted.auto_convert``: the account's opt-in to automatic conversion.

    ``threshold`` is money in the account's ``currency``.
    """

    enabled: StrictBool
    threshold: Money
    tenor_months: TenorMonths


class Contact(Part):
    """``account.upserted.contact``: how to reach the customer (no phone/e-mail in events)."""

    channel: ContactChannel
    locale: Locale
    contact_ref: ContactRef


class PreApproval(Part):
    """``account.upserted.pre_approval`` (second release): a pre-approved installment line.

    ``limit`` is money in the account's ``currency``; ``valid_to`` the last posting date
    it covers; ``fee_discount`` a share of the monthly rate (``"0.20"`` = 20 % off),
    ``0 <= fee_discount < 1``.
    """

    limit: Money
    valid_to: Date
    fee_discount: Share


class AccountUpserted(Payload):
    """``account.upserted`` (card.accounts.v1, compacted; from the card system).

    ``installment_limit`` absent means "a configured share of credit_limit";
    ``auto_convert`` absent means not opted in; ``pre_approval`` (second release)
    absent means not pre-approved. Money in ``currency``.
    """

    EVENT_TYPE: ClassVar[str] = "account.upserted"

    account_id: Id
    status: AccountStatus
    segment: Segment
    tier: Tier
    credit_limit: Money
    installment_limit: Money | None = None
    risk_score: RiskScore
    currency: Currency
    auto_convert: AutoConvert | None = None
    contact: Contact
    pre_approval: PreApproval | None = None


class Merchant(Part):
    """``purchase.posted.merchant``. ``category`` is optional free text (travel, ...)."""

    merchant_id: Id
    name: Text
    mcc: Digits4
    category: Category | None = None


class PurchasePosted(Payload):
    """``purchase.posted`` (card.purchases.v1; from the card system)."""

    EVENT_TYPE: ClassVar[str] = "purchase.posted"

    purchase_id: Id
    account_id: Id
    card_token: Id
    card_last4: Digits4
    amount: PositiveMoney
    currency: Currency
    merchant: Merchant
    channel: PurchaseChannel
    posted_at: UtcDateTime


class PurchaseRefunded(Payload):
    """``purchase.refunded`` (card.purchases.v1). ``amount`` may be partial."""

    EVENT_TYPE: ClassVar[str] = "purchase.refunded"

    refund_id: Id
    purchase_id: Id
    account_id: Id
    amount: PositiveMoney
    currency: Currency
    refunded_at: UtcDateTime


class PaymentReceived(Payload):
    """``payment.received`` (card.payments.v1)."""

    EVENT_TYPE: ClassVar[str] = "payment.received"

    payment_id: Id
    account_id: Id
    amount: PositiveMoney
    currency: Currency
    received_at: UtcDateTime


class BusinessDayClosed(Payload):
    """``business-day.closed`` (card.business-days.v1; key and subject ``business-day``)."""

    EVENT_TYPE: ClassVar[str] = "business-day.closed"

    business_date: Date


# --- input events: customer channel -------------------------------------------------


class OfferAccepted(Payload):
    """``offer.accepted`` (installments.decisions.v1). ``redeem_points`` is optional."""

    EVENT_TYPE: ClassVar[str] = "offer.accepted"

    offer_id: DerivedId
    account_id: Id
    tenor_months: TenorMonths
    redeem_points: Count | None = None


class OfferDeclined(Payload):
    """``offer.declined`` (installments.decisions.v1)."""

    EVENT_TYPE: ClassVar[str] = "offer.declined"

    offer_id: DerivedId
    account_id: Id


# --- input events: fraud team and collections team (second release) ----------------


class PurchaseReviewClosed(Payload):
    """``purchase.review-closed`` (fraud.reviews.v1; from the fraud team).

    The fraud team's decision on a flagged purchase: ``cleared`` (offered afresh as of
    ``closed_on``) or ``confirmed_fraud`` (never offered).
    """

    EVENT_TYPE: ClassVar[str] = "purchase.review-closed"

    purchase_id: Id
    account_id: Id
    outcome: ReviewOutcome
    closed_on: Date


class ContactRecorded(Payload):
    """``contact.recorded`` (collections.outcomes.v1; from the collections team).

    ``promised_amount`` (> 0, in ``currency``), ``currency`` and ``promised_date`` are
    all three required when ``outcome`` is ``promise_to_pay`` and must be absent
    otherwise. ``agent_ref`` is an opaque reference (no e-mail or phone number).
    ``case_id`` is the collections service's case id (``escalation.raised.case_id``).
    """

    EVENT_TYPE: ClassVar[str] = "contact.recorded"

    contact_id: Id
    case_id: DerivedId
    account_id: Id
    outcome: ContactOutcome
    contacted_on: Date
    agent_ref: AgentRef
    promised_amount: PositiveMoney | None = None
    currency: Currency | None = None
    promised_date: Date | None = None

    @model_validator(mode="after")
    def _promise_fields(self) -> ContactRecorded:
        present = [
            name
            for name in ("promised_amount", "currency", "promised_date")
            if getattr(self, name) is not None
        ]
        if self.outcome == "promise_to_pay":
            if len(present) != 3:
                raise ValueError(
                    "promised_amount, currency and promised_date are required when outcome "
                    "is promise_to_pay"
                )
        elif present:
            raise ValueError(
                f"{', '.join(present)} must be absent unless outcome is promise_to_pay"
            )
        return self


# --- purchases service --------------------------------------------------------------


class PurchaseRecorded(Payload):
    """``purchase.recorded`` (purchases.recorded.v1): a validated, deduplicated purchase.

    It carries the ``purchase.posted`` fields unchanged, plus ``risk_flags`` (second
    release): the screening flags (:data:`RiskFlag`), distinct and in contract order,
    empty when clean; absent (a first-release producer) reads as empty.
    """

    EVENT_TYPE: ClassVar[str] = "purchase.recorded"

    purchase_id: Id
    account_id: Id
    card_token: Id
    card_last4: Digits4
    amount: PositiveMoney
    currency: Currency
    merchant: Merchant
    channel: PurchaseChannel
    posted_at: UtcDateTime
    risk_flags: list[RiskFlag] = Field(default_factory=list, max_length=3)

    @model_validator(mode="after")
    def _flags_in_order(self) -> PurchaseRecorded:
        _canonical_flags(self.risk_flags, "risk_flags")
        return self


class RefundRecorded(Payload):
    """``refund.recorded`` (purchases.recorded.v1): an accepted refund of a recorded purchase.

    Not specified by the contract: the ``purchase.refunded`` fields plus
    ``refunded_total`` (everything refunded on the purchase so far, this refund
    included) and ``fully_refunded`` (nothing is left to refund).
    """

    EVENT_TYPE: ClassVar[str] = "refund.recorded"

    refund_id: Id
    purchase_id: Id
    account_id: Id
    amount: PositiveMoney
    currency: Currency
    refunded_at: UtcDateTime
    refunded_total: PositiveMoney
    fully_refunded: StrictBool

    @model_validator(mode="after")
    def _total_covers_amount(self) -> RefundRecorded:
        if self.refunded_total < self.amount:
            raise ValueError("refunded_total must include this refund's amount")
        return self


class PurchaseFlagged(Payload):
    """``purchase.flagged`` (purchases.recorded.v1; second release): a recorded purchase
    the screening flagged, for the fraud team.

    ``flags`` are the purchase's ``risk_flags``: at least one, distinct, in contract order.
    """

    EVENT_TYPE: ClassVar[str] = "purchase.flagged"

    purchase_id: Id
    account_id: Id
    amount: PositiveMoney
    currency: Currency
    flags: list[RiskFlag] = Field(min_length=1, max_length=3)
    posted_at: UtcDateTime

    @model_validator(mode="after")
    def _flags_in_order(self) -> PurchaseFlagged:
        _canonical_flags(self.flags, "flags")
        return self


# --- offers service: installments.offers.v1 -----------------------------------------


class OfferOption(Part):
    """``offer.made.options[]``: one tenor. Money in the offer's ``currency``.

    ``monthly_fee_rate`` and ``apr`` are decimal strings (``"0.0060"``, ``"13.03"``).
    """

    tenor_months: TenorMonths
    fee_model: FeeModel
    monthly_fee_rate: Rate
    total_fee: Money
    first_installment: PositiveMoney
    regular_installment: PositiveMoney
    apr: Rate


class OfferMade(Payload):
    """``offer.made``: the installment options for a recorded purchase.

    ``promotion`` is the id of the merchant promotion that applies, if any. Tenors in
    ``options`` are distinct. ``pre_approved`` (second release; default false) is true
    when the account's ``pre_approval`` made the purchase eligible.
    """

    EVENT_TYPE: ClassVar[str] = "offer.made"

    offer_id: DerivedId
    purchase_id: Id
    account_id: Id
    principal: PositiveMoney
    currency: Currency
    expires_on: Date
    promotion: Id | None = None
    options: list[OfferOption] = Field(min_length=1, max_length=12)
    pre_approved: StrictBool = False

    @model_validator(mode="after")
    def _distinct_tenors(self) -> OfferMade:
        tenors = [option.tenor_months for option in self.options]
        if len(set(tenors)) != len(tenors):
            raise ValueError("options must have distinct tenor_months")
        return self


class OfferNotEligible(Payload):
    """``offer.not-eligible``: every rule the purchase failed (distinct codes)."""

    EVENT_TYPE: ClassVar[str] = "offer.not-eligible"

    purchase_id: Id
    account_id: Id
    reasons: list[NotEligibleReason] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _distinct_reasons(self) -> OfferNotEligible:
        if len(set(self.reasons)) != len(self.reasons):
            raise ValueError("reasons must be distinct")
        return self


class OfferExpired(Payload):
    """``offer.expired``: an open offer passed ``expires_on`` at this end of day.

    ``business_date`` is the business date whose close expired it (section 4.1).
    """

    EVENT_TYPE: ClassVar[str] = "offer.expired"

    offer_id: DerivedId
    purchase_id: Id
    account_id: Id
    business_date: Date


class OfferRejected(Payload):
    """``offer.rejected``: an ``offer.accepted``/``offer.declined`` that could not apply.

    ``offer_id`` and ``account_id`` as received, ``purchase_id`` when the offer is known,
    and a ``reason`` code (:data:`OfferRejectedReason`, the list of section 4.1).
    """

    EVENT_TYPE: ClassVar[str] = "offer.rejected"

    offer_id: DerivedId
    account_id: Id
    purchase_id: Id | None = None
    reason: OfferRejectedReason


# --- offers service: installments.plans.v1 ------------------------------------------


class ScheduleLine(Part):
    """``plan.created.schedule[]``: one installment; ``amount = principal + fee``."""

    seq: Seq
    due_date: Date
    principal: Money
    fee: Money
    amount: Money


class PlanCreated(Payload):
    """``plan.created``: a purchase converted into installments.

    ``offer_id`` is required except for auto-converted plans (``auto_converted: true``
    has no offer). ``redeem_points`` defaults to 0. Checked here: the schedule has
    ``tenor_months`` lines numbered 1..n, each ``amount = principal + fee``,
    Σ principal = ``principal`` and Σ fee = ``total_fee`` (no money created or lost).
    """

    EVENT_TYPE: ClassVar[str] = "plan.created"

    plan_id: DerivedId
    offer_id: DerivedId | None = None
    purchase_id: Id
    account_id: Id
    principal: PositiveMoney
    currency: Currency
    tenor_months: TenorMonths
    total_fee: Money
    apr: Rate
    auto_converted: StrictBool
    redeem_points: Count = 0
    schedule: list[ScheduleLine] = Field(min_length=1, max_length=TENOR_MAX)

    @model_validator(mode="after")
    def _schedule_adds_up(self) -> PlanCreated:
        if self.offer_id is None and not self.auto_converted:
            raise ValueError("offer_id is required unless auto_converted is true")
        lines = self.schedule
        if len(lines) != self.tenor_months:
            raise ValueError("schedule must have tenor_months lines")
        if [line.seq for line in lines] != list(range(1, len(lines) + 1)):
            raise ValueError("schedule seq must run 1, 2, ... in order")
        if any(line.amount != line.principal + line.fee for line in lines):
            raise ValueError("each schedule line's amount must equal principal + fee")
        if sum(line.principal for line in lines) != self.principal:
            raise ValueError("schedule principals must add up to principal")
        if sum(line.fee for line in lines) != self.total_fee:
            raise ValueError("schedule fees must add up to total_fee")
        return self


class PlanAdjusted(Payload):
    """``plan.adjusted`` (second release): a partial refund lowered a plan's unpaid principal.

    ``principal_reduced`` (> 0) is the refunded principal; ``fee_reduced`` all the fee
    removed; ``fee_returned`` the part of it already paid (returned to the card
    account), so ``fee_returned <= fee_reduced``. ``schedule`` is the plan's unpaid
    installments after the change (``seq`` increasing, each ``amount = principal +
    fee``). ``points_to_restore`` (default 0): points spent on waivers of the removed
    fees, given back by the points service (``points.restored``). Money in ``currency``.
    """

    EVENT_TYPE: ClassVar[str] = "plan.adjusted"

    plan_id: DerivedId
    account_id: Id
    reason: AdjustReason
    refund_id: Id
    principal_reduced: PositiveMoney
    fee_reduced: Money
    fee_returned: Money
    currency: Currency
    schedule: list[ScheduleLine] = Field(min_length=1, max_length=TENOR_MAX)
    points_to_restore: Count = 0

    @model_validator(mode="after")
    def _adjustment_adds_up(self) -> PlanAdjusted:
        if self.fee_returned > self.fee_reduced:
            raise ValueError("fee_returned must not exceed fee_reduced")
        seqs = [line.seq for line in self.schedule]
        if any(a >= b for a, b in zip(seqs, seqs[1:], strict=False)):
            raise ValueError("schedule seq must be increasing")
        if any(line.amount != line.principal + line.fee for line in self.schedule):
            raise ValueError("each schedule line's amount must equal principal + fee")
        return self


class InstallmentPaid(Payload):
    """``installment.paid``: installment ``seq`` of the plan is fully paid on ``paid_on``.

    ``currency`` (of ``amount``) is an addition to the contract's fields.
    """

    EVENT_TYPE: ClassVar[str] = "installment.paid"

    plan_id: DerivedId
    seq: Seq
    amount: PositiveMoney
    currency: Currency
    paid_on: Date


class FeeWaived(Payload):
    """``fee.waived``: fees not yet paid lowered by ``amount`` for ``points`` redeemed.

    ``currency`` (of ``amount``) is an addition to the contract's fields.
    """

    EVENT_TYPE: ClassVar[str] = "fee.waived"

    plan_id: DerivedId
    amount: PositiveMoney
    currency: Currency
    points: Count


class PlanCompleted(Payload):
    """``plan.completed``: every installment of the plan is paid."""

    EVENT_TYPE: ClassVar[str] = "plan.completed"

    plan_id: DerivedId


class PlanCancelled(Payload):
    """``plan.cancelled`` (refund or early payoff).

    ``currency`` (of the returned amounts) is an addition to the contract's fields.
    ``points_to_restore`` (second release, default 0): points spent on waivers of the
    fees the cancellation removes, given back by the points service (``points.restored``).
    """

    EVENT_TYPE: ClassVar[str] = "plan.cancelled"

    plan_id: DerivedId
    reason: CancelReason
    principal_returned: Money
    fee_returned: Money
    currency: Currency
    points_to_restore: Count = 0


class InstallmentDueSoon(Payload):
    """``installment.due-soon``: an unpaid installment due within the look-ahead window.

    ``currency`` (of ``amount_outstanding``) is an addition to the contract's fields.
    """

    EVENT_TYPE: ClassVar[str] = "installment.due-soon"

    plan_id: DerivedId
    seq: Seq
    due_date: Date
    amount_outstanding: PositiveMoney
    currency: Currency
    days_until_due: Days
    business_date: Date


class AccountDelinquency(Payload):
    """``account.delinquency``: the account's overdue position at an end of day.

    Also emitted with ``days_past_due: 0`` and ``overdue_amount: "0.00"`` when a payment
    clears every overdue installment; ``oldest_unpaid_due_date`` is then absent (it is
    required while ``days_past_due > 0``). ``currency`` is an addition to the contract.
    """

    EVENT_TYPE: ClassVar[str] = "account.delinquency"

    account_id: Id
    business_date: Date
    days_past_due: Days
    overdue_amount: Total
    currency: Currency
    oldest_unpaid_due_date: Date | None = None

    @model_validator(mode="after")
    def _oldest_when_overdue(self) -> AccountDelinquency:
        if self.days_past_due > 0 and self.oldest_unpaid_due_date is None:
            raise ValueError("oldest_unpaid_due_date is required when days_past_due > 0")
        return self


# --- points service: points.ledger.v1 -----------------------------------------------
#
# ``points`` is the size of the movement (>= 0; the event type gives its direction);
# ``balance_after`` is the account's balance after it (a reversal may take it below 0).


class PointsAccrued(Payload):
    """``points.accrued``: points earned for a purchase, or the first plan's bonus.

    ``purchase_id`` for ``purchase``; ``plan_id`` (and ``purchase_id``) for
    ``first_installment_bonus``.
    """

    EVENT_TYPE: ClassVar[str] = "points.accrued"

    account_id: Id
    points: Count
    balance_after: SignedCount
    reason: AccrualReason
    purchase_id: Id | None = None
    plan_id: DerivedId | None = None


class PointsReversed(Payload):
    """``points.reversed``: points taken back after a refund or a plan cancellation."""

    EVENT_TYPE: ClassVar[str] = "points.reversed"

    account_id: Id
    points: Count
    balance_after: SignedCount
    reason: ReversalReason
    purchase_id: Id | None = None
    plan_id: DerivedId | None = None


class PointsRedeemed(Payload):
    """``points.redeemed``: points spent on a plan's fee waiver."""

    EVENT_TYPE: ClassVar[str] = "points.redeemed"

    account_id: Id
    points: PositiveCount
    balance_after: SignedCount
    reason: RedemptionReason
    plan_id: DerivedId


class PointsRedemptionRejected(Payload):
    """``points.redemption-rejected``: a requested redemption that was not made.

    Not specified by the contract: ``points`` requested, ``balance_after`` (unchanged
    balance), ``reason: fee_redemption``, ``plan_id`` and an optional ``why``
    (:data:`RedemptionRejectedWhy`). The plan keeps its fee.
    """

    EVENT_TYPE: ClassVar[str] = "points.redemption-rejected"

    account_id: Id
    points: PositiveCount
    balance_after: SignedCount
    reason: RedemptionReason
    plan_id: DerivedId
    why: RedemptionRejectedWhy | None = None


class PointsRestored(Payload):
    """``points.restored`` (second release): redeemed points given back because a plan's
    cancellation or adjustment removed fees they had waived (``points_to_restore``).

    ``reason`` is :data:`RestoreReason`; never more than was redeemed for the plan.
    """

    EVENT_TYPE: ClassVar[str] = "points.restored"

    account_id: Id
    plan_id: DerivedId
    points: PositiveCount
    balance_after: SignedCount
    reason: RestoreReason


# --- reminders and collections ------------------------------------------------------


class ReminderRequested(Payload):
    """``reminder.requested``: ask the notification gateway to remind the customer.

    ``currency`` (of ``amount_due``) is an addition to the contract's fields.
    """

    EVENT_TYPE: ClassVar[str] = "reminder.requested"

    reminder_id: ReminderId
    account_id: Id
    plan_id: DerivedId
    seq: Seq
    due_date: Date
    amount_due: PositiveMoney
    currency: Currency
    days_before_due: Days
    channel: ContactChannel
    template: Text
    contact_ref: ContactRef


class EscalationRaised(Payload):
    """``escalation.raised``: a collections case reached ``level`` (1-6).

    ``currency`` (of ``overdue_amount``) is an addition to the contract's fields.
    """

    EVENT_TYPE: ClassVar[str] = "escalation.raised"

    case_id: DerivedId
    account_id: Id
    level: Level
    action: EscalationAction
    bucket: Bucket
    days_past_due: PositiveDays
    overdue_amount: PositiveTotal
    currency: Currency
    business_date: Date


class EscalationResolved(Payload):
    """``escalation.resolved``: a case is ``cured`` or ``charged_off``.

    ``amount`` (written off) is required for ``charged_off`` and optional otherwise.
    ``currency`` is an addition to the contract's fields.
    """

    EVENT_TYPE: ClassVar[str] = "escalation.resolved"

    case_id: DerivedId
    account_id: Id
    resolution: Resolution
    business_date: Date
    amount: GrandTotal | None = None
    currency: Currency

    @model_validator(mode="after")
    def _amount_for_charge_off(self) -> EscalationResolved:
        if self.resolution == "charged_off" and self.amount is None:
            raise ValueError("amount is required when resolution is charged_off")
        return self


class _PromiseOutcome(Payload):
    """Fields of ``promise.kept`` / ``promise.broken`` (second release).

    ``contact_id`` is the ``contact.recorded`` that made the promise; ``paid_amount`` is
    what the payments received from ``contacted_on`` on add up to (a sum, may be 0);
    ``business_date`` the last business date closed when the promise was decided.
    """

    case_id: DerivedId
    account_id: Id
    contact_id: Id
    promised_amount: PositiveMoney
    paid_amount: Total
    currency: Currency
    business_date: Date


class PromiseKept(_PromiseOutcome):
    """``promise.kept``: payments since the contact reached the promised amount.

    ``paid_amount >= promised_amount``. ``currency`` of both amounts.
    """

    EVENT_TYPE: ClassVar[str] = "promise.kept"

    @model_validator(mode="after")
    def _paid_enough(self) -> PromiseKept:
        if self.paid_amount < self.promised_amount:
            raise ValueError("paid_amount must be at least promised_amount for promise.kept")
        return self


class PromiseBroken(_PromiseOutcome):
    """``promise.broken``: the close of promised_date + 3 days found the promise not kept.

    ``paid_amount < promised_amount``. ``currency`` of both amounts.
    """

    EVENT_TYPE: ClassVar[str] = "promise.broken"

    @model_validator(mode="after")
    def _paid_short(self) -> PromiseBroken:
        if self.paid_amount >= self.promised_amount:
            raise ValueError("paid_amount must be below promised_amount for promise.broken")
        return self
