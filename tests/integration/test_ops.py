"""Operator's tools on the real broker: DLQ inspect/re-drive, replay."""

from __future__ import annotations

import pytest

from shared.ops.dlq import read_dead_letters, redrive
from shared.ops.replay import apply_replay, plan_replay
from tests.builders import messages as f
from tests.builders.services import PURCHASES as SERVICE
from tests.support import Collector, Producer, running

pytestmark = pytest.mark.integration
IN, OUT = "card.purchases.v1", "purchases.recorded.v1"


def test_dead_letter_is_redriven_after_the_cause_is_fixed(settings):
    producer, out = Producer(settings), Collector(settings, OUT)
    acc = f.new_id("acc")
    p = f.purchase(acc, "100.00")
    early_refund = f.refund(acc, p["data"]["purchase_id"], "10.00")
    producer.send_all(IN, [early_refund])  # the purchase is not known yet: dead letter
    with running(SERVICE, settings=settings):
        dlq = Collector(settings, IN + ".dlq")
        dlq.wait_count(1)
        letters, consumer = read_dead_letters(settings, IN)
        consumer.close()
        assert len(letters) == 1 and letters[0].original_topic == IN
        assert "never recorded" in letters[0].headers["error.reason"]

        assert len(redrive(settings, IN, dry_run=True, reason_contains=None, limit=None)) == 1
        producer.send_all(IN, [p])  # the cause is fixed: the purchase arrives
        out.wait_count(1)
        assert len(redrive(settings, IN, dry_run=False, reason_contains=None, limit=None)) == 1
        out.wait_for(lambda rs: any(b"refund.recorded" in r.value for r in rs), 60, "refund")
        # progress is kept: a second re-drive finds nothing new
        assert redrive(settings, IN, dry_run=False, reason_contains=None, limit=None) == []
        out.settle()
    assert [e.type for e in out.events()] == ["purchase.recorded", "refund.recorded"]


def test_replay_from_offset_zero_changes_nothing(settings):
    producer, out = Producer(settings), Collector(settings, OUT)
    acc = f.new_id("acc")
    producer.send_all(IN, [f.purchase(acc, f"{i}.00") for i in range(1, 11)])
    with running(SERVICE, settings=settings):
        out.wait_count(10)
    before = {e.id for e in out.events()}
    moves = plan_replay(settings, SERVICE, to_offset=0, to_time=None, topic=None)
    assert sum(current - target for current, target in moves.values()) == 10
    apply_replay(settings, SERVICE, moves)
    after_move = plan_replay(settings, SERVICE, to_offset=0, to_time=None, topic=None)
    assert all(current == 0 for current, _t in after_move.values())
    with running(SERVICE, settings=settings):
        # wait until the replay caught up to where it was
        from tests.support import wait_until

        wait_until(
            lambda: (
                sum(
                    c
                    for c, _t in plan_replay(
                        settings, SERVICE, to_offset=0, to_time=None, topic=None
                    ).values()
                )
                == 10
            ),
            60,
            "replay caught up",
        )
        out.settle()
    assert {e.id for e in out.events()} == before and len(out.records) == 10
