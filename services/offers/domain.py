"""The offers rules: eligibility, pricing, schedules, payments, refunds, waivers, end of day.

Plain Python, no Kafka and no SQL. Conventions used throughout:

- Money is `Decimal` on the currency's minor unit (`minor_digits`, 2 for EUR, 0 for JPY);
  never a float. Rates are `Decimal` fractions (0.006 = 0.60 % a month).
- Rounding: amounts computed from a rate (a fee) are rounded ROUND_HALF_UP to the minor
  unit; amounts split into parts (a schedule) are rounded DOWN and the remainder goes on
  one part, so the parts always add up to the total exactly.
- Dates come in as arguments (posting date, payment date, business date); nothing here
  reads the clock. An installment "is due" on its due date: due when due_date <= date,
  "not yet due" when due_date > date.
- State is immutable: a function returns the new `InstallmentState`s with its result,
  and the handler writes them.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from functools import lru_cache
from typing import Any, Literal

from services.offers.policy import OffersPolicy, Promotion

ZERO = Decimal(0)
Placement = Literal["first", "last"]


def minor_unit(minor_digits: int = 2) -> Decimal:
    """The smallest amount of the currency: 0.01 for 2 digits, 1 for 0 digits."""
    return Decimal(1).scaleb(-minor_digits)


def round_money(amount: Decimal, minor_digits: int = 2) -> Decimal:
    """`amount` rounded half up to the minor unit (the rounding used for computed fees)."""
    return amount.quantize(minor_unit(minor_digits), rounding=ROUND_HALF_UP)


def split_equally(
    total: Decimal, parts: int, remainder: Placement = "first", minor_digits: int = 2
) -> list[Decimal]:
    """`total` in `parts` equal amounts rounded down to the minor unit; what is left over
    (less than `parts` minor units) goes on the first part (or the last). Σ == total."""
    unit = minor_unit(minor_digits)
    if parts < 1:
        raise ValueError("parts must be at least 1")
    if total != total.quantize(unit) or total < 0:
        raise ValueError(f"{total} is not a non-negative amount in minor units of {unit}")
    base = (total / parts).quantize(unit, rounding=ROUND_DOWN)
    amounts = [base] * parts
    amounts[0 if remainder == "first" else -1] += total - base * parts
    return [a.quantize(unit) for a in amounts]


@lru_cache(maxsize=65536)  # pure; a few posting dates x tenors recur all day
def add_months(start: date, months: int) -> date:
    """`start` plus `months` calendar months, clamped to the end of a shorter month.
    Always clamps from the original day: Jan 31 + 1 → Feb 28 (29 in leap years), + 2 → Mar 31."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


# ------------------------------------------------------------------ eligibility


@dataclass(frozen=True)
class AccountView:
    """What the offer rules need to know about an account (from `account.upserted`).
    `installment_limit` None means "the policy's share of credit_limit"."""

    account_id: str
    status: str  # active | blocked | closed
    segment: str  # young | middle_class | white_collar | high_net_worth | standard
    tier: str  # silver | gold | platinum | diamond
    credit_limit: Decimal
    risk_score: int
    installment_limit: Decimal | None = None
    pre_approval: PreApproval | None = None


@dataclass(frozen=True)
class PreApproval:
    """``account.upserted``'s ``pre_approval`` (second release): a pre-approved installment
    line of `limit` for purchases posted up to `valid_to` (inclusive), each monthly rate
    lowered by the share `fee_discount`."""

    limit: Decimal
    valid_to: date
    fee_discount: Decimal


@dataclass(frozen=True)
class PurchaseFacts:
    """What the offer rules need to know about a recorded purchase."""

    amount: Decimal
    mcc: str | int  # 4 digits; compared as a number, so "0742" == 742
    posted_on: date
    merchant_id: str | None = None
    category: str | None = None


def installment_limit(account: AccountView, policy: OffersPolicy) -> Decimal:
    """The account's installment limit: its own, else share × credit_limit."""
    if account.installment_limit is not None:
        return account.installment_limit
    return account.credit_limit * policy.installment_limit_share


def pre_approved(
    account: AccountView | None, purchase: PurchaseFacts, outstanding_principal: Decimal
) -> bool:
    """The purchase falls within the account's pre-approval (CONTRACT 5.1): one is valid on
    the posting date (``posted_on <= valid_to``) and outstanding installment principal +
    amount <= its limit. Beyond the limit (or once it lapsed) the ordinary rules apply."""
    if account is None or account.pre_approval is None:
        return False
    line = account.pre_approval
    return (
        purchase.posted_on <= line.valid_to
        and outstanding_principal + purchase.amount <= line.limit
    )


def eligibility_reasons(
    account: AccountView | None,
    purchase: PurchaseFacts,
    outstanding_principal: Decimal,
    has_overdue: bool,
    policy: OffersPolicy,
    under_review: bool = False,
) -> list[str]:
    """Every reason the purchase cannot be converted; an empty list means eligible.

    Codes, in this order: account_unknown, account_not_active, amount_below_minimum
    (500.00, or the segment's minimum, e.g. 300.00 for young), mcc_excluded, overdue_installment
    (the account has an overdue installment), risk_score_too_low (< 600),
    installment_limit_exceeded (outstanding installment principal + amount > limit),
    fraud_review (`under_review`: flagged by the screening and not cleared yet).
    A purchase within the account's pre-approval (`pre_approved`) skips the risk score and
    installment limit checks (status, minimum amount, MCC and overdue still apply).
    For an unknown account only the purchase's own checks (general minimum, MCC) run.
    """
    reasons: list[str] = []
    if account is None:
        reasons.append("account_unknown")
    elif account.status != "active":
        reasons.append("account_not_active")
    if purchase.amount < policy.min_amount_for(account.segment if account else None):
        reasons.append("amount_below_minimum")
    if int(purchase.mcc) in policy.excluded_mccs:
        reasons.append("mcc_excluded")
    if account is None:
        return reasons + (["fraud_review"] if under_review else [])
    if has_overdue:
        reasons.append("overdue_installment")
    if not pre_approved(account, purchase, outstanding_principal):
        if account.risk_score < policy.min_risk_score:
            reasons.append("risk_score_too_low")
        if outstanding_principal + purchase.amount > installment_limit(account, policy):
            reasons.append("installment_limit_exceeded")
    if under_review:
        reasons.append("fraud_review")
    return reasons


