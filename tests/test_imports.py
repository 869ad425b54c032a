"""The package's import graph, read from the source: nothing imports the CLI back, no cycles.

Every import counts, module-level or inside a function: a late import that dodges
a cycle at load time is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PKG = "iommu_trace"
SKIP = {".venv", "build", "tests", "traces", "docs", "examples", "scripts", ".wt"}


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] in SKIP or any(p.startswith(".") for p in rel.parts):
            continue
        parts = [PKG, *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _graph(root: Path = ROOT) -> nx.DiGraph:
    mods = _modules(root)
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")
                    base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # `from . import x` names the module x when there is one
                cands = [
                    f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target
                    for a in node.names
                ]
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            for c in cands:
                while c and c not in mods:
                    c = c.rpartition(".")[0]
                if c and c != name:
                    g.add_edge(name, c)
    return g


def test_the_walk_sees_the_package():
    g = _graph()
    assert {"iommu_trace.cli", "iommu_trace.commands", "iommu_trace.errors"} <= set(g)
    assert g.has_edge("iommu_trace.cli", "iommu_trace.commands")
    assert g.has_edge("iommu_trace.commands.report", "iommu_trace.commands._load")


def test_only_the_entry_point_imports_cli():
    g = _graph()
    assert sorted(g.predecessors("iommu_trace.cli")) == []


def test_no_import_cycle():
    assert list(nx.simple_cycles(_graph())) == []


def test_a_late_import_back_is_a_cycle(tmp_path):
    # the shape this package had: cli imports a verb, the verb imports cli inside a function
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "cli.py").write_text("from .verbs import run\n")
    (tmp_path / "verbs.py").write_text("def run():\n    from .cli import main\n")
    g = _graph(tmp_path)
    assert sorted(g.predecessors("iommu_trace.cli")) == ["iommu_trace.verbs"]
    assert list(nx.simple_cycles(g)) != []


def _under(name: str, pkg: str) -> bool:
    return name == f"{PKG}.{pkg}" or name.startswith(f"{PKG}.{pkg}.")


def _analysis_to_render(g: nx.DiGraph) -> list[tuple[str, str]]:
    return sorted((a, b) for a, b in g.edges if _under(a, "analysis") and _under(b, "render"))


def test_analysis_never_imports_render():
    """analysis/ computes and returns data; render/ (called from commands/) makes it text."""
    g = _graph()
    assert _analysis_to_render(g) == []
    assert any(_under(a, "render") and _under(b, "analysis") for a, b in g.edges)


def test_an_analysis_that_renders_is_seen(tmp_path):
    # the shape analysis/report.py had: a text table drawn from inside the computation
    for d in ("analysis", "render"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "__init__.py").write_text("")
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "render" / "table.py").write_text("def grid(): ...\n")
    (tmp_path / "analysis" / "report.py").write_text(
        "def text():\n    from ..render.table import grid\n"
    )
    assert _analysis_to_render(_graph(tmp_path)) == [
        ("iommu_trace.analysis.report", "iommu_trace.render.table")
    ]
