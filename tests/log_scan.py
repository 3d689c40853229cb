"""The log scan of the whole test run: no card number, e-mail or phone number.

``find_personal_data`` is applied by ``tests/conftest.py`` to every test's captured
output (stdout, stderr, log records: the services running in threads log there) and,
at the end of the session, to every ``*.log`` file the run wrote (service processes
started by the pipeline, the demo and the fault suite log to files). Any finding fails
the session. It is deliberately independent of ``shared.runtime.logging``'s redaction: it
checks that redaction's result.
"""

from __future__ import annotations

import re
from pathlib import Path

from schemas.guard import find_pans

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+\d[\d ().-]{7,}\d|\(\d{3}\)\s?\d{3}[ -]\d{4}")
DIGITS = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
KAFKA_SEGMENT = re.compile(r"\d{20}\.log")  # a broker's data file, not a log


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_personal_data(text: str, where: str) -> list[str]:
    """Findings as 'where: kind (masked sample)'; empty when the text is clean."""
    found = []
    # event ids (UUIDs) can hold Luhn-valid digit groups: never card numbers
    plain = UUID.sub("<uuid>", text)
    simple = set()
    for match in DIGITS.finditer(plain):
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and _luhn(digits):
            simple.add(match.start())
            found.append(f"{where}: card number ({digits[:2]}…{digits[-2:]})")
    # and the services' own wider rule (any separators: 4111_1111..., 4111.1111...)
    for start, end in find_pans(plain):
        if start not in simple:
            digits = re.sub(r"\D", "", plain[start:end])
            found.append(f"{where}: card number, separated ({digits[:2]}…{digits[-2:]})")
    for match in EMAIL.finditer(text):
        found.append(f"{where}: e-mail address (…@{match.group(0).split('@')[1]})")
    for match in PHONE.finditer(text):
        found.append(f"{where}: phone number ({match.group(0)[:3]}…)")
    return found


def scan_log_files(root: Path) -> tuple[int, list[str]]:
    """(files scanned, findings) for every ``*.log`` under ``root``."""
    files = sorted(
        p
        for p in (root.rglob("*.log") if root.exists() else [])
        if not KAFKA_SEGMENT.fullmatch(p.name)
    )
    found: list[str] = []
    for path in files:
        found += find_personal_data(path.read_text(errors="replace"), str(path))
    return len(files), found
