"""The commands that read results: `tlbench report` (one result, a fleet, a history),
`tlbench compare`, `tlbench rates`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from bench import results
from bench.commands import EXIT_BAD_INPUT
from bench.report import across
from bench.report import console as console_report


def cmd_report(args: argparse.Namespace, out: Console) -> int:
    """Tables in the terminal and the self-contained HTML page (or the history of a folder)."""
    from bench import history
    from bench.report import html

    if args.history:
        if args.result or args.baseline:
            print("tlbench: error: --history DIR takes no RESULT and no --baseline",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        try:
            entries, problems = history.collect(args.history, args.across_machines)
        except history.HistoryError as exc:
            print(f"tlbench: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        out.print(across.history_table(entries, args.history))
        for problem in problems:
            out.print(f"[yellow]skipped[/] {escape(str(problem))}")
        page = html.render_history(entries, args.history, problems)
        name = f"history-{Path(args.history).resolve().name}.html"
        path = html.write(page, args.html or Path("reports") / name)
        out.print(f"HTML report: {escape(str(path))}")
        return 0
    if not args.result:
        print("tlbench: error: give a RESULT file, or --history results/<machine>/",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if len(args.result) > 1 or args.reference:
        return _fleet(args, out)
    args.result = args.result[0]
    doc = results.load(args.result)
    if args.json:  # the figures every table shows, for scripts (bench.record defines them)
        from bench import record

        print(json.dumps({"source": args.result, "schema_version": doc["schema_version"],
                          "runs": [{"run_id": r["run_id"], "status": r["status"],
                                    "figures": {name: f.to_dict() for name, f in
                                                record.figures(r).items()}}
                                   for r in doc["runs"]]}, indent=1))
        return 0
    console_report.show(doc, out)
    extra: dict[str, Any] = {}
    if args.baseline:
        base = results.load(args.baseline)
        rows = rows_of(base, doc, f"{args.baseline} vs {args.result}", args.max_slowdown,
                     args.alpha, args.across_machines)
        if rows is None:
            return EXIT_BAD_INPUT
        out.print(across.compare_table(rows, args.max_slowdown, args.alpha))
        extra = {"baseline": base, "baseline_source": args.baseline, "rows": rows,
                 "max_slowdown_pct": args.max_slowdown}
    page = html.render(doc, args.result, **extra)
    path = html.write(page, args.html or html.default_path(args.result))
    out.print(f"HTML report: {escape(str(path))}")
    return 0


def rows_of(base: dict[str, Any], new: dict[str, Any], which: str, max_slowdown: float,
          alpha: float, across_machines: bool = False) -> list[Any] | None:
    """bench.compare's rows of `new` against `base`, or None once the reason they cannot be
    compared (other hardware, unless `across_machines`; nothing in common) is on stderr."""
    from bench import compare

    other = compare.other_hardware(base, new)
    if other and not across_machines:
        print(f"tlbench: error: {which}: {other}", file=sys.stderr)
        return None
    try:
        return compare.compare(base, new, max_slowdown, alpha)
    except compare.CompareError as exc:
        print(f"tlbench: error: {which}: {exc}", file=sys.stderr)
        return None


def _fleet(args: argparse.Namespace, out: Console) -> int:
    """`tlbench report R1 R2 ...`: the fleet view (bench.fleet) in tables, JSON and a page."""
    from bench import fleet
    from bench.report import html

    if args.baseline:
        print("tlbench: error: several RESULT files make a fleet view; --baseline compares one "
              "with one (use tlbench compare)", file=sys.stderr)
        return EXIT_BAD_INPUT
    files = list(dict.fromkeys([*([args.reference] if args.reference else []), *args.result]))
    docs = [(results.load(f), f) for f in files]
    try:
        view = fleet.fleet(docs, reference=0)
    except fleet.FleetError as exc:
        print(f"tlbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(view, indent=1, default=str))
        return 0
    for table in across.fleet_tables(view):
        out.print(table)
    path = html.write(html.render_fleet(view), args.html or Path("reports") / "fleet.html")
    out.print(f"HTML report: {escape(str(path))}")
    return 0


def cmd_compare(args: argparse.Namespace, out: Console) -> int:
    """Exit 1 only for a significant slowdown beyond the threshold; 2 for unusable input."""
    from bench import compare

    if not 0 <= args.max_slowdown < 1000:
        print(f"tlbench: error: --max-slowdown {args.max_slowdown:g} is not a percentage "
              f"(write e.g. --max-slowdown 5)", file=sys.stderr)
        return EXIT_BAD_INPUT
    base, new = results.load(args.base), results.load(args.new)
    rows = rows_of(base, new, f"{args.base} vs {args.new}", args.max_slowdown, args.alpha,
                 args.across_machines)
    if rows is None:
        return EXIT_BAD_INPUT
    notes = compare.context_notes(base, new)
    worse = compare.regressions(rows)
    if args.markdown:
        from bench.report import markdown

        print(markdown.verdict(rows, notes, args.max_slowdown, args.alpha,
                               f"{Path(args.new).name} vs {Path(args.base).name}"), end="")
    elif args.json:
        print(json.dumps({"base": args.base, "new": args.new,
                          "max_slowdown_pct": args.max_slowdown, "alpha": args.alpha,
                          "notes": notes, "worse": len(worse),
                          "rows": [r.to_dict() for r in rows]}, indent=1))
    else:
        out.print(across.compare_table(rows, args.max_slowdown, args.alpha))
        for note in notes:
            out.print(f"[yellow]note[/]: {escape(note)}")
    if not any(r.comparable for r in rows):
        print(f"tlbench: error: {args.base} vs {args.new}: nothing comparable (every run in "
              f"common failed, was skipped, or ran with other parameters)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if worse:
        if not (args.json or args.markdown):
            out.print(f"[bold red]{len(worse)} regression(s)[/]: "
                      + escape(", ".join(f"{r.run_id} {r.metric} {r.time_change_pct:+.1f}%"
                                  for r in worse)))
        return 1  # a regression: significant and beyond the threshold
    return 0


def cmd_rates(args: argparse.Namespace, out: Console) -> int:
    """compare's false-alarm and detection rates from one `tlbench ab` job (bench.rates)."""
    from bench import rates

    a, b = results.load(args.a), results.load(args.b)
    try:
        view = rates.measure(a, b, args.half, args.trials, args.seed, args.max_slowdown,
                             args.alpha)
    except rates.RatesError as exc:
        print(f"tlbench: error: {args.a} vs {args.b}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, **view}, indent=1))
    else:
        for table in across.rates_tables(view):
            out.print(table)
    return 0
