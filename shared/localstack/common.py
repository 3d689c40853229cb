"""What every part of the local stack shares: settings from the environment, the state
folder, log lines, cross-process locks, subprocesses, log tails and ports."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).with_name("assets")  # pom.xml (the broker's jars), log4j2.xml


def env(name: str, default: str) -> str:
    """``INSTALLMENTS_STACK_<name>``, or ``default`` when unset or empty."""
    return os.environ.get(f"INSTALLMENTS_STACK_{name}") or default


def stack_dir() -> Path:
    """State root: ``$INSTALLMENTS_STACK_DIR``, else ``<repo>/.stack`` (cwd if no repo)."""
    repo = Path(__file__).resolve().parents[2]  # <repo>/shared/localstack/common.py
    default = (repo if (repo / "pyproject.toml").exists() else Path.cwd()) / ".stack"
    return Path(env("DIR", str(default))).resolve()


def log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise start/stop across processes (test workers, CLI) with an flock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def run(cmd: list[str], what: str, **kw: Any) -> str:
    """Run a command to completion; raise with the tail of its output when it fails."""
    res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    if res.returncode != 0:
        output = (res.stderr or res.stdout)[-2000:]
        raise RuntimeError(f"{what} failed (exit {res.returncode}): {output}")
    return res.stdout


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file (for error messages)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def port_open(port: int) -> bool:
    """True if something accepts connections on ``127.0.0.1:<port>``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
