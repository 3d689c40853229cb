"""Agents who may sign in: a users file (YAML or JSON) with scrypt password hashes.

The file (``INSTALLMENTS_CONSOLE_USERS_FILE``)::

    agents:
      - username: alice
        agent_ref: agent-alice        # what contact.recorded carries (opaque, no e-mail)
        password: scrypt$32768$8$1$<salt, base64>$<hash, base64>

``installments collections add-agent`` writes it (mode 0600). Every agent has a salt
of their own (16 random bytes); the parameters are stored with each hash so they can
be raised later without invalidating older hashes. The file is re-read when it
changes: removing an agent signs them out at their next request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from schemas.payloads import AgentRef

#: scrypt cost: N=2^15, r=8, p=1 (32 MiB, ~0.1 s): OWASP's minimum for scrypt is 2^17
#: at p=1 with r=8 *or* 2^15 with more memory; raise N with ``--cost`` if you can.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_MAXMEM = 256 * 1024 * 1024
_AGENT_REF = TypeAdapter(AgentRef)
USERNAME_MAX = 64


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$salt$hash`` with a fresh 16-byte salt."""
    if not password:
        raise ValueError("the password must not be empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


#: Compared against when the username is unknown, so that a wrong username costs as
#: long as a wrong password (no user enumeration by timing).
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Agent:
    username: str
    agent_ref: str
    password: str  # the stored hash


def check_username(username: str) -> str:
    username = username.strip()
    if not username or len(username) > USERNAME_MAX or not username.isprintable():
        raise ValueError(f"a username is 1-{USERNAME_MAX} printable characters")
    if any(c.isspace() for c in username):
        raise ValueError("a username has no spaces")
    return username


def check_agent_ref(agent_ref: str) -> str:
    try:
        return str(_AGENT_REF.validate_python(agent_ref))
    except ValidationError as exc:
        raise ValueError(f"agent_ref: {exc.errors()[0]['msg']}") from None


def load_agents(path: str | Path) -> dict[str, Agent]:
    """username -> Agent. A missing file is no agent (nobody can sign in)."""
    path = Path(path)
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    raw: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    entries = (raw or {}).get("agents") or []
    agents = {}
    for entry in entries:
        agent = Agent(
            username=check_username(str(entry["username"])),
            agent_ref=check_agent_ref(str(entry.get("agent_ref") or entry["username"])),
            password=str(entry["password"]),
        )
        agents[agent.username] = agent
    return agents


def save_agents(path: str | Path, agents: dict[str, Agent]) -> None:
    """Write the users file atomically, readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "agents": [
            {"username": a.username, "agent_ref": a.agent_ref, "password": a.password}
            for a in sorted(agents.values(), key=lambda a: a.username)
        ]
    }
    text = (
        json.dumps(doc, indent=2) + "\n"
        if path.suffix == ".json"
        else yaml.safe_dump(doc, sort_keys=False)
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_agent(
    path: str | Path, username: str, password: str, agent_ref: str | None = None, **cost: int
) -> Agent:
    """Add (or replace the password of) an agent in the users file."""
    username = check_username(username)
    agent = Agent(
        username=username,
        agent_ref=check_agent_ref(agent_ref or username),
        password=hash_password(password, **cost),
    )
    agents = load_agents(path)
    agents[username] = agent
    save_agents(path, agents)
    return agent


class AgentDirectory:
    """The agents of a users file, re-read when the file changes (mtime or size)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._stamp: tuple[float, int] | None = None
        self._agents: dict[str, Agent] = {}
        self._lock = threading.Lock()

    def agents(self) -> dict[str, Agent]:
        if self.path is None:
            return {}
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime, stat.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._agents = load_agents(self.path) if stamp else {}
                self._stamp = stamp
            return self._agents

    def get(self, username: str) -> Agent | None:
        return self.agents().get(username)

    def authenticate(self, username: str, password: str) -> Agent | None:
        agent = self.get(username.strip())
        ok = verify_password(password, agent.password if agent else _DUMMY_HASH)
        return agent if ok and agent is not None else None
