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
  transaction must not double-apply;
- ``storm`` (rebalance storm): one or two extra processes of a service join its
  consumer group, work a few seconds, and are stopped (SIGTERM and SIGKILL in
  turn: a clean leave, or a member that vanishes until its session times out);
- ``pg_drop``: terminate every connection to the run's database
  (``pg_terminate_backend``) mid-work;
- ``pg_restart``: restart PostgreSQL (``pg_ctl restart -m fast``), only when the
  database is on the project's local stack (skipped with a note otherwise).

The kinds come in a seeded order: each round is a shuffled deck of every kind, and
the schedule goes on after the story's last event until the first round is through,
so a short run still gets each of them. A supervisor thread plays systemd or Kubernetes:
a service process that exits (one that chose to crash on a lost database, or a
fault point firing) is started again within half a second. While the chaos run goes on,
an :class:`~shared.ops.offset_watch.OffsetWatch` samples the stored and the Kafka
committed offsets: none may ever move backwards.

Afterwards the invariant checker runs over the chaos namespace, and the two runs'
outputs are compared: every output topic must hold the same events (same ids,
same bytes) — the faults changed nothing. Replaying all inputs into empty
databases (the calm run) reproduced identical state.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from schemas import TOPICS
from shared.localstack.stack import ensure_stack
from shared.ops.invariants import check
from shared.ops.offset_watch import OffsetWatch
from shared.ops.topic_reader import read_raw
from shared.registry import SERVICE_NAMES
from shared.runtime.db import create_database, drop_databases
from shared.runtime.logging import get_logger
from shared.runtime.settings import Settings
from shared.runtime.topics import delete_namespace
from shared.tools.pipeline import Pipeline
from shared.tools.simulator import DEMO_POLICY_YAML, SimConfig, Simulator

FAULTS = (
    "sigkill",
    "after_db_commit",
    "after_publish",
    "pause",
    "storm",
    "pg_drop",
    "pg_restart",
)
PG_FAULTS = ("pg_drop", "pg_restart")
CRASH_POINTS = ("after_db_commit", "after_publish")
log = get_logger()
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
    notes: list[str] = field(default_factory=list)
    restarts: list[tuple[float, str, int]] = field(default_factory=list)
    storms: list[tuple[str, int, int]] = field(default_factory=list)
    offset_samples: int = 0
    offsets_watched: dict[str, int] = field(default_factory=dict)  # partitions, per source
    seconds: dict[str, float] = field(default_factory=dict)  # per run (calm, chaos)

    @property
    def kinds(self) -> Counter[str]:
        """Faults injected, by kind."""
        return Counter(kind for _, kind, _ in self.faults)

    def as_dict(self) -> dict[str, Any]:
        return {
            "faults_injected": len(self.faults),
            "faults_by_kind": dict(sorted(self.kinds.items())),
            "faults": [f"{t:.1f}s {kind} {target}" for t, kind, target in self.faults],
            "supervisor_restarts": [
                f"{t:.1f}s {svc} (exit {code})" for t, svc, code in self.restarts
            ],
            "offset_samples": self.offset_samples,
            "offsets_watched": self.offsets_watched,
            "notes": self.notes,
            "input_events": self.events_in,
            "output_events": self.events_out,
            "invariant_checks": self.checks,
            "violations": self.violations,
            "differences_from_calm_run": self.differences,
            "seconds": {name: round(t, 1) for name, t in self.seconds.items()},
        }


