"""The console's work queue on 100,000 cases: ``installments collections bench-console``.

Seeds ``cases`` (and promises / disputes on some of them) in a scratch PostgreSQL
schema (``collections_console_bench`` of ``DATABASE_URL``'s database, dropped at the
end), then times pages of :func:`queries.work_queue` — first page, a filtered page, a
deep page (a keyset cursor half-way through the order) — without and then with the
indexes the queue wants (:data:`QUEUE_INDEXES`), and writes the figures as
JSON (``docs/benchmarks/console.json``). A figure, not a timed test: the machine's
other work moves it.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import time
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text

from services.collections.console import queries
from services.collections.console.queries import QueueFilter
from services.collections.tables import QUEUE_INDEXES, cases, disputes, metadata, promises
from shared.runtime.db import bulk_insert, make_engine
from shared.runtime.settings import Settings

SCHEMA = "collections_console_bench"
BUCKETS = (("M1", 1, 30), ("M2", 31, 60), ("M3", 61, 90), ("M4+", 91, 179))
LEVEL_AT = ((1, 1), (2, 8), (3, 15), (4, 31), (5, 61), (6, 91))


def _level(dpd: int) -> int:
    return max(level for level, start in LEVEL_AT if dpd >= start)


def seed(engine: Engine, n: int, rng: random.Random) -> None:
    rows, promise_rows, dispute_rows = [], [], []
    today = date(2026, 6, 30)
    for i in range(n):
        dpd = rng.randint(1, 179)
        bucket = next(name for name, lo, hi in BUCKETS if lo <= dpd <= hi)
        status = "open" if rng.random() < 0.8 else rng.choice(("cured", "charged_off"))
        case_id = f"case-bench-{i:07d}"
        rows.append(
            {
                "case_id": case_id, "account_id": f"acc-bench-{i:07d}", "status": status,
                "opened_on": today - timedelta(days=dpd), "level": _level(dpd),
                "action": "sms", "bucket": bucket, "days_past_due": dpd,
                "overdue_amount": Decimal(rng.randint(1000, 8_000_000)) / 100,
                "currency": "USD" if rng.random() < 0.9 else "EUR", "business_date": today,
            }
        )  # fmt: skip
        if rng.random() < 0.1:
            promise_rows.append(
                {
                    "contact_id": f"k-{i}", "case_id": case_id, "account_id": f"acc-{i}",
                    "contacted_on": today, "promised_date": today + timedelta(days=10),
                    "promised_amount": Decimal("100.00"), "currency": "USD",
                    "hold_until": today + timedelta(days=13), "status": "open",
                }
            )  # fmt: skip
        elif rng.random() < 0.02:
            dispute_rows.append(
                {
                    "contact_id": f"d-{i}", "case_id": case_id, "account_id": f"acc-{i}",
                    "contacted_on": today, "hold_through": today + timedelta(days=30),
                }
            )  # fmt: skip
    with engine.begin() as conn:
        bulk_insert(conn, cases, rows)
        bulk_insert(conn, promises, promise_rows)
        bulk_insert(conn, disputes, dispute_rows)
        conn.execute(text("ANALYZE"))


def _time(fn: Any, repeat: int) -> dict[str, float]:
    fn()  # warm the cache and the connection
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 2),
        "min_ms": round(samples[0], 2),
    }


def _scenarios(engine: Engine, page_size: int) -> dict[str, Any]:
    filtered = QueueFilter(level=4, bucket="M2", min_amount=Decimal("1000"), sort="amount")
    scenarios: dict[str, Any] = {
        "first page, by DPD (desc)": (QueueFilter(), None),
        "first page, by amount (asc)": (QueueFilter(sort="amount", order="asc"), None),
        "filtered (level 4, M2, >= 1000.00), by amount": (filtered, None),
        "filtered, minimum 50,000.00, by DPD": (QueueFilter(min_amount=Decimal("50000")), None),
    }
    # a deep page: the cursor of the row half-way through the DPD order (found untimed)
    with engine.connect() as conn:
        open_count = conn.execute(
            select(text("count(*)")).select_from(cases).where(cases.c.status == "open")
        ).scalar_one()
        mid = conn.execute(
            select(cases.c.days_past_due, cases.c.case_id)
            .where(cases.c.status == "open")
            .order_by(cases.c.days_past_due.desc(), cases.c.case_id.desc())
            .offset(open_count // 2)
            .limit(1)
        ).one()
    scenarios[f"page {open_count // 2 // page_size + 1} (keyset cursor), by DPD"] = (
        QueueFilter(),
        f"{mid[0]}~{mid[1]}",
    )
    return {"open_cases": open_count, "scenarios": scenarios}


def run(cases_count: int = 100_000, page_size: int = 50, repeat: int = 30,
        seed_value: int = 14) -> dict[str, Any]:  # fmt: skip
    settings = Settings()
    if settings.is_sqlite:
        raise SystemExit("bench-console needs PostgreSQL: set DATABASE_URL")
    engine = make_engine(settings, SCHEMA)
    try:
        with engine.begin() as conn:
            metadata.drop_all(conn)
            metadata.create_all(conn)
        started = time.perf_counter()
        seed(engine, cases_count, random.Random(seed_value))
        seeded_s = time.perf_counter() - started
        plan = _scenarios(engine, page_size)
        results: dict[str, Any] = {}
        for indexed in (False, True):
            if indexed:
                with engine.begin() as conn:
                    for name, columns in QUEUE_INDEXES:
                        names = ", ".join(f'"{c}"' for c in columns)
                        conn.execute(text(f'CREATE INDEX "{name}" ON "{SCHEMA}".cases ({names})'))
                    conn.execute(text("ANALYZE"))
            label = "with queue indexes" if indexed else "without queue indexes"
            results[label] = {}
            for name, (filt, cursor) in plan["scenarios"].items():

                def page(filt: QueueFilter = filt, cursor: str | None = cursor) -> int:
                    return len(queries.work_queue(engine, filt, after=cursor, limit=page_size).rows)

                rows = page()
                results[label][name] = {"rows": rows, **_time(page, repeat)}
        return {
            "what": "one page of the console's work queue (queries.work_queue: the cases query"
            " + held-until / promise state of the page), PostgreSQL, keyset pagination",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "cases": cases_count,
            "open_cases": plan["open_cases"],
            "page_size": page_size,
            "repeat": repeat,
            "seed_seconds": round(seeded_s, 1),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                # other work on the machine moves the figures: the 1-minute load at the end
                "load_average_1m": round(os.getloadavg()[0], 2),
            },
            "indexes": [f"{name} ({', '.join(cols)})" for name, cols in QUEUE_INDEXES],
            "results": results,
            "filters": {
                name: {k: str(v) for k, v in asdict(filt).items() if v is not None}
                for name, (filt, _) in plan["scenarios"].items()
            },
        }
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
        engine.dispose()


def write(result: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
