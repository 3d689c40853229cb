"""Screening through the purchases handlers and the runtime's batch code (SQLite, no
broker): flags on purchase.recorded, purchase.flagged, state across batches, duplicates
and dead letters never counted, state bounds."""

from __future__ import annotations

import random
import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from services.purchases import domain
from services.purchases.tables import screening_amounts, screening_card_times
from shared import registry
from shared.runtime.settings import Settings
from tests.builders import messages as f
from tests.builders.services import PURCHASES as SERVICE
from tests.harness import Harness

#: This module's purchases share one card unless they name another (the builder gives
#: each purchase a card of its own by default).
CARD = "tok_abc123"


def purchase(*args: Any, card_token: str = CARD, **kw: Any) -> dict[str, Any]:
    return f.purchase(*args, card_token=card_token, **kw)


IN = "card.purchases.v1"
T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture
def h(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    yield harness
    harness.close()


def flags_by_purchase(emitted) -> dict[str, list[str]]:
    return {
        e.event.data.purchase_id: list(e.event.data.risk_flags)
        for e in emitted
        if e.event is not None and e.event.type == "purchase.recorded"
    }


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_fifth_purchase_of_a_burst_is_flagged_and_a_flagged_event_follows(h):
    burst = f.card_burst("acc-1", 5, every_s=150)  # the 5th is exactly 10 minutes after the 1st
    out = h.feed(IN, *burst)
    assert [e.event.type for e in out] == ["purchase.recorded"] * 5 + ["purchase.flagged"]
    assert [list(e.event.data.risk_flags) for e in out[:5]] == [[], [], [], [], ["velocity"]]
    flagged = out[5].event
    fifth = burst[4]["data"]
    assert flagged.data.purchase_id == fifth["purchase_id"]
    assert flagged.data.account_id == "acc-1" and flagged.subject == "acc-1"
    assert (str(flagged.data.amount), flagged.data.currency) == ("25.00", "USD")
    assert flagged.data.flags == ["velocity"] and flagged.data.posted_at == T0 + 10 * timedelta(
        minutes=1
    )
    assert flagged.causation_id == burst[4]["id"]


def test_one_purchase_per_batch_gives_the_same_flags_as_one_batch(h, tmp_path):
    burst = f.card_burst("acc-1", 7, every_s=60)
    one_by_one: dict[str, list[str]] = {}
    for p in burst:
        one_by_one |= flags_by_purchase(h.feed(IN, p))
    other = Harness(SERVICE, tmp_path / "other")
    try:
        assert flags_by_purchase(other.feed(IN, *burst)) == one_by_one
    finally:
        other.close()
    assert list(one_by_one.values()) == [[]] * 4 + [["velocity"]] * 3


def test_eleven_minutes_apart_is_outside_the_window(h):
    burst = f.card_burst("acc-1", 4, every_s=60)
    late = purchase("acc-1", "25.00", posted_at=at(3 + 10 + 0.02))  # 10:13:01: 10:03 is out
    on_edge = purchase("acc-1", "25.00", posted_at=at(3 + 10))
    assert flags_by_purchase(h.feed(IN, *burst, late))[late["data"]["purchase_id"]] == []
    # 10:13:00, recorded after 10:13:01: it sees 10:03 (exactly 10 minutes) but not 10:13:01
    # (posted after it): 2 of 5, clean.
    assert flags_by_purchase(h.feed(IN, on_edge))[on_edge["data"]["purchase_id"]] == []


def test_other_cards_and_other_accounts_do_not_count(h):
    mine = f.card_burst("acc-1", 4, every_s=10)
    other_card = purchase("acc-1", posted_at=at(1), card_token="tok_other")
    other_account_same_token = f.card_burst("acc-2", 4, every_s=10)
    fifth = purchase("acc-1", "25.00", posted_at=at(2), card_token="tok_other")
    out = flags_by_purchase(h.feed(IN, *mine, other_card, *other_account_same_token, fifth))
    assert all(flags == [] for flags in out.values())
    then = purchase("acc-1", "25.00", posted_at=at(2))  # 5th on tok_abc123 of acc-1
    assert flags_by_purchase(h.feed(IN, then))[then["data"]["purchase_id"]] == ["velocity"]


def test_a_redelivered_or_repeated_purchase_is_not_counted_twice(h):
    burst = f.card_burst("acc-1", 4, every_s=60)
    h.feed(IN, *burst)
    again = burst[3]
    same_purchase_new_event = purchase(
        "acc-1", "25.00", purchase_id=again["data"]["purchase_id"], posted_at=at(3)
    )
    assert h.feed(IN, again, same_purchase_new_event) == []
    fifth = purchase("acc-1", "25.00", posted_at=at(4))
    sixth = purchase("acc-1", "25.00", posted_at=at(5))
    out = flags_by_purchase(h.feed(IN, fifth, sixth))
    assert out == {
        fifth["data"]["purchase_id"]: ["velocity"],
        sixth["data"]["purchase_id"]: ["velocity"],
    }


def test_a_dead_lettered_purchase_never_counts(h):
    burst = f.card_burst("acc-1", 3, every_s=60)
    too_old = purchase("acc-1", "25.00", posted_at="1999-12-31T23:59:59Z")  # date out of range
    conflicting = purchase("acc-1", "99.00", purchase_id=burst[0]["data"]["purchase_id"])
    fourth = purchase("acc-1", "25.00", posted_at=at(3))
    out = h.feed(IN, *burst, too_old, conflicting, fourth)
    assert sorted(e.topic for e in out if e.event is None) == [IN + ".dlq"] * 2
    assert all(flags == [] for flags in flags_by_purchase(out).values())
    fifth = purchase("acc-1", "25.00", posted_at=at(4))
    assert flags_by_purchase(h.feed(IN, fifth)) == {fifth["data"]["purchase_id"]: ["velocity"]}


def test_amount_spike_against_the_median_of_recorded_purchases(h):
    def buy(amount: str, hours: int) -> list[str]:
        p = purchase("acc-1", amount, posted_at=at(hours * 60))
        return flags_by_purchase(h.feed(IN, p))[p["data"]["purchase_id"]]

    assert [buy(a, i) for i, a in enumerate(["400.00", "600.00", "700.00", "650.00"])] == [[]] * 4
    assert buy("9000.00", 4) == []  # only 4 before it
    # 400 600 650 700 9000: median 650
    assert buy("6499.99", 5) == []
    # 400 600 650 700 6499.99 9000: median (650 + 700) / 2 = 675
    assert buy("6749.99", 6) == []
    # 400 600 650 700 6499.99 6749.99 9000: median 700
    assert buy("7000.00", 7) == ["amount_spike"]


def test_amount_spike_flagged_event(h):
    h.feed(IN, *[purchase("acc-1", "100.00", posted_at=at(i * 60)) for i in range(5)])
    spike = purchase("acc-1", "5000.00", posted_at=at(600))
    out = h.feed(IN, spike)
    assert [e.event.type for e in out] == ["purchase.recorded", "purchase.flagged"]
    assert out[0].event.data.risk_flags == out[1].event.data.flags == ["amount_spike"]


def test_cnp_new_merchant_by_channel_amount_and_merchant_history(h):
    def buy(amount, channel, merchant, minutes):
        p = purchase("acc-1", amount, channel=channel, merchant_id=merchant, posted_at=at(minutes))
        return flags_by_purchase(h.feed(IN, p))[p["data"]["purchase_id"]]

    assert buy("10000.00", "pos", "m-shop", 0) == []
    assert buy("9999.99", "ecommerce", "m-web", 60) == []  # below: but m-web is now known
    assert buy("10000.00", "ecommerce", "m-web", 120) == []
    assert buy("10000.00", "moto", "m-phone", 180) == ["cnp_new_merchant"]
    assert buy("10000.00", "moto", "m-phone", 240) == []  # flagged, but recorded: known now
    assert buy("10000.00", "ecommerce", "m-shop", 300) == []


def test_all_three_flags_in_contract_order(h):
    h.feed(IN, *f.card_burst("acc-1", 5, every_s=1, amount="100.00"))
    p = purchase("acc-1", "20000.00", channel="ecommerce", merchant_id="m-new", posted_at=at(0.1))
    out = h.feed(IN, p)
    assert out[1].event.data.flags == ["velocity", "amount_spike", "cnp_new_merchant"]


def test_a_clean_purchase_has_empty_risk_flags_on_the_wire(h):
    [e] = h.feed(IN, purchase("acc-1"))
    assert e.event.data.risk_flags == [] and b'"risk_flags":[]' in e.value


def test_policy_file_changes_the_numbers(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("purchases:\n  velocity_count: 2\n  velocity_window_minutes: 1\n")
    service = registry.build("purchases", Settings(environment="test", policy_file=str(policy)))
    h = Harness(service, tmp_path)
    try:
        burst = f.card_burst("acc-1", 3, every_s=60)  # 2nd is 60 s after the 1st: in
        slow = purchase("acc-1", "25.00", posted_at=at(3.02))
        assert list(flags_by_purchase(h.feed(IN, *burst, slow)).values()) == [
            [],
            ["velocity"],
            ["velocity"],
            [],
        ]
    finally:
        h.close()


# --- properties, through the real handlers ------------------------------------------

ACCOUNTS = ["acc-a", "acc-b", "acc-c"]
purchase_specs = st.lists(
    st.tuples(
        st.sampled_from(ACCOUNTS),
        st.sampled_from(["tok_1", "tok_2"]),
        st.integers(min_value=0, max_value=40),  # minutes after T0
        st.sampled_from(["10.00", "500.00", "5000.00", "12000.00"]),
        st.sampled_from(["pos", "ecommerce"]),
        st.sampled_from(["m-1", "m-2", "m-3"]),
    ),
    min_size=1,
    max_size=40,
)


def messages(specs) -> list[dict[str, Any]]:
    """Per account in posting order (the card system's order), accounts interleaved as given."""
    per_account: dict[str, list] = defaultdict(list)
    for spec in specs:
        per_account[spec[0]].append(spec)
    for acc in per_account:
        per_account[acc].sort(key=lambda s: s[2])
    out = []
    for spec in specs:
        acc, token, minute, amount, channel, merchant = per_account[spec[0]].pop(0)
        out.append(
            purchase(
                acc,
                amount,
                card_token=token,
                posted_at=at(minute),
                channel=channel,
                merchant_id=merchant,
            )
        )
    return out


def reference_flags(msgs) -> dict[str, list[str]]:
    """The contract read directly, over the full (never pruned) history of each account."""
    seen: dict[str, list[dict[str, Any]]] = defaultdict(list)
    flags = {}
    for m in msgs:
        d = m["data"]
        before = seen[d["account_id"]]
        now = datetime.fromisoformat(d["posted_at"].replace("Z", "+00:00"))
        same_card = [
            b
            for b in before
            if b["card_token"] == d["card_token"]
            and timedelta(0)
            <= now - datetime.fromisoformat(b["posted_at"].replace("Z", "+00:00"))
            <= timedelta(minutes=10)
        ]
        last20 = [D(b["amount"]) for b in before][-20:]
        amount = D(d["amount"])
        out = []
        if len(same_card) + 1 >= 5:
            out.append("velocity")
        if len(last20) >= 5 and amount >= D("5000.00") and amount >= 10 * domain.median(last20):
            out.append("amount_spike")
        if (
            d["channel"] in ("ecommerce", "moto")
            and amount >= D("10000.00")
            and all(b["merchant"]["merchant_id"] != d["merchant"]["merchant_id"] for b in before)
        ):
            out.append("cnp_new_merchant")
        flags[d["purchase_id"]] = out
        before.append(d)
    return flags


def run_in_batches(msgs, batch_sizes: list[int]) -> tuple[dict[str, list[str]], dict[str, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        h = Harness(SERVICE, tmp)
        try:
            flags: dict[str, list[str]] = {}
            i = 0
            sizes = iter(batch_sizes)
            while i < len(msgs):
                n = next(sizes, 1)
                flags |= flags_by_purchase(h.feed(IN, *msgs[i : i + n]))
                i += n
            with h.runner.engine.connect() as conn:
                rows = {
                    "max_amounts_per_account": conn.execute(
                        select(func.count())
                        .select_from(screening_amounts)
                        .group_by(screening_amounts.c.account_id)
                    )
                    .scalars()
                    .all(),
                    "card_times": conn.execute(
                        select(
                            screening_card_times.c.account_id,
                            screening_card_times.c.card_token,
                            screening_card_times.c.posted_at,
                        )
                    ).all(),
                }
            return flags, rows
        finally:
            h.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(purchase_specs, st.lists(st.integers(min_value=1, max_value=10), max_size=10), st.randoms())
def test_flags_match_the_contract_in_any_batching_and_any_interleaving_of_accounts(
    specs, batch_sizes, rnd: random.Random
):
    msgs = messages(specs)
    flags, state = run_in_batches(msgs, batch_sizes)
    assert flags == reference_flags(msgs)
    # Another interleaving of the accounts (each account's own order kept): same flags.
    queues = defaultdict(list)
    for m in msgs:
        queues[m["data"]["account_id"]].append(m)
    shuffled = []
    while any(queues.values()):
        acc = rnd.choice([a for a, q in queues.items() if q])
        shuffled.append(queues[acc].pop(0))
    assert run_in_batches(shuffled, [len(shuffled)])[0] == flags
    # The state stays within its bounds.
    assert all(n <= 20 for n in state["max_amounts_per_account"])
    latest: dict[tuple[str, str], datetime] = {}
    for acc, token, posted in state["card_times"]:
        latest[(acc, token)] = max(latest.get((acc, token), posted), posted)
    for acc, token, posted in state["card_times"]:
        assert latest[(acc, token)] - posted <= timedelta(minutes=10)
