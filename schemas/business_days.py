"""The plausibility of business time (contract section 6): "an implausible jump of
business date is held" — dead-lettered until an operator confirms it.

The rule and the confirmation header are part of the interface (operators re-drive with
``installments dlq redrive --confirm business_date_jump``, which adds the header), so they
are written once here, for every service that closes business days and for the tools.
"""

from __future__ import annotations

from datetime import date

__all__ = ["CONFIRM_HEADER", "CONFIRM_BUSINESS_DATE_JUMP", "CONFIRMABLE", "business_date_jump"]

#: The record header an operator's re-drive adds to confirm what a service held ...
CONFIRM_HEADER = "installments.confirm"
#: ... and its value for a held jump of business date (also the dead letter's reason code).
CONFIRM_BUSINESS_DATE_JUMP = "business_date_jump"
#: Every reason code an operator may confirm.
CONFIRMABLE = (CONFIRM_BUSINESS_DATE_JUMP,)


def business_date_jump(day: date, last: date | None, max_jump_days: int) -> str | None:
    """Why closing business date ``day`` is implausible after ``last`` (the newest date
    closed so far), as a reason starting with ``business_date_jump``; None when plausible.

    Implausible: ``day`` before ``last``, or more than ``max_jump_days`` after it. The first
    business day a service ever sees (``last`` None) has nothing to compare with and is
    accepted: a new deployment starts at whatever date the card system is at. The same
    date again is not a jump (the caller treats it as already closed)."""
    if last is None or day == last:
        return None
    if day < last:
        return (
            f"{CONFIRM_BUSINESS_DATE_JUMP}: {day.isoformat()} is before the last closed"
            f" business date {last.isoformat()}"
        )
    gap = (day - last).days
    if gap > max_jump_days:
        return (
            f"{CONFIRM_BUSINESS_DATE_JUMP}: {day.isoformat()} is {gap} days after the last"
            f" closed business date {last.isoformat()} (more than {max_jump_days})"
        )
    return None
