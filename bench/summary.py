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

from bench import record

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
                         "ratio": figure.value / base_figure.value})
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
            "backend": run["backend"], "workers": run["params"]["workers"],
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
                          for w in (run.get("cluster") or {}).get("workers", [])})})
    return rows


def not_ok(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in doc["runs"] if r.get("status") != "ok"]


STEAL_NOTABLE = 0.02  # below, a VM's steal is within what bare metal's interrupts cost


def steal(doc: dict[str, Any]) -> str | None:
    """The median and range of the steal share over a result's processes, when notable."""
    shares = sorted(x for r in doc["runs"] if r.get("status") == "ok"
                    for x in record.steal_shares(r))
    if not shares or shares[-1] < STEAL_NOTABLE:
        return None
    return (f"median {statistics.median(shares):.0%}, {shares[0]:.0%}–{shares[-1]:.0%} over "
            f"{len(shares)} "
            f"worker process(es)")
