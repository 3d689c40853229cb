"""Bytes <-> envelopes, and deterministic event construction.

:func:`decode` turns one Kafka record into a typed :class:`~schemas.envelope.Envelope`
or raises :class:`InvalidEvent` with a short, human-readable ``reason`` (the DLQ's
``error.reason`` header). Checks, in order; the first failure is reported:

1. size: ``len(value) <= max_bytes``;
2. UTF-8;
3. JSON, parsed once with hooks: numbers with a fraction or exponent are kept as
   :class:`~schemas.types.JsonNumber` text (no float is ever made, so ``1e309`` and
   ``0.1`` can be reported as numbers), ``NaN``/``Infinity`` and duplicate keys are
   rejected;
4. the top level is a JSON object;
5. nesting depth <= ``MAX_DEPTH``;
6. PAN guard over every key and value (:mod:`schemas.guard`), unknown fields included;
7. ``schema_version`` not higher than this build reads (``SCHEMA_VERSION``), else the
   reason starts with ``unsupported_schema_version``;
8. envelope fields (``id``, ``type``, ``source``, ``time``, ``subject``, ``data`` present);
9. the event type is known and allowed on this topic;
10. the Kafka key equals ``subject`` (on ``card.business-days.v1`` both are
    ``business-day``);
11. the payload (and ``subject == data.account_id`` where the payload has one);
12. ``schema_version`` is an integer >= 1.

**Tolerant reader** (contract section 2): fields the models do not know, in the
envelope and anywhere in ``data``, are ignored, never a reason to refuse a message;
they have been measured (1) and scanned for card numbers (6) like any other.
``decode(..., strict=True)`` rejects them instead (``unknown field (not in the
contract)``): the project's tests read the events the project emits that way, so an
emitted event never carries a field the contract does not have.

Reasons look like ``data.amount: money must be a JSON string like "12.34", got a
number``. They name fields, kinds and rules, never a string's value (so never a PAN,
a name or an account id).

Passing a topic that is not in the registry is a configuration error, not bad data:
it raises ``ValueError``, not ``InvalidEvent``.

:func:`encode` writes compact UTF-8 JSON in model field order (deterministic), money
and rates as strings, times in UTC with ``Z``, absent optional fields omitted.

:func:`new_event` builds an event the project emits; its id is
``uuid5(EVENT_ID_NAMESPACE, f"{cause.id}:{rule}")`` so a replay emits the same ids.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas.encoder import SharedList, pydantic_json, to_json
from schemas.envelope import Envelope, payload_account_id
from schemas.guard import field_path, inspect_message
from schemas.money import _QUANTA, MINOR_UNITS
from schemas.payloads import Payload
from schemas.registry import BUSINESS_DAY_KEY, ENVELOPES, EVENT_TYPES, TOPICS
from schemas.types import SCHEMA_VERSION, TOLERANT_READ, JsonNumber, describe_kind

__all__ = [
    "InvalidEvent",
    "decode",
    "encode",
    "encode_with_pydantic",
    "new_event",
    "EVENT_ID_NAMESPACE",
    "MAX_BYTES",
    "MAX_DEPTH",
]

#: Namespace of the project's deterministic event ids (never change it: replays rely on it).
EVENT_ID_NAMESPACE = uuid.UUID("b62cfbcc-5908-4013-976c-4973bd1ac769")
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def event_id(name: str) -> str:
    """``str(uuid.uuid5(EVENT_ID_NAMESPACE, name))``, the same characters without the
    ``UUID`` object: the SHA-1 of the namespace and the name, its first 16 bytes with
    the version (5) and the RFC 4122 variant set, in the 8-4-4-4-12 hex form. Every
    event a service emits gets one: 1.2 instead of 3.3 µs (a property test checks it
    against ``uuid.uuid5``)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


#: Default size cap of one message value.
MAX_BYTES = 65536
#: Deepest JSON nesting accepted (the top-level object is depth 1).
MAX_DEPTH = 32