# ------------------------------------------------------------------ offers and schedules


@dataclass(frozen=True)
class Installment:
    """One line of a plan's schedule (as in `plan.created`)."""

    seq: int  # 1-based
    due_date: date
    principal: Decimal
    fee: Decimal

    @property
    def amount(self) -> Decimal:
        return self.principal + self.fee


@dataclass(frozen=True)
class OfferOption:
    """One tenor of an offer (as in `offer.made`'s `options`)."""

    tenor_months: int
    fee_model: str
    monthly_fee_rate: Decimal
    total_fee: Decimal
    first_installment: Decimal
    regular_installment: Decimal
    apr: Decimal


def total_fee(
    principal: Decimal, monthly_rate: Decimal, tenor: int, minor_digits: int = 2
) -> Decimal:
    """Flat monthly fee on the original principal: principal × rate × tenor, ROUND_HALF_UP."""
    return round_money(principal * monthly_rate * tenor, minor_digits)


def build_schedule(
    principal: Decimal,
    total_fee: Decimal,
    tenor: int,
    posted_on: date,
    remainder: Placement = "first",
    minor_digits: int = 2,
) -> list[Installment]:
    """The plan's installments. Principal and fee are each split equally, rounded down to the
    minor unit, the remainder on the first (or last) installment, so Σ principal == principal
    and Σ fee == total_fee exactly. Installment k is due `add_months(posted_on, k)`."""
    principals = split_equally(principal, tenor, remainder, minor_digits)
    fees = split_equally(total_fee, tenor, remainder, minor_digits)
    return [
        Installment(k, add_months(posted_on, k), principals[k - 1], fees[k - 1])
        for k in range(1, tenor + 1)
    ]


def apr(principal: Decimal, schedule_amounts: list[Decimal]) -> Decimal:
    """The nominal annual rate in percent (2 places, half up) = 12 × the monthly internal
    rate of return r of the cash flows +principal at month 0 and -amount_k at month k:
        principal == Σ amount_k / (1 + r)^k.
    Solved by Newton's method in 50-digit Decimal, starting at r = 0: the right side minus
    the left is decreasing and convex in r, so the iterates rise monotonically to the root.
    12 payments at 0.60 % flat a month give 13.03; no fee gives 0.00."""
    if principal <= 0 or not schedule_amounts:
        raise ValueError("apr needs a positive principal and at least one payment")
    with localcontext() as ctx:
        ctx.prec = 50
        rate = ZERO
        for _ in range(200):
            value, slope, discount = -principal, ZERO, Decimal(1) / (1 + rate)
            for k, amount in enumerate(schedule_amounts, start=1):
                value += amount * discount**k
                slope -= k * amount * discount ** (k + 1)
            step = value / slope
            rate -= step
            if abs(step) < Decimal("1e-30"):
                break
        annual_percent = rate * 12 * 100
    return annual_percent.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) + 0


@lru_cache(maxsize=1024)  # pure; the Newton solve is the costliest step of an offer
def flat_apr(monthly_rate: Decimal, tenor: int) -> Decimal:
    """The APR of a flat monthly rate over `tenor` months: `apr` of the exact (unrounded)
    level payments (1 + rate × tenor) / tenor per 1 of principal. It depends only on rate and
    tenor (0.006 × 12 → 13.03), not on how the schedule's cents happen to round (the rounded
    schedule of 500.00 would give 13.04 because its remainder is paid first)."""
    with localcontext() as ctx:
        ctx.prec = 50
        level = (1 + monthly_rate * tenor) / tenor
    return apr(Decimal(1), [level] * tenor)


def monthly_rate(
    tenor: int, segment: str, policy: OffersPolicy, fee_discount: Decimal | None = None
) -> Decimal:
    """The tenor's monthly fee rate × the segment's multiplier (1 when none), half up to
    `policy.rate_places` places (6: 0.0075 × 0.80 = 0.006000).

    Pre-approved (`fee_discount` given, CONTRACT 5.1): the rate × (1 - fee_discount), then
    × the segment's multiplier, each step rounded half up to
    `policy.pre_approval_rate_places` (4) places: 0.0075 × 0.80 = 0.0060, × 0.80 = 0.0048."""
    multiplier = policy.segment_rate_multipliers.get(segment, Decimal(1))
    base = policy.monthly_fee_rates[tenor]
    if fee_discount is not None:
        places = Decimal(1).scaleb(-policy.pre_approval_rate_places)
        discounted = (base * (1 - fee_discount)).quantize(places, ROUND_HALF_UP)
        return (discounted * multiplier).quantize(places, ROUND_HALF_UP)
    places = Decimal(1).scaleb(-policy.rate_places)
    return (base * multiplier).quantize(places, ROUND_HALF_UP)


