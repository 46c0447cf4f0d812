"""The stage packages import each other in one direction only: no cycle among the
top-level parts of ``stages`` (a package or a module each), counting imports inside
functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

STAGES = Path(__file__).resolve().parents[1] / "stages"  # networkx comes with scikit-image


def _part(module: str) -> str | None:
    """'stages.train.loop' -> 'train'; None outside stages or for the package itself."""
    parts = module.split(".")
    return parts[1] if parts[0] == "stages" and len(parts) > 1 else None


def package_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for path in STAGES.rglob("*.py"):
        source = _part(".".join(path.relative_to(STAGES.parent).with_suffix("").parts))
        if source is None or source == "__init__":
            continue
        graph.add_node(source)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for target in {_part(name) for name in names} - {None, source}:
                if (STAGES / target).is_dir() or (STAGES / f"{target}.py").is_file():
                    graph.add_edge(source, target)
    return graph


def test_no_import_cycle_between_stage_packages():
    graph = package_graph()
    assert {"train", "export", "predict", "masks", "flow"} <= set(graph)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, cycles
    assert not graph.has_edge("train", "export")  # validation predicts through stages.predict