_HEADER_FIELDS = frozenset(
    {"id", "type", "source", "time", "subject", "correlation_id", "causation_id"}
)


class InvalidEvent(ValueError):
    """A message that breaks the contract; ``reason`` is safe to log and to put in headers."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- JSON parsing -------------------------------------------------------------------


class _BadJson(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _BadJson(f"{name} is not a valid JSON number")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _BadJson(f"duplicate key {field_path((key,))!r} in a JSON object")
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(
    parse_float=JsonNumber,
    parse_constant=_reject_constant,
    object_pairs_hook=_object_without_duplicates,
)


def _parse_json(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except _BadJson as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidEvent(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidEvent(f"JSON nesting is deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # e.g. an integer longer than Python's int_max_str_digits
        raise InvalidEvent("not valid JSON: a number is too long") from None


# --- validation errors -> reasons ---------------------------------------------------

_TYPE_MESSAGES = {
    "string_type": "must be a JSON string",
    "int_type": "must be a JSON integer",
    "bool_type": "must be true or false",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "list_type": "must be a JSON array",
}


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field (not in the contract)"
    if kind in _TYPE_MESSAGES:
        return f"{_TYPE_MESSAGES[kind]}, got {describe_kind(error.get('input'))}"
    msg = str(error["msg"])
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    for prefix in ("Input should ", "String should ", "List should "):
        if msg.startswith(prefix):
            return "must " + msg.removeprefix(prefix)
    return msg


def _reason(error: dict[str, Any]) -> str:
    if error["type"] == "unsupported_schema_version":
        return str(error["msg"])  # the DLQ reason starts with the code (contract section 2)
    path = field_path(tuple(error["loc"])) if error["loc"] else ""
    message = _message(error)
    if "field" in error.get("ctx", {}):  # model-level check naming a field inside the model
        return f"{path}.{message}" if path else message
    return f"{path}: {message}" if path else message


def _is_header_error(error: dict[str, Any]) -> bool:
    loc = error["loc"]
    if not loc:
        return False
    if loc[0] in _HEADER_FIELDS:
        return True
    if loc == ("data",) and error["type"] == "missing":
        return True
    return len(loc) == 1 and error["type"] == "extra_forbidden"


def _error_rank(error: dict[str, Any]) -> int:
    loc = error["loc"]
    if loc and loc[0] == "schema_version":
        return 2
    if not loc:  # cross-field checks of the envelope (subject vs data.account_id)
        return 1
    return 0


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return exc.errors(include_url=False, include_context=True, include_input=True)  # type: ignore[return-value]


_HEADER_ENVELOPE = Envelope[Any]


def _check_header(obj: dict[str, Any], context: Any) -> None:
    """Report envelope-field errors of a message whose payload cannot be validated."""
    try:
        _HEADER_ENVELOPE.model_validate(obj, context=context)
    except ValidationError as exc:
        header = [e for e in _errors(exc) if _is_header_error(e)]
        if header:
            raise InvalidEvent(_reason(header[0])) from None


# --- decode -------------------------------------------------------------------------


def _safe_type_name(value: str) -> str:
    if len(value) <= 64 and value.replace(".", "").replace("-", "").isalnum() and value.isascii():
        return repr(value)
    return "(not shown)"


def decode(
    topic: str,
    key: bytes | None,
    value: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    strict: bool = False,
) -> Envelope[Any]:
    """Validate one Kafka record of ``topic`` and return its typed envelope.

    Raises :class:`InvalidEvent` (``.reason``) for any contract violation, in the order
    listed in the module docstring, and ``ValueError`` for a topic not in the registry.
    Unknown fields are ignored (tolerant reader) unless ``strict`` (then rejected: for
    checking what the project itself emits).
    """
    spec = TOPICS.get(topic)
    if spec is None:
        raise ValueError(f"topic {topic!r} is not in the schemas registry")

    # 1-2. size, UTF-8
    if value is None:
        raise InvalidEvent("message has no value (a tombstone)")
    if type(value) is not bytes:
        value = bytes(value)  # bytearray / memoryview from a client library
    if len(value) > max_bytes:
        raise InvalidEvent(
            f"too_large: message is {len(value)} bytes, over the {max_bytes}-byte limit"
        )
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"message is not valid UTF-8 (bad byte at offset {exc.start})") from None

    # 3-4. JSON, one object
    obj = _parse_json(text)
    if type(obj) is not dict:
        raise InvalidEvent(f"message must be a JSON object, got {describe_kind(obj)}")

    # 5-6. depth, PAN guard, surrogates
    problem = inspect_message(obj, max_depth=MAX_DEPTH, raw=value)
    if problem is not None:
        raise InvalidEvent(problem)

    # 7. a newer envelope version than this build reads: refused before anything else
    # (its fields may mean something else), whatever its type and payload.
    version = obj.get("schema_version")
    if type(version) is int and version > SCHEMA_VERSION:
        raise InvalidEvent(
            f"unsupported_schema_version: {version} is higher than this build reads "
            f"({SCHEMA_VERSION})"
        )

    # 8-9. envelope and event type
    context = None if strict else TOLERANT_READ
    event_type = obj.get("type")
    envelope_cls = ENVELOPES.get(event_type) if type(event_type) is str else None
    if envelope_cls is None:
        _check_header(obj, context)
        raise InvalidEvent(f"unknown event type {_safe_type_name(event_type)}")  # type: ignore[arg-type]

    errors: list[dict[str, Any]] | None = None
    try:
        env = envelope_cls.model_validate(obj, context=context)
    except ValidationError as exc:
        errors = _errors(exc)
        header = [e for e in errors if _is_header_error(e)]
        if header:
            raise InvalidEvent(_reason(header[0])) from None

    if event_type not in spec.event_types:
        raise InvalidEvent(f"event type {event_type!r} is not allowed on topic {topic}")

    # 10. key
    subject = obj["subject"]  # validated above: a non-empty string
    if key is None:
        raise InvalidEvent("the Kafka key is missing (it must equal the envelope subject)")
    try:
        key_text = bytes(key).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent("the Kafka key is not valid UTF-8") from None
    if spec.key == "business-day":
        if key_text != BUSINESS_DAY_KEY or subject != BUSINESS_DAY_KEY:
            raise InvalidEvent(
                f'on {topic} the Kafka key and the subject must both be "{BUSINESS_DAY_KEY}"'
            )
    elif key_text != subject:
        raise InvalidEvent("the Kafka key does not equal the envelope subject")

    # 11-12. payload, subject vs account_id, schema_version
    if errors is not None:
        errors.sort(key=_error_rank)
        raise InvalidEvent(_reason(errors[0]))
    return env


# --- encode / new_event -------------------------------------------------------------


def encode(env: Envelope[Any]) -> bytes:
    """Compact UTF-8 JSON of ``env``: field order of the models, optional ``None`` omitted.

    Written by :func:`schemas.encoder.to_json`: the bytes pydantic writes
    (:func:`encode_with_pydantic`), without its per-field calls back into Python."""
    return to_json(env)


def encode_with_pydantic(env: Envelope[Any]) -> bytes:
    """The reference of :func:`encode`: pydantic's own ``to_json(exclude_none=True)``."""
    return pydantic_json(env)


