"""purchases (harness, SQLite): absurd posting and refund dates are dead-lettered (issue #11).

The schema accepts any date from year 1 to 9999; the services downstream add months and
days to a posting date, so a purchase or refund dated outside 2000-01-01 to 2199-12-31 is
dead-lettered here with reason ``date_out_of_range``, never recorded.
"""

from __future__ import annotations

import pytest

from tests.builders import messages as f
from tests.builders.services import PURCHASES as SERVICE
from tests.harness import Harness

IN, OUT = "card.purchases.v1", "purchases.recorded.v1"


@pytest.fixture
def h(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    yield harness
    harness.close()


@pytest.mark.parametrize("posted", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
                                    "2200-01-01T00:00:00Z", "1999-12-31T23:59:59Z"])  # fmt: skip
def test_a_purchase_posted_out_of_range_is_dead_lettered_not_recorded(h, posted):
    p = f.purchase("acc-1", posted_at=posted)
    [letter] = h.feed(IN, p)
    assert (letter.topic, letter.event) == (IN + ".dlq", None)
    edge = ("before the earliest accepted date 2000-01-01" if posted < "2000"
            else "after the latest accepted date 2199-12-31")  # fmt: skip
    assert letter.headers["error.reason"] == f"date_out_of_range: posted_at {posted[:10]} is {edge}"
    # not recorded: a refund of it names an unknown purchase
    [letter] = h.feed(IN, f.refund("acc-1", p["data"]["purchase_id"], "1.00"))
    assert "never recorded" in letter.headers["error.reason"]


def test_the_window_edges_are_recorded(h):
    for posted in ("2000-01-01T00:00:00Z", "2199-12-31T23:59:59Z"):
        [out] = h.feed(IN, f.purchase("acc-1", posted_at=posted))
        assert out.event is not None and out.event.type == "purchase.recorded"


def test_a_refund_dated_out_of_range_is_dead_lettered_and_refunds_nothing(h):
    p = f.purchase("acc-1", "100.00")
    h.feed(IN, p)
    pid = p["data"]["purchase_id"]
    [letter] = h.feed(IN, f.refund("acc-1", pid, "100.00", refunded_at="9999-12-31T00:00:00Z"))
    assert letter.headers["error.reason"] == (
        "date_out_of_range: refunded_at 9999-12-31 is after the latest accepted date 2199-12-31"
    )
    [ok] = h.feed(IN, f.refund("acc-1", pid, "100.00"))
    assert ok.event.type == "refund.recorded" and ok.event.data.fully_refunded
