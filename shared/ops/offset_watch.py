"""Stored offsets never move backwards: the invariant watched while a pipeline runs
(the fault suite); the checks from the topics alone are :mod:`shared.ops.invariants`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from kafka.admin import KafkaAdminClient
from sqlalchemy import create_engine, select
from sqlalchemy.exc import NoSuchTableError, ProgrammingError

from shared import registry
from shared.runtime.db import service_database_url
from shared.runtime.settings import Settings
from shared.runtime.store import consumer_offsets
from shared.runtime.topics import committed_offsets


class OffsetWatch:
    """Stored offsets never move backwards: watched while a pipeline runs.

    Unlike the checks of :mod:`shared.ops.invariants` this one needs the system while it runs. Every
    ``interval_s`` a thread samples each service's stored offsets (its
    ``consumer_offsets`` table, the source of truth) and each group's committed offsets
    in Kafka (what lag tools and the idle wait read). A value (per source, group, topic,
    partition) lower than the one seen before is a violation: a zombie or a stale
    commit rewound progress. A failed sample (the database restarting, a coordinator
    moving) is skipped. ``installments replay`` rewinds on purpose: not for its runs.
    """

    NAME = "stored offsets never move backwards"

    def __init__(
        self,
        settings: Settings,
        services: list[str] | None = None,
        interval_s: float = 0.5,
    ) -> None:
        self.settings = settings
        self.services = services or []
        self.interval_s = interval_s
        self.last: dict[tuple[str, str, str, int], int] = {}
        self.violations: list[str] = []
        self.samples = 0
        self.failed_samples = 0
        self.started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def observe(self, sample: dict[tuple[str, str, str, int], int], at: float = 0.0) -> None:
        """Compare one sample ({(source, group, topic, partition): offset}) with the last."""
        self.samples += 1
        for key, offset in sample.items():
            before = self.last.get(key)
            if before is not None and offset < before:
                source, group, topic, partition = key
                self.violations.append(
                    f"{self.NAME}: {source} {group} {topic}[{partition}]"
                    f" went from {before} back to {offset} at {at:.1f}s"
                )
            self.last[key] = offset

    @property
    def watched(self) -> dict[str, int]:
        """How many partitions were watched, per source (database, kafka)."""
        return dict(Counter(source for source, _, _, _ in self.last))

    # --- the sampling thread ---------------------------------------------------

    def start(self) -> OffsetWatch:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="offset-watch")
        self._thread.start()
        return self

    def stop(self) -> list[str]:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=60)
        return self.violations

    def _run(self) -> None:
        groups = self._groups()
        engines = {
            svc: create_engine(
                service_database_url(self.settings, svc), pool_pre_ping=True, pool_size=1
            ).execution_options(schema_translate_map={None: svc})
            for svc in self.services
        }
        admin = None
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    if admin is None:
                        admin = KafkaAdminClient(
                            **self.settings.kafka_client_config(), client_id="offset-watch"
                        )
                    sample = self._read(engines, admin, groups)
                except Exception:  # the database or a coordinator is away: next time
                    self.failed_samples += 1
                    if admin is not None:
                        admin.close()
                        admin = None
                    continue
                self.observe(sample, time.monotonic() - self.started)
        finally:
            if admin is not None:
                admin.close()
            for engine in engines.values():
                engine.dispose()

    def _groups(self) -> dict[str, str]:
        return {svc: registry.group_name(self.settings, svc) for svc in self.services}

    def _read(
        self, engines: dict[str, Any], admin: Any, groups: dict[str, str]
    ) -> dict[tuple[str, str, str, int], int]:
        sample: dict[tuple[str, str, str, int], int] = {}
        for engine in engines.values():
            try:
                with engine.connect() as conn:
                    rows = conn.execute(
                        select(
                            consumer_offsets.c.consumer,
                            consumer_offsets.c.topic,
                            consumer_offsets.c.partition,
                            consumer_offsets.c.next_offset,
                        )
                    ).all()
            except (NoSuchTableError, ProgrammingError):
                continue  # not migrated yet
            for r in rows:
                sample[("database", r.consumer, r.topic, r.partition)] = r.next_offset
        committed = committed_offsets(admin, list(groups.values()), timeout_s=5)
        for group, offsets in committed.items():
            for tp, om in offsets.items():
                if om is not None and om.offset >= 0:
                    sample[("kafka", group, tp.topic, tp.partition)] = om.offset
        return sample
