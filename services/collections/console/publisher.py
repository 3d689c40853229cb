"""``contact.recorded`` built, validated and published (the console writes no table).

:func:`build_contact` validates the form's fields with the contract's model
(``schemas.payloads.ContactRecorded``, through its JSON form, as a consumer reads it)
plus the service's promise rule (promised date not before ``contacted_on`` and at
most ``promise_max_days`` after it: the service dead-letters it otherwise), and
returns the envelope or the errors to show. :class:`KafkaPublisher` sends it to
``collections.outcomes.v1`` (key = the account id: per-account order) and waits for
the broker's acknowledgement. Tests inject any object with ``publish(topic, key,
value)``.

The contact id comes with the form (a hidden field made when the page is shown): a
form submitted twice publishes the same event id twice, which the service's inbox
applies once.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from kafka import KafkaProducer
from pydantic import ValidationError

from schemas import Envelope, encode, new_event, topic_for
from schemas.payloads import ContactRecorded
from shared.runtime.settings import Settings

EVENT_TYPE = "contact.recorded"
SOURCE = "collections-console"
OUTCOMES = ("reached", "no_answer", "wrong_party", "promise_to_pay", "dispute", "dispute_resolved")
PROMISE_FIELDS = ("promised_amount", "currency", "promised_date")


class Publisher(Protocol):
    def publish(self, topic: str, key: bytes, value: bytes) -> None: ...


@dataclass(frozen=True)
class Published:
    topic: str
    key: bytes
    value: bytes


class KafkaPublisher:
    """One idempotent producer per process (created on first use), acks=all; each
    publish waits for the acknowledgement (an agent sees a failure, never a silent loss).
    """

    def __init__(self, settings: Settings, *, timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def _get(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                self._producer = KafkaProducer(
                    **self.settings.kafka_client_config(),
                    enable_idempotence=True,
                    acks="all",
                    max_block_ms=int(self.timeout_s * 1000),
                    max_request_size=self.settings.kafka_max_request_bytes,
                    client_id="collections-console",
                )
            return self._producer

    def publish(self, topic: str, key: bytes, value: bytes) -> None:
        self._get().send(topic, key=key, value=value).get(timeout=self.timeout_s)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=self.timeout_s)
                self._producer = None


def new_contact_id() -> str:
    return str(uuid.uuid4())


def _field_name(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "form"


def build_contact(
    form: dict[str, str],
    *,
    case_id: str,
    account_id: str,
    agent_ref: str,
    promise_max_days: int = 30,
    now: datetime | None = None,
) -> tuple[Envelope[Any] | None, dict[str, str]]:
    """(envelope, {}) or (None, {field: error}) from the contact form's fields."""
    errors: dict[str, str] = {}
    contact_id = (form.get("contact_id") or "").strip()
    try:
        contact_id = str(uuid.UUID(contact_id))
    except ValueError:
        errors["contact_id"] = "the form has expired: reload the page"
    outcome = (form.get("outcome") or "").strip()
    data: dict[str, Any] = {
        "contact_id": contact_id,
        "case_id": case_id,
        "account_id": account_id,
        "outcome": outcome,
        "contacted_on": (form.get("contacted_on") or "").strip(),
        "agent_ref": agent_ref,
    }
    if outcome == "promise_to_pay":
        for name in PROMISE_FIELDS:
            value = (form.get(name) or "").strip()
            if name == "currency":
                value = value.upper()
            data[name] = value or None  # None: "required" from the model
    if errors:
        return None, errors
    try:
        payload = ContactRecorded.model_validate_json(json.dumps(data))
    except ValidationError as exc:
        for err in exc.errors():
            name = _field_name(err["loc"])
            message = str(err["msg"]).removeprefix("Value error, ")
            if name == "form" and "promise" in message:
                for field in PROMISE_FIELDS:
                    if data.get(field) is None:
                        errors.setdefault(field, "required for a promise to pay")
                if not any(f in errors for f in PROMISE_FIELDS):
                    errors["form"] = message
            else:
                errors.setdefault(name, message)
        return None, errors
    if payload.promised_date is not None:
        latest = payload.contacted_on + timedelta(days=promise_max_days)
        if not payload.contacted_on <= payload.promised_date <= latest:
            errors["promised_date"] = (
                f"must be between the contact date and {promise_max_days} days after it"
                f" ({payload.contacted_on} to {latest})"
            )
            return None, errors
    envelope = new_event(
        EVENT_TYPE,
        data=payload,
        source=SOURCE,
        cause=None,
        rule=f"{EVENT_TYPE}:{payload.contact_id}",
        time=now or datetime.now(UTC),
    )
    return envelope, {}


def publish_contact(publisher: Publisher, settings: Settings, envelope: Envelope[Any]) -> str:
    """Publish on the contract topic (prefixed); key = the account id. Returns the topic."""
    topic = settings.topic(topic_for(EVENT_TYPE))
    key = str(envelope.data.account_id).encode()
    publisher.publish(topic, key, encode(envelope))
    return topic


def today() -> date:
    return datetime.now(UTC).date()
