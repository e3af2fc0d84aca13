"""A result's judged figures, and an A/B job's verdict, in the formats of dashboards users
already run (pure, but for `write`):

- github-action-benchmark's custom tools: a list of `{"name", "unit", "value", "range",
  "extra"}`, one file for `customBiggerIsBetter` (rates) and one for `customSmallerIsBetter`
  (latencies, times), as the action takes one tool per file;
- Bencher Metric Format (BMF): `{benchmark: {measure: {"value", "lower_value",
  "upper_value"}}}`, the benchmark a run id, the measure the figure's name as a slug.

Every value is the figure `bench.record` defines (the median over a run's processes, their
spread as the range / lower and upper values); a figure with no value is left out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench import record

# in a folder beside the result (as its logs are), where no glob for result files looks
FILES = {"bigger": "github-bigger.json", "smaller": "github-smaller.json",
         "bencher": "bencher.json"}


def _judged(doc: dict[str, Any]) -> list[tuple[str, record.Figure]]:
    return [(run["run_id"], f) for run in doc["runs"] if run.get("status") == "ok"
            for f in record.judged(run) if f.value is not None]


def slug(name: str) -> str:
    """A figure's name as a Bencher measure slug: "train img/s" → "train-img-s"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def github_benchmark(doc: dict[str, Any],
                     verdicts: dict[tuple[str, str], str] | None = None
                     ) -> dict[str, list[dict[str, Any]]]:
    """{"bigger": entries, "smaller": entries}; `verdicts` (run id, figure) → the A/B verdict,
    put in each entry's `extra`."""
    out: dict[str, list[dict[str, Any]]] = {"bigger": [], "smaller": []}
    for run_id, figure in _judged(doc):
        entry: dict[str, Any] = {"name": f"{run_id} {figure.name}", "unit": figure.unit,
                                 "value": figure.value}
        if figure.spread is not None:
            entry["range"] = (f"{figure.spread[0]:.6g}–{figure.spread[1]:.6g} over "
                              f"{figure.processes} processes")
        extra = (verdicts or {}).get((run_id, figure.name))
        if extra:
            entry["extra"] = extra
        out["bigger" if figure.better == record.HIGHER else "smaller"].append(entry)
    return out


def bencher(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for run_id, figure in _judged(doc):
        metric = {"value": figure.value}
        if figure.spread is not None:
            metric.update(lower_value=figure.spread[0], upper_value=figure.spread[1])
        out.setdefault(run_id, {})[slug(figure.name)] = metric
    return out


def verdicts_of(rows: list[Any]) -> dict[tuple[str, str], str]:
    """bench.compare's rows as one line each, for the exports' `extra`."""
    return {(r.run_id, r.metric): (f"{r.status}: new/base {r.ratio:.3f}x, time "
                                   f"{r.time_change_pct:+.1f}%, p {r.p_value:.2g}"
                                   f"{' (primary)' if r.primary else ''}")
            for r in rows if r.comparable}


def write(doc: dict[str, Any], result_path: Path, rows: list[Any] | None = None) -> list[Path]:
    """The exports of a result, beside it: `<stem>.exports/github-bigger.json`, ..."""
    folder = result_path.with_suffix(".exports")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    gab = github_benchmark(doc, verdicts_of(rows) if rows else None)
    for kind, payload in (("bigger", gab["bigger"]), ("smaller", gab["smaller"]),
                          ("bencher", bencher(doc))):
        path = folder / FILES[kind]
        path.write_text(json.dumps(payload, indent=1) + "\n")
        written.append(path)
    return written
