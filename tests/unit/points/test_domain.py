"""Points rules: accrual, first-plan bonus, proportional reversal, redemption, ledger."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.points.domain import (
    FEE_REDEMPTION,
    FIRST_INSTALLMENT_BONUS,
    INSUFFICIENT_POINTS,
    NOTHING_REQUESTED,
    NOTHING_TO_WAIVE,
    PLAN_CANCELLED,
    PURCHASE,
    REFUND,
    Ledger,
    LedgerEntry,
    RedemptionOutcome,
    UnknownTier,
    bonus_to_reverse,
    first_plan_bonus,
    points_for_purchase,
    points_to_reverse,
    redeem,
)
from services.points.policy import DEFAULT_POLICY

D = Decimal
TIERS = ["silver", "gold", "platinum", "diamond"]
MULTIPLIER = {"silver": D("1.0"), "gold": D("1.2"), "platinum": D("1.5"), "diamond": D("2.0")}

# Positive money amounts with two decimals, 0.01 .. 1,000,000.00.
amounts = st.integers(min_value=1, max_value=100_000_000).map(lambda cents: D(cents) / 100)


# --------------------------------------------------------------------------- accrual


@pytest.mark.parametrize(
    ("amount", "tier", "expected"),
    [
        ("999.99", "gold", 1199),  # 1199.988 rounded down
        ("999.99", "silver", 999),
        ("1000.00", "silver", 1000),
        ("1000.00", "gold", 1200),
        ("100.00", "platinum", 150),
        ("333.33", "platinum", 499),  # 499.995
        ("500.50", "diamond", 1001),
        ("0.99", "silver", 0),
        ("0.84", "gold", 1),  # 1.008
        ("0.83", "gold", 0),  # 0.996
        ("0.00", "diamond", 0),
    ],
)
def test_accrual_table(amount: str, tier: str, expected: int) -> None:
    assert points_for_purchase(D(amount), tier, DEFAULT_POLICY) == expected


@given(amount=amounts, tier=st.sampled_from(TIERS))
def test_accrual_is_the_exact_floor(amount: Decimal, tier: str) -> None:
    points = points_for_purchase(amount, tier)
    exact = Fraction(amount) * Fraction(MULTIPLIER[tier])
    assert points == math.floor(exact)
    assert points <= exact < points + 1


def test_accrual_rejects_float_and_unknown_tier() -> None:
    with pytest.raises(TypeError):
        points_for_purchase(999.99, "gold")  # type: ignore[arg-type]
    with pytest.raises(UnknownTier):
        points_for_purchase(D("10.00"), "bronze")
    with pytest.raises(ValueError):
        points_for_purchase(D("-1.00"), "gold")


def test_first_plan_bonus_doubles_the_first_plan_only() -> None:
    assert first_plan_bonus(1199, account_had_plan=False) == 1199
    assert first_plan_bonus(1199, account_had_plan=True) == 0
    assert first_plan_bonus(0, account_had_plan=False) == 0


# --------------------------------------------------------------------------- reversal


def test_partial_refunds_in_thirds_then_full() -> None:
    amount, earned = D("999.99"), 1199
    reversed_total, refunded = 0, D(0)
    steps = []
    for part in (D("333.33"), D("333.33"), D("333.33")):
        step = points_to_reverse(earned, reversed_total, amount, part, refunded)
        steps.append(step)
        reversed_total += step
        refunded += part
    assert steps == [399, 400, 400]  # floor(1199/3)=399, floor(2*1199/3)=799, 1199
    assert reversed_total == earned


def test_full_refund_at_once_reverses_everything() -> None:
    assert points_to_reverse(1199, 0, D("999.99"), D("999.99"), D(0)) == 1199


def test_small_refund_may_reverse_nothing() -> None:
    assert points_to_reverse(1199, 0, D("999.99"), D("0.50"), D(0)) == 0


def test_refunds_beyond_the_amount_are_refused() -> None:
    with pytest.raises(ValueError):
        points_to_reverse(100, 0, D("100.00"), D("60.00"), D("50.00"))


@st.composite
def refund_sequences(draw: st.DrawFn) -> tuple[Decimal, list[Decimal], bool]:
    """A purchase amount and a sequence of partial refunds (in cents) not exceeding it."""
    cents = draw(st.integers(min_value=1, max_value=10_000_000))
    full = draw(st.booleans())
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=cents), max_size=8)))
    if full:
        cuts.append(cents)
    parts, previous = [], 0
    for cut in cuts:
        if cut > previous:
            parts.append(D(cut - previous) / 100)
            previous = cut
    return D(cents) / 100, parts, full


@given(sequence=refund_sequences(), tier=st.sampled_from(TIERS))
def test_reversals_never_exceed_earned_and_full_refund_reverses_all(
    sequence: tuple[Decimal, list[Decimal], bool], tier: str
) -> None:
    amount, parts, full = sequence
    earned = points_for_purchase(amount, tier)
    reversed_total, refunded = 0, D(0)
    for part in parts:
        step = points_to_reverse(earned, reversed_total, amount, part, refunded)
        assert step >= 0
        reversed_total += step
        refunded += part
        assert reversed_total <= earned
        # the cumulative total is always the proportional share, rounded down
        assert reversed_total == math.floor(
            Fraction(earned) * Fraction(refunded) / Fraction(amount)
        )
    if full:
        assert refunded == amount
        assert reversed_total == earned


def test_bonus_reversal_follows_the_refunds_of_the_purchase() -> None:
    amount = D("1200.00")
    assert bonus_to_reverse(1200, 0, amount, D("600.00")) == 600  # half refunded
    assert bonus_to_reverse(1200, 600, amount, D("600.00")) == 0  # the same total again
    assert bonus_to_reverse(1200, 600, amount, amount) == 600  # then the rest
    assert bonus_to_reverse(1440, 0, amount, D("300.00")) == 360
    assert bonus_to_reverse(1440, 360, amount, D("1200.00")) == 1080
    assert bonus_to_reverse(7, 0, D("3.00"), D("1.00")) == 2  # floor(7/3)
    assert bonus_to_reverse(0, 0, amount, amount) == 0  # not the first plan: no bonus
    with pytest.raises(ValueError):
        bonus_to_reverse(1200, 0, amount, D("1200.01"))


@given(sequence=refund_sequences(), bonus=st.integers(min_value=0, max_value=5_000_000))
def test_bonus_reversals_are_the_proportional_share_and_never_exceed_the_bonus(
    sequence: tuple[Decimal, list[Decimal], bool], bonus: int
) -> None:
    amount, parts, full = sequence
    reversed_total, refunded = 0, D(0)
    for part in parts:
        refunded += part
        step = bonus_to_reverse(bonus, reversed_total, amount, refunded)
        assert step >= 0
        reversed_total += step
        assert reversed_total <= bonus
        assert reversed_total == math.floor(Fraction(bonus) * Fraction(refunded) / Fraction(amount))
        assert bonus_to_reverse(bonus, reversed_total, amount, refunded) == 0  # a repeat: 0
    if full:
        assert reversed_total == bonus


# --------------------------------------------------------------------------- redemption


@pytest.mark.parametrize(
    ("balance", "requested", "fee", "expected"),
    [
        (5000, 3000, "45.00", RedemptionOutcome(True, 3000, D("30.00"), None)),
        (20000, 10000, "45.00", RedemptionOutcome(True, 4500, D("45.00"), None)),  # capped
        (4500, 10000, "45.00", RedemptionOutcome(True, 4500, D("45.00"), None)),  # exactly all
        (4499, 4500, "45.00", RedemptionOutcome(False, 4500, D("0.00"), INSUFFICIENT_POINTS)),
        (100, 3000, "45.00", RedemptionOutcome(False, 3000, D("0.00"), INSUFFICIENT_POINTS)),
        (-50, 1, "45.00", RedemptionOutcome(False, 1, D("0.00"), INSUFFICIENT_POINTS)),
        (5000, 0, "45.00", RedemptionOutcome(False, 0, D("0.00"), NOTHING_REQUESTED)),
        (5000, 3000, "0.00", RedemptionOutcome(False, 0, D("0.00"), NOTHING_TO_WAIVE)),
        (5000, 1, "45.00", RedemptionOutcome(True, 1, D("0.01"), None)),
        (5000, 1234, "12.34", RedemptionOutcome(True, 1234, D("12.34"), None)),
    ],
)
def test_redemption_table(balance: int, requested: int, fee: str, expected: object) -> None:
    assert redeem(balance, requested, D(fee)) == expected


def test_only_insufficient_points_is_a_rejection() -> None:
    assert redeem(0, 10, D("5.00")).rejected
    assert not redeem(0, 0, D("5.00")).rejected
    assert not redeem(100, 10, D("5.00")).rejected


@given(
    balance=st.integers(min_value=-10_000, max_value=1_000_000),
    requested=st.integers(min_value=0, max_value=1_000_000),
    fee=st.integers(min_value=0, max_value=1_000_000).map(lambda cents: D(cents) / 100),
)
def test_redemption_never_negative_and_capped_at_fee(
    balance: int, requested: int, fee: Decimal
) -> None:
    outcome = redeem(balance, requested, fee)
    if outcome.accepted:
        assert 0 < outcome.points <= requested
        assert balance - outcome.points >= 0
        assert outcome.fee_amount <= fee
        assert outcome.fee_amount == D(outcome.points) / 100
        assert outcome.points == min(requested, int(fee * 100))
    else:
        assert outcome.fee_amount == 0
        assert outcome.reason in {INSUFFICIENT_POINTS, NOTHING_REQUESTED, NOTHING_TO_WAIVE}
        if outcome.reason == INSUFFICIENT_POINTS:
            assert outcome.points > balance


# --------------------------------------------------------------------------- ledger

entries = st.one_of(
    st.tuples(
        st.integers(min_value=0, max_value=100_000),
        st.sampled_from([PURCHASE, FIRST_INSTALLMENT_BONUS]),
    ),
    st.tuples(
        st.integers(min_value=-100_000, max_value=0),
        st.sampled_from([REFUND, PLAN_CANCELLED, FEE_REDEMPTION]),
    ),
)


@given(st.lists(entries, max_size=50))
def test_balance_is_the_sum_of_the_ledger(moves: list[tuple[int, str]]) -> None:
    ledger = Ledger()
    for points, reason in moves:
        before = ledger
        ledger = ledger.append(points, reason)
        assert len(before.entries) == len(ledger.entries) - 1  # append-only, immutable
        assert ledger.entries[:-1] == before.entries
    assert ledger.balance() == sum(points for points, _ in moves)
    assert ledger.balance() == sum(ledger.total(reason) for reason in {r for _, r in moves})


def test_ledger_story_may_go_below_zero_on_reversal() -> None:
    ledger = Ledger()
    earned = points_for_purchase(D("999.99"), "gold")
    ledger = ledger.append(earned, PURCHASE, "p-1")
    ledger = ledger.append(first_plan_bonus(earned, False), FIRST_INSTALLMENT_BONUS, "plan-1")
    outcome = redeem(ledger.balance(), 5000, D("120.00"))
    assert outcome == RedemptionOutcome(False, 5000, D("0.00"), INSUFFICIENT_POINTS)
    outcome = redeem(ledger.balance(), 2398, D("120.00"))
    assert outcome.accepted and outcome.fee_amount == D("23.98")
    ledger = ledger.append(-outcome.points, FEE_REDEMPTION, "plan-1")
    assert ledger.balance() == 0
    step = points_to_reverse(earned, -ledger.total(REFUND, "p-1"), D("999.99"), D("999.99"), D(0))
    ledger = ledger.append(-step, REFUND, "p-1")
    assert ledger.balance() == -1199
    assert ledger.total(PURCHASE, "p-1") == 1199


def test_ledger_entries_are_checked() -> None:
    with pytest.raises(ValueError):
        LedgerEntry(-5, PURCHASE)
    with pytest.raises(ValueError):
        LedgerEntry(5, REFUND)
    with pytest.raises(ValueError):
        LedgerEntry(5, "gift")
    with pytest.raises(TypeError):
        LedgerEntry(1.5, PURCHASE)  # type: ignore[arg-type]
