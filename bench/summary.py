"""Headline figures of a result document (pure): what the console and HTML reports show.

Every figure comes from `bench.record`; this module only selects and pairs runs. Two kinds of
speed-up are kept apart and labelled:
- *as configured*: the suite's full-training total (measured or projected) over its transfer
  total, on the suite's own data — what this run did;
- *paper scale*: both projected to the paper's experiment (LFW's 13,233 images embedded once vs
  80 epochs x 13 batches x 1024 images of training) from this run's steady-state rates.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench import backends, record
from bench.backends import support
from bench.scenarios.inference import THROUGHPUT

BASELINE_BACKEND = "tf-stock"


def runs_by(doc: dict[str, Any], status: str = "ok") -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["scenario"], r["backend"]): r for r in doc["runs"] if r.get("status") == status}


def speedups(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per backend with both runs ok: transfer vs full training (bench.record.speedup)."""
    ok = runs_by(doc)
    return [record.speedup(ok[("full_training", b)], ok[("transfer", b)])
            for b in dict.fromkeys(r["backend"] for r in doc["runs"])
            if ("full_training", b) in ok and ("transfer", b) in ok]


def backend_ratios(doc: dict[str, Any], baseline: str = BASELINE_BACKEND) -> list[dict[str, Any]]:
    """Each backend's headline figure over the baseline backend's, scenario by scenario."""
    ok = runs_by(doc)
    rows = []
    for (scenario, backend), run in ok.items():
        base = ok.get((scenario, baseline))
        figure = record.headline(run)
        if base is None or backend == baseline or figure is None or figure.value is None:
            continue
        base_figure = record.headline(base)
        if base_figure is not None and base_figure.value and base_figure.name == figure.name:
            rows.append({"scenario": scenario, "backend": backend, "figure": figure.name,
                         "value": figure.value, "baseline": base_figure.value,
                         "ratio": record.relative_speed(figure, base_figure)})
    return rows


# the harness's own loops (inference) beside LoadGen's runs (serving) of the same figure
CROSSCHECK = (("latency bs1 p50 ms", "singlestream p50 ms"),
              ("latency bs1 p90 ms", "singlestream p90 ms"),
              (THROUGHPUT, "offline samples/s"))


CONFIGURED = ("each stack at the configuration its tune chose (tlbench run --tuned), measured "
              "side by side in this run; a run not listed ran at the suite's own")


def configured_lines(doc: dict[str, Any]) -> list[str]:
    """A `tlbench run --tuned` result: each run a tune configured, with the configuration it
    chose and the tune's conclusion."""
    return [f"{run_id}: {c['configuration']} ({c['conclusion']})"
            for run_id, c in (doc.get("configured") or {}).items()]


def crosscheck_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Per stack that ran both inference and serving in this result: each figure as the
    harness's loops measured it and as LoadGen did, and LoadGen's over the harness's (for
    throughput only when Offline ran the inference scenario's batch size)."""
    ok = runs_by(doc)
    rows = []
    for (scenario, backend), serving in ok.items():
        inference = ok.get(("inference", backend))
        if scenario != "serving" or inference is None:
            continue
        same_batch = serving["params"]["batch_size"] == inference["params"]["batch_size"]
        ours, theirs = record.figures(inference), record.figures(serving)
        for harness, loadgen in CROSSCHECK:
            if harness == THROUGHPUT and not same_batch:
                continue
            a, b = ours[harness].value, theirs[loadgen].value
            rows.append({"backend": backend, "harness": harness,
                         "loadgen": loadgen, "harness_value": a, "loadgen_value": b,
                         "ratio": b / a if a and b else None})
    return rows


def scaling_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Data-parallel training runs: N workers beside one worker alone on one worker's cores
    (the scaling efficiency) and one worker on all the cores (what splitting buys)."""
    rows = []
    for run in doc["runs"]:
        if run.get("status") != "ok" or not run.get("references"):
            continue
        figs = record.figures(run)
        dist = run.get("distributed") or {}
        refs = run["references"]

        def ref(name: str, figure: str, refs=refs, figs=figs) -> dict[str, Any] | None:
            if name not in refs:
                return None
            if refs[name].get("status") != "ok":
                return {"status": refs[name].get("status"), "error": refs[name].get("error")}
            return {"images_per_s": figs[figure].value,
                    "cores": len(refs[name].get("placement", {}).get("cpus", []))}

        rows.append({
            "backend": run["backend"], "engine": dist.get("engine"),
            "engine_version": dist.get("engine_version"), "workers": run["params"]["workers"],
            "worker_batch": dist.get("worker_batch"), "micro_batch": dist.get("micro_batch"),
            "accumulation": dist.get("accumulation"),
            "cores_per_worker": len((run.get("processes") or [{}])[0].get("placement", {})
                                    .get("cpus", [])),
            "images_per_s": figs["train img/s"].value, "pace_worker": dist.get("pace_worker"),
            "worker_step_s": record.worker_step_s(run),
            "alone": ref("alone", "1 worker alone img/s"),
            "one_worker_all_cores": ref("one_worker_all_cores", "1 worker all cores img/s"),
            "efficiency": getattr(figs.get("scaling efficiency"), "value", None),
            "vs_one_worker": getattr(figs.get("vs 1 worker"), "value", None),
            "hosts": len({w.rpartition(":")[0]
                          for w in (run.get("cluster") or {}).get("workers", [])}),
            "paper_scale": record.on_hosts(run)})
    return rows


def not_ok(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in doc["runs"] if r.get("status") != "ok"]


# Below these, a result's processes had their CPUs as good as to themselves: a VM's steal
# within what bare metal's interrupts cost; other processes' load within what the system's
# daemons and this harness's parent cost on a quiet machine (record.DISTURBED says why 5%).
NOTABLE = {"steal": 0.02, "foreign_load": record.DISTURBED["foreign_load"]}


def disturbance(doc: dict[str, Any], kind: str) -> str | None:
    """The median and range over a result's processes of the share of their CPUs' time lost to
    `kind` (record.DISTURBANCES), when notable."""
    shares = sorted(x for r in doc["runs"] if r.get("status") == "ok"
                    for x in record.disturbance_shares(r, kind))
    if not shares or shares[-1] < NOTABLE[kind]:
        return None
    return (f"median {statistics.median(shares):.0%}, {shares[0]:.0%}–{shares[-1]:.0%} over "
            f"{len(shares)} worker process(es)")


def disturbed_runs(doc: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(run id, kind, its processes' median share) of each ok run that was disturbed
    (record.DISTURBED) by another process or the hypervisor: compare does not judge it."""
    return [(r["run_id"], kind, share) for r in doc["runs"] if r.get("status") == "ok"
            for kind in record.DISTURBANCES if (share := record.disturbed(r, kind)) is not None]


