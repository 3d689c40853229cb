"""What the collections service archives (README "Retention"; the mover is
:mod:`shared.runtime.retention`).

- **Finished cases**: ``cured`` and ``closed`` (a charged-off case whose account became
  current) cases, with their ``case_events``, contacts, promises and disputes, once the
  case's last report, its resolution and its last history row are before the cutoff
  (the newest business date reported less ``retention_archive_after_days``). A
  ``charged_off`` case is still in play (it closes when the account becomes current):
  it stays.
- **Finished plans**: ``completed`` and ``cancelled`` plans with their installments, once
  every due date is before the cutoff. Charged-off plans stay (a charge-off is read
  with the account's plans), as do the ``payments`` rows (promises read them).

An event naming an archived item brings it back first (the repository calls
:func:`shared.runtime.retention.restore`: the plans named by the batch, the cases named
by ``contact.recorded``): it is handled exactly as if it had never moved. A contact for
a resolved case is still dead-lettered with its reason; a repeated ``contact_id`` is
still ignored.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from services.collections.tables import (
    CANCELLED,
    CASE_ARCHIVES,
    CLOSED,
    COMPLETED,
    CURED,
    PLAN_ARCHIVES,
    case_events,
    cases,
    contacts,
    disputes,
    plan_installments,
    plans,
    positions,
    promises,
)
from shared.runtime.retention import ArchiveGroup


def _case_finished(cutoff: date) -> ColumnElement[bool]:
    return and_(
        cases.c.status.in_((CURED, CLOSED)),
        cases.c.business_date < cutoff,
        or_(cases.c.resolved_on.is_(None), cases.c.resolved_on < cutoff),
        ~exists().where(
            case_events.c.case_id == cases.c.case_id, case_events.c.business_date >= cutoff
        ),
    )


def _plan_finished(cutoff: date) -> ColumnElement[bool]:
    i = plan_installments.c
    return and_(
        plans.c.status.in_((COMPLETED, CANCELLED)),
        ~exists().where(i.plan_id == plans.c.plan_id, i.due_date >= cutoff),
    )


def _clock(conn: Connection) -> date | None:
    return conn.execute(select(func.max(positions.c.business_date))).scalar()


FINISHED_CASES = ArchiveGroup(
    name="finished cases",
    root=cases,
    key="case_id",
    tables=(cases, case_events, contacts, promises, disputes),
    archives=CASE_ARCHIVES,
    finished=_case_finished,
    clock=_clock,
)

FINISHED_PLANS = ArchiveGroup(
    name="finished plans",
    root=plans,
    key="plan_id",
    tables=(plans, plan_installments),
    archives=PLAN_ARCHIVES,
    finished=_plan_finished,
    clock=_clock,
)

GROUPS = (FINISHED_CASES, FINISHED_PLANS)
