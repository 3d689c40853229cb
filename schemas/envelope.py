"""The envelope every message value carries (contract section 2).

``Envelope`` is generic in its payload: ``Envelope[PurchasePosted]`` has
``data: PurchasePosted``. :mod:`schemas.registry` builds one concrete subclass per
event type (``PurchasePostedEnvelope`` ...) whose ``type`` is the ``Literal`` of that
event type, so a decoded or newly built envelope always has ``data`` typed for its
``type``. Decode with :func:`schemas.codec.decode`, build with
:func:`schemas.codec.new_event`; validating the bare ``Envelope`` leaves ``data``
unvalidated and is only used to report envelope errors for unknown types.

Fields, in wire order:

- ``id``: a UUID in canonical 8-4-4-4-12 hex form (stored lower case).
- ``type``: the event type (e.g. ``purchase.posted``).
- ``source``: the producer (``card-system``, ``offers``, ...).
- ``time``: RFC 3339 with ``Z`` or an offset; held as an aware UTC ``datetime`` and
  written with ``Z``.
- ``subject``: the account id (equals the Kafka key; ``business-day`` for
  ``business-day.closed``). When the payload has an ``account_id`` it must equal it.
- ``schema_version``: an integer from 1 to ``SCHEMA_VERSION`` (1); a higher one is
  refused as ``unsupported_schema_version``.
- ``correlation_id``, ``causation_id``: optional strings (omitted when absent).
- ``data``: the payload.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from schemas.types import (
    SCHEMA_VERSION,
    ContractModel,
    Id,
    SchemaVersion,
    UtcDateTime,
    tolerant_json_schema,
)

__all__ = ["Envelope", "PayloadT", "EventId"]

PayloadT = TypeVar("PayloadT")

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _check_uuid(value: str) -> str:
    if not _UUID_RE.fullmatch(value):
        raise ValueError('must be a UUID like "3f0c2b1e-8a5d-4c3b-9e21-6f7a8b9c0d1e"')
    return value.lower()


#: An event id: a canonical UUID string.
EventId = Annotated[
    str,
    Field(strict=True, json_schema_extra={"format": "uuid"}),
    AfterValidator(_check_uuid),
]

EventType = Annotated[
    str, Field(strict=True, min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9.-]*$")
]
#: The producer (``card-system``, ``offers``, ...): the rules of an id.
Source = Id


def payload_account_id(data: Any) -> str | None:
    """``data.account_id``, or None for a payload without one (``installment.due-soon``)
    or a raw mapping. Read from the instance dict: ``getattr`` with a default would go
    through pydantic's slow ``__getattr__`` and raise an AttributeError every time."""
    fields = getattr(data, "__dict__", None)
    return fields.get("account_id") if fields is not None else None


class Envelope(ContractModel, Generic[PayloadT]):
    """One event: the envelope fields and the typed payload in ``data``.

    Unknown envelope fields are ignored on a consumer's read and rejected otherwise
    (:class:`schemas.types.ContractModel`).
    """

    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, json_schema_extra=tolerant_json_schema
    )

    id: EventId
    type: EventType
    source: Source
    time: UtcDateTime
    subject: Id
    schema_version: SchemaVersion = SCHEMA_VERSION
    correlation_id: Id | None = None
    causation_id: Id | None = None
    data: PayloadT

    @model_validator(mode="after")
    def _subject_is_account(self) -> Envelope[Any]:
        account_id = payload_account_id(self.data)
        if account_id is not None and account_id != self.subject:
            raise PydanticCustomError("subject_mismatch", "subject must equal data.account_id")
        return self