class Chaos:
    """Injects seeded faults into a running pipeline until stopped; supervises it."""

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
        self.notes: list[str] = []
        self.faults = self._possible(faults)
        self.log: list[tuple[float, str, str]] = []
        self.restarts: list[tuple[float, str, int]] = []  # the supervisor's, with exit codes
        self.error: Exception | None = None
        self.stop_event = threading.Event()
        self.lock = threading.Lock()  # the simulator checks liveness; restart atomically
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos")
        self._supervisor = threading.Thread(target=self._supervise, daemon=True, name="supervisor")
        self._started = time.monotonic()
        self._deck: list[str] = []
        self._storm_stops = 0
        self.storms: list[tuple[str, int, int]] = []  # (service, extras, extras assigned)

    def _possible(self, faults: tuple[str, ...]) -> tuple[str, ...]:
        """The kinds that apply here; the others are left out with a note."""
        from shared.localstack.postgres import is_local_postgres

        url = self.pipeline.settings.database_url
        kept = list(faults)
        if not url.startswith("postgresql"):
            for kind in PG_FAULTS:
                if kind in kept:
                    kept.remove(kind)
                    self.notes.append(f"{kind} skipped: the database is not PostgreSQL")
        elif "pg_restart" in kept and not is_local_postgres(url):
            kept.remove("pg_restart")
            self.notes.append(
                "pg_restart skipped: DATABASE_URL is not the project's local PostgreSQL"
                " (only that one is ever restarted)"
            )
        for note in self.notes:
            log.warning("chaos: fault kind skipped", note=note)
        if not kept:
            raise ValueError(f"no applicable fault among {faults}")
        return tuple(kept)

    def start(self) -> None:
        self._thread.start()
        self._supervisor.start()

    def finish_round(self, timeout_s: float) -> None:
        """Go on injecting until every applicable kind has been injected at least once
        (a quick story can end before the first round of the deck is through), then
        stop. The late faults hit a pipeline still draining the story's last events."""
        deadline = time.monotonic() + timeout_s
        while not set(self.faults) <= {kind for _, kind, _ in self.log}:
            if self.error is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(timeout=120)
        self._supervisor.join(timeout=30)
        if self.error is not None:
            raise RuntimeError(f"fault injection failed: {self.error!r}") from self.error

    def _now(self) -> float:
        return time.monotonic() - self._started

    def _run(self) -> None:
        try:
            self._inject()
        except Exception as exc:  # surfaced by stop(): a broken fault schedule is a failure
            self.error = exc

    def _supervise(self) -> None:
        """What a supervisor (systemd, Kubernetes) does: start again what has exited."""
        while not self.stop_event.wait(0.5):
            with self.lock:
                codes = {
                    name: proc.returncode
                    for name, proc in self.pipeline.procs.items()
                    if proc.poll() is not None
                }
                self.pipeline.restart_dead()
            for name, code in codes.items():
                self.restarts.append((self._now(), name, code))

    def _next_kind(self) -> str:
        if not self._deck:
            self._deck = list(self.faults)
            self.rng.shuffle(self._deck)
            if not self.log:
                # the first round deals the crash points first: they fire only when work
                # reaches the service, so they belong early in the story, while it runs
                self._deck.sort(key=lambda kind: kind in CRASH_POINTS)  # stable: seeded
        return self._deck.pop()

    def _inject(self) -> None:
        n = 0
        while not self.stop_event.wait(self.every_s):
            n += 1
            service = self.rng.choice(self.pipeline.services)
            kind = self._next_kind()
            if kind in PG_FAULTS:
                self.log.append((self._now(), kind, self._pg_fault(kind)))
                continue
            if kind == "storm":
                at = self._now()
                self.log.append((at, kind, self._storm(service)))
                continue
            self.log.append((self._now(), kind, service))
            with self.lock:
                if kind == "sigkill":
                    self.pipeline.kill(service, signal.SIGKILL)
                    self.pipeline.start(service)
                elif kind in CRASH_POINTS:
                    self.pipeline.kill(service, signal.SIGKILL)
                    marker = self.workdir / f"fault-{n}"
                    self.pipeline.start(
                        service,
                        {
                            "INSTALLMENTS_FAULT_POINT": kind,
                            "INSTALLMENTS_FAULT_MARKER": str(marker),
                        },
                    )
            if kind in CRASH_POINTS:
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
                fired = marker.exists()  # written by the process as it crashes itself
                at, _, _ = self.log[-1]
                self.log[-1] = (at, kind, f"{service} ({'fired' if fired else 'no work came'})")
            elif kind == "pause":
                pause_s = self.pipeline.settings.session_timeout_ms / 1000 + 2
                self.pipeline.kill(service, signal.SIGSTOP)
                self.stop_event.wait(pause_s)
                self.pipeline.kill(service, signal.SIGCONT)

    def _storm(self, service: str) -> str:
        """One or two more members of the service's group for a few seconds: rebalances
        on join and on leave; stopped by SIGTERM (clean leave) or SIGKILL (the group
        notices only after the session timeout), in turn. Returns what happened."""
        count = self.rng.choice((1, 2))
        hold_s = self.rng.uniform(3.0, 6.0)
        extras = [self.pipeline.start_extra(service) for _ in range(count)]
        logs = [self.pipeline.extras[proc] for proc in extras]
        # a service process takes seconds to start on a busy machine: the hold counts
        # from its joining the group, or the storm would only kill half-started processes
        deadline = time.monotonic() + 30
        while not all(_logged(log_file, "service started") for log_file in logs):
            if self.stop_event.wait(0.2) or time.monotonic() > deadline:
                break
        # ... and from the rebalance that hands them partitions (the group waits for its
        # busy members to rejoin: seconds on a loaded machine), so the storm really moves
        # partitions rather than killing members still waiting to join
        deadline = time.monotonic() + 30
        while not any(_logged(log_file, "partitions assigned") for log_file in logs):
            if self.stop_event.wait(0.2) or time.monotonic() > deadline:
                break
        self.stop_event.wait(hold_s)
        exits = []
        for proc in extras:
            sig = signal.SIGTERM if self._storm_stops % 2 == 0 else signal.SIGKILL
            self._storm_stops += 1
            exits.append(f"{signal.Signals(sig).name} -> {self.pipeline.stop_extra(proc, sig)}")
        assigned = sum(_logged(log_file, "partitions assigned") for log_file in logs)
        self.storms.append((service, count, assigned))
        return f"{service} +{count} ({assigned} got partitions; {', '.join(exits)})"

    def _pg_fault(self, kind: str) -> str:
        """Cut the services' database connections; returns what was done, for the log."""
        url = self.pipeline.settings.database_url
        if kind == "pg_restart":
            from shared.localstack.postgres import restart_postgres

            return f"postgres (back in {restart_postgres():.1f}s)"
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool

        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                ended = conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                        " FROM pg_stat_activity"
                        " WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": make_url(url).database},
                ).scalar_one()
        finally:
            engine.dispose()
        return f"postgres ({ended} connections)"

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


