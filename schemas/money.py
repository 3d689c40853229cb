"""Money, currencies and decimal rates: no float ever touches money.

Rules (contract section 2):

- On the wire a money amount is a JSON **string** holding a plain decimal:
  ``"1234.50"``, ``"0.99"``, ``"1200"``. Rejected: JSON numbers (``12.5``, ``12``,
  ``1e309``), ``NaN``/``Infinity``, exponents (``"1E+3"``), signs (``"-5.00"``,
  ``"+5.00"``), spaces, leading zeros (``"012.00"``), ``".5"``, ``"5."``, and more
  digits before the point than :mod:`schemas.limits` allows: 12 for a single amount
  (``Money``, ``PositiveMoney``), 18 for a sum over an account's plans (``Total``,
  ``PositiveTotal``: overdue amounts), 19 for ``GrandTotal`` (amounts written off).
- In Python it is a :class:`decimal.Decimal` (a ``str`` is parsed with the same rules;
  ``int``/``float`` are rejected so no float can sneak in through a service either).
- An amount has at most the minor-unit digits of its currency (:data:`MINOR_UNITS`,
  ISO 4217): ``"12.345"`` is not USD, ``"1000.5"`` and ``"1000.0"`` are not JPY.
  Trailing zeros count: digits are counted as written.
- ``PositiveMoney`` must be > 0 (purchases, refunds, payments, principals,
  installments); ``Money`` must be >= 0 (fees, limits, balances, returned amounts).
- Output: the amount quantized to exactly the currency's minor digits
  (``"1234.5"`` USD is written ``"1234.50"``; JPY ``"1200"``).

The digit rule needs the currency, which is a *sibling* field, so it cannot run in the
field validator. :class:`MoneyModel` is the base class that knows which of its fields
are money (found from the ``Money``/``PositiveMoney`` annotations at class creation)
and checks and quantizes them in a model validator against the model's ``currency``
field. Nested models without a currency of their own (``AutoConvert``,
``OfferOption``, ``ScheduleLine``) set ``money_currency_field = None``; the enclosing
payload checks them with its own ``currency``.

The JSON Schema says the same (``python -m schemas.export``, the AsyncAPI document): a
money field's ``pattern`` (:func:`money_pattern`) takes what :func:`parse_money` takes,
with up to ``MONEY_SCALE_MAX`` decimal places, and excludes zero for the positive
kinds; each payload with a currency adds ``if``/``then`` rules that narrow its money
fields, nested ones included, to the currency's digits. A validator such as
``jsonschema`` thus accepts exactly the amounts the services accept
(``tests/unit/schemas/test_money_json_schema.py``); rules between fields (sums, a
field required with another's value) are the models' alone.

``Rate`` is for decimal strings that are not money (``apr`` ``"13.03"``,
``monthly_fee_rate`` ``"0.0060"``): same "string only, plain decimal, >= 0" rule, up to
8 decimal places, no currency, written back exactly as held.
"""

from __future__ import annotations

import re
import types
import typing
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from schemas.limits import (
    AMOUNT_INTEGER_DIGITS,
    GRAND_TOTAL_INTEGER_DIGITS,
    MONEY_SCALE_MAX,
    TOTAL_INTEGER_DIGITS,
)
from schemas.types import describe_kind

__all__ = [
    "MINOR_UNITS",
    "Currency",
    "Money",
    "PositiveMoney",
    "Total",
    "PositiveTotal",
    "GrandTotal",
    "Rate",
    "MoneyModel",
    "parse_money",
]

#: ISO 4217 minor-unit digits of the currencies this build accepts. Anything else is
#: rejected as an unknown currency.
MINOR_UNITS: typing.Mapping[str, int] = types.MappingProxyType(
    {
        # 2 decimal places
        **dict.fromkeys(
            (
                "USD EUR GBP CHF CAD AUD NZD SGD HKD CNY TWD INR BRL MXN ARS COP PEN UYU "
                "SEK NOK DKK PLN CZK HUF RON BGN TRY ILS AED SAR QAR EGP MAD ZAR NGN KES "
                "THB IDR MYR PHP PKR BDT LKR UAH"
            ).split(),
            2,
        ),
        # 0 decimal places
        **dict.fromkeys("JPY KRW VND CLP ISK PYG UGX XAF XOF".split(), 0),
        # 3 decimal places
        **dict.fromkeys("KWD BHD JOD OMR TND IQD LYD".split(), 3),
    }
)

assert max(MINOR_UNITS.values()) <= MONEY_SCALE_MAX  # the limits cover every currency
_QUANTA = {digits: Decimal(1).scaleb(-digits) for digits in set(MINOR_UNITS.values())}

