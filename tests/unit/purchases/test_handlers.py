"""purchases handlers through the runtime's batch code (SQLite, no broker)."""

import pytest

from tests.builders import messages as f
from tests.builders.services import PURCHASES as SERVICE
from tests.harness import Harness

IN = "card.purchases.v1"


@pytest.fixture
def h(tmp_path):
    harness = Harness(SERVICE, tmp_path)
    yield harness
    harness.close()


def test_purchase_then_refunds(h):
    p = f.purchase("acc-1", "100.00")
    pid = p["data"]["purchase_id"]
    [recorded] = h.events(IN, p)
    assert recorded.type == "purchase.recorded" and recorded.data.purchase_id == pid
    [r1] = h.events(IN, f.refund("acc-1", pid, "30.00"))
    assert str(r1.data.refunded_total) == "30.00" and not r1.data.fully_refunded
    out = h.feed(IN, f.refund("acc-1", pid, "70.01"))
    assert out[0].topic == IN + ".dlq" and "exceeds" in out[0].headers["error.reason"]


def test_redelivery_of_the_same_record_has_no_effect(h):
    rec = h.publish(IN, f.purchase("acc-1"))
    assert len(h.process(rec)) == 1
    assert h.process(rec) == []  # below the stored offset: already applied


def test_same_event_on_a_new_offset_is_deduped_by_the_inbox(h):
    p = f.purchase("acc-1")
    assert len(h.feed(IN, p)) == 1
    assert h.feed(IN, p) == []
