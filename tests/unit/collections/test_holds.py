"""collections domain, second release: promises, disputes and the ladder (property tests).

Under any interleaving of contact outcomes, payments and end-of-day reports, the ladder
still raises each level once and in order, a close not held raises every crossed level,
and a hold never delays a cure or a charge-off."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.collections import domain
from services.collections.policy import DEFAULT_POLICY as P

START = date(2026, 1, 10)

close = st.tuples(st.just("close"), st.integers(0, 40), st.sampled_from(["100.00", "90000.00"]))
cure = st.tuples(st.just("cure"), st.integers(0, 3), st.just("0"))
promise = st.tuples(st.just("promise"), st.integers(0, 30), st.sampled_from(["50.00", "500.00"]))
dispute = st.tuples(st.just("dispute"), st.integers(0, 5), st.just("0"))
resolve = st.tuples(st.just("resolve"), st.integers(0, 5), st.just("0"))
payment = st.tuples(st.just("payment"), st.integers(0, 5), st.sampled_from(["20.00", "300.00"]))
reached = st.tuples(st.just("reached"), st.integers(0, 5), st.just("0"))
steps = st.lists(st.one_of(close, cure, promise, dispute, resolve, payment, reached),
                 max_size=40)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(steps)
def test_any_interleaving_raises_each_level_once_in_order_and_holds_never_delay_resolution(
    ops,
):
    today, dpd = START, 0
    case: domain.CaseState | None = None
    promises: list[domain.Promise] = []
    disputes: list[domain.Dispute] = []
    paid: list[domain.Payment] = []
    raised: list[int] = []
    decided: set[str] = set()
    for n, (kind, k, amount) in enumerate(ops):
        if kind in ("close", "cure"):
            today += timedelta(days=k)
            dpd = dpd + k if kind == "close" and (dpd or k) else 0
            if kind == "close" and dpd == 0:
                dpd = 1
            held = False
            if case is not None and not case.charged_off and dpd > 0:
                for p, towards in domain.promises_broken(promises, paid, today, P):
                    assert towards < p.promised_amount and today >= p.decided_on(P)
                    assert p.contact_id not in decided
                    decided.add(p.contact_id)
                    promises[promises.index(p)] = dataclasses.replace(p, status="broken")
                held = domain.ladder_held(promises, disputes, today, P)
            decision = domain.assess_delinquency(
                "acc", case, dpd, Decimal(amount), today, P, held=held
            )
            if held:
                assert decision.escalations == ()
            raised += [e.level for e in decision.escalations]
            # a hold never delays a cure or a charge-off
            if case is not None and not case.charged_off and dpd == 0:
                assert decision.resolution == domain.CURED
            if (case is None or not case.charged_off) and dpd >= P.charge_off_dpd:
                assert decision.resolution == domain.CHARGED_OFF
            # a close not held raises every crossed level (the legal one when guarded)
            if decision.case is not None and not held and not decision.case.charged_off:
                assert decision.case.highest_level >= min(domain.level_for(dpd, P), 5)
            if decision.resolution is not None or decision.case is None:
                promises = [dataclasses.replace(p, status="void")
                            if p.status == "open" else p for p in promises]  # fmt: skip
                disputes, raised = [], []
                if decision.resolution == domain.CURED or decision.case is None:
                    dpd = 0
            case = decision.case
            # each level at most once and in order, within a case
            assert raised == list(range(1, len(raised) + 1))
            continue
        if case is None or case.charged_off:
            continue  # an outcome for no case in play is refused (DLQ)
        on = today + timedelta(days=min(k, 2))
        if kind == "promise":
            p = domain.Promise(f"p{n}", today, today + timedelta(days=k), Decimal(amount), "USD")
            assert domain.promise_refusal(p.contacted_on, p.promised_date, P) is None
            promises.append(p)
        elif kind == "dispute":
            disputes.append(domain.Dispute(today))
        elif kind == "resolve":
            disputes = [dataclasses.replace(d, resolved=True) for d in disputes]
        elif kind == "payment":
            paid.append(domain.Payment(on, Decimal(amount), "USD"))
        elif kind == "reached":
            case = dataclasses.replace(case, contacts=(*case.contacts, today))
        for p, towards in domain.promises_kept(promises, paid):
            assert towards >= p.promised_amount and p.contact_id not in decided
            decided.add(p.contact_id)
            promises[promises.index(p)] = dataclasses.replace(p, status="kept")


@given(st.integers(0, 60), st.integers(0, 40))
def test_a_promise_holds_before_promised_date_plus_grace_and_not_from_it(offset, promised_in):
    contacted = START
    promised = contacted + timedelta(days=promised_in)
    p = domain.Promise("p", contacted, promised, Decimal("10"), "USD")
    refused = domain.promise_refusal(contacted, promised, P)
    assert (refused is None) == (promised_in <= P.promise_max_days)
    today = contacted + timedelta(days=offset)
    held = domain.ladder_held([p], [], today, P)
    assert held == (today < promised + timedelta(days=P.promise_grace_days))
    broken = domain.promises_broken([p], [], today, P)
    assert bool(broken) == (not held)


@given(st.integers(0, 60), st.booleans())
def test_a_dispute_holds_through_contacted_on_plus_30_unless_resolved(offset, resolved):
    d = domain.Dispute(START, resolved=resolved)
    today = START + timedelta(days=offset)
    assert domain.ladder_held([], [d], today, P) == (not resolved and offset <= 30)


def test_contacts_for_the_guard_are_the_contact_actions_and_counted_outcomes():
    case = domain.CaseState(
        [(1, START), (2, START), (3, START), (4, START), (5, START + timedelta(days=40))],
        START,
        contacts=[START + timedelta(days=20)],
    )
    assert domain.guard_contacts(case, P) == [START] * 4 + [START + timedelta(days=20)]
    assert not domain.legal_guard_holds(domain.guard_contacts(case, P), Decimal("60000"), P)
    assert domain.counts_as_contact("wrong_party", P)
    assert not domain.counts_as_contact("promise_to_pay", P)
    assert not domain.counts_as_contact("dispute", P)
