"""The checker's promise check (contract 5.1): promise events only for recorded
promises, each decided once, a broken one not before the close of promised_date + 3."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from schemas import new_event, topic_for
from schemas.registry import EVENT_TYPES
from shared.ops.invariants import Report, check_promises
from tests.builders.examples import PAYLOADS

T0 = datetime(2027, 1, 6, 9, 0, tzinfo=UTC)


def _event(event_type: str, rule: str, **changes: Any):
    data = {**copy.deepcopy(PAYLOADS[event_type]), **changes}
    return new_event(
        event_type,
        data=EVENT_TYPES[event_type].model_validate(data),
        source="test",
        cause=None,
        rule=rule,
        time=T0,
        subject=data["account_id"],
    )


def _report(*events) -> Report:
    ev: dict[str, list[Any]] = {}
    for e in events:
        ev.setdefault(topic_for(e.type), []).append(e)
    rep = Report()
    check_promises(rep, ev)
    return rep


PROMISE = _event("contact.recorded", "c-1")  # promised 340.84 by 2027-01-20, case-1


def test_a_kept_and_a_broken_promise_pass():
    other = _event("contact.recorded", "c-2", contact_id="contact-2", case_id="case-2")
    kept = _event("promise.kept", "kept")
    broken = _event(
        "promise.broken",
        "broken",
        contact_id="contact-2",
        case_id="case-2",
        paid_amount="0.00",
        business_date="2027-01-23",
    )
    rep = _report(PROMISE, other, kept, broken)
    assert rep.ok, rep.violations
    assert rep.checked["each promise decided once"] == 2


def test_a_promise_event_without_its_promise_or_decided_twice_is_a_violation():
    stray = _event("promise.kept", "stray", contact_id="contact-9")
    kept = _event("promise.kept", "kept")
    broken = _event("promise.broken", "broken", paid_amount="0.00", business_date="2027-01-23")
    early = _event("promise.broken", "early", paid_amount="0.00", business_date="2027-01-22")
    rep = _report(PROMISE, stray, kept, broken)
    assert sorted(v.split(":")[0] for v in rep.violations) == [
        "each promise decided once",
        "promise event only for a recorded promise",
    ]
    rep = _report(PROMISE, early)
    assert [v.split(":")[0] for v in rep.violations] == [
        "promise broken only at the close of promised date + 3"
    ]
