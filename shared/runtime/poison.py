"""Crash counting: a record that kills the process (no exception to catch: a
segfault, the out-of-memory killer, the watchdog) is found and dead-lettered after
``poison_max_attempts`` deaths, counted in the database across process lives.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import structlog
from kafka import TopicPartition

from shared.runtime import metrics
from shared.runtime.batch import BatchProcessing
from shared.runtime.db import utcnow
from shared.runtime.records import BatchResult, event_type_of
from shared.runtime.store import load_poison_marks, note_poison_mark

log = structlog.get_logger("runtime")


class PoisonWatch(BatchProcessing):
    """Crash counting: the records that kill the process (see :meth:`_watch_for_poison`)."""

    def _watch_for_poison(self, records: list[Any], out: BatchResult) -> list[Any]:
        """Count, in the database, the processes that died on a partition's records.

        Only a partition's first batch after it is assigned is watched (and, after a
        death, its records one at a time), so a healthy stream pays one small write per
        assignment, not per batch:

        1. Note the first offset of the batch (and its last) in ``poison_watch``, with
           ``attempts`` 1, before processing it.
        2. A process that finds the note at the offset it starts from knows the one
           before it died there (it never got past it): ``attempts`` + 1, and the
           records up to the noted last offset are tried one per batch (each noted
           first), so the next death points at one record. Nothing else runs in that
           batch, so an innocent record never shares the blame.
        3. A record whose note shows ``poison_max_attempts`` deaths is dead-lettered
           without running its handler; its partition moves on.
        Returns the records to process now; the others are fetched again (re-seek).
        """
        with self.lock:
            watched = self._poison_fresh | set(self._careful)
        by_tp: dict[TopicPartition, list[Any]] = defaultdict(list)
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            if tp in watched:
                by_tp[tp].append(rec)
        if not by_tp:
            return records
        now = utcnow()
        with self.engine.begin() as conn:
            marks = load_poison_marks(conn, self.group, [(tp.topic, tp.partition) for tp in by_tp])
            careful: list[TopicPartition] = []
            for tp, recs in by_tp.items():
                mark = marks.get((tp.topic, tp.partition))
                if mark is not None and mark.offset == recs[0].offset:
                    # A process started here before and never got past it: it died.
                    self._careful[tp] = max(self._careful.get(tp, -1), mark.last_offset)
                if tp in self._careful and recs[0].offset > self._careful[tp]:
                    del self._careful[tp]  # past the records of the batch that died
                if tp in self._careful:
                    careful.append(tp)
            if careful:
                tp = careful[0]
                rec = by_tp[tp][0]
                mark = marks.get((tp.topic, tp.partition))
                deaths = mark.attempts if mark is not None and mark.offset == rec.offset else 0
                note_poison_mark(
                    conn,
                    self.group,
                    tp.topic,
                    tp.partition,
                    rec.offset,
                    self._careful[tp],
                    deaths + 1,
                    now,
                )
                self._refetch({TopicPartition(r.topic, r.partition) for r in records})
                chosen = [rec]
            else:
                for tp, recs in by_tp.items():
                    note_poison_mark(
                        conn,
                        self.group,
                        tp.topic,
                        tp.partition,
                        recs[0].offset,
                        recs[-1].offset,
                        1,
                        now,
                    )
                chosen = records
        with self.lock:
            self._poison_fresh.difference_update(by_tp)
        if careful and deaths >= self.settings.poison_max_attempts:
            d = self._decode(chosen[0])
            reason = f"poison: the {self.service.name} process died {deaths} times on this record"
            log.error(
                "record killed the process repeatedly; sent to the DLQ",
                service=self.service.name,
                topic=d.contract_topic,
                partition=d.record.partition,
                offset=d.record.offset,
                deaths=deaths,
            )
            metrics.count(self.service.name, event_type_of(d), "dlq")
            self._dead_letter_alone(d, reason, out)
            return []
        return chosen
