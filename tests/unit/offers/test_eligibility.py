from datetime import date
from decimal import Decimal as D

import pytest

from services.offers.domain import AccountView, PurchaseFacts, eligibility_reasons
from services.offers.policy import OffersPolicy

POLICY = OffersPolicy()
ACCOUNT = AccountView("acc-1", "active", "standard", "gold", D("10000.00"), 700)
PURCHASE = PurchaseFacts(D("1000.00"), "5411", date(2026, 11, 28), "m-1", "electronics")


def reasons(account=ACCOUNT, purchase=PURCHASE, outstanding="0", overdue=False):
    return eligibility_reasons(account, purchase, D(outstanding), overdue, POLICY)


def with_(obj, **changes):
    return type(obj)(**{**obj.__dict__, **changes})


def test_an_eligible_purchase_has_no_reason():
    assert reasons() == []


@pytest.mark.parametrize(
    "account, purchase, outstanding, overdue, expected",
    [
        (with_(ACCOUNT, status="blocked"), PURCHASE, "0", False, ["account_not_active"]),
        (with_(ACCOUNT, status="closed"), PURCHASE, "0", False, ["account_not_active"]),
        (ACCOUNT, with_(PURCHASE, amount=D("499.99")), "0", False, ["amount_below_minimum"]),
        (ACCOUNT, with_(PURCHASE, amount=D("500.00")), "0", False, []),
        (with_(ACCOUNT, segment="young"), with_(PURCHASE, amount=D("300.00")), "0", False, []),
        (
            with_(ACCOUNT, segment="young"),
            with_(PURCHASE, amount=D("299.99")),
            "0",
            False,
            ["amount_below_minimum"],
        ),
        (ACCOUNT, with_(PURCHASE, mcc="6011"), "0", False, ["mcc_excluded"]),
        (ACCOUNT, with_(PURCHASE, mcc=7995), "0", False, ["mcc_excluded"]),
        (ACCOUNT, PURCHASE, "0", True, ["overdue_installment"]),
        (with_(ACCOUNT, risk_score=599), PURCHASE, "0", False, ["risk_score_too_low"]),
        (with_(ACCOUNT, risk_score=600), PURCHASE, "0", False, []),
        # default limit = 80 % of 10,000.00 = 8,000.00
        (ACCOUNT, PURCHASE, "7000.00", False, []),
        (ACCOUNT, PURCHASE, "7000.01", False, ["installment_limit_exceeded"]),
        (with_(ACCOUNT, installment_limit=D("1500.00")), PURCHASE, "500.00", False, []),
        (
            with_(ACCOUNT, installment_limit=D("1500.00")),
            PURCHASE,
            "500.01",
            False,
            ["installment_limit_exceeded"],
        ),
    ],
)
def test_each_rule(account, purchase, outstanding, overdue, expected):
    assert reasons(account, purchase, outstanding, overdue) == expected


def test_every_failing_reason_is_returned_at_once():
    account = with_(ACCOUNT, status="blocked", risk_score=100, credit_limit=D("100.00"))
    purchase = with_(PURCHASE, amount=D("10.00"), mcc="4829")
    assert reasons(account, purchase, "75.00", True) == [
        "account_not_active",
        "amount_below_minimum",
        "mcc_excluded",
        "overdue_installment",
        "risk_score_too_low",
        "installment_limit_exceeded",
    ]


def test_an_unknown_account_still_gets_the_purchase_checks():
    assert reasons(None) == ["account_unknown"]
    purchase = with_(PURCHASE, amount=D("1.00"), mcc="6051")
    assert reasons(None, purchase) == ["account_unknown", "amount_below_minimum", "mcc_excluded"]
