from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.purchases.domain import RecordedPurchase, Refused, decide_purchase, decide_refund

P = RecordedPurchase("p-1", "acc-1", Decimal("100.00"), "USD")


def test_new_purchase_is_recorded():
    assert decide_purchase(None, "acc-1", Decimal("100.00"), "USD") == "record"


def test_same_purchase_again_is_a_duplicate():
    assert decide_purchase(P, "acc-1", Decimal("100.00"), "USD") == "duplicate"


def test_conflicting_repeat_is_refused():
    with pytest.raises(Refused, match="different"):
        decide_purchase(P, "acc-1", Decimal("99.00"), "USD")


def test_refund_of_unknown_purchase_is_refused():
    with pytest.raises(Refused, match="never recorded"):
        decide_refund(None, "acc-1", Decimal("1.00"), "USD")


@pytest.mark.parametrize(
    "account,currency,match",
    [("acc-2", "USD", "account"), ("acc-1", "EUR", "currency")],
)
def test_refund_must_match_the_purchase(account, currency, match):
    with pytest.raises(Refused, match=match):
        decide_refund(P, account, Decimal("1.00"), currency)


def test_refund_may_not_exceed_what_is_left():
    partly = RecordedPurchase("p-1", "acc-1", Decimal("100.00"), "USD", Decimal("60.00"))
    assert decide_refund(partly, "acc-1", Decimal("40.00"), "USD").fully_refunded
    with pytest.raises(Refused, match="exceeds"):
        decide_refund(partly, "acc-1", Decimal("40.01"), "USD")


@given(st.lists(st.integers(min_value=1, max_value=5000), max_size=20))
def test_refunds_never_exceed_the_purchase(cents):
    purchase = RecordedPurchase("p", "a", Decimal("100.00"), "USD")
    for c in cents:
        amount = Decimal(c) / 100
        try:
            outcome = decide_refund(purchase, "a", amount, "USD")
        except Refused:
            assert amount > purchase.refundable
            continue
        purchase = RecordedPurchase("p", "a", purchase.amount, "USD", outcome.refunded_total)
        assert purchase.refunded_total <= purchase.amount
        assert outcome.fully_refunded == (purchase.refunded_total == purchase.amount)
