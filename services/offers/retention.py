"""What the offers service archives (README "Retention"; the mover is
:mod:`shared.runtime.retention`).

**Finished plans' schedules**: the ``installments`` of a plan completed, paid off or
cancelled, none of them still open (a cancelled plan's fees already due stay owed until
paid), every due date before the cutoff (the last closed business date less
``retention_archive_after_days``). The ``plans`` row stays hot.

An event naming an archived schedule is handled as if it had not moved, with no
restore: only the open installments of an account are ever loaded (payments, offers,
the end of day), and the two events that load a plan whole find nothing left to
change on a finished plan either way: a late refund becomes account credit (the plan
is not active), a late ``points.redeemed`` waives nothing (no unpaid fee).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import and_, exists, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from services.offers.tables import ARCHIVES, business_days, installments, plans
from shared.runtime.retention import ArchiveGroup

FINISHED = ("completed", "paid_off", "cancelled")


def _finished(cutoff: date) -> ColumnElement[bool]:
    i = installments.c
    mine = i.plan_id == plans.c.plan_id
    return and_(
        plans.c.status.in_(FINISHED),
        exists().where(mine),  # not archived yet
        ~exists().where(mine, i.open.is_(True)),
        ~exists().where(mine, i.due_date >= cutoff),
    )


def _clock(conn: Connection) -> date | None:
    return conn.execute(select(func.max(business_days.c.business_date))).scalar()


GROUPS = (
    ArchiveGroup(
        name="finished plans' schedules",
        root=plans,
        key="plan_id",
        tables=(installments,),
        archives=ARCHIVES,
        finished=_finished,
        clock=_clock,
        on_reference="handled as before without a restore (nothing of it is open)",
    ),
)
