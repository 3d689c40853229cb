"""SIGTERM ends an ``installments`` command with its ``finally`` blocks run, so the
processes it started (a pipeline's services) are stopped, not left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

SCRIPT = """
import subprocess, sys, time
from shared.cli import exit_on_sigterm
exit_on_sigterm()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
try:
    time.sleep(120)
finally:
    child.terminate()
    child.wait()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_runs_finally_and_stops_the_started_process() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert _alive(child_pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 10
        while _alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child_pid)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_without_it_the_started_process_is_left_behind() -> None:
    """The failure this guards against: CPython's default SIGTERM skips ``finally``."""
    script = SCRIPT.replace("exit_on_sigterm()", "pass")
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == -signal.SIGTERM
        time.sleep(0.2)
        assert _alive(child_pid)
    finally:
        if _alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)
