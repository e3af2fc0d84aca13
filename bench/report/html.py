"""The self-contained HTML report: one file, inline CSS and SVG, no script, no URL to fetch.

The page is rendered by jinja2 with autoescaping on, so every string taken from a result file
(host names, backend names, error messages, log tails) is text, never markup. Only the charts
are inserted as markup, and they come from matplotlib, which escapes their text itself.
Figures are shown as the result file gives them; a projected figure is labelled projected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from bench import __version__, record, summary, tune
from bench.compare import Row
from bench.report import charts
from bench.report.console import duration, quality_lines, share_of_peak, with_spread

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("bench.report", "templates"),
    autoescape=True,  # every template, whatever its name
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "—" if value is None else format(value, fmt)


def _file_name(path: str) -> str:
    return Path(path).name


_ENV.filters.update(duration=duration, num=_num, pct=share_of_peak, spread=with_spread,
                    filename=_file_name, config=tune.config_text, searched=tune.searched)


def default_path(result_path: str | Path, reports_dir: str | Path = "reports") -> Path:
    """reports/<result file stem>.html"""
    return Path(reports_dir) / f"{Path(result_path).stem}.html"


def _svg(svg: str | None) -> Markup | None:
    return Markup(svg) if svg else None  # matplotlib output; its text is escaped by matplotlib


def speedup_matrix(doc: dict[str, Any]) -> dict[str, Any]:
    """Backends x scenarios: each headline figure over tf-stock's, or why there is none."""
    runs = {(r.get("scenario"), r.get("backend")): r for r in doc["runs"]}
    scenarios = list(dict.fromkeys(r.get("scenario") for r in doc["runs"]))
    backends = list(dict.fromkeys(r.get("backend") for r in doc["runs"]))
    ratios = {(r["scenario"], r["backend"]): r for r in summary.backend_ratios(doc)}
    base = summary.BASELINE_BACKEND
    rows = []
    for backend in backends:
        cells = []
        for scenario in scenarios:
            run = runs.get((scenario, backend))
            base_run = runs.get((scenario, base))
            cell: dict[str, Any] = {"ratio": None, "text": "—", "title": ""}
            if run is None:
                cell["title"] = "not run"
            elif run.get("status") != "ok":
                cell["text"] = run.get("status", "?")
                cell["title"] = run.get("reason") or run.get("error") or ""
            elif base_run is None or base_run.get("status") != "ok":
                cell["title"] = f"no successful {base} run to compare with"
            elif backend == base:
                cell.update(ratio=1.0, text="1.00x")
            elif (scenario, backend) in ratios:
                r = ratios[(scenario, backend)]
                cell.update(ratio=r["ratio"], text=f"{r['ratio']:.2f}x",
                            title=f"{r['figure']}: {r['value']:.2f} vs {r['baseline']:.2f}")
            cells.append(cell)
        rows.append({"backend": backend, "cells": cells})
    top = max([c["ratio"] for row in rows for c in row["cells"] if c["ratio"]] or [1.0])
    for row in rows:
        for c in row["cells"]:
            c["bar"] = 0 if c["ratio"] is None else round(100 * c["ratio"] / max(top, 1.0), 1)
    params = {r.get("scenario"): r.get("params", {}) for r in doc["runs"]}
    headers = [{"scenario": s, "figure": record.headline_name(s, params[s])} for s in scenarios]
    return {"headers": headers, "rows": rows, "baseline": base}