# A plain decimal: no sign, no exponent, no spaces, no leading zeros, digits both sides
# of a point. Fraction length is not limited here: the currency check reports it.
_MONEY_RES = {
    digits: re.compile(rf"(?:0|[1-9][0-9]{{0,{digits - 1}}})(?:\.([0-9]{{1,30}}))?")
    for digits in (AMOUNT_INTEGER_DIGITS, TOTAL_INTEGER_DIGITS, GRAND_TOTAL_INTEGER_DIGITS)
}
_RATE_RE = re.compile(r"(?:0|[1-9][0-9]{0,5})(?:\.[0-9]{1,8})?")

_MONEY_HINT = 'money must be a JSON string like "12.34"'
_PLAIN_HINT = "(no sign, exponent, spaces or leading zeros)"


class _MoneyMarker:
    """Annotation metadata that tells :class:`MoneyModel` a field is money."""

    __slots__ = ("positive", "integer_digits")

    def __init__(self, positive: bool, integer_digits: int) -> None:
        self.positive = positive
        self.integer_digits = integer_digits

    def __repr__(self) -> str:
        return f"_MoneyMarker(positive={self.positive}, integer_digits={self.integer_digits})"


_CENT = Decimal("0.01")


def _exponent(value: Decimal) -> int:
    """The exponent of a finite decimal (``Decimal("12.30")`` -> -2). Most money has
    two places: ``same_quantum`` answers that five times faster than ``as_tuple``,
    which copies the digits (this runs for every money field of every event)."""
    if value.same_quantum(_CENT):
        return -2
    return int(value.as_tuple().exponent)


def parse_money(
    value: Any, *, positive: bool, integer_digits: int = AMOUNT_INTEGER_DIGITS
) -> Decimal:
    """Parse one money value (without the currency digit rule; see :class:`MoneyModel`).

    At most ``integer_digits`` digits before the point (:mod:`schemas.limits`: a single
    amount ``AMOUNT_INTEGER_DIGITS``, a sum over plans ``TOTAL_INTEGER_DIGITS``)."""
    if type(value) is str:
        pattern = _MONEY_RES[integer_digits]
        if not pattern.fullmatch(value):
            if value[:1] == "-" and pattern.fullmatch(value[1:]):
                raise ValueError("money must not be negative")
            if _TOO_LONG_RE.fullmatch(value):
                raise ValueError(_too_large(integer_digits))
            raise ValueError(f'money must be a plain decimal string like "12.34" {_PLAIN_HINT}')
        amount = Decimal(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("money must be a finite decimal")
        if value.is_signed() and not value.is_zero():
            raise ValueError("money must not be negative")
        amount = abs(value) if value.is_zero() else value  # no "-0.00"
        if amount.adjusted() >= integer_digits or _exponent(amount) < -30:
            raise ValueError(_too_large(integer_digits))
    else:
        raise ValueError(f"{_MONEY_HINT}, got {describe_kind(value)}")
    if positive and amount.is_zero():
        raise ValueError("money must be greater than zero")
    return amount


def _too_large(integer_digits: int) -> str:
    return f"money must have at most {integer_digits} digits before the decimal point"


# A plain decimal with too many digits before the point (for a clearer message).
_TOO_LONG_RE = re.compile(r"[1-9][0-9]*(?:\.[0-9]{1,30})?")


def _parse_nonnegative(value: Any) -> Decimal:
    return parse_money(value, positive=False)


def _parse_positive(value: Any) -> Decimal:
    return parse_money(value, positive=True)


def _parse_nonnegative_total(value: Any) -> Decimal:
    return parse_money(value, positive=False, integer_digits=TOTAL_INTEGER_DIGITS)


def _parse_positive_total(value: Any) -> Decimal:
    return parse_money(value, positive=True, integer_digits=TOTAL_INTEGER_DIGITS)


def _parse_grand_total(value: Any) -> Decimal:
    return parse_money(value, positive=False, integer_digits=GRAND_TOTAL_INTEGER_DIGITS)


def _format_decimal(value: Decimal) -> str:
    return format(value, "f")


#: The end of the string in a JSON Schema ``pattern``. Not ``$``: Python's ``re`` (which
#: the ``jsonschema`` package uses) and Java read ``$`` as "end, or before a final
#: newline", so ``"1.00\n"`` would pass there; "no character follows" means the same in
#: ECMA-262, Python and Java.
PATTERN_END = r"(?![\s\S])"


def money_pattern(integer_digits: int, scale: int, *, positive: bool) -> str:
    """The JSON Schema ``pattern`` of a money string that :func:`parse_money` accepts and
    the currency digit rule lets through for a currency with ``scale`` decimal places.

    A plain decimal (no sign, exponent, spaces or leading zeros) with 1 to
    ``integer_digits`` digits before the point and 1 to ``scale`` after it (none when
    ``scale`` is 0); when ``positive``, not zero (``"0"``, ``"0.00"``)."""
    whole = rf"[1-9][0-9]{{0,{integer_digits - 1}}}"
    fraction = rf"(\.[0-9]{{1,{scale}}})?" if scale else ""
    if not positive:
        body = f"(0|{whole}){fraction}"
    elif not scale:
        body = whole
    else:
        # "0." then 1 to `scale` digits, one of them not zero: k zeros, a non-zero digit,
        # then at most scale - 1 - k more digits.
        below_one = "|".join(
            "0" * zeros + "[1-9]" + (f"[0-9]{{0,{scale - 1 - zeros}}}" if zeros < scale - 1 else "")
            for zeros in range(scale)
        )
        body = f"({whole}{fraction}|0\\.({below_one}))"
    return f"^{body}{PATTERN_END}"


def _money_schema(positive: bool, integer_digits: int = AMOUNT_INTEGER_DIGITS) -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": money_pattern(integer_digits, MONEY_SCALE_MAX, positive=positive),
        "maxLength": integer_digits + 1 + MONEY_SCALE_MAX,
        "description": (
            "Money: a decimal string with at most the currency's ISO 4217 minor-unit "
            f"digits and at most {integer_digits} digits before the point, "
            + ("greater than zero." if positive else "zero or more.")
            + f" This pattern allows {MONEY_SCALE_MAX} decimal places, the most of any "
            "currency; the enclosing payload narrows it by its `currency` (allOf/if/then)."
        ),
    }


