"""Field types shared by the envelope and the payloads.

Every type here is *strict* about what it accepts, because the models are validated
from JSON parsed by :mod:`schemas.codec` (``json.loads`` with hooks), not from a
lenient source:

- ``Id`` / ``DerivedId`` / ``ReminderId`` / ``Text``: JSON strings only, with a length
  range and no control characters (NUL can not even be stored by PostgreSQL). No
  coercion from numbers. Lengths and the forbidden characters: :mod:`schemas.limits`.
- ``Count`` and friends: JSON integers only (``true`` is not 1, ``"3"`` is not 3,
  ``3.0`` is not 3), with bounds (``Count``: a 64-bit integer; ``Seq``: an installment
  number; ``Days``: a span of calendar days).
- ``Date``: ``YYYY-MM-DD`` strings (or ``datetime.date`` in Python, never a
  ``datetime``).
- ``UtcDateTime``: RFC 3339 strings with a ``Z`` or a numeric offset (or an aware
  ``datetime`` in Python); stored converted to UTC, written with ``Z``. Naive times
  and Unix timestamps are rejected.
- ``Digits4``: exactly four ASCII digits as a string (``mcc``, ``card_last4``).

``ContractModel`` is the base of every model (envelope, payloads, nested parts): it
implements the **tolerant reader** of contract section 2 (see its docstring).

``JsonNumber`` is the value :mod:`schemas.codec` puts where the JSON text had a
number with a fraction or an exponent: it keeps the exact text and is *not* a ``str``,
``int`` or ``float``, so no field accepts it by accident and money validators can say
"got a number".
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictInt,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic import StrictBool as StrictBool  # re-exported for the payloads
from pydantic_core import PydanticCustomError

from schemas.limits import (
    CATEGORY_MAX,
    COUNT_MAX,
    DAYS_MAX,
    DERIVED_ID_MAX,
    ID_MAX,
    ID_PATTERN,
    REMINDER_ID_MAX,
    SEQ_MAX,
    TEXT_MAX,
    TEXT_PATTERN,
)

__all__ = [
    "JsonNumber",
    "is_number",
    "describe_kind",
    "Id",
    "DerivedId",
    "ReminderId",
    "Text",
    "ShortText",
    "Digits4",
    "Count",
    "PositiveCount",
    "SignedCount",
    "Seq",
    "Days",
    "PositiveDays",
    "Date",
    "UtcDateTime",
    "StrictBool",
    "SchemaVersion",
    "SCHEMA_VERSION",
    "ContractModel",
    "TOLERANT_READ",
    "TOLERANT_READER_NOTE",
    "tolerant_json_schema",
]

#: The highest envelope ``schema_version`` this build reads (and the one it writes).
#: A message with a higher version is refused: ``unsupported_schema_version``.
SCHEMA_VERSION = 1

# --- tolerant reader (contract section 2) -------------------------------------------

#: The validation context of a consumer's read (:func:`schemas.codec.decode`): unknown
#: fields are ignored. Without it (building a model in Python, ``decode(strict=True)``)
#: an unknown field is an error.
TOLERANT_READ: Mapping[str, Any] = types.MappingProxyType({"tolerant_reader": True})

#: What every exported JSON Schema says about fields it does not list.
TOLERANT_READER_NOTE = (
    "Tolerant reader (contract section 2): consumers ignore fields not listed here, so "
    "additional properties are allowed (they are still scanned for card numbers and "
    "count toward the size limit); the project's own producers never write any."
)


def tolerant_json_schema(schema: dict[str, Any], cls: type[Any]) -> None:
    """``json_schema_extra`` of every model: additional properties allowed, and said so."""
    schema["additionalProperties"] = True
    description = schema.get("description")
    schema["description"] = (
        f"{description}\n\n{TOLERANT_READER_NOTE}" if description else TOLERANT_READER_NOTE
    )


_object_setattr = object.__setattr__
#: class -> (field names, defaults) for ContractModel.model_construct, or False when
#: the class needs pydantic's own (computed on first use).
_CONSTRUCT_PLANS: dict[type, tuple[tuple[str, ...], dict[str, Any]] | Literal[False]] = {}


def _construct_plan(
    cls: type[BaseModel],
) -> tuple[tuple[str, ...], dict[str, Any]] | Literal[False]:
    if (
        cls.__pydantic_post_init__
        or cls.__private_attributes__
        or cls.model_config.get("extra") == "allow"
        or cls.__pydantic_root_model__
    ):
        return False
    defaults: dict[str, Any] = {}
    for name, field in cls.model_fields.items():
        if field.alias not in (None, name) or field.validation_alias is not None:
            return False
        if field.default_factory is not None:
            return False
        if not field.is_required():
            defaults[name] = field.default
    return tuple(cls.model_fields), defaults


class ContractModel(BaseModel):
    """Base of every contract model: strict by default, tolerant when reading.

    Models keep ``extra="forbid"``: a model built in Python, or validated without a
    context, rejects an unknown field, so the project never *emits* one (a misspelt
    optional field is an error, not a silent default). Validated with the
    :data:`TOLERANT_READ` context, as :func:`schemas.codec.decode` does for consumers,
    unknown fields are dropped before validation, at every level (envelope, ``data``,
    nested objects, list items): a producer that added an optional field is not
    dead-lettered. The raw message, unknown fields included, has been size-checked
    and scanned for card numbers before any model sees it.
    """

    @classmethod
    def model_construct(  # type: ignore[override]  # (the pydantic plugin rewrites it)
        cls, _fields_set: set[str] | None = None, **values: Any
    ) -> Self:
        """Pydantic's ``model_construct`` (no validation: for data the project built
        itself), without its per-field alias look-ups: a few times faster. Same result:
        ``__dict__`` in field order, defaults filled in, ``model_fields_set`` the fields
        given, unknown names ignored. A class this does not cover (a default factory, an
        alias, a post-init hook) goes to pydantic's."""
        plan = _CONSTRUCT_PLANS.get(cls)
        if plan is None:
            plan = _CONSTRUCT_PLANS[cls] = _construct_plan(cls)
        if plan is False:
            return super().model_construct(_fields_set, **values)
        names, defaults = plan
        fields: dict[str, Any] = {}
        for name in names:
            if name in values:
                fields[name] = values[name]
            elif name in defaults:
                fields[name] = defaults[name]
        model = cls.__new__(cls)
        _object_setattr(model, "__dict__", fields)
        if _fields_set is None:
            _fields_set = values.keys() & fields.keys()
        _object_setattr(model, "__pydantic_fields_set__", _fields_set)
        _object_setattr(model, "__pydantic_extra__", None)
        _object_setattr(model, "__pydantic_private__", None)
        return model

    @model_validator(mode="before")
    @classmethod
    def _ignore_unknown_fields(cls, data: Any, info: ValidationInfo) -> Any:
        if type(data) is dict and info.context is not None:
            # the class attribute, not ``cls.model_fields`` (a descriptor: 3x slower)
            known = cls.__pydantic_fields__
            if not data.keys() <= known.keys() and info.context.get("tolerant_reader"):
                return {name: value for name, value in data.items() if name in known}
        return data


