"""One run in a fresh interpreter: pin, import the runtime, run one scenario, write one JSON doc.

Invoked by the launcher as `python -m bench.worker TASK.json OUT.json`. The environment (oneDNN
switch, thread counts) arrives from the parent explicitly; the CPU affinity is set here, first,
before TensorFlow is imported, because TF sizes its thread pools at import. Progress goes to
stdout as `@@tlbench {json}` lines; everything else a runtime prints goes to stderr (the log),
oneDNN's verbose lines summarised into the record (`onednn`).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import distributed
from bench.pinning import pin_self, read_topology
from bench.results import write_atomic

PROGRESS_PREFIX = "@@tlbench "
_progress_out = sys.stdout  # the real stdout, also while CapturedStdout holds descriptor 1


def progress(phase: str, done: float = 0, total: float | None = None) -> None:
    """Tell the parent which phase runs and how far it is (drives the rich progress bars)."""
    event = {"phase": phase, "done": done, "total": total}
    _progress_out.write(PROGRESS_PREFIX + json.dumps(event) + "\n")
    _progress_out.flush()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# A primitive's source memory descriptor: `src:bf16::blocked...` (oneDNN >= 3.4), `src_bf16::...`
_SOURCE_TYPE = re.compile(r"(?:^|[\s,])src[_:]([a-z]+[0-9]*)")
_COMPUTE = ("convolution", "deconvolution", "inner_product", "matmul")  # reorders only convert


def onednn_summary(lines: list[str]) -> dict[str, Any]:
    """oneDNN's verbose lines → its version, the ISA it dispatched to, implementations used and
    compute primitives (convolutions, inner products, matmuls) by source data type
    (`data_types`: the precision the kernels computed in).

    With ONEDNN_VERBOSE=profile_create oneDNN prints an info header (version, `isa:`) and one
    line per primitive created, naming its implementation, e.g.
    `brg_conv_fwd:avx512_core` or `brg_conv_fwd:avx512_core_amx`: proof of the kernels used.
    """
    info: dict[str, Any] = {"implementations": {}}
    for line in lines:
        fields = line.rstrip("\n").split(",")
        if len(fields) > 1 and fields[1] == "v1":  # oneDNN >= 3.4 adds a format version field
            del fields[1]
        if len(fields) > 2 and fields[1] == "info":
            text = ",".join(fields[2:])
            if text.startswith("oneDNN v"):
                info["version"] = text.split(" (")[0]
            elif text.startswith("cpu,isa:"):
                info["isa"] = text.removeprefix("cpu,isa:")
        elif len(fields) > 5 and fields[1] == "primitive" and fields[2].startswith("create"):
            impl = fields[5]
            info["implementations"][impl] = info["implementations"].get(impl, 0) + 1
            found = _SOURCE_TYPE.search(",".join(fields[6:]))
            if found and fields[4] in _COMPUTE:
                types = info.setdefault("data_types", {})
                types[found.group(1)] = types.get(found.group(1), 0) + 1
    return info


class CapturedStdout:
    """The process's file descriptor 1 sent to a temporary file while the runtime runs (oneDNN
    prints its verbose lines there, thousands of them); progress keeps the real stdout. At the
    end, oneDNN's lines are summarised and everything else goes to stderr, the run's log."""

    def __enter__(self) -> CapturedStdout:
        sys.stdout.flush()
        self.progress = os.fdopen(os.dup(1), "w", buffering=1)
        self.file = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        os.dup2(self.file.fileno(), 1)
        global _progress_out
        _progress_out = self.progress
        self.onednn: dict[str, Any] | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
        os.dup2(self.progress.fileno(), 1)
        self.file.seek(0)
        onednn = []
        for line in self.file:
            if line.startswith("onednn_verbose,"):
                onednn.append(line)
            else:
                sys.stderr.write(line)
        self.file.close()
        if onednn:
            self.onednn = onednn_summary(onednn)


def _scenario_run(scenario: Any) -> Any:
    """A scenario's run: the `run` module of its package (bench.scenarios), imported here only,
    in the worker, after pinning."""
    return importlib.import_module(f"bench.scenarios.{scenario.name}.run")


def execute(task: dict[str, Any]) -> dict[str, Any]:
    run = task["run"]
    cpus = pin_self(tuple(task["cpus"]))
    obtained = {"cpus": cpus, "pid": os.getpid(),
                "env": {k: os.environ.get(k) for k in task["env_keys"]}}
    # Imported after pinning on purpose: these pull in numpy and, through them, the runtimes.
    from bench import backends, efficiency, machine, measure, record, scenarios

    backend = backends.get(run["backend"])
    backend.configure(run.get("backend_params") or {})
    doc: dict[str, Any] = {"placement_obtained": obtained}
    t0 = time.perf_counter()
    # a data-parallel worker's join may begin here (JAX's, before its first computation)
    progress(distributed.JOINING if distributed.JOIN_TIMEOUT_VAR in os.environ
             else "import runtime")
    doc["runtime"] = backend.start(threads=len(task["cpus"]))
    doc["runtime_start_s"] = time.perf_counter() - t0
    doc["peak"] = efficiency.run_peak(backend.precision, machine.current_peak(),
                                      efficiency.cores_used(read_topology(), cpus))
    progress("reference kernel")
    before = measure.reference_rate(cpus)
    ticks, own = machine.cpu_ticks(cpus), machine.tree_cpu_seconds()
    doc.update(_scenario_run(scenarios.get(run["scenario"])).run(run, backend, progress))
    cache = backend.compile_cache()
    if cache is not None:
        doc["runtime"]["compile_cache"] = cache
    after = machine.cpu_ticks(cpus)
    doc["steal"] = machine.steal(ticks, after)
    doc["foreign_load"] = machine.foreign_load(ticks, after, machine.tree_cpu_seconds() - own)
    progress("reference kernel")
    doc["reference"] = measure.reference(before, measure.reference_rate(cpus))
    return checked(run, record.to_dict(doc))


def checked(run: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """The worker's record, held to the contract. One that breaks it fails the run — the result
    file holds only records of the contract — but what was measured is kept whole beside the
    run's log (`<log>.record.json`), so a defect of the record never costs the measurement."""
    from bench import record

    try:
        record.parse_run({**run, **doc, "status": "ok"}, "the worker's record")
    except record.RecordError as exc:
        kept = Path(run.get("log") or "worker.log").with_suffix(".record.json")
        write_atomic(kept, {**run, **doc, "status": "failed", "error": str(exc)})
        raise record.RecordError(f"{exc}; what the run measured is kept in {kept}") from None
    return {**doc, "status": "ok"}


def main(argv: list[str]) -> int:
    task_path, out_path = Path(argv[0]), Path(argv[1])
    task = json.loads(task_path.read_text())
    started = time.time()
    with CapturedStdout() as captured:
        try:
            doc = execute(task)
            code = 0
        except Exception as exc:  # any failure of the run is recorded, with its traceback
            doc = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                   "traceback": traceback.format_exc()}
            traceback.print_exc()
            code = 1
    if captured.onednn:
        doc["onednn"] = captured.onednn
    if doc["status"] == "ok":
        from bench import backends

        problem = backends.get(task["run"]["backend"]).obtained_problem(doc)
        if problem:  # measured, kept, but never shown as the precision it asked for
            doc.update(status="failed", error=f"precision not obtained: {problem}")
            code = 1
    doc.update(worker_wall_s=time.time() - started, peak_rss_mb=peak_rss_mb())
    write_atomic(out_path, doc)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
