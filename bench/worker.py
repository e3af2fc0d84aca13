"""One run in a fresh interpreter: pin, import the runtime, run one scenario, write one JSON doc.

Invoked by the launcher as `python -m bench.worker TASK.json OUT.json`. The environment (oneDNN
switch, thread counts) arrives from the parent explicitly; the CPU affinity is set here, first,
before TensorFlow is imported, because TF sizes its thread pools at import. Progress goes to
stdout as `@@tlbench {json}` lines; everything else a runtime prints goes to stderr (the log).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.pinning import pin_self
from bench.results import write_atomic

PROGRESS_PREFIX = "@@tlbench "


def progress(phase: str, done: float = 0, total: float | None = None) -> None:
    """Tell the parent which phase runs and how far it is (drives the rich progress bars)."""
    event = {"phase": phase, "done": done, "total": total}
    sys.stdout.write(PROGRESS_PREFIX + json.dumps(event) + "\n")
    sys.stdout.flush()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def execute(task: dict[str, Any]) -> dict[str, Any]:
    run = task["run"]
    obtained = {"cpus": pin_self(tuple(task["cpus"])), "pid": os.getpid(),
                "env": {k: os.environ.get(k) for k in task["env_keys"]}}
    # Imported after pinning on purpose: these pull in numpy and, through them, the runtimes.
    from bench import backends, scenarios

    backend = backends.get(run["backend"])
    doc: dict[str, Any] = {"placement_obtained": obtained}
    t0 = time.perf_counter()
    progress("import runtime")
    doc["runtime"] = backend.start(threads=len(task["cpus"]))
    doc["runtime_start_s"] = time.perf_counter() - t0
    doc.update(scenarios.run(run, backend, progress))
    return {**doc, "status": "ok"}


def main(argv: list[str]) -> int:
    task_path, out_path = Path(argv[0]), Path(argv[1])
    task = json.loads(task_path.read_text())
    started = time.time()
    try:
        doc = execute(task)
        code = 0
    except Exception as exc:  # any failure of the run is recorded, with its traceback
        doc = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc()}
        traceback.print_exc()
        code = 1
    doc.update(worker_wall_s=time.time() - started, peak_rss_mb=peak_rss_mb())
    write_atomic(out_path, doc)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