def _logged(log_file: Path, event: str) -> bool:
    """True once a service's JSON log has a line with this event."""
    try:
        return f'"event": "{event}"'.encode() in log_file.read_bytes()
    except OSError:
        return False


def run_story(
    settings: Settings,
    services: list[str],
    config: SimConfig,
    workdir: Path,
    chaos_every_s: float | None,
    seed: int,
) -> tuple[Pipeline, Any, Chaos | None, OffsetWatch | None]:
    from shared.runtime.topics import ensure_topics

    ensure_topics(settings)
    pipeline = Pipeline(
        settings, services, workdir / "logs", extra_env={"INSTALLMENTS_LOOP_STALL_TIMEOUT_S": "120"}
    )
    pipeline.start()
    chaos = None
    watch = None
    try:
        if chaos_every_s:
            watch = OffsetWatch(settings, services).start()
            chaos = Chaos(pipeline, seed, chaos_every_s, workdir)
            chaos.start()
            waiter = chaos.wait_idle
        else:
            waiter = pipeline.wait_idle
        stats = Simulator(settings, config, waiter).run()
        if chaos:
            chaos.finish_round(timeout_s=180)
        waiter(300)
        return pipeline, stats, chaos, watch
    finally:
        if chaos:
            chaos.stop()
        pipeline.stop()
        if watch:
            watch.stop()  # after the stop: a clean shutdown must not rewind either


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
                + "".join(f"; {line}" for line in explain_difference(a - b, b - a))
            )
    return total, differences


def explain_difference(calm: set[bytes], chaotic: set[bytes], limit: int = 5) -> list[str]:
    """What differs between the events only one run has: per event id, the fields whose
    values differ (``data.balance_after``), or that the id is in one run only. Names
    fields and event ids (UUIDs), never a value: a value may be an account id. At most
    ``limit`` lines, and a count of the rest."""

    def by_id(values: set[bytes]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for value in values:
            try:
                event = json.loads(value)
                out[str(event["id"])] = event
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def flat(event: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in event.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{name}."))
            else:
                out[f"{prefix}{name}"] = value
        return out

    a, b = by_id(calm), by_id(chaotic)
    lines: list[str] = []
    for event_id in sorted(a.keys() | b.keys()):
        if event_id not in b:
            lines.append(f"{event_id} ({a[event_id].get('type')}) only in the calm run")
        elif event_id not in a:
            lines.append(f"{event_id} ({b[event_id].get('type')}) only in the chaos run")
        else:
            fa, fb = flat(a[event_id]), flat(b[event_id])
            fields = sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))
            lines.append(f"{event_id} ({a[event_id].get('type')}) differs in {', '.join(fields)}")
    if len(lines) > limit:
        lines = [*lines[:limit], f"and {len(lines) - limit} more"]
    return lines


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

    services = list(SERVICE_NAMES)
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
        started = time.monotonic()
        _pipeline, stats, chaos, watch = run_story(
            settings, services, config, workdir / name, every, seed
        )
        result.seconds[name] = time.monotonic() - started
        runs[name] = settings
        if chaos:
            result.faults = chaos.log
            result.restarts = chaos.restarts
            result.storms = chaos.storms
            result.notes = chaos.notes
            result.events_in = stats.events
        if watch:
            result.violations += watch.violations
            result.offset_samples = watch.samples
            result.offsets_watched = watch.watched
    report = check(runs["chaos"])
    result.violations += report.violations
    result.checks = sum(report.checked.values())
    result.events_out, result.differences = compare_outputs(runs["calm"], runs["chaos"])
    return result


def run_fault_suite(
    accounts: int, days: int, seed: int, every_s: float, *, keep: bool = False
) -> ChaosResult:
    """``installments faults``: the story calm and under faults, on the local stack's
    PostgreSQL, in a namespace of its own (topics and databases deleted afterwards
    unless ``keep``: a broker holding every run's partitions gets slow to start)."""
    bootstrap, admin_url = ensure_stack(need_postgres=True)
    if not admin_url:
        raise RuntimeError("the fault suite needs PostgreSQL")
    run = datetime.now().strftime("%Y%m%dT%H%M%S")  # no 14-digit run: see bench_runner
    base = Settings(
        kafka_bootstrap_servers=bootstrap,
        database_url=admin_url,
        topic_prefix=f"faults-{run}.",
        session_timeout_ms=6000,
    )
    runs = ("calm", "chaos")
    try:
        return run_chaos(
            base,
            accounts,
            days,
            seed,
            every_s,
            Path(".data") / f"faults-{run}",
            lambda name: create_database(admin_url, f"faults_{run}_{name}"),
        )
    finally:
        if not keep:
            for name in runs:
                prefix = f"{base.topic_prefix}{name}."
                delete_namespace(base.model_copy(update={"topic_prefix": prefix}))
            drop_databases(admin_url, [f"faults_{run}_{name}" for name in runs])