def offer_options(
    principal: Decimal,
    account: AccountView,
    purchase: PurchaseFacts,
    policy: OffersPolicy,
    minor_digits: int = 2,
    fee_discount: Decimal | None = None,
) -> tuple[list[OfferOption], str | None]:
    """The options of an offer, one per tenor the account's tier may see (ascending), and
    the id of the promotion applied (None when none).

    A promotion applies to a tenor when it matches the purchase's merchant or category, lists
    the tenor, and the purchase was posted within its validity; it replaces the fee rate for
    that tenor (0: merchant-funded). With several matching promotions the first listed wins.
    first_installment / regular_installment come from `build_schedule` with the policy's
    remainder placement; apr is `flat_apr(rate, tenor)`, so one rate and tenor always show
    one APR whatever the amount. `fee_discount` (a pre-approved purchase) lowers every
    tenor's rate (`monthly_rate`); a promotion's rate still replaces it.
    """
    options, promotion = offer_menu(
        principal, account, purchase, policy, minor_digits, fee_discount
    )
    return list(options), promotion


def offer_menu(
    principal: Decimal,
    account: AccountView,
    purchase: PurchaseFacts,
    policy: OffersPolicy,
    minor_digits: int = 2,
    fee_discount: Decimal | None = None,
) -> tuple[tuple[OfferOption, ...], str | None]:
    """`offer_options` as a tuple, computed once per shape: the menu depends only on the
    amount, the policy, the account's segment and tier, the promotion that applies, the
    currency's digits and the pre-approval discount (`_menu`, a bounded cache). The same
    shape returns the same tuple object (callers may key caches of their own on it)."""
    promotion = policy.promotion_for(purchase.merchant_id, purchase.category, purchase.posted_on)
    return _menu(
        principal,
        account.segment,
        account.tier,
        _Same(policy),
        _Same(promotion),
        minor_digits,
        fee_discount,
    )


class _Same:
    """A cache key part compared by identity (policies hold dicts: not hashable). The
    cache holds the object, so its id is not reused while the entry lives."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.obj is self.obj


#: Offer menus kept (bounded: at most this many shapes; least recently used dropped).
MENU_CACHE_SIZE = 4096


@lru_cache(maxsize=MENU_CACHE_SIZE)
def _menu(
    principal: Decimal,
    segment: str,
    tier: str,
    policy_key: _Same,
    promotion_key: _Same,
    minor_digits: int,
    fee_discount: Decimal | None,
) -> tuple[tuple[OfferOption, ...], str | None]:
    """The menu of one shape (see `offer_menu`). Pure: every input is in the key (the
    amount by value: the options are quantized, so ``500.0`` and ``500.00`` give the same
    menu)."""
    policy: OffersPolicy = policy_key.obj
    options = []
    priced = _priced_tenors(segment, tier, policy_key, promotion_key, fee_discount)
    for tenor, rate, tenor_apr in priced:
        fee = total_fee(principal, rate, tenor, minor_digits)
        first, last = _end_installments(
            principal, fee, tenor, policy.remainder_placement, minor_digits
        )
        options.append(
            OfferOption(
                tenor_months=tenor,
                fee_model=policy.fee_model,
                monthly_fee_rate=rate,
                total_fee=fee,
                first_installment=first,
                regular_installment=last if policy.remainder_placement == "first" else first,
                apr=tenor_apr,
            )
        )
    promotion: Promotion | None = promotion_key.obj
    promoted = promotion is not None and any(tenor in promotion.tenors for tenor, _, _ in priced)
    promotion_id = promotion.id if promoted and promotion is not None else None
    return tuple(options), promotion_id


@lru_cache(maxsize=256)
def _priced_tenors(
    segment: str,
    tier: str,
    policy_key: _Same,
    promotion_key: _Same,
    fee_discount: Decimal | None,
) -> tuple[tuple[int, Decimal, Decimal], ...]:
    """(tenor, monthly rate, APR) of each tenor the tier sees, ascending: what a menu
    shows whatever the amount (a promotion listing the tenor replaces its rate)."""
    policy: OffersPolicy = policy_key.obj
    promotion: Promotion | None = promotion_key.obj
    priced = []
    for tenor in policy.tenors_for(tier):
        rate = monthly_rate(tenor, segment, policy, fee_discount)
        if promotion is not None and tenor in promotion.tenors:
            rate = promotion.monthly_fee_rate
        priced.append((tenor, rate, flat_apr(rate, tenor)))
    return tuple(priced)


def _end_installments(
    principal: Decimal, fee: Decimal, tenor: int, remainder: Placement, minor_digits: int
) -> tuple[Decimal, Decimal]:
    """The amounts of the first and the last installment of `build_schedule(principal, fee,
    tenor, ...)`, without building it (an offer shows only these, for every tenor): the
    same rule as `split_equally`, for its first and last part only, in whole minor units
    (``divmod``: the part rounded down, the remainder on the first or last part)."""
    unit = minor_unit(minor_digits)
    if tenor < 1:
        raise ValueError("parts must be at least 1")
    first = last = 0
    for total in (principal, fee):
        if total != total.quantize(unit) or total < 0:
            raise ValueError(f"{total} is not a non-negative amount in minor units of {unit}")
        base, extra = divmod(int(total.scaleb(minor_digits)), tenor)
        first += base + extra if remainder == "first" or tenor == 1 else base
        last += base + extra if remainder != "first" or tenor == 1 else base
    return Decimal(first).scaleb(-minor_digits), Decimal(last).scaleb(-minor_digits)


def offer_expires_on(posted_on: date, policy: OffersPolicy) -> date:
    """The last day an offer can be accepted: posting date + offer_validity_days (30).
    Its end of day expires the offer (see `is_expired`)."""
    return posted_on + timedelta(days=policy.offer_validity_days)


def is_expired(expires_on: date, business_date: date) -> bool:
    """An offer is expired by the end of day of `expires_on` (or of any later business day
    when that one was skipped): acceptable up to that end of day, so at most 30 days after
    the posting date, never into day 31."""
    return business_date >= expires_on


# ------------------------------------------------------------------ decisions
# The handlers load the facts, call one of these, and map what it returns to state
# changes and events (services/offers/handlers.py). Nothing here reads or writes state.


@dataclass(frozen=True)
class AutoConvertSettings:
    """An account's opt-in to auto-conversion (``account.upserted``'s ``auto_convert``)."""

    enabled: bool = False
    threshold: Decimal | None = None
    tenor_months: int | None = None

    def applies_to(self, amount: Decimal) -> bool:
        """Opted in, with a threshold the amount reaches."""
        return self.enabled and self.threshold is not None and amount >= self.threshold


@dataclass(frozen=True)
class PlanTerms:
    """What a new plan is built from: its principal, the chosen option (tenor, total fee,
    APR), the date its due dates count from, and how the schedule is split."""

    principal: Decimal
    option: OfferOption
    posted_on: date
    remainder: Placement = "first"
    minor_digits: int = 2

    @property
    def tenor_months(self) -> int:
        return self.option.tenor_months

    def schedule(self) -> list[Installment]:
        """The plan's installments (`build_schedule`): Σ principal == principal and
        Σ fee == the option's total fee, exactly."""
        return build_schedule(
            self.principal,
            self.option.total_fee,
            self.option.tenor_months,
            self.posted_on,
            self.remainder,
            self.minor_digits,
        )


