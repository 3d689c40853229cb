"""Compact JSON of a contract model, byte for byte what pydantic writes, without pydantic.

``pydantic``'s ``to_json(exclude_none=True)`` calls back into Python for every money,
rate, date and time field (their ``PlainSerializer``): ~40 calls for an ``offer.made``.
:func:`to_json` writes the same bytes from code generated once per model class, from
the class's field annotations:

- fields in model order; a field holding ``None`` is left out (``exclude_none``), at
  every level;
- strings through the C string encoder of :mod:`json` (``ensure_ascii=False``): only
  ``"``, ``\\`` and U+0000-U+001F are escaped, the way pydantic (serde_json) escapes
  them (``\\n``, ``\\t``..., else ``\\u00XX`` in lower case hex);
- ``Decimal`` (``Money``, ``Rate``...) as ``"<format(value, 'f')>"``, dates as
  ``"YYYY-MM-DD"``, times in UTC with ``Z`` (``schemas.types``' serializers), ints and
  bools as JSON numbers and ``true``/``false``;
- nested models and lists of them (or of strings) recursively.

A class with a field this does not know how to write (or a serializer other than the
ones above) is written by pydantic, as before: :func:`to_json` is never *wrong*, at worst
not faster. The tests compare both writers for every event type
(``tests/unit/schemas/test_encoder.py``), and in the test environment every event a
service emits is written both ways and compared (``shared.runtime.api.Context.emit``).
"""

from __future__ import annotations

import types
import typing
from datetime import UTC, date, datetime
from decimal import Decimal
from json.encoder import encode_basestring  # the C encoder when available
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, PlainSerializer

__all__ = ["to_json", "pydantic_json", "SharedList"]

_Writer = typing.Callable[[Any], str]


def pydantic_json(model: BaseModel) -> bytes:
    """What pydantic writes for ``model`` (the reference :func:`to_json` matches)."""
    return model.__pydantic_serializer__.to_json(model, exclude_none=True)


def _decimal(value: Decimal) -> str:
    text = str(value)  # plain unless the exponent is > 0 or the value is below 1e-6
    if "E" in text:
        text = format(value, "f")
    return '"' + text + '"'


def _datetime(value: datetime) -> str:
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return '"' + value.isoformat()[:-6] + 'Z"'  # a UTC isoformat ends with "+00:00"


class _Unsupported(Exception):
    pass


class SharedList(list[Any]):
    """A list of models that many events carry unchanged (an offer menu): built once by a
    service's cache, never changed after, so :func:`to_json` writes its JSON once and keeps
    it. ``quantum``: the money quantum its items were settled to
    (``schemas.codec._settle_money``), so that is done once too."""

    __slots__ = ("json", "quantum")

    def __init__(self, items: Any = ()) -> None:
        super().__init__(items)
        self.json: str | None = None
        self.quantum: Decimal | None = None


def _shared_json(values: SharedList, write_item: _Writer) -> str:
    if values.json is None:
        values.json = "[" + ",".join([write_item(x) for x in values]) + "]"
    return values.json


#: The serializer :func:`to_json` mimics for each kind (the function's name).
_SERIALIZERS = {
    "decimal": "_format_decimal",  # schemas.money: format(value, "f")
    "date": "<lambda>",  # schemas.types.Date: d.isoformat()
    "datetime": "_format_datetime",  # schemas.types.UtcDateTime: UTC, "Z"
}


def _check_serializer(metadata: list[Any], kind: str) -> None:
    """Refuse a field whose ``PlainSerializer`` is not the one :func:`to_json` mimics."""
    for item in metadata:
        if isinstance(item, PlainSerializer):
            name = getattr(item.func, "__name__", "")
            if name != _SERIALIZERS.get(kind):
                raise _Unsupported(f"serializer {name!r} on a {kind} field")


# A kind: "str" | "bool" | "int" | "decimal" | "date" | "datetime" | a model class |
# ("list", kind).
_Kind = Any


