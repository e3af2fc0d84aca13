"""Rich tables across result files for the terminal: a comparison's rows, `tlbench rates`'
trials, the history of a folder and the fleet view. One result's tables are bench.report.console's,
whose formats these share."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from bench.report.console import duration, fmt_num, new_table, share_of_peak

_STATUS_STYLE = {"worse": "bold red", "improved": "green", "same": "dim",
                 "not comparable": "yellow"}


def compare_table(rows: list[Any], max_slowdown_pct: float, alpha: float) -> Table:
    """The rows of bench.compare: ratio new/base, time change, Holm-adjusted p, status."""
    table = Table(title=f"New vs baseline: worse = slower by more than {max_slowdown_pct:g}% and "
                  f"significant (Holm-adjusted p < {alpha:g}, training time (†) in a family of "
                  f"its own, the other rows in another: the sides of one interleaved job on the "
                  f"pairs of processes that ran side by side (one-sample t on their log ratios), "
                  f"else Welch's t on the processes' own figures with repeats, else Mann–Whitney "
                  f"U on one process's samples; and, with the machine's speed new/base on a "
                  f"reference kernel, relative to it)", title_justify="left")
    table.add_column("run", no_wrap=True)
    table.add_column("figure")
    for col in ("base", "new", "new/base", "time", "p", "n", "machine"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("note", min_width=20)
    for r in rows:
        ratio = "—" if r.ratio is None else f"{r.ratio:.3f}x"
        change = "—" if r.time_change_pct is None else f"{r.time_change_pct:+.1f}%"
        p = "—" if r.p_value is None else f"{r.p_value:.2g}"
        n = f"{r.n_base}/{r.n_new}" if r.comparable else "—"
        speed = "—" if r.machine_ratio is None else f"{r.machine_ratio:.3f}x"
        note = r.note
        if r.total_ratio is not None:
            note += f"; total new/base {r.total_ratio:.3f}x ({r.total_kind})"
        table.add_row(r.run_id, r.metric + (" †" if r.primary else ""), fmt_num(r.base, ".2f"),
                      fmt_num(r.new, ".2f"), ratio, change,
                      p, n, speed, Text(r.status, style=_STATUS_STYLE.get(r.status, "")), note)
    return table


def rates_tables(view: dict[str, Any]) -> list[Any]:
    """bench.rates' trials, one row each, and the rates they add up to."""
    table = new_table(f"compare on {view['half']} pairs of processes (of "
                      f"{view['processes']['A']} A, {view['processes']['B']} B; threshold "
                      f"{view['max_slowdown_pct']:g}%, alpha {view['alpha']:g} family-wise)",
                      "trial", "rounds", "worse", "improved", "changes (time, + slower)")
    for kind, label in (("aa", "A/A"), ("detection", "A/B")):
        for i, trial in enumerate(view[kind]["trials"], start=1):
            rows = [r for r in trial["rows"] if r["status"] != "not comparable"]
            table.add_row(f"{label} {i}", f"{trial['base_rounds']} vs {trial['new_rounds']}",
                          str(sum(r["status"] == "worse" for r in rows)),
                          str(sum(r["status"] == "improved" for r in rows)),
                          ", ".join(f"{r['run_id']} {r['metric']} "
                                    f"{r['time_change_pct']:+.1f}%" for r in rows))
    aa, det = view["aa"], view["detection"]
    n_aa, n_det = len(aa["trials"]), len(det["trials"])
    lines = [f"A/A: {aa['false_alarms']} of {n_aa} trials raised a false alarm (a row worse); "
             f"{aa['improved']} had a row improved",
             *(f"A/B: {run_id} slowed {view['injected'][run_id]:.0%}: caught in "
               f"{caught} of {n_det}" for run_id, caught in det["caught"].items()),
             f"A/B: every slowed training run caught in {det['all_caught']} of {n_det}; "
             f"{det['false_alarms_elsewhere']} trial(s) flagged a run that was not slowed"]
    return [table, *(Text(line) for line in lines)]


def history_table(entries: list[dict[str, Any]], folder: str) -> Table:
    """Training and transfer figures per result file and backend, oldest first."""
    table = new_table(f"History of {folder} (oldest first)", "date", "commit", "suite", "backend",
                      "px", "train img/s", "full training", "", "extract img/s", "transfer",
                      left=4)
    for e in entries:
        total_h = e["train_total_h"]
        table.add_row(e["created"], e["commit_short"], e["suite"], e["backend"],
                      str(e["image_size"]), fmt_num(e["train_img_s"], ".2f"),
                      duration(None if total_h is None else total_h * 3600),
                      e["train_kind"] or "", fmt_num(e["extract_img_s"]),
                      duration(e["transfer_total_s"]))
    return table


def fleet_tables(view: dict[str, Any]) -> list[Table]:
    """The fleet view: machines, each run's headline per machine with its ratio to the
    reference, the geometric means, and the transfer-vs-full speed-up beside the paper's."""
    names = [f"{m['hostname']} · {m['hardware_id']}" for m in view["machines"]]
    ref = view["reference"]
    machines = new_table("Machines", "machine", "CPU", "cores", "GHz (from)", "peak fp32",
                         "peak bf16", left=2)
    p = view["paper"]
    machines.add_row(f"{p['label']} (reported)", p["cpu_model"], str(p["physical_cores"]),
                     f"{p['ghz']} (base)", f"{p['peak_fp32_gflops']:.0f}", "—")
    for i, m in enumerate(view["machines"]):
        machines.add_row(names[i] + (" (reference)" if i == ref else ""), m["cpu_model"] or "?",
                         str(m["physical_cores"]),
                         f"{fmt_num(m['ghz'], '.2f')} ({m['frequency_source'] or 'unknown'})",
                         fmt_num(m["peak_gflops"]["fp32"], ".0f"),
                         fmt_num(m["peak_gflops"]["bf16"], ".0f"))
    figures = new_table(f"Headline figures (ratio to {names[ref]}; /core, /core-GHz, % peak)",
                        "scenario", "backend", *names, left=2)
    for row in view["rows"]:
        cells = []
        for c in row["cells"]:
            if c["status"] != "ok":
                cells.append(c["status"])
                continue
            ratio = (f"{c['ratio']:.2f}x" if c.get("ratio") is not None
                     else f"not ratioed: {c.get('why')}")
            cells.append(f"{c['value']:.2f} {c['figure']}\n{fmt_num(c['per_core'], '.2f')} /core, "
                         f"{fmt_num(c['per_core_ghz'], '.2f')} /core-GHz, "
                         f"{share_of_peak(c['share_of_peak'])}\n{ratio}")
        figures.add_row(row["scenario"], row["backend"], *cells)
    for g in view["geomeans"]:
        figures.add_row("geometric mean", g["backend"], *[
            "—" if c["value"] is None else f"{c['value']:.2f}x over {c['scenarios']}"
            for c in g["cells"]])
    speedups = new_table("Transfer vs full training at the paper's scale (projected per machine)",
                         "backend", "white paper (reported)", *names)
    for n, s in enumerate(view["speedups"]):
        speedups.add_row(s["backend"], f"~20 h / ~15 min: ~{p['speedup']:.0f}x" if n == 0 else "",
                         *[
            "—" if c is None else f"{duration(c['paper_scale']['full_training_s'])} / "
            f"{duration(c['paper_scale']['transfer_s'])}: {c['paper_scale']['speedup']:,.0f}x"
            for c in s["cells"]])
    return [machines, figures, speedups]
