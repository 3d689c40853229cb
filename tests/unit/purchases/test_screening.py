"""Fraud and velocity screening (CONTRACT §5.1): the pure rules, at their boundaries, and
hypothesis properties against reference implementations."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.purchases import domain
from services.purchases.domain import ScreeningFacts, screen_purchase
from services.purchases.policy import DEFAULT_POLICY, PurchasesPolicy, load_policy

T = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def facts(times=(), history=(), seen=False) -> ScreeningFacts:
    return ScreeningFacts(card_times=tuple(times), history=tuple(history), merchant_seen=seen)


# --- velocity ------------------------------------------------------------------------


def test_the_fifth_purchase_within_ten_minutes_is_flagged_the_fourth_is_not():
    four_before = [T - i * MIN for i in (1, 2, 3, 4)]
    assert screen_purchase(D("10"), "pos", T, facts(four_before)) == ["velocity"]
    assert screen_purchase(D("10"), "pos", T, facts(four_before[:3])) == []


def test_a_purchase_exactly_ten_minutes_earlier_is_in_the_window_a_microsecond_more_is_not():
    three = [T - MIN, T - 2 * MIN, T - 3 * MIN]
    assert domain.is_velocity([*three, T - 10 * MIN], T)
    assert not domain.is_velocity([*three, T - 10 * MIN - timedelta(microseconds=1)], T)


def test_purchases_at_the_same_instant_count_and_later_posted_ones_do_not():
    assert domain.is_velocity([T] * 4, T)
    assert not domain.is_velocity([T - MIN] * 3 + [T + timedelta(seconds=1)], T)


def test_the_sixth_and_later_are_flagged_too():
    assert domain.is_velocity([T - i * MIN for i in range(9)], T)


# --- amount spike --------------------------------------------------------------------


def test_spike_needs_five_previous_purchases():
    assert not domain.is_amount_spike([D("100")] * 4, D("5000.00"))
    assert domain.is_amount_spike([D("100")] * 5, D("5000.00"))


def test_spike_needs_at_least_5000_and_ten_times_the_median_both_inclusive():
    history = [D("500.00")] * 5  # 10 x median = 5000.00
    assert domain.is_amount_spike(history, D("5000.00"))
    assert not domain.is_amount_spike(history, D("4999.99"))
    small = [D("10.00")] * 5  # 10 x median = 100.00, but below the floor
    assert not domain.is_amount_spike(small, D("4999.99"))
    assert domain.is_amount_spike(small, D("5000.00"))
    assert not domain.is_amount_spike([D("500.01")] * 5, D("5000.00"))


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two():
    assert domain.median([D("1"), D("4"), D("3"), D("100")]) == D("3.5")
    # median (700 + 900) / 2 = 800: flagged from 8000.00 on (the lower middle alone would
    # flag 7000.00, the upper one only 9000.00)
    history = [D("1000"), D("100"), D("900"), D("1000"), D("700"), D("100")]
    assert not domain.is_amount_spike(history, D("7999.99"))
    assert domain.is_amount_spike(history, D("8000.00"))


def test_only_the_last_twenty_amounts_count():
    old_small, recent_large = [D("1")] * 30, [D("1000")] * 20
    assert not domain.is_amount_spike([*old_small, *recent_large], D("9999"))
    assert domain.is_amount_spike([*recent_large, *old_small], D("9999"))


# --- card not present at a new merchant -------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "amount", "seen", "flagged"),
    [
        ("ecommerce", "10000.00", False, True),
        ("moto", "10000.00", False, True),
        ("pos", "10000.00", False, False),
        ("ecommerce", "9999.99", False, False),
        ("ecommerce", "10000.00", True, False),
        ("moto", "250000.00", True, False),
    ],
)
def test_cnp_new_merchant(channel, amount, seen, flagged):
    assert domain.is_cnp_new_merchant(channel, D(amount), seen) is flagged
    expected = ["cnp_new_merchant"] if flagged else []
    assert screen_purchase(D(amount), channel, T, facts(seen=seen)) == expected


def test_flags_come_in_contract_order():
    f = facts([T] * 4, [D("10")] * 5, seen=False)
    assert screen_purchase(D("10000"), "ecommerce", T, f) == [
        "velocity",
        "amount_spike",
        "cnp_new_merchant",
    ]


# --- state bounds ---------------------------------------------------------------------


def test_card_times_are_kept_from_the_latest_minus_the_window():
    assert domain.card_times_kept_from([]) is None
    assert domain.card_times_kept_from([T - MIN, T, T - 30 * MIN]) == T - 10 * MIN


def test_history_keeps_the_last_twenty():
    h: tuple[D, ...] = ()
    for i in range(25):
        h = domain.history_after(h, D(i))
    assert h == tuple(D(i) for i in range(5, 25))


# --- policy ---------------------------------------------------------------------------


def test_policy_defaults_are_the_contract_and_yaml_overrides_them(tmp_path):
    assert load_policy(None) == DEFAULT_POLICY
    p = DEFAULT_POLICY
    assert (p.velocity_window_minutes, p.velocity_count) == (10, 5)
    assert (p.spike_min_amount, p.spike_factor, p.spike_history, p.spike_min_history) == (
        D("5000.00"),
        D("10"),
        20,
        5,
    )
    assert (p.cnp_min_amount, p.cnp_channels) == (D("10000.00"), {"ecommerce", "moto"})
    f = tmp_path / "policy.yaml"
    f.write_text(
        "purchases:\n  velocity_count: 3\n  velocity_window_minutes: 5\n"
        "  cnp_channels: [moto]\n  spike_min_amount: '100.00'\n"
    )
    p = load_policy(f)
    assert (p.velocity_count, p.velocity_window_minutes, p.cnp_channels) == (3, 5, {"moto"})
    assert domain.is_velocity([T - 5 * MIN, T - MIN], T, p)
    assert not domain.is_velocity([T - 5 * MIN - timedelta(seconds=1), T - MIN], T, p)
    assert not domain.is_cnp_new_merchant("ecommerce", D("10000"), False, p)
    assert domain.is_amount_spike([D("10")] * 5, D("100.00"), p)


@pytest.mark.parametrize(
    "yaml_text",
    [
        "purchases:\n  velocity_cout: 3\n",  # a typo is refused
        "purchases:\n  spike_min_history: 21\n",  # more than the history kept
        "purchases:\n  cnp_channels: [phone]\n",
        "purchases:\n  velocity_count: 0\n",
    ],
)
def test_bad_policy_is_refused(tmp_path, yaml_text):
    f = tmp_path / "policy.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ValueError):
        load_policy(f)


# --- properties -----------------------------------------------------------------------

amounts = st.decimals(min_value=D("0.01"), max_value=D("99999999.99"), places=2)


def reference_median(values: list[D]) -> D:
    return D(statistics.median(values))  # exact for Decimals (mean of the middle two)


@given(st.lists(amounts, min_size=1, max_size=40))
def test_median_matches_the_reference(values):
    assert domain.median(values) == reference_median(values)


@given(st.lists(amounts, max_size=40), amounts)
def test_spike_rule_matches_a_direct_reading_of_the_contract(history, amount):
    last = history[-20:]
    expected = len(last) >= 5 and amount >= D("5000.00") and amount >= 10 * reference_median(last)
    assert domain.is_amount_spike(history, amount) is expected


offsets = st.integers(min_value=-30 * 60, max_value=30 * 60)  # seconds around T


@given(st.lists(offsets, max_size=12), offsets)
def test_velocity_matches_counting_the_window(before, at):
    times = [T + timedelta(seconds=s) for s in before]
    now = T + timedelta(seconds=at)
    in_window = [t for t in times if timedelta(0) <= now - t <= timedelta(minutes=10)]
    assert domain.is_velocity(times, now) is (len(in_window) >= 4)
    assert domain.is_velocity(list(reversed(times)), now) is (len(in_window) >= 4)


@given(st.lists(st.integers(min_value=0, max_value=24 * 3600), max_size=30))
def test_pruned_card_times_give_the_same_flags_to_purchases_in_order(seconds):
    """Keeping only the times from the latest minus the window changes no flag, when a
    card's purchases come in posting order."""
    full: list[datetime] = []
    kept: list[datetime] = []
    for s in sorted(seconds):
        now = T + timedelta(seconds=s)
        assert domain.is_velocity(kept, now) is domain.is_velocity(full, now)
        full.append(now)
        start = domain.card_times_kept_from([*kept, now])
        assert start is not None
        kept = [t for t in [*kept, now] if t >= start]
        assert all(now - t <= timedelta(minutes=10) for t in kept)


@given(
    st.lists(st.tuples(offsets, amounts, st.sampled_from(["pos", "ecommerce", "moto"]))),
    st.integers(min_value=2, max_value=6),
)
def test_flags_are_always_in_contract_order_and_distinct(purchases, count):
    policy = PurchasesPolicy(velocity_count=count)
    times: list[datetime] = []
    history: tuple[D, ...] = ()
    for s, amount, channel in purchases:
        now = T + timedelta(seconds=s)
        flags = screen_purchase(amount, channel, now, facts(times, history), policy)
        assert flags == [f for f in domain.FLAG_ORDER if f in flags]
        times.append(now)
        history = domain.history_after(history, amount, policy)
        assert len(history) <= policy.spike_history
