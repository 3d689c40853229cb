"""The README's commands work as written (#15), on the dev stack.

Convention (documented at the end of README.md, "README commands are tested"):

- a fenced block right after a line ``<!-- tested: ... -->`` is run line by line, in
  order: ``export NAME=value`` lines whose value is a placeholder address
  (``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``) get this test's stack values instead;
  every other line runs as written (``# comments`` dropped) through ``bash -c``; a
  service (``installments run ...``) is started and stopped with SIGTERM;
- :data:`INLINE` lists inline commands (backticked in the README, each must be there
  verbatim): each is run with its optional ``[...]`` parts included and its placeholders
  (``T``, ``X``, ``NAME``) replaced as the table says;
- the YAML policy example under "Configuration" is validated by each service's policy model.

Every command runs in this test's namespace (its own topic prefix and database, from the
``settings`` fixture), exits 0 and prints what the README says it shows. Changing a
command in the README changes what runs here; a command this file lists that is no longer
in the README fails the test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.collections.policy import CollectionsPolicy
from services.offers.policy import OffersPolicy
from services.points.policy import PointsPolicy
from services.purchases.policy import PurchasesPolicy
from services.reminders.policy import RemindersPolicy
from shared.runtime.policy import load_section
from tests.support import REPO, settings_env

pytestmark = pytest.mark.integration

README = Path(REPO) / "README.md"
MARKER = "<!-- tested:"
#: Exports whose README value is a placeholder address: the test's stack value instead.
PLACEHOLDER_EXPORTS = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
#: Commands that run until SIGTERM.
SERVICE_PREFIX = "installments run "
HEALTH = "curl http://127.0.0.1:$INSTALLMENTS_HTTP_PORT/healthz"


def _json(check: Callable[[Any], bool]) -> Callable[[str], bool]:
    return lambda out: check(json.loads(out))


@dataclass(frozen=True)
class Inline:
    """An inline README command, what stands for its placeholders, and what its output
    must show (every substring, or a predicate over the output)."""

    command: str
    expect: tuple[str, ...] | Callable[[str], bool]
    placeholders: tuple[tuple[str, str], ...] = ()


#: Inline commands of the README that run here, in this order (after the tested blocks
#: have created the topics and the schemas). Not run: those that never return
#: (``--watch``, ``lag exporter``, ``collections web``), the demo, simulator, fault
#: suite and benchmarks (minutes; ``scripts/demo.sh`` and the fault tests cover them),
#: ``stack down`` and ``cluster`` (shared or slow), and ``dlq redrive`` without
#: ``--dry-run``.
INLINE: tuple[Inline, ...] = (
    Inline("installments --help", ("topics", "migrate", "lag", "dlq", "replay", "check")),
    Inline("installments stack up", ("KAFKA_BOOTSTRAP_SERVERS=", "DATABASE_URL=")),
    Inline("installments lag", ("installments-purchases", "installments-offers")),
    Inline(
        "installments dlq list [--topic card.purchases.v1] [--json]",
        _json(lambda letters: letters == []),
    ),
    Inline(
        "installments dlq redrive [--topic T] [--reason-contains X] --dry-run",
        ("would re-drive 0 dead letter(s)",),
        (("T", "card.purchases.v1"), ("X", "currency")),
    ),
    Inline("installments check", ("violations",)),
    Inline(
        "installments report [--json]",
        _json(lambda report: report["purchases"]["recorded"] == 0 and "offers" in report),
    ),
    Inline("installments collections cases", ("Open collections cases (0)",)),
    Inline("installments collections reserve", ("Risk reserve",)),
    Inline(
        "installments retention run [--service NAME] [--dry-run]",
        ("retention (dry run)",),
        (("NAME", "offers"),),
    ),
    Inline("installments replay offers --to-time 2026-11-28T09:00:00Z", ("moved 0 partition",)),
)


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _inline_spans(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


def _tested_blocks(text: str) -> list[list[str]]:
    """The fenced blocks right after a ``<!-- tested: ... -->`` line."""
    blocks: list[list[str]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(MARKER) and i + 1 < len(lines) and lines[i + 1].startswith("```"):
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            blocks.append(lines[i + 2 : end])
    return blocks


def _expand(command: str, placeholders: tuple[tuple[str, str], ...]) -> str:
    """Optional ``[...]`` parts included, placeholders (whole words) replaced."""
    command = re.sub(r"\[([^\]]+)\]", r"\1", command)
    for name, value in placeholders:
        command = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", value, command)
    return command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = settings_env(settings)
    # the venv's `installments` first, as after `source scripts/setup.sh`
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["INSTALLMENTS_LOG_FORMAT"] = "console"
    env["COLUMNS"] = "200"  # rich tables at a readable width
    return env


def _run(line: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run one README line; it must exit 0. (The CLI prints tables and JSON on stdout,
    what it did on stderr.)"""
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-c", line],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(f"[readme] {line!r}: exit {done.returncode} in {time.monotonic() - started:.1f}s")
    assert done.returncode == 0, f"{line!r} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the service exited ({proc.returncode})"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"no 200 from /readyz on port {port} within {timeout}s")


