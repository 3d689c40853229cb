"""The fault suite: the same seeded story twice, once calm and once under faults.

Both runs play the simulator's story (same seed, so the same input events with
the same ids) through the whole pipeline, each in its own namespace and database.
During the chaos run a seeded schedule injects faults into the service processes:

- ``sigkill``: SIGKILL a service mid-batch, restart it;
- ``after_db_commit``: restart a service that crashes (SIGKILL itself) right after
  its database commit, before publishing and before the Kafka commit;
- ``after_publish``: the same, between publishing the outbox and marking it sent;
- ``pause``: SIGSTOP a service past its session timeout (its partitions move to
  nobody or get re-assigned when it comes back), then SIGCONT: its late
  transaction must not double-apply.

Afterwards the invariant checker runs over the chaos namespace, and the two runs'
outputs are compared: every output topic must hold the same events (same ids,
same bytes) — the faults changed nothing. Replaying all inputs into empty
databases (the calm run) reproduced identical state.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas import TOPICS
from shared.settings import Settings
from shared.tools.invariants import check, read_raw
from shared.tools.pipeline import Pipeline
from shared.tools.simulator import DEMO_POLICY_YAML, SimConfig, Simulator

FAULTS = ("sigkill", "after_db_commit", "after_publish", "pause")
OUTPUT_TOPICS = [
    t for t, spec in TOPICS.items() if spec.producer not in ("card-system", "customer-channel")
]


@dataclass
class ChaosResult:
    faults: list[tuple[float, str, str]] = field(default_factory=list)
    events_in: int = 0
    events_out: int = 0
    violations: list[str] = field(default_factory=list)
    checks: int = 0
    differences: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "faults_injected": len(self.faults),
            "faults": [f"{t:.1f}s {kind} {svc}" for t, kind, svc in self.faults],
            "input_events": self.events_in,
            "output_events": self.events_out,
            "invariant_checks": self.checks,
            "violations": self.violations,
            "differences_from_calm_run": self.differences,
        }


class Chaos:
    """Injects seeded faults into a running pipeline until stopped."""

    def __init__(
        self,
        pipeline: Pipeline,
        seed: int,
        every_s: float,
        workdir: Path,
        faults: tuple[str, ...] = FAULTS,
    ) -> None:
        self.pipeline = pipeline
        self.rng = random.Random(seed)
        self.every_s = every_s
        self.workdir = workdir
        self.faults = faults
        self.log: list[tuple[float, str, str]] = []
        self.error: Exception | None = None
        self.stop_event = threading.Event()
        self.lock = threading.Lock()  # the simulator checks liveness; restart atomically
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos")
        self._started = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(timeout=120)
        if self.error is not None:
            raise RuntimeError(f"fault injection failed: {self.error!r}") from self.error

    def _run(self) -> None:
        try:
            self._inject()
        except Exception as exc:  # surfaced by stop(): a broken fault schedule is a failure
            self.error = exc

    def _inject(self) -> None:
        n = 0
        pause_s = self.pipeline.settings.session_timeout_ms / 1000 + 2
        while not self.stop_event.wait(self.every_s):
            n += 1
            service = self.rng.choice(self.pipeline.services)
            kind = self.rng.choice(self.faults)
            self.log.append((time.monotonic() - self._started, kind, service))
            with self.lock:
                if kind == "sigkill":
                    self.pipeline.kill(service, signal.SIGKILL)
                    self.pipeline.start(service)
                elif kind in ("after_db_commit", "after_publish"):
                    self.pipeline.kill(service, signal.SIGKILL)
                    marker = self.workdir / f"fault-{n}"
                    self.pipeline.start(
                        service,
                        {
                            "INSTALLMENTS_FAULT_POINT": kind,
                            "INSTALLMENTS_FAULT_MARKER": str(marker),
                        },
                    )
            if kind in ("after_db_commit", "after_publish"):
                # wait for the fault to fire (the process kills itself), then restart clean
                proc = self.pipeline.procs[service]
                deadline = time.monotonic() + 30
                while proc.poll() is None and time.monotonic() < deadline:
                    if self.stop_event.wait(0.1):
                        break
                with self.lock:
                    if self.pipeline.procs[service] is proc:  # not restarted meanwhile
                        self.pipeline.kill(service, signal.SIGKILL)
                        self.pipeline.start(service)
            elif kind == "pause":
                self.pipeline.kill(service, signal.SIGSTOP)
                self.stop_event.wait(pause_s)
                self.pipeline.kill(service, signal.SIGCONT)

    def wait_idle(self, timeout_s: float) -> None:
        """The simulator's idle wait; while faults go on, retried until quiet."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with self.lock:
                    self.pipeline.restart_dead()  # the supervisor's part
                from shared.tools.simulator import wait_groups_idle

                wait_groups_idle(
                    self.pipeline.settings,
                    self.pipeline.groups,
                    max(1.0, deadline - time.monotonic()),
                )
                return
            except (RuntimeError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def run_story(
    settings: Settings,
    services: list[str],
    config: SimConfig,
    workdir: Path,
    chaos_every_s: float | None,
    seed: int,
) -> tuple[Pipeline, Any, Chaos | None]:
    from shared.topics import ensure_topics

    ensure_topics(settings)
    pipeline = Pipeline(
        settings, services, workdir / "logs", extra_env={"INSTALLMENTS_LOOP_STALL_TIMEOUT_S": "120"}
    )
    pipeline.start()
    chaos = None
    try:
        if chaos_every_s:
            chaos = Chaos(pipeline, seed, chaos_every_s, workdir)
            chaos.start()
            waiter = chaos.wait_idle
        else:
            waiter = pipeline.wait_idle
        stats = Simulator(settings, config, waiter).run()
        if chaos:
            chaos.stop()
        waiter(300)
        return pipeline, stats, chaos
    finally:
        if chaos:
            chaos.stop()
        pipeline.stop()


def compare_outputs(calm: Settings, chaotic: Settings) -> tuple[int, list[str]]:
    """Same events (ids and bytes) on every output topic of the two namespaces."""
    differences: list[str] = []
    total = 0
    for topic in OUTPUT_TOPICS:
        a = {r.value for r in read_raw(calm, topic)}
        b = {r.value for r in read_raw(chaotic, topic)}
        total += len(b)
        if a != b:
            differences.append(
                f"{topic}: {len(a - b)} only in the calm run, {len(b - a)} only in the chaos run"
            )
    return total, differences


def run_chaos(
    base: Settings,
    accounts: int,
    days: int,
    seed: int,
    every_s: float,
    workdir: Path,
    database_url_for: Any,
) -> ChaosResult:
    """Calm run, chaos run, invariants, comparison. ``database_url_for(name)`` gives
    a fresh database URL for each run."""
    from shared.cli import available_services

    services = available_services()
    policy = workdir / "policy.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    policy.write_text(DEMO_POLICY_YAML)
    config = SimConfig(accounts=accounts, days=days, seed=seed, idle_timeout_s=180)
    result = ChaosResult()
    runs = {}
    for name, every in (("calm", None), ("chaos", every_s)):
        settings = base.model_copy(
            update={
                "topic_prefix": f"{base.topic_prefix}{name}.",
                "database_url": database_url_for(name),
                "policy_file": str(policy),
            }
        )
        _pipeline, stats, chaos = run_story(settings, services, config, workdir / name, every, seed)
        runs[name] = settings
        if chaos:
            result.faults = chaos.log
            result.events_in = stats.events
    report = check(runs["chaos"])
    result.violations = report.violations
    result.checks = sum(report.checked.values())
    result.events_out, result.differences = compare_outputs(runs["calm"], runs["chaos"])
    return result