@dataclass(frozen=True)
class NotEligible:
    """`offer.not-eligible` with every failing reason (`eligibility_reasons`' order, then
    ``currency_mismatch``)."""

    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ConvertNow:
    """Auto-convert: a plan at the account's tenor at once, no offer."""

    terms: PlanTerms


@dataclass(frozen=True)
class MakeOffer:
    """`offer.made`: the options (one per tenor, ascending), the last acceptable day and
    the promotion applied (None: none). `auto_convert_tenor_not_offered` is True when the
    account opted in and the amount reached its threshold but its auto-convert tenor is
    not on the account's menu (the handler logs it)."""

    options: tuple[OfferOption, ...]
    expires_on: date
    promotion: str | None
    auto_convert_tenor_not_offered: bool = False
    pre_approved: bool = False


OfferDecision = NotEligible | ConvertNow | MakeOffer


def decide_offer(
    account: AccountView | None,
    account_currency: str | None,
    auto_convert: AutoConvertSettings,
    purchase: PurchaseFacts,
    currency: str,
    owed: list[InstallmentState],
    flagged_overdue: bool,
    policy: OffersPolicy,
    minor_digits: int = 2,
    under_review: bool = False,
) -> OfferDecision:
    """What a recorded purchase becomes: not eligible, a plan at once, or an offer.

    - Not eligible: `eligibility_reasons` (every failing one), plus ``currency_mismatch``
      when the account is known in another currency. The account has an overdue
      installment when the last end of day flagged it (`flagged_overdue`) and no payment
      cured it since, or when an installment of `owed` due before the posting date is
      unpaid; the outstanding principal is what `owed` still has due.
    - Auto-convert: the account opted in and the amount reaches its threshold: a plan at
      the account's tenor with that tenor's option, counting from the posting date.
      When that tenor is not on the account's menu, an ordinary offer is made instead.
    - Otherwise an offer: `offer_options`, expiring `offer_expires_on(posted_on)`.
    - Fraud screening (`under_review`: flagged, review not closed): not eligible with
      ``fraud_review`` (after any other failing reason), never auto-converted. A review
      cleared later decides again with `posted_on` = the review's ``closed_on``.
    - Pre-approval (`pre_approved`): eligible whatever the risk score and installment
      limit, every rate discounted (`monthly_rate`), ``pre_approved`` on the offer.
    """
    outstanding = sum((i.principal_due for i in owed), ZERO)
    has_overdue = flagged_overdue or delinquency(owed, purchase.posted_on) is not None
    reasons = eligibility_reasons(account, purchase, outstanding, has_overdue, policy, under_review)
    if account_currency is not None and account_currency != currency:
        reasons.append("currency_mismatch")
    if reasons:
        return NotEligible(tuple(reasons))
    assert account is not None  # an unknown account always has a reason
    preapproved = pre_approved(account, purchase, outstanding)
    discount = account.pre_approval.fee_discount if preapproved and account.pre_approval else None
    options, promotion = offer_menu(
        purchase.amount, account, purchase, policy, minor_digits, discount
    )
    missing_tenor = False
    if auto_convert.applies_to(purchase.amount):
        tenor = auto_convert.tenor_months
        by_tenor = {o.tenor_months: o for o in options}
        chosen = by_tenor.get(tenor) if tenor is not None else None
        if chosen is not None:
            return ConvertNow(
                PlanTerms(
                    purchase.amount,
                    chosen,
                    purchase.posted_on,
                    policy.remainder_placement,
                    minor_digits,
                )
            )
        missing_tenor = True
    return MakeOffer(
        options,
        offer_expires_on(purchase.posted_on, policy),
        promotion,
        missing_tenor,
        preapproved,
    )


@dataclass(frozen=True)
class OfferView:
    """What the acceptance rules need to know about an offer."""

    offer_id: str
    purchase_id: str
    account_id: str
    principal: Decimal
    status: str  # open | accepted | declined | expired | refunded


#: offer status -> the offer.rejected reason for a decision that finds it in that status.
REJECTED_BECAUSE = {
    "accepted": "already_converted",
    "declined": "declined",
    "expired": "expired",
    "refunded": "refunded",
}


@dataclass(frozen=True)
class Rejected:
    """`offer.rejected` with `reason`; `purchase_id` is the offer's (None for an unknown
    offer). `not_eligible` says which eligibility rules failed (for the log)."""

    reason: str
    purchase_id: str | None = None
    not_eligible: tuple[str, ...] = ()


