"""The fault suite's report of what differs between the calm and the chaos run."""

import json

from shared.tools.chaos import explain_difference


def _event(event_id: str, **data: object) -> bytes:
    return json.dumps({"id": event_id, "type": "points.accrued", "data": data}).encode()


def test_an_event_in_both_runs_names_the_fields_that_differ_and_no_value() -> None:
    calm = {_event("e-1", account_id="acc-secret-1", points=10, balance_after=10)}
    chaos = {_event("e-1", account_id="acc-secret-1", points=10, balance_after=25)}
    lines = explain_difference(calm, chaos)
    assert lines == ["e-1 (points.accrued) differs in data.balance_after"]
    assert "acc-secret-1" not in "".join(lines) and "25" not in "".join(lines)


def test_events_in_one_run_only_are_named_with_their_run() -> None:
    lines = explain_difference({_event("e-1", points=1)}, {_event("e-2", points=1)})
    assert lines == [
        "e-1 (points.accrued) only in the calm run",
        "e-2 (points.accrued) only in the chaos run",
    ]


def test_the_report_is_bounded_and_skips_what_is_not_an_event() -> None:
    calm = {_event(f"e-{i}", points=i) for i in range(8)} | {b"not json", b'{"no": "id"}'}
    lines = explain_difference(calm, set(), limit=3)
    assert len(lines) == 4 and lines[-1] == "and 5 more"