class JsonNumber:
    """A JSON number with a fraction or exponent, kept as its exact source text.

    :func:`schemas.codec.decode` parses with ``parse_float=JsonNumber`` so a float never
    exists (``1e309`` is not infinity, ``0.1`` is not 0.1000000000000000055...). Nothing
    in the contract is a JSON float, so every field rejects this type.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"JsonNumber({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonNumber) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def is_number(value: Any) -> bool:
    """True for anything that came from (or stands for) a JSON number."""
    return isinstance(value, (int, float, JsonNumber)) and not isinstance(value, bool)


def describe_kind(value: Any) -> str:
    """The JSON kind of ``value`` for error messages (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if is_number(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


# --- strings ------------------------------------------------------------------------

_ID_CONTROL = re.compile(r"[\u0000-\u001f\u007f-\u009f]")
_TEXT_CONTROL = re.compile(r"[\u0000-\u0008\u000a-\u001f\u007f-\u009f]")


def _first_control(value: str, control: re.Pattern[str]) -> str | None:
    """The first forbidden control character of ``value`` as ``U+XXXX``, or None.

    ``str.isprintable`` (C speed) clears almost every value at once; only a value with a
    non-printable character (a control, or e.g. a no-break space) is searched."""
    if value.isprintable():
        return None
    found = control.search(value)
    return f"U+{ord(found.group()):04X}" if found else None


def _check_id(value: str) -> str:
    bad = _first_control(value, _ID_CONTROL)
    if bad is not None:
        raise ValueError(
            f"must not contain control characters (found {bad}; U+0000-U+001F and "
            "U+007F-U+009F are not allowed)"
        )
    return value


def _check_text(value: str) -> str:
    bad = _first_control(value, _TEXT_CONTROL)
    if bad is not None:
        raise ValueError(
            f"must not contain control characters (found {bad}; only the tab is allowed)"
        )
    return value


#: Identifiers from outside (account, purchase, refund, payment ids; tokens; references):
#: 1..ID_MAX characters, no control characters.
Id = Annotated[
    str,
    Field(strict=True, min_length=1, max_length=ID_MAX, json_schema_extra={"pattern": ID_PATTERN}),
    AfterValidator(_check_id),
]

#: Identifiers the project derives from one outside id (``offer_id``, ``plan_id``,
#: ``case_id``): 1..DERIVED_ID_MAX characters, no control characters.
DerivedId = Annotated[
    str,
    Field(
        strict=True,
        min_length=1,
        max_length=DERIVED_ID_MAX,
        json_schema_extra={"pattern": ID_PATTERN},
    ),
    AfterValidator(_check_id),
]

#: Identifiers derived from a derived id (``reminder_id`` from ``plan_id``).
ReminderId = Annotated[
    str,
    Field(
        strict=True,
        min_length=1,
        max_length=REMINDER_ID_MAX,
        json_schema_extra={"pattern": ID_PATTERN},
    ),
    AfterValidator(_check_id),
]

#: Short free text (merchant names, templates): 1..TEXT_MAX characters, no control
#: characters but the tab; any other Unicode is fine.
Text = Annotated[
    str,
    Field(
        strict=True, min_length=1, max_length=TEXT_MAX, json_schema_extra={"pattern": TEXT_PATTERN}
    ),
    AfterValidator(_check_text),
]

#: Shorter free text (a merchant category): 1..CATEGORY_MAX characters, as ``Text``.
ShortText = Annotated[
    str,
    Field(
        strict=True,
        min_length=1,
        max_length=CATEGORY_MAX,
        json_schema_extra={"pattern": TEXT_PATTERN},
    ),
    AfterValidator(_check_text),
]

Digits4 = Annotated[str, Field(strict=True, pattern=r"^[0-9]{4}$")]

# --- integers -----------------------------------------------------------------------

#: An integer >= 0 (JSON integer only), at most COUNT_MAX (a 64-bit BIGINT).
Count = Annotated[StrictInt, Field(ge=0, le=COUNT_MAX)]
#: An integer >= 1.
PositiveCount = Annotated[StrictInt, Field(ge=1, le=COUNT_MAX)]
#: Any integer (a points balance may go below zero).
SignedCount = Annotated[StrictInt, Field(ge=-COUNT_MAX, le=COUNT_MAX)]
#: An installment number: 1..SEQ_MAX (a plan has at most TENOR_MAX installments).
Seq = Annotated[StrictInt, Field(ge=1, le=SEQ_MAX)]
#: A number of days between two dates: 0..DAYS_MAX.
Days = Annotated[StrictInt, Field(ge=0, le=DAYS_MAX)]
#: A number of days >= 1.
PositiveDays = Annotated[StrictInt, Field(ge=1, le=DAYS_MAX)]


def _check_schema_version(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be an integer from 1 to {SCHEMA_VERSION}")
    if value > SCHEMA_VERSION:
        raise PydanticCustomError(
            "unsupported_schema_version",
            "unsupported_schema_version: {version} is higher than this build reads ({supported})",
            {"version": value, "supported": SCHEMA_VERSION},
        )
    return value


#: ``schema_version``: an integer from 1 to :data:`SCHEMA_VERSION` (not ``true``, not
#: ``"1"``, not ``1.0``); a higher one is ``unsupported_schema_version``.
SchemaVersion = Annotated[
    StrictInt,
    AfterValidator(_check_schema_version),
    WithJsonSchema(
        {
            "type": "integer",
            "minimum": 1,
            "maximum": SCHEMA_VERSION,
            "description": "The envelope version. A consumer refuses a version higher than "
            "it supports (dead letter, reason `unsupported_schema_version`).",
        }
    ),
]

# --- dates and times ----------------------------------------------------------------

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATETIME_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _parse_date(value: Any) -> date:
    if type(value) is date:
        return value
    if isinstance(value, str):
        if _DATE_RE.fullmatch(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise ValueError('must be a calendar date like "2026-11-28"')
    raise ValueError(f'must be a date string like "2026-11-28", got {describe_kind(value)}')


def _parse_datetime(value: Any) -> datetime:
    if type(value) is str:
        return _parse_datetime_text(value)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must be timezone-aware (UTC)")
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range") from None
    if isinstance(value, str):
        if _DATETIME_RE.fullmatch(value):
            try:
                # upper(): RFC 3339 allows "t" and "z"; fromisoformat wants "T"/"Z".
                return datetime.fromisoformat(value.upper()).astimezone(UTC)
            except (ValueError, OverflowError):
                pass
        raise ValueError('must be an RFC 3339 time like "2026-11-28T09:30:00Z"')
    raise ValueError(
        f'must be an RFC 3339 time string like "2026-11-28T09:30:00Z", got {describe_kind(value)}'
    )


@lru_cache(maxsize=4096)
def _parse_datetime_text(value: str) -> datetime:
    """An RFC 3339 string as a UTC datetime. Cached (bounded): an event's envelope
    ``time`` and its payload's time are often the same string, and so are the events
    of one moment; a datetime is immutable, so sharing one is safe. Raises
    ``ValueError`` (never cached) for anything else."""
    if _DATETIME_RE.fullmatch(value):
        try:
            # upper(): RFC 3339 allows "t" and "z"; fromisoformat wants "T"/"Z".
            return datetime.fromisoformat(value.upper()).astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    raise ValueError('must be an RFC 3339 time like "2026-11-28T09:30:00Z"')


def _format_datetime(value: datetime) -> str:
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z"  # isoformat of a UTC time ends with "+00:00"


#: A calendar date, ``YYYY-MM-DD`` on the wire.
Date = Annotated[
    date,
    PlainValidator(_parse_date),
    PlainSerializer(lambda d: d.isoformat(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date"}),
]

#: A point in time: RFC 3339 on the wire, always written in UTC with ``Z``.
UtcDateTime = Annotated[
    datetime,
    PlainValidator(_parse_datetime),
    PlainSerializer(_format_datetime, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
