"""docker-compose.yml, the Dockerfile and deploy/ (Prometheus, Grafana) agree with the code.

No Docker engine is needed: the files are parsed (YAML anchors and merge keys
resolved, as Compose does) and checked against ``shared.registry.SERVICE_NAMES``, the
settings' variable names and the metric names the code exports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.localstack.jars import DEFAULT_KAFKA_VERSION
from shared.registry import SERVICE_NAMES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "installments.json"

INFRA = ("kafka", "postgres", "init", "lag-exporter")
HTTP_PORT = 8000
EXPORTER_PORT = 9308


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return dict(_load(COMPOSE)["services"])


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=value list form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def _default(value: str) -> str:
    """``${VAR:-default}`` as Compose resolves it with VAR unset: ``default``."""
    match = re.fullmatch(r"\$\{\w+:-(.+)\}", value)
    return match.group(1) if match else value


def _binds(service: dict[str, Any]) -> dict[str, str]:
    """Host path -> container path of the service's bind mounts (``./src:/dst[:ro]``)."""
    binds = {}
    for volume in service.get("volumes") or []:
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            binds[source] = target
    return binds


def _long_running(services: dict[str, dict[str, Any]]) -> list[str]:
    return [name for name, svc in services.items() if str(svc.get("restart")) != "no"]


def _healthcheck_test(service: dict[str, Any]) -> str:
    check = service.get("healthcheck") or {}
    test = check.get("test")
    if check.get("disable") or not test or test == ["NONE"]:
        return ""
    return " ".join(test) if isinstance(test, list) else str(test)


# ------------------------------------------------------------------ docker-compose.yml


def test_every_part_of_the_system_is_there(services: dict[str, dict[str, Any]]) -> None:
    missing = {*SERVICE_NAMES, *INFRA, "prometheus", "grafana", "simulator"} - set(services)
    assert not missing, f"docker-compose.yml lacks {sorted(missing)}"


def test_every_long_running_container_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    long_running = _long_running(services)
    assert {*SERVICE_NAMES, "kafka", "postgres", "lag-exporter"} <= set(long_running)
    for name in long_running:
        assert _healthcheck_test(services[name]), f"{name} has no healthcheck"