def _settle_money(data: Any) -> None:
    """What validation does to the money of a payload built with ``model_construct``: each
    amount quantized to its currency's minor digits (``12.5`` USD -> ``12.50``), a
    negative zero made positive; more digits than the currency has, or a negative
    amount, raise ``ValueError`` (a bug in the service, as a validation error was)."""
    field = data.money_currency_field
    if field is None or not (data.__money_fields__ or data.__money_children__):
        return
    currency = data.__dict__.get(field)
    if currency is not None:
        _settle_money_in(data, _QUANTA[MINOR_UNITS[currency]])


def _settle_money_in(model: Any, quantum: Decimal) -> None:
    values = model.__dict__
    for name in model.__money_fields__:
        amount = values.get(name)
        if amount is None:
            continue
        if amount.is_signed():
            if not amount.is_zero():
                raise ValueError(f"{type(model).__name__}.{name}: money must not be negative")
            amount = values[name] = abs(amount)
        if not amount.same_quantum(quantum):
            if amount.as_tuple().exponent < quantum.as_tuple().exponent:  # type: ignore[operator]
                raise ValueError(
                    f"{type(model).__name__}.{name}: more decimal places than the currency has"
                )
            values[name] = amount.quantize(quantum)
    for name in model.__money_children__:
        child = values.get(name)
        if child is None:
            continue
        if type(child) is SharedList:
            if child.quantum != quantum:  # settled once for all the events that carry it
                for item in child:
                    _settle_money_in(item, quantum)
                child.quantum, child.json = quantum, None
            continue
        for item in child if isinstance(child, list) else (child,):
            _settle_money_in(item, quantum)