#: Money >= 0 (fees, limits, balances, returned amounts).
Money = Annotated[
    Decimal,
    PlainValidator(_parse_nonnegative),
    PlainSerializer(_format_decimal, return_type=str, when_used="json"),
    WithJsonSchema(_money_schema(positive=False)),
    _MoneyMarker(positive=False, integer_digits=AMOUNT_INTEGER_DIGITS),
]

#: Money > 0 (purchases, refunds, payments, principals, installments).
PositiveMoney = Annotated[
    Decimal,
    PlainValidator(_parse_positive),
    PlainSerializer(_format_decimal, return_type=str, when_used="json"),
    WithJsonSchema(_money_schema(positive=True)),
    _MoneyMarker(positive=True, integer_digits=AMOUNT_INTEGER_DIGITS),
]

#: A sum >= 0 over an account's plans (overdue amount, amount written off): up to
#: TOTAL_INTEGER_DIGITS digits before the point.
Total = Annotated[
    Decimal,
    PlainValidator(_parse_nonnegative_total),
    PlainSerializer(_format_decimal, return_type=str, when_used="json"),
    WithJsonSchema(_money_schema(positive=False, integer_digits=TOTAL_INTEGER_DIGITS)),
    _MoneyMarker(positive=False, integer_digits=TOTAL_INTEGER_DIGITS),
]

#: A sum > 0 over an account's plans.
PositiveTotal = Annotated[
    Decimal,
    PlainValidator(_parse_positive_total),
    PlainSerializer(_format_decimal, return_type=str, when_used="json"),
    WithJsonSchema(_money_schema(positive=True, integer_digits=TOTAL_INTEGER_DIGITS)),
    _MoneyMarker(positive=True, integer_digits=TOTAL_INTEGER_DIGITS),
]

#: A sum >= 0 of two ``Total`` sums (a charge-off: the overdue amount plus the principal
#: not yet due): up to GRAND_TOTAL_INTEGER_DIGITS digits before the point.
GrandTotal = Annotated[
    Decimal,
    PlainValidator(_parse_grand_total),
    PlainSerializer(_format_decimal, return_type=str, when_used="json"),
    WithJsonSchema(_money_schema(positive=False, integer_digits=GRAND_TOTAL_INTEGER_DIGITS)),
    _MoneyMarker(positive=False, integer_digits=GRAND_TOTAL_INTEGER_DIGITS),
]


def _check_currency(value: Any) -> str:
    if type(value) is str and value in MINOR_UNITS:
        return value
    if isinstance(value, str):
        if re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(f"unknown currency {value} (not in this build's ISO 4217 table)")
        raise ValueError('currency must be a three-letter ISO 4217 code like "USD"')
    raise ValueError(f'currency must be a JSON string like "USD", got {describe_kind(value)}')


