"""The house's layers: `bench/`'s import graph, read from the source (every import, a
function's lazy ones included), has no cycle, and no module imports one of a higher layer; lower
layers report upward through events and callbacks (the runner's `Event`s, the worker's progress
lines), never by importing up."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"

# Lowest first. A module belongs to the first layer with a prefix of its name.
LAYERS = (
    ("foundation", ("suite", "pinning", "measure", "lock", "distributed", "parity",
                    "verification", "efficiency", "data", "models", "record", "schema_v1",
                    "results", "heads", "training", "backends.support", "__init__")),
    ("plug-ins: backends and scenarios, run in the worker", ("backends", "scenarios")),
    ("the machine and the worker", ("machine", "worker")),
    ("the parent: plan, launcher, the run loop", ("plan", "launcher", "runner")),
    ("views: figures across runs, comparisons, reports", ("summary", "compare", "rates",
                                                          "fleet", "history", "report")),
    ("commands", ("cli", "commands", "pretrain", "__main__")),
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in BENCH.rglob("*.py"):
        parts = path.relative_to(BENCH).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)
        found[name] = path
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                if target.startswith("bench."):
                    short = target.removeprefix("bench.")
                    if short in modules and short != name:
                        graph[name].add(short)
                        break  # `from bench.x import y`: the submodule y if it is one, else x
    return graph


def layer(name: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"bench/{name}: in no layer of tests/test_layers.py; place it")


def test_every_module_has_a_layer() -> None:
    for name in _modules():
        layer(name)


def test_the_import_graph_has_no_cycle() -> None:
    graph, done, path = _graph(), set(), []

    def visit(name: str) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " → ".join([*path[path.index(name):], name]))
        if name in done:
            return
        path.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_no_module_imports_a_higher_layer() -> None:
    upward = [f"{name} ({LAYERS[layer(name)][0]}) imports {dep} ({LAYERS[layer(dep)][0]})"
              for name, deps in _graph().items() for dep in deps if layer(dep) > layer(name)]
    assert upward == []


def test_no_backend_imports_a_scenario() -> None:
    assert [(n, d) for n, deps in _graph().items() if n.startswith("backends")
            for d in deps if d.startswith("scenarios")] == []


def test_the_graph_reader_sees_lazy_imports() -> None:
    """The checks above mean something only if imports inside functions count."""
    assert "worker" in _graph()["launcher"]  # a top-level `from bench.worker import ...`
    assert "heads" in _graph()["backends.base"]  # inside Backend.train_head