LOWER_PRECISIONS = ("-bf16", "-int8")  # a stack's backend at a lower precision: name + suffix
ACCURACY_FIGURES = ("accuracy", "LFW accuracy", "LFW AUC")


def fp32_of(backend: str) -> str | None:
    """The same stack's fp32 backend of a lower-precision one (None for an fp32 backend)."""
    return next((backend.removesuffix(s) for s in LOWER_PRECISIONS if backend.endswith(s)), None)


def precision_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each lower-precision backend against its stack's fp32 in the same result: the speed of
    every judged inference and transfer figure relative to fp32 (>1: faster), the accuracy
    deltas on the same split, and the share of its kernels' time in the precision it asked."""
    ok = runs_by(doc)
    rows = []
    for backend in dict.fromkeys(r["backend"] for r in doc["runs"]):
        base = fp32_of(backend)
        if base is None:
            continue
        row: dict[str, Any] = {"backend": backend, "fp32": base, "speed": {}, "accuracy": {},
                               "kernel_share": None, "note": None, "isa": ran_on(doc, backend)}
        for scenario in ("inference", "transfer"):
            run, ref = ok.get((scenario, backend)), ok.get((scenario, base))
            if run is None:
                continue
            new = record.figures(run)
            share = new.get(record.KERNEL_SHARE)
            if share is not None and row["kernel_share"] is None:
                row["kernel_share"] = share.value
            if ref is None:
                continue
            old = record.figures(ref)
            for fig in record.judged(run):
                if fig.name in old:
                    row["speed"][fig.name] = record.relative_speed(fig, old[fig.name])
            for name in ACCURACY_FIGURES:
                if new.get(name) and old.get(name) and None not in (new[name].value,
                                                                   old[name].value):
                    row["accuracy"][name] = new[name].value - old[name].value
            if run.get("accuracy_note"):
                row["note"] = "random weights: the accuracy deltas say little (tlbench pretrain)"
        if row["speed"] or row["accuracy"] or row["kernel_share"] is not None:
            rows.append(row)
    return rows


def ran_on(doc: dict[str, Any], backend: str) -> str:
    """The instructions a backend's precision runs on, on the result's CPU: its declared
    support (`bench.backends.support`) read from the machine block's ISA flags."""
    if backend not in backends.names():
        return "?"
    got = backends.get(backend).support((doc.get("machine") or {}).get("isa") or {})
    return got.isa if got.level == support.NATIVE else f"{got.isa} ({got.level})"


def speed_figures(rows: list[dict[str, Any]]) -> list[str]:
    """The speed figures of precision rows, in order (the precision table's columns)."""
    return list(dict.fromkeys(name for r in rows for name in r["speed"]))


def kernel_rows(doc: dict[str, Any], top: int = 3) -> list[dict[str, Any]]:
    """The kernels that ran, per ok run that recorded them: OpenVINO's profiled pass (the
    implementations with the most node time, and the share in the precision asked) and oneDNN's
    primitives as TensorFlow created them (the most created)."""
    rows = []
    for run in doc["runs"]:
        if run.get("status") != "ok":
            continue
        kernels, onednn = run.get("kernels"), run.get("onednn")
        if kernels:
            share = record.figures(run).get(record.KERNEL_SHARE)
            shares = list(record.kernel_time_shares(kernels).items())[:top]
            rows.append({"run_id": run["run_id"], "source": kernels["source"],
                         "asked": kernels["asked"],
                         "top": [f"{impl} {s:.0%}" for impl, s in shares],
                         "share": share.value if share else None,
                         "mismatch": record.kernel_mismatch(run),
                         "isa": ran_on(doc, run["backend"])})
        elif onednn and onednn.get("implementations"):
            impls = onednn["implementations"]
            rows.append({"run_id": run["run_id"],
                         "source": f"oneDNN primitives created ({onednn.get('isa', 'isa ?')})",
                         "asked": (backends.get(run["backend"]).precision
                                   if run["backend"] in backends.names() else "?"),
                         "top": [f"{impl} ×{n}" for impl, n in
                                 sorted(impls.items(), key=lambda kv: -kv[1])[:top]],
                         "share": None, "mismatch": None, "isa": ran_on(doc, run["backend"])})
    return rows
