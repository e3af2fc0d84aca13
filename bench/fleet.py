"""Several result files side by side — one machine or many (pure): each run's headline figure
per machine, normalised per physical core, per core-GHz and as a share of the machine's peak,
the ratio to a reference machine, the geometric mean over scenarios per backend, and the
transfer-vs-full speed-up per machine beside the paper's ~80x. Every figure is `bench.record`'s.

Like with like only: a run is ratioed to the reference's run of the same scenario and backend
only when their configurations are equal (the comparison's rule: parameters, model, data,
threads); otherwise both are shown and the reason is given instead of a ratio. The paper's
machine is a row of its own, its figures *reported*, never mixed with measured or projected ones.
"""

from __future__ import annotations

from typing import Any

from bench import compare, machine, record, summary

# The white paper's box: 2S Xeon Gold 6148 (Skylake-SP), 20 cores each at 2.4 GHz base, AVX-512
# with 2 FMA units per core: 40 x 2.4 x 64 fp32 FLOP per cycle.
PAPER_MACHINE = {"label": "white paper: 2S Intel Xeon Gold 6148", "cpu_model": "Xeon Gold 6148",
                 "sockets": 2, "physical_cores": 40, "ghz": 2.4,
                 "peak_fp32_gflops": 40 * 2.4 * 64, "software": record.PAPER["software"]}


class FleetError(ValueError):
    """Result files that cannot make a fleet view; the message says which and why."""


def _machine(doc: dict[str, Any], source: str) -> dict[str, Any]:
    m = doc.get("machine") or {}
    peak = m.get("peak") or {}
    return {"source": source, "hardware_id": machine.hardware_id(m),
            "hostname": m.get("hostname"), "cpu_model": m.get("cpu_model"),
            "codename": (m.get("cpuid") or {}).get("codename"), "sockets": m.get("sockets"),
            "physical_cores": m.get("physical_cores"), "ghz": peak.get("ghz"),
            "frequency_source": peak.get("frequency_source"),
            "peak_gflops": {p: (peak.get(p) or {}).get("gflops") for p in ("fp32", "bf16")},
            "created": doc.get("created"), "schema_version": doc.get("migrated_from",
                                                                     doc.get("schema_version"))}


def _cell(run: dict[str, Any] | None, info: dict[str, Any]) -> dict[str, Any]:
    if run is None:
        return {"status": "not run"}
    if run.get("status") != "ok":
        cause = str(run.get("reason") or run.get("error") or "no cause recorded")
        return {"status": run.get("status"), "reason": (cause.splitlines() or [""])[0][:160]}
    figure = record.headline(run)
    share = record.figures(run).get("fraction of peak")
    energy = (run.get("energy") or {}).get("joules")
    per_core, per_core_ghz = record.per_core(run, info["ghz"])
    return {"status": "ok", "figure": figure.name if figure else None,
            "value": figure.value if figure else None, "unit": figure.unit if figure else "",
            "cores": record.cores(run), "per_core": per_core, "per_core_ghz": per_core_ghz,
            "share_of_peak": share.value if share else None,
            "share_note": share.note if share else "",
            "energy_j": energy}


def fleet(docs: list[tuple[dict[str, Any], str]], reference: int = 0) -> dict[str, Any]:
    """The fleet view of `docs` ((document, source) pairs); `reference` indexes the machine the
    others are ratioed to."""
    if len(docs) < 2:
        raise FleetError("a fleet view needs two or more result files")
    if not 0 <= reference < len(docs):
        raise FleetError("--reference must be one of the result files given")
    machines = [_machine(doc, source) for doc, source in docs]
    ref_doc = docs[reference][0]
    ref_runs = {(r["scenario"], r["backend"]): r for r in ref_doc["runs"]}
    keys = list(dict.fromkeys((r["scenario"], r["backend"]) for doc, _ in docs
                              for r in doc["runs"]))
    rows = []
    for scenario, backend in keys:
        ref_run = ref_runs.get((scenario, backend))
        cells = []
        for i, (doc, _) in enumerate(docs):
            run = next((r for r in doc["runs"]
                        if (r["scenario"], r["backend"]) == (scenario, backend)), None)
            cell = _cell(run, machines[i])
            if cell["status"] == "ok" and i != reference:
                cell.update(_ratio(run, ref_run, (machines[reference]["schema_version"],
                                                  machines[i]["schema_version"])))
            elif cell["status"] == "ok":
                cell["ratio"] = 1.0
            cells.append(cell)
        rows.append({"scenario": scenario, "backend": backend, "cells": cells})
    backends = list(dict.fromkeys(b for _, b in keys))
    geomeans = [{"backend": b, "cells": [_geomean([row["cells"][i] for row in rows
                                                   if row["backend"] == b])
                                         for i in range(len(docs))]} for b in backends]
    speedups = [{row["backend"]: row for row in summary.speedups(doc)} for doc, _ in docs]
    return {"machines": machines, "reference": reference, "rows": rows, "geomeans": geomeans,
            "speedups": [{"backend": b, "cells": [s.get(b) for s in speedups]}
                         for b in backends if any(b in s for s in speedups)],
            "paper": {**PAPER_MACHINE, "full_training_s": record.PAPER["full_training_s"],
                      "transfer_s": record.PAPER["transfer_s"],
                      "speedup": record.PAPER["speedup"], "kind": "reported"}}


# What a version-1 result measured differently from version 2, for a headline figure: there the
# two are not like with like (elsewhere the migration gives the same definition).
SCHEMA_1_DIFFERS = {"transfer": "schema 1's extraction batches included decoding the images; "
                                "schema 2's time the forward pass alone"}


def _ratio(run: dict[str, Any], ref_run: dict[str, Any] | None,
           schemas: tuple[Any, Any]) -> dict[str, Any]:
    """This machine's headline over the reference's, when the two runs are like with like."""
    if ref_run is None or ref_run.get("status") != "ok":
        return {"ratio": None, "why": "the reference machine has no successful run of it"}
    if schemas[0] != schemas[1] and run["scenario"] in SCHEMA_1_DIFFERS:
        return {"ratio": None, "why": f"schema {schemas[0]} vs {schemas[1]}: "
                                      f"{SCHEMA_1_DIFFERS[run['scenario']]}"}
    diff = compare.differences(compare.configuration(ref_run), compare.configuration(run))
    if diff:
        return {"ratio": None, "why": "other configuration: " + "; ".join(diff[:3])}
    ref, new = record.headline(ref_run), record.headline(run)
    ratio = record.relative_speed(new, ref) if ref and new and ref.name == new.name else None
    return {"ratio": ratio} if ratio else {"ratio": None, "why": "no headline figure on both"}


def _geomean(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """A machine's ratios to the reference over the scenarios of a backend, summarised by
    their geometric mean (`record.geometric_mean`), over those that could be ratioed."""
    ratios = [c["ratio"] for c in cells if c.get("ratio")]
    return {"value": record.geometric_mean(ratios), "scenarios": len(ratios)}
