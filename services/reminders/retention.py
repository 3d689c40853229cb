"""What the reminders service archives (README "Retention"; the mover is
:mod:`shared.runtime.retention`).

**Closed plans**: a plan completed or cancelled (its ``plans`` row), with its
installments, the reminders handled for them and its adjusted schedule, once no due date
and no reminder of it is on or after the cutoff (the last closed business date less
``retention_archive_after_days``).

An event naming an archived plan or installment (a late ``installment.due-soon``,
``installment.paid``, ``plan.*``) brings the plan back first (the repository calls
:func:`shared.runtime.retention.restore` on the plan ids of the batch): it is then
handled exactly as if it had never moved, so a closed plan still gets no reminder and no
reminder is sent twice.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import and_, exists, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from services.reminders.tables import (
    ACTIVE,
    ARCHIVES,
    business_days,
    installments,
    plans,
    reminders,
    schedule_lines,
)
from shared.runtime.retention import ArchiveGroup


def _finished(cutoff: date) -> ColumnElement[bool]:
    key = plans.c.plan_id
    return and_(
        plans.c.status != ACTIVE,
        ~exists().where(installments.c.plan_id == key, installments.c.due_date >= cutoff),
        ~exists().where(reminders.c.plan_id == key, reminders.c.business_date >= cutoff),
        ~exists().where(schedule_lines.c.plan_id == key, schedule_lines.c.due_date >= cutoff),
    )


def _clock(conn: Connection) -> date | None:
    return conn.execute(select(func.max(business_days.c.business_date))).scalar()


CLOSED_PLANS = ArchiveGroup(
    name="closed plans",
    root=plans,
    key="plan_id",
    tables=(plans, installments, reminders, schedule_lines),
    archives=ARCHIVES,
    finished=_finished,
    clock=_clock,
)

GROUPS = (CLOSED_PLANS,)