#: An ISO 4217 code from :data:`MINOR_UNITS`.
Currency = Annotated[
    str,
    PlainValidator(_check_currency),
    WithJsonSchema({"type": "string", "enum": sorted(MINOR_UNITS)}),
]


def _parse_rate(value: Any) -> Decimal:
    if type(value) is str:
        if _RATE_RE.fullmatch(value):
            return Decimal(value)
        raise ValueError(
            f'must be a decimal string like "13.03" with at most 8 decimal places {_PLAIN_HINT}'
        )
    if isinstance(value, Decimal):
        if value.is_finite() and (not value.is_signed() or value.is_zero()):
            value = abs(value) if value.is_zero() else value
            if value.adjusted() < 6 and _exponent(value) >= -8:
                return value
        raise ValueError("must be a decimal >= 0 below 1000000 with at most 8 decimal places")
    raise ValueError(f'must be a decimal JSON string like "13.03", got {describe_kind(value)}')


#: A non-money decimal >= 0 carried as a string (``apr``, ``monthly_fee_rate``).
Rate = Annotated[
    Decimal,
    PlainValidator(_parse_rate),
    PlainSerializer(_format_decimal, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(0|[1-9][0-9]{0,5})(\.[0-9]{1,8})?" + PATTERN_END,
            "description": "A decimal string (not money): at most 8 decimal places.",
        }
    ),
]


def _marker_of(annotation: Any, metadata: list[Any]) -> _MoneyMarker | None:
    """The money marker of a field's annotation (possibly ``X | None``), or None."""
    for m in metadata:
        if isinstance(m, _MoneyMarker):
            return m
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is Annotated:
            for m in arg.__metadata__:
                if isinstance(m, _MoneyMarker):
                    return m
    return None


def _money_marker(annotation: Any, metadata: list[Any]) -> bool:
    """True when a field's annotation (possibly ``X | None``) is Money/PositiveMoney."""
    return _marker_of(annotation, metadata) is not None


def _child_model(annotation: Any) -> tuple[type[MoneyModel], bool] | None:
    """(the nested MoneyModel class, whether it is a list of them) of a field, or None."""
    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, MoneyModel):
            return candidate, False
        if typing.get_origin(candidate) is list:
            (item,) = typing.get_args(candidate)
            if isinstance(item, type) and issubclass(item, MoneyModel):
                return item, True
    return None


def _money_child(annotation: Any) -> bool:
    """True when a field holds a nested MoneyModel (or an optional one, or a list)."""
    return _child_model(annotation) is not None


#: The minor-unit digits of the known currencies (ISO 4217), for the JSON Schema's rules.
_SCALES = sorted(set(MINOR_UNITS.values()))


