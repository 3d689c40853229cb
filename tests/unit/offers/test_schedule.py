from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.offers.domain import add_months, build_schedule, split_equally, total_fee
from tests.builders.offers import dates, money


@pytest.mark.parametrize(
    "start, months, expected",
    [
        (date(2024, 1, 31), 1, date(2024, 2, 29)),  # leap year
        (date(2023, 1, 31), 1, date(2023, 2, 28)),
        (date(2023, 1, 31), 2, date(2023, 3, 31)),  # from the original day, not Feb 28
        (date(2023, 1, 31), 3, date(2023, 4, 30)),
        (date(2023, 1, 30), 1, date(2023, 2, 28)),
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2024, 2, 29), 48, date(2028, 2, 29)),
        (date(2026, 11, 28), 1, date(2026, 12, 28)),
        (date(2026, 12, 15), 1, date(2027, 1, 15)),  # across the year end
        (date(2026, 8, 31), 36, date(2029, 8, 31)),
        (date(2026, 5, 10), 0, date(2026, 5, 10)),
    ],
)
def test_add_months_clamps_to_the_month_end(start, months, expected):
    assert add_months(start, months) == expected


def test_a_schedule_from_january_31st():
    s = build_schedule(D("1000.00"), D("18.00"), 3, date(2023, 1, 31))
    assert [i.due_date for i in s] == [date(2023, 2, 28), date(2023, 3, 31), date(2023, 4, 30)]
    assert [i.principal for i in s] == [D("333.34"), D("333.33"), D("333.33")]
    assert [i.fee for i in s] == [D("6.00")] * 3
    assert [i.amount for i in s] == [D("339.34"), D("339.33"), D("339.33")]
    assert [i.seq for i in s] == [1, 2, 3]


def test_the_remainder_can_go_on_the_last_installment():
    s = build_schedule(D("100.00"), D("1.00"), 3, date(2026, 1, 1), remainder="last")
    assert [i.principal for i in s] == [D("33.33"), D("33.33"), D("33.34")]
    assert [i.fee for i in s] == [D("0.33"), D("0.33"), D("0.34")]


def test_a_zero_digit_currency():
    s = build_schedule(D("10000"), D("180"), 3, date(2026, 1, 1), minor_digits=0)
    assert [i.principal for i in s] == [D("3334"), D("3333"), D("3333")]
    assert [i.fee for i in s] == [D("60")] * 3


def test_amounts_off_the_minor_unit_are_refused():
    with pytest.raises(ValueError):
        split_equally(D("1.005"), 3)
    with pytest.raises(ValueError):
        split_equally(D("1.5"), 3, minor_digits=0)


@pytest.mark.parametrize(
    "principal, rate, tenor, expected",
    [
        ("1000.00", "0.006", 12, "72.00"),
        ("1234.56", "0.0075", 3, "27.78"),  # 27.7776
        ("100.10", "0.0075", 6, "4.50"),  # 4.5045
        ("500.00", "0.0075", 3, "11.25"),
        ("333.33", "0.0075", 2, "5.00"),  # 4.99995 → half up
        ("1000.00", "0", 24, "0.00"),
    ],
)
def test_total_fee_is_principal_times_rate_times_tenor_half_up(principal, rate, tenor, expected):
    assert total_fee(D(principal), D(rate), tenor) == D(expected)


@given(
    digits=st.sampled_from([0, 2, 3]),
    data=st.data(),
    tenor=st.integers(1, 48),
    posted_on=dates,
    remainder=st.sampled_from(["first", "last"]),
)
def test_schedule_sums_are_exact(digits, data, tenor, posted_on, remainder):
    principal = data.draw(money(digits))
    rate = data.draw(st.sampled_from([D("0"), D("0.0075"), D("0.006"), D("0.0056")]))
    fee = total_fee(principal, rate, tenor, digits)
    assert fee == (principal * rate * tenor).quantize(D(1).scaleb(-digits), "ROUND_HALF_UP")
    s = build_schedule(principal, fee, tenor, posted_on, remainder, digits)
    assert len(s) == tenor
    assert sum(i.principal for i in s) == principal
    assert sum(i.fee for i in s) == fee
    unit = D(1).scaleb(-digits)
    for i in s:
        assert i.principal >= 0 and i.fee >= 0
        assert i.principal == i.principal.quantize(unit) and i.fee == i.fee.quantize(unit)
    regular = s[1:] if remainder == "first" else s[:-1]
    odd = s[0] if remainder == "first" else s[-1]
    assert len({i.principal for i in regular}) <= 1 and len({i.fee for i in regular}) <= 1
    if regular:
        assert 0 <= odd.principal - regular[0].principal < tenor * unit
        assert 0 <= odd.fee - regular[0].fee < tenor * unit


@given(posted_on=dates, tenor=st.integers(1, 48))
def test_due_dates_are_monthly_from_the_posting_day(posted_on, tenor):
    s = build_schedule(D("100.00"), D("0.00"), tenor, posted_on)
    for k, i in enumerate(s, start=1):
        months = (i.due_date.year - posted_on.year) * 12 + i.due_date.month - posted_on.month
        assert months == k
        clamped = (i.due_date + timedelta(days=1)).month != i.due_date.month  # month end
        assert i.due_date.day == posted_on.day or (i.due_date.day < posted_on.day and clamped)