def new_event(
    event_type: str,
    *,
    subject: str | None = None,
    data: BaseModel | dict[str, Any],
    source: str,
    cause: Envelope[Any] | None,
    rule: str,
    time: datetime | None = None,
    trusted: bool = False,
) -> Envelope[Any]:
    """Build an event the project emits, with a deterministic id.

    - ``id = uuid5(EVENT_ID_NAMESPACE, f"{cause.id}:{rule}")`` (``rule`` alone without a
      cause): ``rule`` must be unique among the events one cause emits.
    - ``causation_id = cause.id``; ``correlation_id = cause.correlation_id or cause.id``.
    - ``time = cause.time`` unless given (required without a cause: no wall clock here).
    - ``subject`` defaults to ``data.account_id``, else ``cause.subject``.
    - ``data`` is the payload model for ``event_type`` (a dict is validated into it).

    ``trusted=False`` (the default): the payload and the envelope are validated, a payload
    model from its fields again (``model_dump`` then ``model_validate``: a model built
    with ``model_construct`` is checked like any other). ``trusted=True`` (a service's own
    events on the hot path, ``shared.runtime.api.Context.emit``): nothing is validated
    again; the payload's money is quantized to its currency (:func:`_settle_money`) and
    the envelope is built with ``model_construct``. Both give the same event for a valid
    payload; the test environment builds both and compares their bytes.

    Raises ``KeyError`` for an unknown type, ``TypeError`` for a payload of another
    type, ``ValueError``/``ValidationError`` for anything else invalid.
    """
    envelope_cls = ENVELOPES.get(event_type)
    if envelope_cls is None:
        raise KeyError(f"unknown event type {event_type!r}")
    payload_cls = EVENT_TYPES[event_type]
    if isinstance(data, dict):
        data = payload_cls.model_validate(data)
    elif type(data) is not payload_cls:
        raise TypeError(
            f"{event_type} needs data of type {payload_cls.__name__}, got {type(data).__name__}"
        )
    elif trusted:
        _settle_money(data)
    else:
        data = payload_cls.model_validate(data.model_dump())
    assert isinstance(data, Payload)

    if cause is None:
        name = rule
        causation_id = correlation_id = None
        if time is None:
            raise ValueError("new_event needs time= when there is no cause")
    else:
        name = f"{cause.id}:{rule}"
        causation_id = cause.id
        correlation_id = cause.correlation_id or cause.id
        if time is None:
            time = cause.time
    if subject is None:
        subject = payload_account_id(data) or (cause.subject if cause else None)
        if subject is None:
            raise ValueError(f"new_event needs subject= for {event_type}")

    fields: dict[str, Any] = {
        "id": event_id(name),
        "type": event_type,
        "source": source,
        "time": time,
        "subject": subject,
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "data": data,
    }
    if trusted:
        account_id = payload_account_id(data)
        if account_id is not None and account_id != subject:
            raise ValueError("subject must equal data.account_id")
        return envelope_cls.model_construct(schema_version=SCHEMA_VERSION, **fields)
    return envelope_cls(**fields)