@dataclass(frozen=True)
class CreatePlan:
    """Close the offer as accepted and create its plan on these terms."""

    terms: PlanTerms
    redeem_points: int = 0


AcceptanceDecision = Rejected | CreatePlan


def decide_acceptance(
    account_id: str,
    tenor_months: int,
    redeem_points: int | None,
    offer: OfferView | None,
    already_planned: bool,
    option: OfferOption | None,
    account: AccountView | None,
    purchase: PurchaseFacts | None,
    owed: list[InstallmentState],
    flagged_overdue: bool,
    policy: OffersPolicy,
    minor_digits: int = 2,
) -> AcceptanceDecision:
    """`offer.accepted` by `account_id` for `tenor_months`: a plan, or the reason it is
    rejected, in this order:

    ``unknown_offer`` (no such offer, or another account's); ``already_converted`` /
    ``declined`` / ``expired`` / ``refunded`` (the offer is no longer open); also
    ``already_converted`` when the purchase has a plan (`already_planned`);
    ``invalid_tenor`` (`option`, the offer's option for that tenor, is None);
    ``not_eligible`` (the account stopped being eligible since the offer: not active,
    flagged overdue by an end of day, risk score, or the installment limit, counting the
    principal still due on `owed`, has no room for this principal).
    The plan counts from the purchase's posting date; `redeem_points` (None: 0) goes
    with it.
    """
    if offer is None or offer.account_id != account_id:
        return Rejected("unknown_offer")
    if offer.status != "open":
        return Rejected(REJECTED_BECAUSE[offer.status], offer.purchase_id)
    if already_planned:
        return Rejected("already_converted", offer.purchase_id)
    if option is None:
        return Rejected("invalid_tenor", offer.purchase_id)
    assert purchase is not None, "an offer's purchase is recorded with it"
    reasons = eligibility_reasons(
        account,
        purchase,
        sum((i.principal_due for i in owed), ZERO),
        flagged_overdue,
        policy,
    )
    if reasons:
        return Rejected("not_eligible", offer.purchase_id, tuple(reasons))
    terms = PlanTerms(
        offer.principal, option, purchase.posted_on, policy.remainder_placement, minor_digits
    )
    return CreatePlan(terms, redeem_points or 0)


DeclineDecision = Literal["decline", "already_declined"] | Rejected


def decide_decline(account_id: str, offer: OfferView | None) -> DeclineDecision:
    """`offer.declined` by `account_id`: close the open offer (``decline``), ignore a
    second decline (``already_declined``), or reject: ``unknown_offer`` (no such offer
    or another account's), ``already_converted`` / ``expired`` / ``refunded``."""
    if offer is None or offer.account_id != account_id:
        return Rejected("unknown_offer")
    if offer.status == "declined":
        return "already_declined"
    if offer.status != "open":
        return Rejected(REJECTED_BECAUSE[offer.status], offer.purchase_id)
    return "decline"


# ------------------------------------------------------------------ plan state


@dataclass(frozen=True)
class InstallmentState:
    """An installment as stored: scheduled amounts and what has been paid or waived.
    `plan_order` is the plan's creation order on the account (ties between plans)."""

    plan_id: str
    seq: int
    due_date: date
    principal: Decimal
    fee: Decimal
    principal_paid: Decimal = ZERO
    fee_paid: Decimal = ZERO
    fee_waived: Decimal = ZERO
    plan_order: int = 0

    @property
    def principal_due(self) -> Decimal:
        return self.principal - self.principal_paid

    @property
    def fee_due(self) -> Decimal:
        return self.fee - self.fee_paid - self.fee_waived

    @property
    def amount_due(self) -> Decimal:
        return self.principal_due + self.fee_due

    @property
    def is_paid(self) -> bool:
        """Nothing left to pay (paid, waived or refunded)."""
        return self.amount_due == 0


def _payment_order(i: InstallmentState) -> tuple:
    return (i.due_date, i.plan_order, i.plan_id, i.seq)


@dataclass(frozen=True)
class Allocation:
    """What one payment did to one installment."""

    plan_id: str
    seq: int
    fee_paid: Decimal = ZERO
    principal_paid: Decimal = ZERO
    fee_waived: Decimal = ZERO  # early payoff waiver (not money)

    @property
    def amount(self) -> Decimal:
        return self.fee_paid + self.principal_paid


@dataclass(frozen=True)
class PlanPayoff:
    """A plan settled early: its remaining principal paid, its remaining fees waived."""

    plan_id: str
    principal_paid: Decimal
    fee_waived: Decimal


@dataclass(frozen=True)
class PaymentResult:
    allocations: list[Allocation]  # in the order applied; one per installment touched
    paid: list[tuple[str, int]]  # (plan_id, seq) of installments this payment settled
    completed_plans: list[str]  # plans now fully paid by regular allocation
    paid_off_plans: list[PlanPayoff]  # plans settled by early payoff (fees waived)
    credit: Decimal  # the account's credit after the payment
    installments: list[InstallmentState]  # new state of every installment passed in


def allocate_payment(
    installments: list[InstallmentState],
    amount: Decimal,
    credit: Decimal,
    paid_on: date,
    waive_fees_on_payoff: bool = True,
) -> PaymentResult:
    """Apply a payment plus the account's credit to the account's installments (all plans).

    1. Installments are paid oldest due date first across the account's plans (ties: plan
       creation order, then seq), each fee before its principal; installments due on or
       before `paid_on` therefore always come first.
    2. Early payoff (when `waive_fees_on_payoff`): when that walk reaches a plan's oldest
       unpaid installment not yet due, and the money left (after every older installment,
       of any plan) covers ALL the plan's remaining principal, that principal is paid and
       the plan's remaining (not yet due) fees are waived; the walk goes on with the next
       installment. So plans are considered in the order of their oldest unpaid
       installment, and a plan is paid off only once everything due before it is paid.
       Note this includes paying a plan's last installment before its due date.
    3. What is left after the last installment is the new credit.
    Never pays more than is due; Σ allocations + new credit == amount + credit exactly.
    """
    if amount < 0 or credit < 0:
        raise ValueError("payment and credit must not be negative")
    state = {(i.plan_id, i.seq): i for i in installments}
    touched: dict[tuple[str, int], None] = {}  # keys in the order first paid
    money = amount + credit

    def pay(key: tuple[str, int], fee: Decimal, principal: Decimal, waived: Decimal = ZERO) -> None:
        nonlocal money
        old = state[key]
        state[key] = replace(
            old,
            fee_paid=old.fee_paid + fee,
            principal_paid=old.principal_paid + principal,
            fee_waived=old.fee_waived + waived,
        )
        touched.setdefault(key)
        money -= fee + principal

    ordered = sorted((i for i in installments if not i.is_paid), key=_payment_order)
    payoffs: list[PlanPayoff] = []
    considered: set[str] = set()  # plans whose early payoff was looked at (once each)
    for item in ordered:
        key = (item.plan_id, item.seq)
        if money <= 0:
            break
        current = state[key]
        if current.is_paid:  # paid off with its plan above
            continue
        if waive_fees_on_payoff and item.due_date > paid_on and item.plan_id not in considered:
            considered.add(item.plan_id)  # step 2, at the plan's oldest unpaid installment
            rest = [state[(i.plan_id, i.seq)] for i in ordered if i.plan_id == item.plan_id]
            rest = [i for i in rest if not i.is_paid]
            needed = sum((i.principal_due for i in rest), ZERO)
            if needed <= money:
                for i in rest:
                    pay((i.plan_id, i.seq), ZERO, i.principal_due, i.fee_due)
                payoffs.append(
                    PlanPayoff(item.plan_id, needed, sum((i.fee_due for i in rest), ZERO))
                )
                continue
        fee = min(money, current.fee_due)  # step 1
        principal = min(money - fee, current.principal_due)
        if fee or principal:
            pay(key, fee, principal)

    before = {(i.plan_id, i.seq): i for i in installments}
    allocations = [
        Allocation(
            *key,
            fee_paid=state[key].fee_paid - before[key].fee_paid,
            principal_paid=state[key].principal_paid - before[key].principal_paid,
            fee_waived=state[key].fee_waived - before[key].fee_waived,
        )
        for key in touched
    ]
    paid_off = {p.plan_id for p in payoffs}
    newly_paid = [k for k in touched if state[k].is_paid]
    completed = sorted(
        {k[0] for k in newly_paid} - paid_off - {i.plan_id for i in state.values() if not i.is_paid}
    )
    return PaymentResult(
        allocations=allocations,
        paid=newly_paid,
        completed_plans=completed,
        paid_off_plans=payoffs,
        credit=money,
        installments=[state[(i.plan_id, i.seq)] for i in installments],
    )


# ------------------------------------------------------------------ refunds and waivers


@dataclass(frozen=True)
class RefundOutcome:
    """What a refund of the converted purchase did to its plan.

    Cancelled (the refund covers the unpaid principal): `fee_returned` is every fee
    taken off (not-yet-due fees, those paid early included: `fee_paid_back`, credited).
    Adjusted (a partial refund, CONTRACT 5.1): `fee_reduced` is all fee taken off,
    `fee_returned` == `fee_paid_back` the part of it already paid (returned to the card
    account outside the pipeline). Either way `fee_waived_removed` is the waived part of
    the fees taken off (the points bought it: they are restored)."""

    cancelled: bool  # True when no principal is left on the plan
    principal_returned: Decimal  # principal taken off the plan
    fee_returned: Decimal  # cancelled: all fee taken off; adjusted: the part paid early
    excess: Decimal  # refund the plan could not absorb (principal already paid)
    installments: list[InstallmentState]  # the plan's installments after the refund
    fee_paid_back: Decimal = ZERO  # fees already paid, given back
    fee_reduced: Decimal = ZERO  # adjusted: all fee taken off (paid, waived or owed)
    fee_waived_removed: Decimal = ZERO  # waived fees taken off (points to restore)


def _units(amount: Decimal, minor_digits: int) -> int:
    """`amount` as an integer count of minor units (exact)."""
    return int(amount.scaleb(minor_digits))


def _money(units: int, minor_digits: int) -> Decimal:
    return Decimal(units).scaleb(-minor_digits).quantize(minor_unit(minor_digits))


def apply_refund(
    plan: list[InstallmentState],
    refund_amount: Decimal,
    business_date: date,
    remainder: Placement = "first",
    minor_digits: int = 2,
) -> RefundOutcome:
    """Take a refund of the converted purchase off one plan's installments.

    Let R be the plan's unpaid principal. A refund >= R cancels the plan
    (`_cancel_for_refund`); a smaller one adjusts it (`_adjust_for_refund`, CONTRACT 5.1).
    """
    if refund_amount < 0:
        raise ValueError("refund must not be negative")
    owed = sum((i.principal_due for i in plan), ZERO)
    if refund_amount >= owed:
        return _cancel_for_refund(plan, refund_amount, business_date)
    return _adjust_for_refund(plan, refund_amount, business_date, remainder, minor_digits)


def _cancel_for_refund(
    plan: list[InstallmentState], refund_amount: Decimal, business_date: date
) -> RefundOutcome:
    """A refund that takes off all the unpaid principal R (refund >= R).

    - principal_returned = R; excess = refund - R (principal already paid: the handler
      credits it).
    - Every installment keeps only the principal already paid on it.
    - Installments not yet due (due_date > business_date) lose their whole fee: the unpaid
      part and the part paid early (fee_paid_back, credited by the handler) make
      fee_returned; the waived part (fee_waived_removed) is gone too (its points are
      restored). Fees already due stay owed (and so does what was waived on them).
    """
    owed = sum((i.principal_due for i in plan), ZERO)
    fee_returned = paid_back = waived = ZERO
    new = []
    for item in plan:
        item = replace(item, principal=item.principal_paid)
        if item.due_date > business_date:
            fee_returned += item.fee_due + item.fee_paid
            paid_back += item.fee_paid
            waived += item.fee_waived
            item = replace(item, fee=ZERO, fee_paid=ZERO, fee_waived=ZERO)
        new.append(item)
    return RefundOutcome(
        cancelled=True,
        principal_returned=owed,
        fee_returned=fee_returned,
        excess=refund_amount - owed,
        installments=new,
        fee_paid_back=paid_back,
        fee_reduced=fee_returned + waived,
        fee_waived_removed=waived,
    )


