"""Publishing the outbox survives a database that fails while marking rows sent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from shared.runtime.store import outbox
from tests.builders import messages as f
from tests.builders.services import PURCHASES as SERVICE
from tests.harness import Harness


class FakeFuture:
    def get(self, timeout: float | None = None) -> None:
        return None


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes, headers: Any) -> FakeFuture:
        self.sent.append((topic, value))
        return FakeFuture()

    def flush(self) -> None:
        pass


def _outbox_rows(h: Harness) -> int:
    with h.runner.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(outbox)).scalar_one()


def test_a_database_failure_while_marking_sent_is_retried_not_fatal(tmp_path, monkeypatch):
    h = Harness(SERVICE, tmp_path, retry_backoff_max_s=0.5)
    try:
        producer = FakeProducer()
        h.runner._producer = producer  # type: ignore[assignment]
        rec = h.publish("card.purchases.v1", f.purchase("acc-1"))
        sent = h.runner.process_batch([rec]).sent
        assert len(sent) == 1 and _outbox_rows(h) == 1

        real_begin = h.runner.engine.begin
        failures = []

        def flaky_begin(*args: Any, **kwargs: Any) -> Any:
            if not failures:  # the first mark-sent attempt: PostgreSQL is restarting
                failures.append(1)
                raise OperationalError("DELETE FROM outbox", {}, Exception("shutting down"))
            return real_begin(*args, **kwargs)

        monkeypatch.setattr(h.runner.engine, "begin", flaky_begin)
        h.runner._publish(sent)
        assert failures == [1]
        assert len(producer.sent) == 1  # published once
        assert _outbox_rows(h) == 0  # and marked sent on the retry
    finally:
        h.close()


class RefusingProducer(FakeProducer):
    """A producer left in a failed state: it refuses every send (kafka-python's
    idempotent producer after the broker rejected one record)."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def send(self, topic: str, key: bytes, value: bytes, headers: Any) -> FakeFuture:
        from kafka.errors import KafkaError

        raise KafkaError("the producer is in a fatal state")

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


def test_a_failed_producer_is_replaced_not_left_refusing_sends(tmp_path, monkeypatch):
    h = Harness(SERVICE, tmp_path, retry_backoff_max_s=0.5)
    try:
        broken = RefusingProducer()
        h.runner._producer = broken  # type: ignore[assignment]
        fresh: list[FakeProducer] = []

        def new_producer(**_config: Any) -> FakeProducer:
            fresh.append(FakeProducer())
            return fresh[-1]

        monkeypatch.setattr("shared.runtime.base.KafkaProducer", new_producer)
        rec = h.publish("card.purchases.v1", f.purchase("acc-1"))
        sent = h.runner.process_batch([rec]).sent
        h.runner._publish(sent)
        assert broken.closed and broken.sent == []
        assert len(fresh) == 1 and len(fresh[0].sent) == 1  # sent by its replacement
        assert _outbox_rows(h) == 0
    finally:
        h.close()
