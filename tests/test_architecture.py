"""The house rules of docs/architecture.md, checked on the source: which room may import
which, no import circle (imports inside functions count), and a pure numeric core that
loads none of Channel Access, SQL or Bokeh."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = {"mupnc": "mupnc", **{d: d for d in ("daq", "sim", "ioc", "monitor", "db", "dashboards")}}
"""Top-level folder -> room; the folder ``X`` installs as ``mupnc.X`` (``mupnc/`` is the
front door)."""

MAY_IMPORT = {
    "daq": {"daq"},
    "sim": {"daq", "sim"},
    "ioc": {"daq", "sim", "ioc"},
    "db": {"daq", "db"},
    "monitor": {"daq", "db", "monitor"},
    "dashboards": {
        "daq",
        "db",
        "monitor.analysis",
        "monitor.decoding",
        "monitor.feedback",
        "dashboards",
    },
}
"""Rooms (or sub-rooms) each room may import; the front door ``mupnc`` may import all."""

PURE_CORE = (
    "mupnc.daq.blocks",
    "mupnc.daq.channel_map",
    "mupnc.daq.config_file",
    "mupnc.daq.helicity",
    "mupnc.daq.scheme",
    "mupnc.daq.severity",
    "mupnc.sim.actuators",
    "mupnc.sim.beam",
    "mupnc.sim.beamline",
    "mupnc.sim.detector",
    "mupnc.sim.faults",
    "mupnc.sim.modulation",
    "mupnc.sim.reversal",
    "mupnc.sim.source",
    "mupnc.ioc.limits",
    "mupnc.monitor.decoding",
    "mupnc.monitor.decoding.fast",
    "mupnc.monitor.decoding.rotator",
    "mupnc.monitor.decoding.stream",
    "mupnc.monitor.analysis.accumulator",
    "mupnc.monitor.analysis.asymmetry",
    "mupnc.monitor.analysis.blinding",
    "mupnc.monitor.analysis.cuts",
    "mupnc.monitor.analysis.results",
    "mupnc.monitor.analysis.run_analysis",
    "mupnc.monitor.analysis.settings",
    "mupnc.monitor.analysis.statistics",
    "mupnc.monitor.feedback.loop",
    "mupnc.monitor.alarms.logic",
    "mupnc.monitor.alarms.rules",
    "mupnc.monitor.alarms.inputs",
    "mupnc.monitor.alarms.budget",
    "mupnc.monitor.ingest_counters",
    "mupnc.dashboards.records",
    "mupnc.dashboards.display",
    "mupnc.dashboards.columns",
    "mupnc.dashboards.projection",
    "mupnc.planner",
)
"""The pure numeric core: numpy on blocks of windows, no I/O library."""

IO_LIBRARIES = ("epics", "caproto", "sqlalchemy", "bokeh", "psycopg", "alembic", "pyarrow")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts if parts[0] == "mupnc" else ["mupnc", *parts])


def _product_modules() -> dict[str, Path]:
    found = {}
    for folder in ROOMS:
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _product_modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every product module ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in MODULES and t != name)
    return out


def _packages_loaded_first(target: str, importer: str) -> set[str]:
    """Importing ``a.b.c`` runs the packages ``a.b`` and ``a`` first (their ``__init__``),
    except those the importer itself lives in (already loading)."""
    parts = target.split(".")
    packages = {".".join(parts[:i]) for i in range(1, len(parts))}
    return {p for p in packages if p in MODULES and not importer.startswith(p + ".")}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _room(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else "mupnc"


def _allowed(importer: str, imported: str) -> bool:
    room = _room(importer)
    if room not in MAY_IMPORT:  # the front door
        return True
    inner = imported.removeprefix("mupnc.")
    return any(inner == allowed or inner.startswith(allowed + ".") for allowed in MAY_IMPORT[room])


def test_every_room_imports_only_what_its_place_in_the_flow_allows() -> None:
    wrong = sorted(
        f"{importer} imports {imported}"
        for importer, imported_set in GRAPH.items()
        for imported in imported_set
        if not _allowed(importer, imported)
    )
    assert not wrong, "\n".join(wrong)


def test_monitor_database_and_dashboards_never_import_the_simulator() -> None:
    into_sim = sorted(
        f"{a} -> {b}"
        for a, targets in GRAPH.items()
        for b in targets
        if _room(a) in ("monitor", "db", "dashboards") and _room(b) == "sim"
    )
    assert not into_sim


def test_the_import_graph_has_no_circle() -> None:
    """Tarjan's strongly connected components: every component is a single module (an
    import of ``a.b.c`` counts as one of the packages it runs first, too)."""
    graph = {
        a: targets.union(*(_packages_loaded_first(b, a) for b in targets))
        for a, targets in GRAPH.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, circles


def test_the_pure_core_names_only_modules_that_exist() -> None:
    assert set(PURE_CORE) <= set(MODULES), set(PURE_CORE) - set(MODULES)


def test_the_pure_core_loads_no_io_library() -> None:
    """Each module imported in turn in one fresh interpreter (this test process has pyepics
    loaded already); the first that brings in an I/O library is named."""
    probe = (
        "import importlib, sys\n"
        f"for module in {PURE_CORE!r}:\n"
        "    importlib.import_module(module)\n"
        f"    loaded = sorted({{m.split('.')[0] for m in sys.modules}} & set({IO_LIBRARIES!r}))\n"
        "    if loaded:\n"
        "        print(module, 'loads', loaded)\n"
        "        break\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