def _kind_of(annotation: Any, metadata: list[Any]) -> tuple[_Kind, bool]:
    """(kind of a non-None value, optional?) of a field annotation."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        inner, *extra = typing.get_args(annotation)
        return _kind_of(inner, [*metadata, *extra])
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise _Unsupported(f"union {annotation!r}")
        kind, _ = _kind_of(args[0], metadata)
        return kind, True
    if origin is Literal:
        if not all(type(v) is str for v in typing.get_args(annotation)):
            raise _Unsupported(f"literal {annotation!r}")
        return "str", False
    if origin is list:
        (item,) = typing.get_args(annotation)
        kind, optional = _kind_of(item, [])
        if optional or not (kind == "str" or isinstance(kind, type)):
            raise _Unsupported(f"list of {item!r}")
        return ("list", kind), False
    simple = {str: "str", bool: "bool", int: "int", Decimal: "decimal", date: "date"}
    simple[datetime] = "datetime"
    if annotation in simple:
        kind = simple[annotation]
        if kind in ("str", "bool", "int"):
            if any(isinstance(m, PlainSerializer) for m in metadata):
                raise _Unsupported(f"serializer on a {kind} field")
        else:
            _check_serializer(metadata, kind)
        return kind, False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    raise _Unsupported(f"annotation {annotation!r}")


def _expression(kind: _Kind, env: dict[str, Any]) -> str:
    """Python expression writing the JSON of the value ``v`` of ``kind``."""
    if kind == "str":
        return "_s(v)"
    if kind == "bool":
        return "('true' if v else 'false')"
    if kind == "int":
        return "_i(v)"
    if kind == "decimal":  # str() is plain unless the exponent is > 0 or below 1e-6
        return """('"' + (t if 'E' not in (t := str(v)) else format(v, 'f')) + '"')"""
    if kind == "date":
        return """('"' + v.isoformat() + '"')"""
    if kind == "datetime":
        return "_dt(v)"
    if isinstance(kind, tuple):
        item = kind[1]
        if item == "str":
            return "('[' + ','.join(map(_s, v)) + ']')"
        name = f"_w_{item.__name__}"
        env[name] = _model_writer(item)
        env["_SharedList"], env["_shared_json"] = SharedList, _shared_json
        return (
            f"(_shared_json(v, {name}) if type(v) is _SharedList"
            f" else '[' + ','.join([{name}(x) for x in v]) + ']')"
        )
    name = f"_w_{kind.__name__}"
    env[name] = _model_writer(kind)
    return f"{name}(v)"


_WRITERS: dict[type[BaseModel], _Writer] = {}


def _fallback(cls: type[BaseModel]) -> _Writer:
    serializer = cls.__pydantic_serializer__

    def write(model: Any) -> str:
        return typing.cast(bytes, serializer.to_json(model, exclude_none=True)).decode()

    return write


def _model_writer(cls: type[BaseModel]) -> _Writer:
    """The writer of ``cls`` (generated on first use, then cached)."""
    writer = _WRITERS.get(cls)
    if writer is not None:
        return writer
    try:
        writer = _generate(cls)
    except _Unsupported:
        writer = _fallback(cls)
    _WRITERS[cls] = writer
    return writer


def _generate(cls: type[BaseModel]) -> _Writer:
    """Python source for one class: a chain of string pieces, an ``if`` per optional field."""
    decorators = cls.__pydantic_decorators__
    if decorators.field_serializers or decorators.model_serializers:
        raise _Unsupported("custom serialization")
    env: dict[str, Any] = {"_s": encode_basestring, "_i": int.__repr__, "_dt": _datetime}
    fields = list(cls.model_fields.items())
    if not fields:
        raise _Unsupported("no fields")
    lines = ["def write(model):", "    d = model.__dict__"]
    for index, (name, info) in enumerate(fields):
        if info.exclude or info.serialization_alias or info.alias not in (None, name):
            raise _Unsupported("alias or excluded field")
        kind, optional = _kind_of(info.annotation, list(info.metadata))
        expression = _expression(kind, env)
        key = '"' + name + '":'
        lines.append(f"    v = d[{name!r}]")
        if index == 0:
            if optional:  # the first piece may be absent: no leading comma to drop
                raise _Unsupported("optional first field")
            lines.append(f"    s = {'{' + key!r} + {expression}")
        elif optional:  # exclude_none: a None is left out
            lines.append("    if v is not None:")
            lines.append(f"        s += {',' + key!r} + {expression}")
        else:
            lines.append(f"    s += {',' + key!r} + {expression}")
    lines.append("    return s + '}'")
    source = "\n".join(lines)
    exec(compile(source, f"<schemas.encoder {cls.__name__}>", "exec"), env)
    return typing.cast(_Writer, env["write"])


def to_json(model: BaseModel) -> bytes:
    """Compact UTF-8 JSON of ``model``: the bytes of :func:`pydantic_json`."""
    return _model_writer(type(model))(model).encode()
