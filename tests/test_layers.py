"""The house's layers: `bench/`'s import graph, read from the source (every import, a
function's lazy ones included), has no cycle, and no module imports one of a higher layer; lower
layers report upward through events and callbacks (the runner's `Event`s, the worker's progress
lines), never by importing up."""

from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"

# Lowest first. A module belongs to the layer of the longest pattern that matches its name (a
# name, its submodules, or an fnmatch pattern): a scenario's declaration is foundation, as the
# contract's figures and the suite read it; its `run` is a plug-in, run in the worker only.
LAYERS = (
    ("foundation", ("spec", "pinning", "measure", "lock", "distributed", "parity",
                    "verification", "efficiency", "data", "models", "record", "schema_v1",
                    "loadgen", "knobs", "results", "heads", "training", "backends.support",
                    "scenarios",
                    "__init__")),
    ("plug-ins: backends and the scenarios' runs, in the worker", ("backends", "scenarios.*.run",
                                                                   "scenarios.common")),
    ("the suite, checked against the registries", ("suite",)),
    ("the machine, the worker and the pretraining process", ("machine", "worker", "pretrain")),
    ("the parent: plan, launcher, the run loop, a baseline built in the job",
     ("plan", "launcher", "runner", "baseline", "tune")),
    ("views: figures across runs, comparisons, reports, exports",
     ("summary", "significance", "paired", "compare", "rates", "fleet", "history", "report",
      "exports")),
    ("commands", ("cli", "commands", "netns", "__main__")),
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
    found = [(len(pattern), i) for i, (_, patterns) in enumerate(LAYERS) for pattern in patterns
             if name == pattern or name.startswith(pattern + ".") or fnmatch(name, pattern)]
    if not found:
        raise AssertionError(f"bench/{name}: in no layer of tests/test_layers.py; place it")
    return max(found)[1]


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


def test_no_backend_imports_a_scenario_run() -> None:
    """A backend may read the scenarios' declarations (does this one train?), never their runs:
    both are plug-ins, side by side."""
    plug_ins = layer("backends")
    assert [(n, d) for n, deps in _graph().items() if n.startswith("backends")
            for d in deps if d.startswith("scenarios") and layer(d) == plug_ins] == []


def test_the_graph_reader_sees_lazy_imports() -> None:
    """The checks above mean something only if imports inside functions count."""
    assert "worker" in _graph()["launcher"]  # a top-level `from bench.worker import ...`
    assert "heads" in _graph()["backends.base"]  # inside Backend.train_head


def test_the_parent_imports_no_runtime() -> None:
    """The parent (the CLI, the run loop, the views, and what they import lazily: the weights
    store, the scenarios' declarations, the reports) never imports a runtime: it would cost
    every suite seconds and hundreds of MB beside its workers, and print the runtime's start-up
    lines into the suite's log."""
    import subprocess
    import sys

    code = ("import sys; import bench.cli, bench.runner, bench.commands.measure, "
            "bench.commands.views, bench.commands.tune, bench.models.store, bench.scenarios, "
            "bench.report.html, bench.compare; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'torch', 'jax', 'openvino') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=BENCH.parent, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout
