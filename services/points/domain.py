"""Points rules (CONTRACT §5 "Points"): plain Python, no Kafka, no SQL, no wall clock.

Rules, in the words of the code below:

* **Accrual.** ``floor(amount x points_per_unit x tier multiplier)`` points, computed in
  Decimal (silver 1.0, gold 1.2, platinum 1.5, diamond 2.0): 999.99 gold -> 1199.
* **First-plan bonus.** The account's first ever plan earns a bonus equal to the points
  its purchase accrued (``first_plan_bonus_factor`` x those points, rounded down).
* **Reversal on refund.** Proportional and cumulative: after refunds totalling ``R`` of a
  purchase of amount ``A`` that earned ``E`` points, ``floor(E x R / A)`` points have been
  reversed in total (exact rational arithmetic). Each refund reverses the difference
  between that target and what was already reversed. Hence, for any sequence of
  partial refunds, the total reversed never exceeds ``E`` and a full refund
  (``R == A``) reverses exactly ``E``. A reversal may take the balance below zero.
* **Bonus reversal.** The first-plan bonus is reversed by the refunds of the plan's
  purchase (``refund.recorded``), by the same cumulative rule as the purchase's own
  points: after refunds totalling ``R`` of a purchase of amount ``A`` whose first plan
  earned a bonus ``B``, ``floor(B x R / A)`` bonus points have been reversed in total.
  So the total never exceeds ``B`` and a full refund reverses exactly ``B``. A
  ``plan.cancelled`` reverses nothing: the offers service cancels a plan only when a
  refund leaves no principal on it (that refund already reversed the bonus) or on an
  early payoff (the purchase stands and was paid).
* **Redemption.** 100 points buy 1.00 of fee, capped at the plan's total fee:
  ``points = min(requested, floor(total_fee x 100))``. All or nothing: if the balance
  does not cover those points the redemption is rejected (``insufficient_points``)
  and the plan keeps its fee; a redemption never takes the balance below zero.
* **Restoration** (second release). A cancellation or adjustment that removes fees
  the plan's redeemed points had waived carries ``points_to_restore``; the points come
  back (``points.restored``), but no points are ever created: the total restored for a
  plan never exceeds what was redeemed for it. Each restoration gives
  ``min(requested, redeemed - already_restored)`` (never negative); a request beyond
  that is capped (the difference is never given, not even later).
* **Ledger.** Append-only; ``balance() == sum of entries``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from services.points.policy import DEFAULT_POLICY, PointsPolicy

# Ledger / event reasons (the contract's `reason` values of points.* events).
PURCHASE = "purchase"
FIRST_INSTALLMENT_BONUS = "first_installment_bonus"
REFUND = "refund"
PLAN_CANCELLED = "plan_cancelled"
FEE_REDEMPTION = "fee_redemption"
PLAN_ADJUSTED = "plan_adjusted"

# Ledger reasons of restorations (points.restored, a credit). The event's ``reason`` is
# ``plan_cancelled`` / ``plan_adjusted`` (``RESTORE_EVENT_REASON``); the ledger keeps its
# own code because ``plan_cancelled`` is also the (first-release) debit reason of
# points.reversed, and one ledger reason has one sign.
RESTORED_ON_CANCEL = "restored:plan_cancelled"
RESTORED_ON_ADJUST = "restored:plan_adjusted"
RESTORE_EVENT_REASON = {RESTORED_ON_CANCEL: PLAN_CANCELLED, RESTORED_ON_ADJUST: PLAN_ADJUSTED}
RESTORE_REASONS = frozenset(RESTORE_EVENT_REASON)

CREDIT_REASONS = frozenset({PURCHASE, FIRST_INSTALLMENT_BONUS}) | RESTORE_REASONS
DEBIT_REASONS = frozenset({REFUND, PLAN_CANCELLED, FEE_REDEMPTION})
REASONS = CREDIT_REASONS | DEBIT_REASONS

# Redemption outcome reasons.
INSUFFICIENT_POINTS = "insufficient_points"  # rejected: emit points.redemption-rejected
NOTHING_REQUESTED = "nothing_requested"  # redeem_points absent or 0: emit nothing
# The plan has no fee (e.g. a promotion) but points were requested: the handler emits
# points.redemption-rejected with why=nothing_to_waive (the request was not applied).
NOTHING_TO_WAIVE = "nothing_to_waive"

# plan.cancelled reasons.
CANCELLED_BY_REFUND = "refund"
CANCELLED_BY_EARLY_PAYOFF = "early_payoff"


class UnknownTier(ValueError):
    """The account's tier has no multiplier in the policy."""


# --------------------------------------------------------------------------- accrual


def points_for_purchase(amount: Decimal, tier: str, policy: PointsPolicy = DEFAULT_POLICY) -> int:
    """Points a purchase of ``amount`` earns for an account of ``tier``.

    ``floor(amount x points_per_unit x multiplier[tier])``, in Decimal (never float).
    Raises ``UnknownTier`` for a tier the policy does not know.
    """
    _check_money(amount, "amount")
    try:
        multiplier = policy.tier_multipliers[tier]
    except KeyError:
        raise UnknownTier(f"unknown tier {tier!r}") from None
    return _floor(amount, policy.points_per_unit, multiplier)


def first_plan_bonus(
    purchase_points: int, account_had_plan: bool, policy: PointsPolicy = DEFAULT_POLICY
) -> int:
    """Bonus for a new plan: the purchase's points on the account's first ever plan, else 0.

    ``purchase_points`` is what the plan's purchase accrued (``points_for_purchase``);
    ``account_had_plan`` is True once any earlier plan was created for the account
    (even if since completed or cancelled).
    """
    _check_points(purchase_points, "purchase_points")
    if account_had_plan:
        return 0
    return _floor(purchase_points, policy.first_plan_bonus_factor)


# --------------------------------------------------------------------------- reversal


def points_to_reverse(
    earned_for_purchase: int,
    already_reversed: int,
    purchase_amount: Decimal,
    refunded_amount_this_time: Decimal,
    refunded_total_before: Decimal,
) -> int:
    """Points (>= 0) to take back for one refund of a purchase.

    Cumulative target after this refund: ``floor(earned x refunded_total / amount)``
    with ``refunded_total = refunded_total_before + refunded_amount_this_time``;
    the result is ``target - already_reversed`` (never negative). So the total
    reversed never exceeds ``earned`` and a full refund reverses exactly ``earned``.
    Raises ``ValueError`` when the refunds would exceed the purchase amount.
    """
    _check_money(refunded_amount_this_time, "refunded_amount_this_time")
    _check_money(refunded_total_before, "refunded_total_before")
    return _proportional_reversal(
        earned_for_purchase,
        already_reversed,
        base=purchase_amount,
        cumulative=refunded_total_before + refunded_amount_this_time,
        what="refunds",
    )


def bonus_to_reverse(
    bonus_earned: int,
    already_reversed: int,
    purchase_amount: Decimal,
    refunded_total: Decimal,
) -> int:
    """First-plan bonus points (>= 0) to take back once the plan's purchase has been
    refunded ``refunded_total`` in all.

    The same cumulative rule as ``points_to_reverse``:
    ``floor(bonus x refunded_total / purchase_amount) - already_reversed`` (never
    negative), so the total reversed never exceeds the bonus and a full refund reverses
    all of it. A plan that earned no bonus (not the account's first) gives 0.
    Raises ``ValueError`` when ``refunded_total`` exceeds the purchase amount.
    """
    _check_money(refunded_total, "refunded_total")
    return _proportional_reversal(
        bonus_earned,
        already_reversed,
        base=purchase_amount,
        cumulative=refunded_total,
        what="refunds",
    )


def _proportional_reversal(
    earned: int, already_reversed: int, *, base: Decimal, cumulative: Decimal, what: str
) -> int:
    _check_points(earned, "earned")
    _check_points(already_reversed, "already_reversed")
    _check_money(base, "base amount")
    if cumulative > base:
        raise ValueError(f"{what} {cumulative} exceed the amount {base}")
    if base == 0:
        return 0
    # exact floor of earned x cumulative / base, on integer ratios (no rounding)
    cum_num, cum_den = cumulative.as_integer_ratio()
    base_num, base_den = base.as_integer_ratio()
    target = (earned * cum_num * base_den) // (cum_den * base_num)
    return max(0, target - already_reversed)


# --------------------------------------------------------------------------- redemption


@dataclass(frozen=True)
class RedemptionOutcome:
    """The result of ``redeem``.

    - accepted: points were spent; emit ``points.redeemed`` (ledger ``-points``, reason
      ``fee_redemption``) and ``fee_amount`` is waived on the plan.
    - not accepted, reason ``insufficient_points``: emit ``points.redemption-rejected``
      with ``points`` (the points the waiver would have needed); the plan keeps its fee.
    - not accepted, reason ``nothing_to_waive`` (points requested, the plan has no fee):
      the handler emits ``points.redemption-rejected`` with ``why: nothing_to_waive`` and
      the requested points (``points`` is 0 here); the balance is unchanged.
    - not accepted, reason ``nothing_requested``: emit nothing.
    """

    accepted: bool
    points: int
    fee_amount: Decimal
    reason: str | None

    @property
    def rejected(self) -> bool:
        """True when a ``points.redemption-rejected`` event is due."""
        return self.reason == INSUFFICIENT_POINTS


def redeem(
    balance: int,
    requested_points: int,
    plan_total_fee: Decimal,
    policy: PointsPolicy = DEFAULT_POLICY,
) -> RedemptionOutcome:
    """Spend up to ``requested_points`` on the fee of a plan with ``plan_total_fee``.

    ``points = min(requested, floor(total_fee x points_per_currency_unit))``;
    ``fee_amount = points / points_per_currency_unit`` quantized down to the minor unit
    (exact with the default 100 points = 1.00), so it never exceeds the fee.
    All or nothing: ``points > balance`` is rejected; a request of 0 does nothing.
    """
    _check_points(requested_points, "requested_points")
    if isinstance(balance, bool) or not isinstance(balance, int):
        raise TypeError("balance must be an int")
    _check_money(plan_total_fee, "plan_total_fee")
    zero_fee = Decimal(0).quantize(policy.minor_unit)
    if requested_points == 0:
        return RedemptionOutcome(False, 0, zero_fee, NOTHING_REQUESTED)
    cap = _floor(plan_total_fee, policy.points_per_currency_unit)
    points = min(requested_points, cap)
    if points == 0:
        return RedemptionOutcome(False, 0, zero_fee, NOTHING_TO_WAIVE)
    if points > balance:
        return RedemptionOutcome(False, points, zero_fee, INSUFFICIENT_POINTS)
    fee_amount = (Decimal(points) / policy.points_per_currency_unit).quantize(
        policy.minor_unit, rounding=ROUND_DOWN
    )
    return RedemptionOutcome(True, points, fee_amount, None)


# --------------------------------------------------------------------------- restoration


def points_to_restore(requested: int, redeemed: int, already_restored: int) -> int:
    """Points (>= 0) a cancellation or adjustment gives back for a plan.

    ``requested`` is the event's ``points_to_restore``; ``redeemed`` the points spent on
    the plan's fee (``points.redeemed``, 0 when the redemption was rejected or none was
    asked); ``already_restored`` what earlier restorations of the plan gave back.
    Result: ``min(requested, redeemed - already_restored)``, never negative, so the
    total restored for a plan never exceeds what was redeemed for it (no points created).
    """
    _check_points(requested, "requested")
    _check_points(redeemed, "redeemed")
    _check_points(already_restored, "already_restored")
    return max(0, min(requested, redeemed - already_restored))


# --------------------------------------------------------------------------- ledger


@dataclass(frozen=True)
class LedgerEntry:
    """One movement: ``points`` > 0 credits (purchase, bonus, restorations), < 0 debits
    (refund, plan_cancelled, fee_redemption). ``ref`` is the purchase or plan id."""

    points: int
    reason: str
    ref: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.points, bool) or not isinstance(self.points, int):
            raise TypeError("points must be an int")
        if self.reason not in REASONS:
            raise ValueError(f"unknown ledger reason {self.reason!r}")
        if self.reason in CREDIT_REASONS and self.points < 0:
            raise ValueError(f"a {self.reason} entry cannot be negative")
        if self.reason in DEBIT_REASONS and self.points > 0:
            raise ValueError(f"a {self.reason} entry cannot be positive")


@dataclass(frozen=True)
class Ledger:
    """An account's append-only points ledger (immutable: ``append`` returns a new one)."""

    entries: tuple[LedgerEntry, ...] = ()

    def append(self, points: int, reason: str, ref: str | None = None) -> Ledger:
        return Ledger(self.entries + (LedgerEntry(points, reason, ref),))

    def balance(self) -> int:
        """The balance: the sum of every entry."""
        return sum(entry.points for entry in self.entries)

    def total(self, reason: str | None = None, ref: str | None = None) -> int:
        """Sum of the entries matching ``reason`` and/or ``ref`` (None matches any).

        E.g. ``-ledger.total(REFUND, purchase_id)`` = points already reversed for it.
        """
        return sum(
            entry.points
            for entry in self.entries
            if (reason is None or entry.reason == reason) and (ref is None or entry.ref == ref)
        )


# --------------------------------------------------------------------------- helpers


def _floor(*factors: Decimal | int) -> int:
    """floor of the product, computed exactly (no Decimal context rounding).

    On integer ratios (``Decimal.as_integer_ratio``): the same exact result as
    ``Fraction`` arithmetic, several times cheaper on the hot path.
    """
    numerator = denominator = 1
    for factor in factors:
        n, d = factor.as_integer_ratio()
        numerator *= n
        denominator *= d
    return numerator // denominator


def _check_money(value: Decimal, name: str) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name} must be a finite amount >= 0")


def _check_points(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