def paper_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The table beside Figure 3, a row per backend in the chart's order: its times at the
    paper's scale (the chart's bars) beside those of the suite as it ran."""
    p = record.PAPER
    rows = [{"who": "white paper", "basis": f"{p['machine']}, {p['software']}, LFW, 160 px",
             "kind": "reported", "full": "~20 h", "transfer": "~15 min", "speedup": "~80x",
             "as_run": None}]
    for row in charts.by_speedup(doc):
        ps = row["paper_scale"]
        rows.append({"who": row["backend"], "kind": "projected",
                     "basis": f"{row['image_size']} px, {row['variant']} depth; as run: "
                              f"{row['training_images']:,} images trained, "
                              f"{row['transfer_images']:,} embedded",
                     "full": duration(ps["full_training_s"]),
                     "transfer": duration(ps["transfer_s"]),
                     "speedup": f"{ps['speedup']:,.0f}x",
                     "as_run": {"kind": row["full_training_kind"],
                                "full": duration(row["full_training_s"]),
                                "transfer": duration(row["transfer_s"]),
                                "speedup": f"{row['speedup']:,.0f}x"}})
    return rows


def _machine_facts(doc: dict[str, Any]) -> list[tuple[str, str]]:
    m = doc.get("machine", {})
    isa = m.get("isa", {})
    facts = [
        ("machine id", m.get("id")), ("host name", m.get("hostname")),
        ("CPU", m.get("cpu_model")),
        ("ISA", ", ".join(k for k, v in isa.items() if v) or "—"),
        ("ISA absent", ", ".join(k for k, v in isa.items() if not v) or "—"),
        ("sockets / NUMA nodes", f"{m.get('sockets')} / {m.get('numa_nodes')}"),
        ("physical cores / logical CPUs", f"{m.get('physical_cores')} / {m.get('logical_cpus')}"),
        ("SMT", m.get("smt")), ("hypervisor", m.get("hypervisor")),
        ("memory", f"{m.get('memory_gib')} GiB"), ("kernel", m.get("kernel")),
        ("OS", m.get("os")),
    ]
    return [(k, "—" if v is None else str(v)) for k, v in facts]


def _software_facts(doc: dict[str, Any]) -> list[tuple[str, str]]:
    s = doc.get("software", {})
    facts = [("Python", s.get("python")), ("tlbench", s.get("tlbench"))]
    facts += sorted((k, v) for k, v in (s.get("packages") or {}).items())
    for stack in s.get("backends") or []:  # each stack's environment, ITEX's own among them
        packages = ", ".join(f"{k} {v}" for k, v in stack.get("packages", {}).items())
        facts.append((f"{stack.get('stack')} environment",
                      f"{packages} ({stack.get('python')})" if stack.get("status") == "installed"
                      else f"missing: {stack.get('reason')}"))
    return [(k, "—" if v is None else str(v)) for k, v in facts]


def _ok(doc: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    """The ok runs of a scenario, each with its figures (bench.record: the page computes none)."""
    return [{"run": r, "figures": record.figures(r),
             "throughput": record.headline_name(scenario, r["params"])}
            for r in doc["runs"] if r.get("status") == "ok" and r.get("scenario") == scenario]


def context(doc: dict[str, Any], source: str, baseline: dict[str, Any] | None = None,
            baseline_source: str = "", rows: list[Row] | None = None,
            max_slowdown_pct: float = 5.0) -> dict[str, Any]:
    project = doc.get("project") or {}
    return {
        "doc": doc,
        "source": source,
        "tool_version": __version__,
        "suite": doc.get("suite", {}),
        "commit": project.get("commit") or "unknown",
        "dirty": bool(project.get("dirty")),
        "figure3": _svg(charts.figure3(doc)),
        "paper": record.PAPER,
        "paper_rows": paper_rows(doc),
        "matrix": speedup_matrix(doc),
        "configured": summary.configured_lines(doc), "configured_note": summary.CONFIGURED,
        "training": _ok(doc, "full_training"),
        "scaling": summary.scaling_rows(doc), "hosts": record.HOSTS,
        "transfer": _ok(doc, "transfer"),
        "inference": _ok(doc, "inference"),
        "fine_tune": _ok(doc, "fine_tune"),
        "serving": _ok(doc, "serving"),
        "serving_chart": _svg(charts.serving(doc)),
        "crosscheck": summary.crosscheck_rows(doc),
        "quality": quality_lines(doc),
        "precision": summary.precision_rows(doc),
        "precision_speeds": summary.speed_figures(summary.precision_rows(doc)),
        "accuracy_figures": summary.ACCURACY_FIGURES,
        "kernels": summary.kernel_rows(doc),
        "notes": sorted({r["accuracy_note"] for r in doc["runs"] if r.get("accuracy_note")}),
        "not_ok": summary.not_ok(doc),
        "machine": _machine_facts(doc),
        "software": _software_facts(doc),
        "suite_json": json.dumps(doc.get("suite", {}), indent=1),
        "baseline": baseline,
        "baseline_source": baseline_source,
        "compare_rows": rows or [],
        "max_slowdown_pct": max_slowdown_pct,
    }


def render(doc: dict[str, Any], source: str, **kwargs: Any) -> str:
    return _ENV.get_template("report.html").render(**context(doc, source, **kwargs))


def render_history(entries: list[dict[str, Any]], folder: str, problems: list[str]) -> str:
    return _ENV.get_template("history.html").render(
        folder=folder, entries=entries, problems=problems, tool_version=__version__,
        chart=_svg(charts.history(entries)))


def render_fleet(view: dict[str, Any]) -> str:
    return _ENV.get_template("fleet.html").render(
        view=view, ref=view["machines"][view["reference"]], tool_version=__version__,
        chart=_svg(charts.fleet(view)))


def render_tune(doc: dict[str, Any]) -> str:
    """A tune's page: per target the default, the best trial, the conclusion and every trial;
    for inference, the trials' latency-throughput chart with the Pareto front."""
    targets = []
    for e in doc["targets"]:
        points = tune.trade_off(e) if e["scenario"] == "inference" else []
        targets.append({"entry": e, "points": points, "chart": _svg(charts.trade_off(
            points, e.get("default", {}), e["figure"]))})
    return _ENV.get_template("tune.html").render(doc=doc, targets=targets,
                                                 tool_version=__version__)


def write(html: str, path: str | Path) -> Path:
    """Write the page (its folder created); the caller names the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