def _scale_rule(field: str, scale: int, properties: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema rule "when ``field`` names a currency with at most ``scale``
    minor-unit digits, the money ``properties`` have at most ``scale`` decimal places".

    Written with the shorter list of currency codes: ``if`` currency is one of those
    with at most ``scale`` digits ``then`` narrow, or ``if`` it is one of those with
    more ``else`` narrow. The ``else`` form also narrows when the currency is absent
    or unknown; such a message is refused anyway (the currency's own schema, or the
    payload's rule that an amount comes with a currency)."""
    at_most = sorted(c for c, digits in MINOR_UNITS.items() if digits <= scale)
    more = sorted(c for c, digits in MINOR_UNITS.items() if digits > scale)
    narrow = {"properties": properties}
    if len(at_most) <= len(more):
        return {
            "$comment": f"{'/'.join(at_most)}: at most {scale} decimal places",
            "if": {"properties": {field: {"enum": at_most}}, "required": [field]},
            "then": narrow,
        }
    return {
        "$comment": f"at most {scale} decimal places unless the currency has more "
        f"({'/'.join(more)})",
        "if": {"properties": {field: {"enum": more}}, "required": [field]},
        "else": narrow,
    }


class MoneyModel(BaseModel):
    """Base of every model with money: applies the currency's minor-unit digit rule.

    Subclasses get two class attributes computed from their fields:
    ``__money_fields__`` (names of ``Money``/``PositiveMoney`` fields) and
    ``__money_children__`` (fields holding nested ``MoneyModel`` or lists of them).
    A model whose ``money_currency_field`` names a field (default ``"currency"``)
    checks itself and its children against that currency after validation; a nested
    model sets it to ``None`` and is checked by its parent.
    """

    money_currency_field: ClassVar[str | None] = "currency"
    __money_fields__: ClassVar[tuple[str, ...]] = ()
    __money_children__: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = cls.model_fields
        cls.__money_fields__ = tuple(
            name for name, f in fields.items() if _money_marker(f.annotation, f.metadata)
        )
        cls.__money_children__ = tuple(
            name for name, f in fields.items() if _money_child(f.annotation)
        )
        has_money = bool(cls.__money_fields__ or cls.__money_children__)
        currency_field = cls.money_currency_field
        if has_money and currency_field is not None and currency_field not in fields:
            raise TypeError(
                f"{cls.__name__} has money fields but no {currency_field!r} field; add one "
                "or set money_currency_field = None (checked by the enclosing model)"
            )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler, /
    ) -> JsonSchemaValue:
        """The model's JSON Schema, plus the currency digit rule where it has a currency.

        A money field's own schema allows ``MONEY_SCALE_MAX`` decimal places (the most of
        any currency). A model with a currency field adds to ``allOf``, for each smaller
        number of minor-unit digits, a rule that its money fields (and those of its
        nested parts) match the narrower pattern when the currency has at most that
        many digits (:func:`_scale_rule`), so a validator accepts exactly the amounts
        :meth:`_apply_currency` accepts (``"12.345"`` is refused in USD, ``"1000.5"``
        in JPY)."""
        json_schema = handler(core_schema)
        field = cls.money_currency_field
        if field is None or not (cls.__money_fields__ or cls.__money_children__):
            return json_schema
        rules = [
            _scale_rule(field, scale, cls._money_json_properties(scale))
            for scale in _SCALES
            if scale < MONEY_SCALE_MAX
        ]
        target = handler.resolve_ref_schema(json_schema)
        target["allOf"] = [*target.get("allOf", []), *rules]
        return json_schema

    @classmethod
    def _money_json_properties(cls, scale: int) -> dict[str, Any]:
        """JSON Schema ``properties`` narrowing every money field of this model and of its
        nested parts to ``scale`` decimal places (``items`` for a list of parts; on
        ``null`` these constraints hold trivially)."""
        properties: dict[str, Any] = {}
        for name in cls.__money_fields__:
            info = cls.model_fields[name]
            marker = _marker_of(info.annotation, info.metadata)
            assert marker is not None
            properties[name] = {
                "pattern": money_pattern(marker.integer_digits, scale, positive=marker.positive)
            }
        for name in cls.__money_children__:
            found = _child_model(cls.model_fields[name].annotation)
            assert found is not None
            child, is_list = found
            nested = child._money_json_properties(scale)
            if nested:  # a part without money (``merchant``) needs no rule
                inner = {"properties": nested}
                properties[name] = {"items": inner} if is_list else inner
        return properties

    @model_validator(mode="after")
    def _check_money_digits(self) -> MoneyModel:
        field = self.money_currency_field
        if field is not None and (self.__money_fields__ or self.__money_children__):
            currency = getattr(self, field)
            # An optional currency (``contact.recorded``) is absent only with its money:
            # the model's own validator requires the currency whenever an amount is set.
            if currency is not None:
                self._apply_currency(currency, "")
        return self

    def _apply_currency(self, currency: str, prefix: str) -> None:
        """Check every money field against ``currency`` and quantize it in place.

        Quantizing keeps the value (``12.5 == 12.50``) and makes serialization write
        exactly the currency's minor digits. Models are frozen, so the value is
        replaced in ``__dict__`` directly, during validation only.
        """
        digits = MINOR_UNITS[currency]
        quantum = _QUANTA[digits]
        values = self.__dict__
        for name in self.__money_fields__:
            amount = values[name]
            if amount is None or amount.same_quantum(quantum):  # already exactly `digits`
                continue
            exponent = _exponent(amount)
            if exponent < -digits:
                raise PydanticCustomError(
                    "money_digits",
                    "{field}: {currency} amounts have at most {digits} decimal places, got {got}",
                    {
                        "field": prefix + name,
                        "currency": currency,
                        "digits": digits,
                        "got": -exponent,
                    },
                )
            try:
                values[name] = amount.quantize(quantum)
            except InvalidOperation:  # pragma: no cover - bounded by schemas.limits
                raise PydanticCustomError(
                    "money_range", "{field}: amount is too large", {"field": prefix + name}
                ) from None
        for name in self.__money_children__:
            child = values[name]
            if child is None:
                continue
            if isinstance(child, list):
                for index, item in enumerate(child):
                    item._apply_currency(currency, f"{prefix}{name}[{index}].")
            else:
                child._apply_currency(currency, f"{prefix}{name}.")
