"""The whole pipeline as OS processes in one namespace: start, stop, kill, wait for idle.

Used by the demo, the chaos suite and the tests: each service runs as
``python -m services.<name>`` with the namespace's settings in its environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from shared import registry
from shared.runtime.settings import Settings

REPO = Path(__file__).resolve().parents[2]


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        services: list[str],
        logdir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:

        self.settings = settings
        self.services = services
        self.logdir = logdir
        logdir.mkdir(parents=True, exist_ok=True)
        self.groups = {
            g: t
            for g, t in registry.groups(settings).items()
            if g.removeprefix(settings.topic_prefix).removeprefix("installments-") in services
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSTALLMENTS_")}
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
                "DATABASE_URL": settings.database_url,
                "INSTALLMENTS_TOPIC_PREFIX": settings.topic_prefix,
                "INSTALLMENTS_TOPIC_PARTITIONS": str(settings.topic_partitions),
                "INSTALLMENTS_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
                "INSTALLMENTS_LOG_FORMAT": "json",
                "INSTALLMENTS_LOG_LEVEL": "INFO",
                "PYTHONPATH": str(REPO),
            }
        )
        if settings.policy_file:
            env["INSTALLMENTS_POLICY_FILE"] = settings.policy_file
        env.update(extra_env or {})
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # extra members of a service's consumer group (rebalance storms), with their log
        # files; not supervised
        self.extras: dict[subprocess.Popen[bytes], Path] = {}
        self._extra_count = 0

    def _spawn(
        self, svc: str, logname: str, extra_env: dict[str, str] | None
    ) -> subprocess.Popen[bytes]:
        with open(self.logdir / logname, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", f"services.{svc}"],
                env={**self.env, **(extra_env or {})},
                cwd=REPO,
                stdout=log,
                stderr=log,
            )

    def start(self, name: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        for svc in [name] if name else self.services:
            self.procs[svc] = self._spawn(svc, f"{svc}.log", extra_env)

    def start_extra(self, name: str) -> subprocess.Popen[bytes]:
        """Start one more process of ``name`` (another member of its consumer group).

        It is tracked (``stop()`` ends it) but not supervised: ``check_alive`` and
        ``restart_dead`` look at the main process of each service only."""
        self._extra_count += 1
        logname = f"{name}.extra-{self._extra_count}.log"
        proc = self._spawn(name, logname, None)
        self.extras[proc] = self.logdir / logname
        return proc

    def stop_extra(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
        """Stop an extra process with ``sig`` (SIGKILL if SIGTERM takes over 30 s)."""
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        self.extras.pop(proc, None)
        return proc.returncode

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"service {name} exited with {proc.returncode};"
                    f" see {self.logdir / (name + '.log')}"
                )

    def restart_dead(self) -> list[str]:
        """What a supervisor does: start again any service process that has exited."""
        dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
        for name in dead:
            self.start(name)
        return dead

    def wait_idle(self, timeout_s: float) -> None:
        from shared.tools.simulator import wait_groups_idle

        self.check_alive()
        wait_groups_idle(self.settings, self.groups, timeout_s)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                proc.wait(timeout=60)

    def stop(self) -> None:
        everyone = [*self.procs.values(), *self.extras]
        for proc in everyone:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for proc in everyone:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
