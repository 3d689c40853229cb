"""Checks on the raw parsed JSON, before any model sees it: depth, PANs, surrogates.

:func:`inspect_message` walks every key and value of a decoded message once and
returns a reason (or ``None``) for the first problem:

- **Nesting deeper than** ``max_depth`` (the top-level object is depth 1).
- **A primary account number** (contract section 2: "a value that looks like a PAN
  (13-19 digits passing Luhn) in any string field is rejected"). Looked for in every
  string, keys included, under any field (known or not), and in JSON integers too.
  See :func:`find_pans` for the rule; shared.runtime.logging masks log text with the same
  function, so what the guard rejects is exactly what never reaches a log line.
- **Unpaired UTF-16 surrogates** (``"\\ud800"`` in JSON): they cannot be re-encoded as
  UTF-8.

Reasons name the field path (``data.merchant.name``) and never contain the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

__all__ = [
    "inspect_message",
    "contains_pan",
    "find_pans",
    "mask_pans",
    "redact_key",
    "luhn_valid",
    "field_path",
    "PAN_MASK",
]

#: What :func:`mask_pans` writes in place of a card number.
PAN_MASK = "[PAN]"

# Separators between the digit groups of a written card number, besides Unicode
# whitespace (regex ``\s``: space, tab, newline, U+00A0, U+202F, U+3000, ...) and the
# ASCII ``. / _ -``: Unicode dashes and minus signs, the full-width ``- . / _``,
# middle dot and bullet, zero-width spaces and joiners.
_EXTRA_SEPARATORS = (
    "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
    "\uff0e\uff0f\uff3f\u00b7\u2022\u200b\u200c\u200d\u2060\ufeff"
)
_SEP = "\\s_/\\-" + "".join(f"\\u{ord(c):04x}" for c in _EXTRA_SEPARATORS)
#: Longest run of separators that still joins two digit groups ("4111 -- 1111",
#: "4111 / 1111"); a longer run separates two numbers.
MAX_SEPARATOR_RUN = 5
# A candidate: at least 13 decimal digits (any script: \d) in groups joined by runs
# of 1-5 separators; greedy, so it is the whole run. Digits and separators are
# disjoint classes: no backtracking blow-up.
_CANDIDATE = re.compile(rf"\d(?:[.{_SEP}]{{0,{MAX_SEPARATOR_RUN}}}\d){{12,}}")
# The same where a dot is a decimal point (see _DOT_IS_A_POINT).
_CANDIDATE_NO_DOT = re.compile(rf"\d(?:[{_SEP}]{{0,{MAX_SEPARATOR_RUN}}}\d){{12,}}")
_GROUP = re.compile(r"\d+")
# Money (contract: a plain decimal string, at most 18 integer and, for the currencies
# accepted, 3 fraction digits) and ISO dates/times (a fraction of a second of at most 9
# digits): in a whole string of that shape the dot is a decimal point, so the integer
# part or the fraction is tested on its own, not joined across the point.
_DOT_IS_A_POINT = re.compile(
    r"[0-9]{1,18}\.[0-9]{1,4}"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
# A canonical UUID standing alone (no hex digit next to it, and no digit group joined
# to it by separators): an identifier, never card data. Skipped, never masked.
_UUID = re.compile(
    rf"(?<![\dA-Fa-f])(?<!\d[.{_SEP}])(?<!\d[.{_SEP}]{{2}})(?<!\d[.{_SEP}]{{3}})"
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    rf"(?![\dA-Fa-f])(?![.{_SEP}]{{1,{MAX_SEPARATOR_RUN}}}\d)"
)
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)

# Fast pre-check (see _cannot_hold_pan): ASCII digits -> "1", other bytes -> "0".
_DIGIT_MAP = bytes(0x31 if 0x30 <= b <= 0x39 else 0x30 for b in range(256))
_THIRTEEN_DIGITS = b"1" * 13
_ASCII = bytes(range(128))
# ASCII separator bytes. In strict JSON a tab, newline, CR or form feed inside a
# string can only be written as an escape (see _JSON_ESCAPE); the raw control bytes
# are deleted too, for a caller whose parser was not strict.
_ASCII_SEPARATOR_BYTES = b" ./_-\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
_JSON_ESCAPE = re.compile(rb"\\.")
_NON_ASCII_SEPARATORS = frozenset(_EXTRA_SEPARATORS)
_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_+-]{0,63}")

_PAN_REASON = "contains what looks like a card number (PAN); card data is never accepted"


def luhn_valid(digits: str) -> bool:
    """Luhn checksum of a string of (possibly non-ASCII) decimal digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _holds_pan(candidate: str) -> bool:
    """True when some stretch of whole consecutive digit groups of ``candidate``
    holds 13-19 digits and passes Luhn.

    Luhn of every stretch comes from two prefix sums (one per parity of the last
    digit), so a long run of short groups costs O(digits x 19), not O(digits x 19^2).
    """
    groups = _GROUP.findall(candidate)
    if len(groups) == 1:
        return len(candidate) <= 19 and luhn_valid(candidate)
    digits = "".join(groups)
    # even[i] / odd[i]: Luhn sum of digits[:i] when the last digit of the stretch has
    # an even / odd index (that digit and every second one before it are not doubled).
    even = [0]
    odd = [0]
    for index, char in enumerate(digits):
        value = int(char)
        if index % 2:
            even.append(even[-1] + _DOUBLED[value])
            odd.append(odd[-1] + value)
        else:
            even.append(even[-1] + value)
            odd.append(odd[-1] + _DOUBLED[value])
    bounds = [0]
    for group in groups:
        bounds.append(bounds[-1] + len(group))
    count = len(bounds)
    for first in range(count - 1):
        start = bounds[first]
        last = first + 1
        while last < count and bounds[last] - start < 13:
            last += 1
        while last < count and bounds[last] - start <= 19:
            end = bounds[last]
            sums = odd if (end - 1) % 2 else even
            if (sums[end] - sums[start]) % 10 == 0:
                return True
            last += 1
    return False