def test_the_inline_commands_are_in_the_readme_verbatim() -> None:
    spans = _inline_spans(_readme())
    missing = [i.command for i in INLINE if i.command not in spans]
    assert HEALTH in spans and "/readyz" in spans and "/metrics" in spans
    assert not missing, f"README no longer shows {missing}: update INLINE to what it says"


def test_there_is_a_tested_block() -> None:
    blocks = _tested_blocks(_readme())
    assert blocks, f"no fenced block after a {MARKER!r} line in README.md"
    assert any(line.startswith(SERVICE_PREFIX) for block in blocks for line in block)


def test_the_policy_example_is_a_valid_policy(tmp_path: Path) -> None:
    text = _readme()
    section = text[text.index("## Configuration") :]
    example = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert example, "no YAML policy example under Configuration"
    path = tmp_path / "policy.yaml"
    path.write_text(example.group(1), encoding="utf-8")
    models = {
        "purchases": PurchasesPolicy,
        "offers": OffersPolicy,
        "points": PointsPolicy,
        "reminders": RemindersPolicy,
        "collections": CollectionsPolicy,
    }
    document = yaml.safe_load(example.group(1))
    assert set(document) <= set(models), set(document) - set(models)
    for name in document:
        load_section(models[name], path, name)  # raises on an unknown key or a bad value
    offers = load_section(OffersPolicy, path, "offers")
    assert [p.id for p in offers.promotions] == ["promo-sky-travel-0pct"]


def test_readme_commands_work_as_written(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = _readme()
    env = _env(settings)
    port = _free_port()
    env["INSTALLMENTS_HTTP_PORT"] = str(port)  # the service's health server, for the curl
    services: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    try:
        for block in _tested_blocks(text):
            for raw in block:
                line = raw.split(" #", 1)[0].strip()
                if not line or line.startswith("#"):
                    continue
                exported = re.fullmatch(r"export ([A-Z_]+)=(.*)", line)
                if exported:
                    name = exported.group(1)
                    assert name in PLACEHOLDER_EXPORTS, (
                        f"unexpected export in a tested block: {line}"
                    )
                    continue  # env already holds the stack's value
                if line.startswith(SERVICE_PREFIX):
                    log = open(tmp_path / f"service-{len(services)}.log", "wb")
                    proc = subprocess.Popen(
                        ["bash", "-c", f"exec {line}"], env=env, cwd=REPO, stdout=log, stderr=log
                    )
                    services.append(proc)
                    _wait_ready(port, proc)
                    print(f"[readme] {line!r}: ready")
                    continue
                said = _run(line, env).stderr
                if line == "installments topics":
                    assert "topic(s)" in said
                if line == "installments migrate":
                    assert "purchases:" in said and "offers:" in said
        assert services, "the tested block starts no service: nothing for the health check"

        # the health check, as written, against the service the block started
        assert json.loads(_run(HEALTH, env).stdout) == {"status": "alive"}
        ready = json.loads(_run(HEALTH.replace("/healthz", "/readyz"), env).stdout)
        assert ready["assigned_partitions"] > 0
        metrics = _run(HEALTH.replace("/healthz", "/metrics"), env).stdout
        assert "installments_ready" in metrics
        for proc in services:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        services.clear()

        for inline in INLINE:
            done = _run(_expand(inline.command, inline.placeholders), env)
            if callable(inline.expect):  # over stdout (JSON)
                assert inline.expect(done.stdout), f"{inline.command}: {done.stdout[:2000]}"
            else:
                out = done.stdout + done.stderr
                missing = [s for s in inline.expect if s not in out]
                assert not missing, f"{inline.command}: no {missing} in\n{out[:2000]}"
    finally:
        for proc in services:
            proc.kill()
            proc.wait(timeout=30)
    print(f"[readme] every command in {time.monotonic() - started:.1f}s")
