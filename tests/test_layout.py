"""The package's layout follows the data's path: packages depend on earlier stages only, never in circles."""
import ast
from pathlib import Path

import pytest

EDGE = Path(__file__).resolve().parents[1] / "edge"


def package_imports() -> dict[str, set[str]]:
    """Top-level unit (package or module under edge/) -> the other units it imports, anywhere in its code."""
    edges: dict[str, set[str]] = {}
    for f in EDGE.rglob("*.py"):
        parts = f.relative_to(EDGE).parts
        if parts[0] == "v1":            # generated gRPC code
            continue
        unit = parts[0] if len(parts) > 1 else f.stem
        for node in ast.walk(ast.parse(f.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("edge."):
                    target = name.split(".")[1]
                    if target != unit:
                        edges.setdefault(unit, set()).add(target)
    return edges


def test_no_package_depends_on_itself_through_others():
    edges = package_imports()
    state: dict[str, int] = {}

    def visit(u, path):
        state[u] = 1
        for v in sorted(edges.get(u, ())):
            if state.get(v) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path, u, v]))
            if v not in state:
                visit(v, [*path, u])
        state[u] = 2

    for u in sorted(edges):
        if u not in state:
            visit(u, [])


@pytest.mark.parametrize("low, high", [
    ("runtime", {"explain", "serve", "hmi", "audit", "train", "record", "app", "line"}),
    ("explain", {"serve", "hmi", "audit", "train", "record", "app", "line"}),
    ("record", {"serve", "hmi", "audit", "explain", "runtime", "app", "line"}),
    ("serve", {"hmi", "audit", "train", "app", "line"}),
    ("hmi", {"audit", "train", "app", "line"}),
    ("audit", {"serve", "hmi", "app", "line"}),
    ("line", {"hmi", "audit", "train", "app"}),
])
def test_earlier_stages_do_not_reach_later_ones(low, high):
    assert not (package_imports().get(low, set()) & high)
