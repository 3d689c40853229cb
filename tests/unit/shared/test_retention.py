"""Retention rules (#16), on SQLite through the runtime's batch path: what is archived and
what is not, moves that keep every value exactly, and (Hypothesis, money) a late refund
or payment of an archived plan that gives exactly what it gives without the archive."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, func, select

from services.offers.retention import GROUPS as OFFERS_GROUPS
from services.offers.tables import ARCHIVES, installments, positions
from shared.runtime.db import Money
from shared.runtime.retention import (
    ArchiveGroup,
    archive_tables,
    move_to_archive,
    restore,
    run_retention,
)
from tests.builders import messages as f
from tests.builders.offers import (
    ACCOUNTS,
    DAYS,
    DECISIONS,
    PAYMENTS,
    RECORDED,
    purchase_recorded,
    refund_recorded,
)
from tests.builders.services import OFFERS
from tests.harness import Harness

_dirs = itertools.count()


def _count(h: Harness, table: Any) -> int:
    with h.runner.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _plan_story(h: Harness, pay: str, *, day: str = "2026-09-01") -> str:
    """acc-1: 1200.00 over 3 months (409.00 a month, Feb-Apr 15) paid ``pay`` on Feb 15;
    then business day ``day``. The purchase id."""
    purchase = purchase_recorded("acc-1", "1200.00", posted_at="2026-01-15T10:00:00Z")
    pid = purchase["data"]["purchase_id"]
    h.feed(ACCOUNTS, f.account("acc-1"))
    h.feed(RECORDED, purchase)
    h.feed(DECISIONS, f.offer_accepted("acc-1", f"off-{pid}", 3))
    h.feed(PAYMENTS, f.payment("acc-1", pay, received_at="2026-02-15T10:00:00Z"))
    h.feed(DAYS, f.business_day(day))
    return pid


def _run(h: Harness, **over: Any) -> Any:
    return run_retention(
        h.runner.engine, "offers", OFFERS_GROUPS, h.settings.model_copy(update=over)
    )


def test_a_plan_still_owed_is_not_archived(tmp_path):
    h = Harness(OFFERS, tmp_path)
    try:
        _plan_story(h, "409.00")  # the first installment only
        assert _run(h).archived == {"finished plans' schedules": 0}
        assert _count(h, installments) == 3
    finally:
        h.close()


def test_a_finished_plan_waits_for_the_archive_delay(tmp_path):
    h = Harness(OFFERS, tmp_path)
    try:
        _plan_story(h, "1227.00", day="2026-05-01")  # paid off; last due date Apr 15
        # 90 days after May 1 is not yet: the last due date (Apr 15) is after Jan 31
        assert _run(h).archived == {"finished plans' schedules": 0}
        assert _run(h, retention_archive_after_days=16).archived == {
            "finished plans' schedules": 0
        }  # cutoff Apr 15: a due date on the cutoff stays
        assert _run(h, retention_archive_after_days=15).archived == {"finished plans' schedules": 1}
        assert _count(h, installments) == 0 and _count(h, ARCHIVES["installments"]) == 3
        # nothing left to move: a second run moves nothing
        assert _run(h, retention_archive_after_days=15).archived == {"finished plans' schedules": 0}
    finally:
        h.close()


def test_a_dry_run_moves_nothing(tmp_path):
    h = Harness(OFFERS, tmp_path)
    try:
        _plan_story(h, "1227.00")
        report = run_retention(h.runner.engine, "offers", OFFERS_GROUPS, h.settings, dry_run=True)
        assert report.archived == {"finished plans' schedules": 1}
        assert "would move 1" in "\n".join(report.lines())
        assert _count(h, installments) == 3
    finally:
        h.close()


# --- the mover keeps every value ----------------------------------------------------------

_meta = MetaData()
_items = Table(
    "items",
    _meta,
    Column("item_id", String(20), primary_key=True),
    Column("status", String(10), nullable=False),
)
_lines = Table(
    "lines",
    _meta,
    Column("item_id", String(20), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("amount", Money, nullable=False),
)
_archive_meta = MetaData()
_ARCHIVES = archive_tables(_archive_meta, _items, _lines, key="item_id")
_GROUP = ArchiveGroup(
    name="items",
    root=_items,
    key="item_id",
    tables=(_items, _lines),
    archives=_ARCHIVES,
    finished=lambda cutoff: _items.c.status == "done",
    clock=lambda conn: date(2026, 1, 1),
)

amounts = st.decimals(min_value=Decimal("0.00"), max_value=Decimal("999999999999.99"), places=2)


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdef"), st.lists(amounts, min_size=1, max_size=4)))
def test_archive_and_restore_keep_every_amount_exactly(items):
    engine = create_engine("sqlite://")
    _meta.create_all(engine)
    _archive_meta.create_all(engine)
    rows = {(k, i + 1): a for k, amounts_ in items.items() for i, a in enumerate(amounts_)}
    with engine.begin() as conn:
        for k in items:
            conn.execute(_items.insert().values(item_id=k, status="done"))
        for (k, seq), a in rows.items():
            conn.execute(_lines.insert().values(item_id=k, seq=seq, amount=a))
        move_to_archive(conn, _GROUP, sorted(items))
        assert conn.execute(select(func.count()).select_from(_lines)).scalar() == 0
        archived = {(r.item_id, r.seq): r.amount for r in conn.execute(select(_ARCHIVES["lines"]))}
        assert archived == rows
        assert restore(conn, _GROUP, [*items, "zz"]) == set(items)
        back = {(r.item_id, r.seq): r.amount for r in conn.execute(select(_lines))}
        assert back == rows
        assert conn.execute(select(func.count()).select_from(_ARCHIVES["lines"])).scalar() == 0


def test_a_hot_row_written_after_the_archive_wins_on_restore():
    engine = create_engine("sqlite://")
    _meta.create_all(engine)
    _archive_meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(_items.insert().values(item_id="a", status="done"))
        conn.execute(_lines.insert().values(item_id="a", seq=1, amount=Decimal("1.00")))
        move_to_archive(conn, _GROUP, ["a"])
        conn.execute(_lines.insert().values(item_id="a", seq=1, amount=Decimal("2.00")))
        restore(conn, _GROUP, ["a"])
        assert conn.execute(select(_lines.c.amount)).scalars().all() == [Decimal("2.00")]
        # archived again: the newer hot row replaces the archived copy
        move_to_archive(conn, _GROUP, ["a"])
        assert conn.execute(select(_ARCHIVES["lines"].c.amount)).scalars().all() == [
            Decimal("2.00")
        ]


# --- money: a late refund of an archived plan, with and without the archive ----------------


def _state(h: Harness) -> Any:
    with h.runner.engine.connect() as conn:
        return conn.execute(select(positions.c.account_id, positions.c.credit)).all()


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pay=st.decimals(min_value=Decimal("1227.00"), max_value=Decimal("3000.00"), places=2),
    refund=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1200.00"), places=2),
    extra=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("500.00"), places=2),
)
def test_late_money_on_an_archived_plan_is_what_it_is_without_the_archive(
    tmp_path: Path, pay: Decimal, refund: Decimal, extra: Decimal
):
    n = next(_dirs)
    h = Harness(OFFERS, tmp_path / f"a{n}")
    control = Harness(OFFERS, tmp_path / f"b{n}")
    try:
        purchase = purchase_recorded("acc-1", "1200.00", posted_at="2026-01-15T10:00:00Z")
        pid = purchase["data"]["purchase_id"]
        story = [
            (ACCOUNTS, f.account("acc-1")),
            (RECORDED, purchase),
            (DECISIONS, f.offer_accepted("acc-1", f"off-{pid}", 3)),
            (PAYMENTS, f.payment("acc-1", str(pay), received_at="2026-02-15T10:00:00Z")),
            (DAYS, f.business_day("2026-09-01")),
        ]
        late = [
            (
                RECORDED,
                refund_recorded("acc-1", pid, str(refund), refunded_at="2026-09-01T12:00:00Z"),
            ),
            (PAYMENTS, f.payment("acc-1", str(extra), received_at="2026-09-01T13:00:00Z")),
        ]
        for topic, m in story:
            h.feed(topic, m)
            control.feed(topic, m)
        assert _run(h).archived == {"finished plans' schedules": 1}
        for topic, m in late:
            mine = [(e.topic, e.event and e.event.id) for e in h.feed(topic, m)]
            theirs = [(e.topic, e.event and e.event.id) for e in control.feed(topic, m)]
            assert mine == theirs
        assert _state(h) == _state(control)
    finally:
        h.close()
        control.close()


@pytest.mark.parametrize("days", [0, -1])
def test_settings_refuse_a_window_below_a_day(days):
    from pydantic import ValidationError

    from shared.runtime.settings import Settings

    with pytest.raises(ValidationError):
        Settings(retention_inbox_days=days)
