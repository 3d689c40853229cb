"""The layering rules, enforced: services stand alone; domain rules import no infrastructure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())
INFRA = ("kafka", "sqlalchemy", "psycopg", "shared", "structlog", "prometheus_client")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_services_never_import_each_other(service):
    others = [s for s in SERVICES if s != service]
    for path in (ROOT / "services" / service).rglob("*.py"):
        for name in _imports(path):
            assert not any(
                name == f"services.{o}" or name.startswith(f"services.{o}.") for o in others
            ), f"{path} imports {name}"


@pytest.mark.parametrize("service", SERVICES)
def test_domain_imports_no_infrastructure(service):
    path = ROOT / "services" / service / "domain.py"
    if not path.exists():
        pytest.skip("no domain module")
    for name in _imports(path):
        assert name.split(".")[0] not in INFRA, f"{path} imports {name}"


def test_shared_and_schemas_never_import_a_service():
    for folder in ("shared", "schemas"):
        for path in (ROOT / folder).rglob("*.py"):
            for name in _imports(path):
                assert not name.startswith("services"), f"{path} imports {name}"


def test_nothing_reads_the_spec_folder_beside_the_repo():
    for folder in ("shared", "schemas", "services", "tests", "scripts"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".sh"} and path != Path(__file__):
                assert "../shared" not in path.read_text(), path