def _adjust_for_refund(
    plan: list[InstallmentState],
    refund_amount: Decimal,
    business_date: date,
    remainder: Placement,
    minor_digits: int,
) -> RefundOutcome:
    """A partial refund (0 <= refund < R, the unpaid principal): CONTRACT 5.1.

    - Principal: R' = R - refund is re-split equally over the installments that still had
      principal due (by seq, the remainder on the first of them); each keeps what was
      already paid on it.
    - Fees of the installments not yet due (due_date > business_date; N of them, fee total
      F): the new total F' = floor(F × R' / R) to the minor unit, split equally over them
      (remainder on the first). fee_reduced = F - F'. Fees already due stay owed.
    - Fees paid early on them (E) are returned in the proportion refund / R, rounded down:
      fee_returned = floor(E × refund / R). The rest stays paid, oldest installment first,
      never more than an installment's new fee; should the rounding leave more paid than
      F' (a minor unit or two), that much more is returned.
    - Fees waived on them (W, bought with points) likewise: floor(W × refund / R) is
      removed (fee_waived_removed), the rest stays waived after what stays paid, within F'
      (what does not fit is removed too).
    Σ principal falls by exactly the refund, Σ fee by exactly fee_reduced, Σ fee_paid by
    exactly fee_returned and Σ fee_waived by exactly fee_waived_removed.
    """
    remaining = sorted((i for i in plan if i.principal_due > 0), key=lambda i: i.seq)
    owed = sum((i.principal_due for i in remaining), ZERO)
    new: dict[int, InstallmentState] = {i.seq: i for i in plan}
    shares = split_equally(owed - refund_amount, len(remaining), remainder, minor_digits)
    for item, share in zip(remaining, shares, strict=True):
        new[item.seq] = replace(item, principal=item.principal_paid + share)

    later = sorted((i for i in new.values() if i.due_date > business_date), key=lambda i: i.seq)
    r_units, cut_units = _units(owed, minor_digits), _units(refund_amount, minor_digits)
    fee_units = _units(sum((i.fee for i in later), ZERO), minor_digits)
    paid_units = _units(sum((i.fee_paid for i in later), ZERO), minor_digits)
    waived_units = _units(sum((i.fee_waived for i in later), ZERO), minor_digits)
    new_fee_units = fee_units * (r_units - cut_units) // r_units
    returned_units = paid_units * cut_units // r_units
    kept_paid = min(paid_units - returned_units, new_fee_units)
    returned_units = paid_units - kept_paid
    kept_waived = min(waived_units - waived_units * cut_units // r_units, new_fee_units - kept_paid)
    removed_waived = waived_units - kept_waived

    if later:
        fees = split_equally(
            _money(new_fee_units, minor_digits), len(later), remainder, minor_digits
        )
        paid_left, waived_left = _money(kept_paid, minor_digits), _money(kept_waived, minor_digits)
        for item, fee in zip(later, fees, strict=True):
            paid = min(fee, paid_left)
            waived = min(fee - paid, waived_left)
            paid_left, waived_left = paid_left - paid, waived_left - waived
            new[item.seq] = replace(item, fee=fee, fee_paid=paid, fee_waived=waived)
    return RefundOutcome(
        cancelled=False,
        principal_returned=refund_amount,
        fee_returned=_money(returned_units, minor_digits),
        excess=ZERO,
        installments=[new[i.seq] for i in plan],
        fee_paid_back=_money(returned_units, minor_digits),
        fee_reduced=_money(fee_units - new_fee_units, minor_digits),
        fee_waived_removed=_money(removed_waived, minor_digits),
    )


def points_to_restore(
    waived_removed: Decimal,
    points_per_currency_unit: int,
    redeemed: int,
    restored: int,
) -> int:
    """Points given back for waived fees a cancellation or adjustment removed (CONTRACT
    5.1): waived amount × points_per_currency_unit (100), rounded down, never more than
    the points redeemed for the plan's fee waivers less those already restored (so the
    total restored never exceeds what was redeemed)."""
    if waived_removed <= 0:
        return 0
    wanted = int((waived_removed * points_per_currency_unit).to_integral_value(ROUND_FLOOR))
    return max(0, min(wanted, redeemed - restored))


@dataclass(frozen=True)
class WaiverResult:
    waived: Decimal  # total actually waived (<= the amount asked, <= unpaid fees)
    per_installment: list[tuple[int, Decimal]]  # (seq, waived), oldest first, non-zero only
    installments: list[InstallmentState]


def waive_fees(
    installments: list[InstallmentState], amount: Decimal, business_date: date | None = None
) -> WaiverResult:
    """Waive up to `amount` of one plan's unpaid fees (points redemption), oldest due first.
    A waiver is not a payment: it only lowers unpaid fees, never below 0, never principal.
    With `business_date`, only installments not yet due are touched, so a waiver can never
    settle an overdue installment (it never cures delinquency)."""
    if amount < 0:
        raise ValueError("waiver must not be negative")
    left, per, new = amount, [], {(i.plan_id, i.seq): i for i in installments}
    for item in sorted(installments, key=_payment_order):
        if left == 0:
            break
        if business_date is not None and item.due_date <= business_date:
            continue
        cut = min(left, item.fee_due)
        if cut > 0:
            new[(item.plan_id, item.seq)] = replace(item, fee_waived=item.fee_waived + cut)
            per.append((item.seq, cut))
            left -= cut
    return WaiverResult(amount - left, per, [new[(i.plan_id, i.seq)] for i in installments])


# ------------------------------------------------------------------ end of day


@dataclass(frozen=True)
class DueSoon:
    plan_id: str
    seq: int
    due_date: date
    amount_outstanding: Decimal
    days_until_due: int


def due_soon(
    installments: list[InstallmentState], business_date: date, window_days: int = 7
) -> list[DueSoon]:
    """Unpaid installments due within the window: 0 <= due_date - business_date <= window,
    in payment order."""
    return [
        DueSoon(i.plan_id, i.seq, i.due_date, i.amount_due, (i.due_date - business_date).days)
        for i in sorted(installments, key=_payment_order)
        if not i.is_paid and 0 <= (i.due_date - business_date).days <= window_days
    ]


@dataclass(frozen=True)
class Delinquency:
    days_past_due: int
    overdue_amount: Decimal
    oldest_unpaid_due_date: date


def delinquency(installments: list[InstallmentState], business_date: date) -> Delinquency | None:
    """The account's delinquency on `business_date`, None when nothing is overdue.
    Overdue = unpaid with due_date < business_date (an installment is on time all its due
    date); overdue_amount = what is left to pay on them; DPD = business_date - oldest."""
    overdue = [i for i in installments if not i.is_paid and i.due_date < business_date]
    if not overdue:
        return None
    oldest = min(i.due_date for i in overdue)
    amount = sum((i.amount_due for i in overdue), ZERO)
    return Delinquency((business_date - oldest).days, amount, oldest)


# ------------------------------------------------------------------ plausibility of business time
# CONTRACT §6: input the schema accepts but the service cannot apply (an extreme date) is
# dead-lettered, and an implausible jump of business date is held the same way. These
# rules only decide; the handlers raise ``Reject`` with the reason they return.

# The rule and its confirmation header are the contract's, written once in
# schemas.business_days (offers, reminders and the re-drive tool share them).


@dataclass(frozen=True)
class DateOutOfRange:
    """Why an input date cannot be applied. `ahead` is True when the date is only too far
    after the last closed business date (it may become acceptable once later business days
    are read), False when it is out of range whatever the business date."""

    reason: str
    ahead: bool = False


def check_event_date(
    field: str, on: date, business_date: date | None, policy: OffersPolicy
) -> DateOutOfRange | None:
    """The plausibility of a purchase, payment or refund date (`field` names it in the
    reason: ``posted_at``, ``received_at``, ``refunded_at``); None when it is plausible.

    Always: within [policy.earliest_event_date, policy.latest_event_date] (default
    2000-01-01 .. 2199-12-31), also before any business day is known (a fresh start).
    With a last closed business date D: within [D - max_event_days_before_business_date,
    D + max_event_days_after_business_date] (default 400 days before, 31 after).
    The reason starts with ``date_out_of_range`` and names only the field and dates."""
    text = on.isoformat()
    # (each date stands between words: two dates joined by separators could look like a
    # card number to the PAN redaction of the error.reason header)
    if on < policy.earliest_event_date:
        return DateOutOfRange(
            f"date_out_of_range: {field} {text} is before the earliest accepted date"
            f" {policy.earliest_event_date.isoformat()}"
        )
    if on > policy.latest_event_date:
        return DateOutOfRange(
            f"date_out_of_range: {field} {text} is after the latest accepted date"
            f" {policy.latest_event_date.isoformat()}"
        )
    if business_date is None:
        return None
    days = (on - business_date).days
    if days > policy.max_event_days_after_business_date:
        return DateOutOfRange(
            f"date_out_of_range: {field} {text} is {days} days after the last closed business"
            f" date {business_date.isoformat()}"
            f" (more than {policy.max_event_days_after_business_date})",
            ahead=True,
        )
    if -days > policy.max_event_days_before_business_date:
        return DateOutOfRange(
            f"date_out_of_range: {field} {text} is {-days} days before the last closed"
            f" business date {business_date.isoformat()}"
            f" (more than {policy.max_event_days_before_business_date})"
        )
    return None


def check_purchase_dates(posted_on: date, policy: OffersPolicy) -> str | None:
    """None when every date the offer rules derive from a posting date can be computed
    (offer expiry = posted_on + offer_validity_days; due dates = posted_on + 1..n months for
    the longest tenor of any tier); else a ``date_out_of_range`` reason. The event window
    normally rules this out; this guards a policy with extreme tenors or validity."""
    extra = [t for tenors in policy.extra_tenors_by_tier.values() for t in tenors]
    longest = max([*policy.tenors, *extra], default=0)
    try:
        add_months(posted_on, longest)
        offer_expires_on(posted_on, policy)
    except (ValueError, OverflowError):
        return (
            f"date_out_of_range: posted_at {posted_on.isoformat()} + {longest} months"
            " is beyond the calendar"
        )
    return None
