"""The layering rules, enforced.

Layers, bottom to top (docs/ARCHITECTURE.md): a module may import its own layer and the
layers below, never one above, and no import cycle may exist between modules::

    schemas <- shared.runtime <- services <- shared.registry <- shared.localstack
            <- shared.ops <- shared.tools <- shared.cli

Every import counts: at the top of a module or inside a function, ``import x``,
``from x import y`` (``y`` a submodule counts as ``x.y``), and ``importlib.import_module``
with a literal name or an f-string whose fixed start names a package. Besides: services
never import each other; a service's ``domain.py`` imports no infrastructure; no test
module imports another test module (what tests share lives in tests/builders/,
tests/harness.py, tests/support.py, tests/log_scan.py); nothing reads the spec folder
beside the repository.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "shared", "services")
LAYERS = (
    "schemas",
    "shared.runtime",
    "services",
    "shared.registry",
    "shared.localstack",
    "shared.ops",
    "shared.tools",
    "shared.cli",
)
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())
INFRA = ("kafka", "sqlalchemy", "psycopg", "shared", "structlog", "prometheus_client")


# --- the import graph --------------------------------------------------------------


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted name -> file, for every module of ``packages`` under ``root``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(root, path)] = path
    return found


def _import_module_target(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "import_module" or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values:
        first = arg.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value.rstrip(".") or None  # "services.{name}" -> services
    return None


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` (at ``path``) imports, however it imports them."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
        elif isinstance(node, ast.Call):
            target = _import_module_target(node)
            if target:
                targets.add(target)
    resolved = set()
    for target in targets:
        while target and target not in known:  # "shared.x.y" of a name -> its module
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    found = modules(root, packages)
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def layer_of(module: str, layers: tuple[str, ...] = LAYERS) -> int | None:
    best = None
    for index, prefix in enumerate(layers):
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(layers[best]):
                best = index
    return best


def layer_violations(graph: dict[str, set[str]], layers: tuple[str, ...] = LAYERS) -> list[str]:
    """'a -> b' for every import of a higher layer (or of a module in no layer)."""
    bad = []
    for source, targets in sorted(graph.items()):
        mine = layer_of(source, layers)
        for target in sorted(targets):
            theirs = layer_of(target, layers)
            if mine is None or theirs is None or theirs > mine:
                bad.append(f"{source} -> {target}")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module
    (or a module importing itself), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def is_test_module(module: str) -> bool:
    """A ``test_*`` module anywhere, or any module under tests/unit or tests/integration."""
    parts = module.split(".")
    under = parts[:2] in (["tests", "unit"], ["tests", "integration"])
    return under or parts[-1].startswith("test_")


def imports_of_test_modules(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b' for every import of a test module (by a test module or by anything else)."""
    return [
        f"{source} -> {target}"
        for source, targets in sorted(graph.items())
        for target in sorted(targets)
        if is_test_module(target)
    ]


GRAPH = import_graph(ROOT)


# --- the rules, on this repository ---------------------------------------------------


def test_every_module_is_in_a_layer():
    assert [m for m in GRAPH if layer_of(m) is None and m not in PACKAGES] == []


def test_imports_follow_the_layer_order():
    assert layer_violations(GRAPH) == []


def test_there_is_no_import_cycle():
    assert cycles(GRAPH) == []


@pytest.mark.parametrize("service", SERVICES)
def test_services_never_import_each_other(service):
    others = tuple(f"services.{o}" for o in SERVICES if o != service)
    for source, targets in GRAPH.items():
        if source.startswith(f"services.{service}"):
            assert not [t for t in targets if t.startswith(others)], source


@pytest.mark.parametrize("service", SERVICES)
def test_domain_imports_no_infrastructure(service):
    path = ROOT / "services" / service / "domain.py"
    if not path.exists():
        pytest.skip("no domain module")
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in INFRA, f"{path} imports {name}"


def test_integration_tests_do_not_import_unit_test_modules():
    """Nor does any module under tests/ import a test module: not a ``test_*.py``, not
    anything under tests/unit or tests/integration (however imported: relative, inside a
    function, ``import_module``). Tests share only tests/builders/, tests/harness.py,
    tests/support.py, tests/log_scan.py and the code under test."""
    assert imports_of_test_modules(import_graph(ROOT, ("tests",))) == []


def test_nothing_reads_the_spec_folder_beside_the_repo():
    for folder in ("shared", "schemas", "services", "tests", "scripts"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".sh"} and path != Path(__file__):
                assert "../shared" not in path.read_text(), path


# --- the checker itself fails on planted violations -----------------------------------


def _plant(root: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(root, ("schemas", "shared", "services"))


def test_a_planted_cycle_is_found(tmp_path):
    graph = _plant(
        tmp_path,
        {
            "schemas/__init__.py": "",
            "shared/__init__.py": "",
            "services/__init__.py": "",
            "shared/runtime/__init__.py": "",
            "shared/runtime/a.py": "from shared.runtime.b import thing\n",
            "shared/runtime/b.py": "def thing():\n    from shared.runtime import a\n",
        },
    )
    assert cycles(graph) == [["shared.runtime.a", "shared.runtime.b"]]
    assert cycles(import_graph(ROOT)) == []  # and the repository has none


def test_a_planted_upward_import_is_found_even_as_a_string(tmp_path):
    graph = _plant(
        tmp_path,
        {
            "schemas/__init__.py": "",
            "shared/__init__.py": "",
            "shared/cli.py": "",
            "services/__init__.py": "",
            "services/pay/__init__.py": "",
            "shared/runtime/__init__.py": "",
            "shared/runtime/loop.py": (
                "import importlib\n"
                "def late(name):\n"
                "    return importlib.import_module(f'services.{name}.bootstrap')\n"
            ),
            "shared/runtime/wiring.py": "def cli():\n    import shared.cli\n",
        },
    )
    assert layer_violations(graph) == [
        "shared.runtime.loop -> services",
        "shared.runtime.wiring -> shared.cli",
    ]


def test_a_planted_import_of_a_test_module_is_found(tmp_path):
    files = {
        "tests/__init__.py": "",
        "tests/support.py": "",
        "tests/builders/__init__.py": "",
        "tests/builders/messages.py": "from tests.unit.test_a import helper\n",
        "tests/unit/__init__.py": "",
        "tests/unit/test_a.py": "from tests.builders import messages\ndef helper(): ...\n",
        "tests/unit/helpers.py": "",
        "tests/unit/test_b.py": "from .helpers import thing\nfrom tests import support\n",
        "tests/integration/__init__.py": "",
        "tests/integration/test_c.py": (
            "import importlib\n"
            "def late():\n"
            "    from tests.unit import test_a\n"
            "    return importlib.import_module('tests.integration.test_d')\n"
        ),
        "tests/integration/test_d.py": "import tests.builders.messages\n",
    }
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert imports_of_test_modules(import_graph(tmp_path, ("tests",))) == [
        "tests.builders.messages -> tests.unit.test_a",
        "tests.integration.test_c -> tests.integration.test_d",
        "tests.integration.test_c -> tests.unit.test_a",
        "tests.unit.test_b -> tests.unit.helpers",
    ]


def test_the_layer_table_covers_each_package_once():
    counts: dict[str, int] = defaultdict(int)
    for layer in LAYERS:
        counts[layer] += 1
    assert all(n == 1 for n in counts.values())