def _spans(pattern: re.Pattern[str], text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    for match in pattern.finditer(text, start, end):
        if _holds_pan(match.group()):
            yield match.span()


def _pan_spans(text: str) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` of every candidate run of ``text`` that holds a PAN."""
    if text.isascii() and _THIRTEEN_DIGITS not in text.encode().translate(
        _DIGIT_MAP, _ASCII_SEPARATOR_BYTES
    ):
        return  # no 13 digits even with every separator run deleted (C speed)
    # First pass with every separator and no UUID cut: cutting at UUIDs or no longer
    # joining at a decimal point only splits candidates into runs of whole groups of
    # the first pass, so a text clean in the first pass is clean (the common case,
    # one regex scan).
    found = _spans(_CANDIDATE, text, 0, len(text))
    first = next(found, None)
    if first is None:
        return
    dot_is_a_point = "." in text and _DOT_IS_A_POINT.fullmatch(text) is not None
    uuids = [m.span() for m in _UUID.finditer(text)] if "-" in text else []
    if not dot_is_a_point and not uuids:
        yield first
        yield from found
        return
    pattern = _CANDIDATE_NO_DOT if dot_is_a_point else _CANDIDATE
    edges = [0, *(i for span in uuids for i in span), len(text)]
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        yield from _spans(pattern, text, start, end)


def find_pans(text: str) -> list[tuple[int, int]]:
    """Spans of ``text`` that look like a card number (PAN).

    The rule (contract section 2; the guard and log redaction both use it):

    - A candidate is a run of decimal digits (any script) in which groups may be
      joined by 1-5 separators: Unicode whitespace (space, tab, newline, no-break
      spaces...), ``.``, ``/``, ``_``, ``-`` and their Unicode look-alikes (dashes, the
      full-width forms, zero-width spaces). ``4111 1111 1111 1111``, ``4111.1111...``,
      ``4111_1111...``, ``4111\\t1111...``, ``4111 - 1111...`` are all candidates.
    - Every stretch of whole consecutive groups holding 13-19 digits is tested with
      Luhn, so a card number glued to other digit groups is still found; an
      unseparated run longer than 19 digits is not a PAN.
    - A canonical UUID standing alone (event ids) is an identifier and is skipped.
    - In a string that is entirely money (``"1234.50"``) or an ISO date/time, the dot
      is a decimal point, not a separator.

    Each span covers the whole candidate run (all its groups), so masking it hides
    the card number along with any digits glued to it.
    """
    if len(text) < 13:
        return []
    return list(_pan_spans(text))


def contains_pan(text: str) -> bool:
    """True when ``text`` holds something that looks like a PAN (see :func:`find_pans`)."""
    if len(text) < 13:
        return False
    return next(_pan_spans(text), None) is not None


def mask_pans(text: str, mask: str = PAN_MASK) -> str:
    """``text`` with every PAN-like run (see :func:`find_pans`) replaced by ``mask``."""
    spans = find_pans(text)
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end in spans:
        out += [text[last:start], mask]
        last = end
    out.append(text[last:])
    return "".join(out)


def redact_key(key: bytes | None) -> bytes | None:
    """A Kafka record key safe to copy to a dead-letter topic or a log line.

    The key itself (same object) when it holds no PAN-like run (see
    :func:`find_pans`); otherwise the key with each such run replaced by ``[PAN]``.
    Bytes that are not UTF-8 are kept as they are.
    """
    if key is None or len(key) < 13:
        return key
    text = bytes(key).decode("utf-8", "surrogateescape")
    if not contains_pan(text):
        return key
    return mask_pans(text).encode("utf-8", "surrogateescape")


def field_path(path: tuple[str | int, ...]) -> str:
    """``("data", "options", 0, "apr")`` -> ``data.options[0].apr`` (keys made safe)."""
    out: list[str] = []
    for item in path:
        if isinstance(item, int):
            out.append(f"[{item}]")
        else:
            name = item if _SAFE_KEY.fullmatch(item) else "<field>"
            out.append(f".{name}" if out else name)
    return "".join(out) or "message"


class _Found(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _check_string(text: str, path: tuple[str | int, ...], what: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _Found(f"{field_path(path)}: {what} holds an unpaired UTF-16 surrogate") from None
    if contains_pan(text):
        raise _Found(f"{field_path(path)}: {what} {_PAN_REASON}")


def _walk(node: Any, depth: int, max_depth: int, path: tuple[str | int, ...]) -> None:
    if depth > max_depth:
        raise _Found(f"JSON nesting is deeper than {max_depth} levels")
    if isinstance(node, dict):
        items: Any = node.items()
    else:
        items = enumerate(node)
    for key, value in items:
        if type(key) is str:
            _check_string(key, path, "a field name")
        kind = type(value)
        if kind is str:
            if len(value) >= 13 or not value.isascii():
                _check_string(value, (*path, key), "the value")
        elif kind is dict or kind is list:
            _walk(value, depth + 1, max_depth, (*path, key))
        elif kind is int and not -(10**12) < value < 10**12 and contains_pan(str(value)):
            raise _Found(f"{field_path((*path, key))}: the number {_PAN_REASON}")


def _depth_ok(node: Any, depth: int, max_depth: int) -> bool:
    if depth > max_depth:
        return False
    children = node.values() if isinstance(node, dict) else node
    for child in children:
        kind = type(child)
        if (kind is dict or kind is list) and not _depth_ok(child, depth + 1, max_depth):
            return False
    return True


def _non_ascii_may_matter(raw: bytes) -> bool:
    """True when ``raw`` has a non-ASCII decimal digit or separator."""
    non_ascii = raw.translate(None, _ASCII).decode("utf-8", "replace")
    return any(
        char.isdecimal() or char.isspace() or char in _NON_ASCII_SEPARATORS for char in non_ascii
    )


def _escape_as_separator(match: re.Match[bytes]) -> bytes:
    # \t \n \r \f are whitespace, \/ is a slash: all separators. \" \\ \b are not.
    return b" " if match.group()[1:] in b"tnrf/" else b"x"


def _cannot_hold_pan(raw: bytes) -> bool:
    """Cheap sufficient test that no key, string or number in ``raw`` JSON holds a PAN.

    Every key and string appears literally in the JSON text unless written with an
    escape, and a PAN candidate is made of digits and separators only. A ``\\u``
    escape sends the message to the walk; the two-character escapes are replaced by
    what they mean for this test (``\\t``, ``\\n``, ``\\r``, ``\\f``, ``\\/``: a
    separator; ``\\"``, ``\\\\``, ``\\b``: not). So when the text has no ``\\u``
    escape, no non-ASCII decimal digit or separator, and no run of 13 ASCII digits once
    the ASCII separators (space ``. / _ -``) are deleted, no string can hold a PAN
    (nor an unpaired surrogate, which only a ``\\u`` escape can make). Deleting runs
    of any length, and separators outside strings, only makes the test stricter.
    ``bytes.translate`` does this in a fraction of a microsecond, where a regex over
    the text costs ~10.
    """
    if b"\\" in raw:
        if b"\\u" in raw:
            return False
        raw = _JSON_ESCAPE.sub(_escape_as_separator, raw)
    if not raw.isascii() and _non_ascii_may_matter(raw):
        return False
    return _THIRTEEN_DIGITS not in raw.translate(_DIGIT_MAP, _ASCII_SEPARATOR_BYTES)


def inspect_message(
    message: dict[str, Any] | list[Any], *, max_depth: int, raw: bytes | None = None
) -> str | None:
    """The reason ``message`` (parsed JSON) must be rejected, or ``None``.

    ``raw`` (the UTF-8 JSON ``message`` was parsed from) enables the fast path: with
    at most ``max_depth`` brackets the message cannot be too deep, and
    :func:`_cannot_hold_pan` rules out PANs and surrogates. Only messages that fail a
    pre-check are walked string by string.
    """
    if raw is not None:
        if raw.count(b"{") + raw.count(b"[") <= max_depth:
            if _cannot_hold_pan(raw):
                return None
        elif not _depth_ok(message, 1, max_depth):
            return f"JSON nesting is deeper than {max_depth} levels"
    try:
        _walk(message, 1, max_depth, ())
    except _Found as found:
        return found.reason
    return None