def test_one_shot_containers_do_not_restart(services: dict[str, dict[str, Any]]) -> None:
    for name in ("init", "simulator"):
        assert str(services[name].get("restart")) == "no", name


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_service_waits_for_kafka_postgres_and_init(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    depends = services[name]["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", [*SERVICE_NAMES, "init", "lag-exporter", "simulator"])
def test_connection_settings(services: dict[str, dict[str, Any]], name: str) -> None:
    env = _env(services[name])
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["DATABASE_URL"]


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_service_serves_health_and_metrics_where_it_is_checked(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services[name]
    env = _env(service)
    assert env["INSTALLMENTS_HTTP_PORT"] == str(HTTP_PORT)
    assert env["INSTALLMENTS_LOG_FORMAT"] == "json"
    test = _healthcheck_test(service)
    # ready (partitions assigned, database answering), not merely alive
    assert f"http://localhost:{HTTP_PORT}/readyz" in test
    assert "curl" not in test and "wget" not in test, "the slim image has neither"


def test_services_run_exactly_the_cli_service_names(services: dict[str, dict[str, Any]]) -> None:
    runs = {name: _command(svc) for name, svc in services.items() if _command(svc)[:1] == ["run"]}
    assert sorted(runs) == sorted(SERVICE_NAMES)
    for name, command in runs.items():
        assert command == ["run", name]


def test_everything_of_ours_runs_the_one_image(services: dict[str, dict[str, Any]]) -> None:
    ours = [*SERVICE_NAMES, "init", "lag-exporter", "simulator"]
    images = {services[name]["image"] for name in ours}
    assert len(images) == 1
    assert _default(images.pop()) == "card-installments:latest"
    for name in ours:
        build = services[name]["build"]
        assert build["context"] == "."
        # the base image is a build argument: a local stand-in where python cannot be pulled
        assert _default(build["args"]["PYTHON_IMAGE"]) == "python:3.11-slim", name


def test_init_creates_topics_then_migrates(services: dict[str, dict[str, Any]]) -> None:
    init = services["init"]
    script = " ".join([*(init.get("entrypoint") or []), *_command(init)])
    assert re.search(r"installments topics\s*&&\s*installments migrate", script), script
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "init" not in init["depends_on"]


def test_kafka_is_the_official_image_in_kraft_mode(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    # the official image unless KAFKA_IMAGE names another (scripts/docker.sh's stand-in)
    assert kafka["image"].startswith("${KAFKA_IMAGE:-")
    # the same Kafka as the local stack runs
    assert _default(kafka["image"]) == f"apache/kafka:{DEFAULT_KAFKA_VERSION}"
    env = _env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert "kafka-broker-api-versions.sh" in _healthcheck_test(kafka)


def test_postgres_matches_the_database_url(services: dict[str, dict[str, Any]]) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("${POSTGRES_IMAGE:-")
    assert _default(postgres["image"]).split(":")[0] == "postgres"
    env = _env(postgres)
    url = _env(services["purchases"])["DATABASE_URL"]
    expected = (
        f"postgresql+psycopg://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{env['POSTGRES_DB']}"
    )
    assert url == expected
    assert "pg_isready" in _healthcheck_test(postgres)


def test_lag_exporter(services: dict[str, dict[str, Any]]) -> None:
    exporter = services["lag-exporter"]
    assert _command(exporter) == ["lag", "exporter", "--port", str(EXPORTER_PORT)]
    assert f"localhost:{EXPORTER_PORT}/" in _healthcheck_test(exporter)


def test_simulator_is_optional(services: dict[str, dict[str, Any]]) -> None:
    simulator = services["simulator"]
    assert simulator.get("profiles") == ["simulator"]
    assert _command(simulator)[0] == "simulate"
    profiled = [name for name, svc in services.items() if svc.get("profiles")]
    assert profiled == ["simulator"], "only the simulator is optional"
    for name in SERVICE_NAMES:
        assert simulator["depends_on"][name]["condition"] == "service_healthy"


def test_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for source in _binds(svc):
            assert (ROOT / source).exists(), f"{name} mounts missing {source}"


# ------------------------------------------------------------------ Dockerfile


def test_dockerfile_builds_one_non_root_image_of_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert froms and all(image == "${PYTHON_IMAGE}" for image in froms)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, flags=re.MULTILINE)
    assert re.search(r"^RUN pip install \.", text, flags=re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["installments"\]', text, flags=re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", ".stack", ".data"} <= set(ignored)


# ------------------------------------------------------------------ Prometheus


def _scrape_targets() -> dict[str, set[str]]:
    """Job name -> host:port of its static and DNS targets."""
    config = _load(PROMETHEUS)
    jobs: dict[str, set[str]] = {}
    for job in config["scrape_configs"]:
        targets = jobs.setdefault(job["job_name"], set())
        for static in job.get("static_configs") or []:
            targets.update(static["targets"])
        for dns in job.get("dns_sd_configs") or []:
            targets.update(f"{name}:{dns['port']}" for name in dns["names"])
    return jobs


def test_prometheus_scrapes_every_service_and_the_lag_exporter(
    services: dict[str, dict[str, Any]],
) -> None:
    targets = set().union(*_scrape_targets().values())
    for name in SERVICE_NAMES:
        assert f"{name}:{HTTP_PORT}" in targets, name
    assert f"lag-exporter:{EXPORTER_PORT}" in targets
    assert _binds(services["prometheus"])["./deploy/prometheus"] == "/etc/prometheus"


# ------------------------------------------------------------------ Grafana


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = []
    for panel in dashboard["panels"]:
        exprs.extend(target["expr"] for target in panel.get("targets", []))
    return exprs


def test_dashboard_shows_lag_and_service_metrics() -> None:
    text = "\n".join(_dashboard_exprs())
    for needed in (
        "kafka_consumergroup_unconsumed_messages",
        "kafka_consumergroup_lag_seconds",
        "kafka_consumergroup_status",
        "installments_events_total",
        'installments_events_total{outcome="dlq"}',
        "installments_handler_seconds_bucket",
        "installments_outbox_backlog",
    ):
        assert needed in text, needed


def test_dashboard_metrics_are_ones_the_code_exports() -> None:
    source = "".join(
        (ROOT / "shared" / part).read_text() for part in ("runtime/metrics.py", "ops/lag/render.py")
    )
    names = set(
        re.findall(r"\b(?:installments|kafka_consumergroup)_[a-z_]+", "\n".join(_dashboard_exprs()))
    )
    assert names
    for name in names:
        base = re.sub(r"_(total|bucket|sum|count)$", "", name)
        assert f'"{name}"' in source or f'"{base}"' in source, f"{name} is not exported"


def test_grafana_provisioning(services: dict[str, dict[str, Any]]) -> None:
    datasources = _load(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (datasource,) = datasources["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
    (provider,) = _load(GRAFANA / "provisioning" / "dashboards" / "installments.yml")["providers"]
    mounts = _binds(services["grafana"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
