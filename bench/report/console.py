"""Rich tables of a result document for the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from bench import measure, record, summary


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def pretrain_line(made: dict[str, Any]) -> str:
    """Where the suite's pretrained weights came from (`[pretrain]`)."""
    if made.get("cached"):
        return (f"weights: pretrained on the synthetic source identities, from the cache (made "
                f"{made['made'][:16].replace('T', ' ')} UTC): {made['path']}")
    if made.get("error"):
        return (f"weights: pretraining failed ({made['error']}; log {made['log']}): the runs "
                f"started from random weights")
    return (f"weights: pretrained in this run, {duration(made['wall_s'])} counted in the "
            f"suite's time ({made['steps']} steps on {made['images']} images of "
            f"{made['identities']} synthetic source identities, final loss "
            f"{made['final_loss']:.3f}), cached for later runs: {made['path']}")


def quality_lines(doc: dict[str, Any]) -> list[str]:
    """One line per quality figure a run carries: LFW protocol, projection check, time-to-accuracy
    (the console prints them; the HTML report lists them)."""
    lines = [pretrain_line(doc["pretrain"])] if doc.get("pretrain") else []
    skipped = next((r["data"]["skipped_images"] for r in doc["runs"]
                    if (r.get("data") or {}).get("skipped_images")), None)
    if skipped:
        shown = "; ".join(f"{s['path']} ({s['problem']})" for s in skipped[:5])
        lines.append(f"data: {len(skipped)} bad image(s) left out (on_bad_image = \"skip\"): "
                     f"{shown}" + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""))
    stolen = summary.disturbance(doc, "steal")
    if stolen:
        lines.append(f"CPU steal: {stolen} — the hypervisor gave these vCPUs' time to other "
                     f"work: figures are slower and noisier than this hardware alone")
    foreign = summary.disturbance(doc, "foreign_load")
    if foreign:
        lines.append(f"other processes' load on the runs' CPUs: {foreign} — something else ran "
                     f"on these CPUs: figures are slower and noisier than this hardware alone")
    for run_id, kind, share in summary.disturbed_runs(doc):
        what = "CPU steal" if kind == "steal" else "other processes' load"
        lines.append(f"{run_id}: measured under {share:.0%} {what} on its CPUs — not judged "
                     f"by compare")
    concurrent = (doc.get("lock") or {}).get("concurrent")
    if concurrent:
        lines.append("run with --allow-concurrent beside another suite on CPU(s) "
                     + "; ".join(f"{h['on']} (pid {h.get('pid', '?')}: "
                                 f"{h.get('command') or 'command unknown'})" for h in concurrent)
                     + ": its figures may measure that suite too")
    for r in doc["runs"]:
        if r.get("injected_slowdown"):
            lines.append(f"{r['run_id']}: NOT A MEASUREMENT of the stack — its training steps "
                         f"were made {r['injected_slowdown']:.0%} slower on purpose "
                         f"({measure.INJECT_VAR}, a test of compare)")
        lfw = r.get("lfw_verification")
        if lfw:
            e, a = lfw["euclidean"], lfw["angular"]
            lines.append(
                f"{r['run_id']}: LFW protocol ({lfw['folds']} folds, {lfw['usable']} pairs, "
                f"{lfw['missing_pairs']} missing): accuracy {e['accuracy']:.1%} ± "
                f"{e['accuracy_std']:.1%} (squared Euclidean) / {a['accuracy']:.1%} (angular), "
                f"VAL@FAR={e['far_target']:g} {e['val']:.1%}, AUC {e['auc']:.3f}, "
                f"EER {e['eer']:.1%}" + ("*" if r.get("accuracy_note") else ""))
        check = record.figures(r).get("projection error")
        if check:
            lines.append(f"{r['run_id']}: projection check — error {check.value:+.1%}: "
                         f"{check.note}")
        tta = r.get("time_to_accuracy")
        if tta:
            when = (f"reached in {duration(tta['elapsed_s'])} of training" if tta["reached"]
                    else "not reached")
            lines.append(f"{r['run_id']}: accuracy {tta['target']:.0%} {when} "
                         f"(evaluation {tta['evaluation']})")
        if r.get("accuracy_random_weights") is not None:
            lines.append(f"{r['run_id']}: transfer accuracy {r['accuracy']:.1%} from "
                         f"{r['model'].get('weights_source')} weights vs "
                         f"{r['accuracy_random_weights']:.1%} from random weights, same split")
    return lines


def fmt_num(value: float | None, fmt: str = ".1f") -> str:
    return "—" if value is None else format(value, fmt)


def new_table(title: str, *columns: str, left: int = 1) -> Table:
    """A table whose first `left` columns are text (left-aligned) and the rest figures."""
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i < left else "right")
    return table


def _acc(run: dict[str, Any]) -> str:
    acc = run.get("accuracy")
    return "—" if acc is None else f"{acc:.1%}" + ("*" if run.get("accuracy_note") else "")


def share_of_peak(value: float | None) -> str:
    """A share of peak; above 100% says so (the stated clock was a floor)."""
    if value is None:
        return "—"
    return f"{value:.1%}" + (" (above the stated peak)" if value > 1 else "")


def with_spread(figure: record.Figure | None, fmt: str = ".2f") -> str:
    """A figure's value, and over several processes (repeats) their range beside it."""
    if figure is None or figure.value is None:
        return "—"
    text = format(figure.value, fmt)
    if figure.spread is not None:
        low, high = figure.spread
        text += f" ({figure.processes} processes: {low:{fmt}}–{high:{fmt}})"
    return text


def _fraction(figure: record.Figure | None) -> str:
    return share_of_peak(None if figure is None else figure.value)


def _rss(run: dict[str, Any]) -> str:
    return f"{(run.get('peak_rss_mb') or 0) / 1024:.1f} GB"


def _total(figure: record.Figure) -> str:
    return duration(figure.value) + (" projected" if figure.kind == "projected" else "")


def scenario_tables(doc: dict[str, Any]) -> list[Table]:
    """One table per scenario, one row per backend that ran it (ok runs only)."""
    ok = [r for r in doc["runs"] if r.get("status") == "ok"]
    tables = []
    train = [r for r in ok if r["scenario"] == "full_training"]
    if train:
        t = new_table("Full training (from scratch; img/s of whole updates)", "backend", "img/s",
                      "input pipeline img/s", "data fill", "first step", "total", "GFLOP/s",
                      "% peak", "peak RSS")
        for r in train:
            f = record.figures(r)
            workers = r["params"].get("workers", 1)
            t.add_row(r["backend"] + (f" ({workers} workers)" if workers > 1 else ""),
                      with_spread(f["train img/s"]),
                      fmt_num(f["input pipeline img/s"].value, ".0f"),
                      duration(f["data fill s"].value), duration(f["first step s"].value),
                      _total(f["train total s"]), fmt_num(f["train GFLOP/s"].value),
                      _fraction(f["fraction of peak"]), _rss(r))
        tables.append(t)
    scaling = summary.scaling_rows(doc)
    if scaling:
        tables.append(scaling_table(scaling))
    if any(r["paper_scale"] for r in scaling):
        tables.append(hosts_table(scaling))
    transfer = [r for r in ok if r["scenario"] == "transfer"]
    if transfer:
        t = new_table("Transfer (embed once, train the head)", "backend", "extract img/s",
                      "% peak", "decode", "extraction", "head (tracing)", "total", "accuracy",
                      "from random weights", "chance", "peak RSS")
        for r in transfer:
            f = record.figures(r)
            rand = r.get("accuracy_random_weights")
            t.add_row(r["backend"], with_spread(f["extract img/s"], ".1f"),
                      _fraction(f["fraction of peak"]), duration(f["decode s"].value),
                      duration(f["extraction s"].value),
                      f"{duration(f['head s'].value)} ({duration(f['head trace s'].value)}) "
                      f"{r.get('head', '')}", _total(f["transfer total s"]), _acc(r),
                      "—" if rand is None else f"{rand:.1%}",
                      fmt_num(r.get("chance_accuracy"), ".1%"), _rss(r))
        tables.append(t)
    tune = [r for r in ok if r["scenario"] == "fine_tune"]
    if tune:
        t = new_table("Fine-tuning (top blocks unfrozen one stage at a time)", "backend", "stage",
                      "trainable weights", "img/s", "first step", "stage time", "elapsed",
                      "accuracy", left=2)
        for r in tune:
            f = record.figures(r)
            for k, st in enumerate(r["stages"], start=1):
                t.add_row(r["backend"], " + ".join(st["unfrozen"]),
                          f"{st['trainable_weights']:,}", with_spread(f[f"stage {k} img/s"]),
                          duration(st["series"].get("first")), duration(st["stage_s"]),
                          duration(st["elapsed_s"]),
                          f"{st['accuracy']:.1%}" + ("*" if r.get("accuracy_note") else ""))
        tables.append(t)
    infer = [r for r in ok if r["scenario"] == "inference"]
    if infer:
        t = new_table("Inference (embedding)", "backend", "p50 ms", "p90 ms", "p99 ms",
                      "bs1 img/s", "img/s", "batch", "GFLOP/s", "% peak", "peak RSS")
        for r in infer:
            f = record.figures(r)
            batch = r["params"]["batch_size"]
            t.add_row(r["backend"], with_spread(f["latency bs1 p50 ms"], ".1f"),
                      fmt_num(f["latency bs1 p90 ms"].value),
                      fmt_num(f["latency bs1 p99 ms"].value),
                      fmt_num(f["bs1 img/s"].value),
                      with_spread(f["throughput img/s"], ".1f"),
                      str(batch), fmt_num(f["infer GFLOP/s"].value),
                      _fraction(f["fraction of peak"]), _rss(r))
        tables.append(t)
    serving = [r for r in ok if r["scenario"] == "serving"]
    if serving:
        t = new_table("Serving under MLPerf LoadGen (short runs: not an MLPerf result)", "backend",
                      "SingleStream p50 ms", "p90 ms", "p99 ms", "Offline samples/s",
                      "bound ms", "Server peak QPS", "p99 at peak ms", "LoadGen ms/query")
        for r in serving:
            f = record.figures(r)
            cost = (r.get("serving") or {}).get("loadgen_cost") or {}
            t.add_row(r["backend"], _valid(f["singlestream p50 ms"]),
                      _valid(f["singlestream p90 ms"]), _valid(f["singlestream p99 ms"]),
                      _valid(f["offline samples/s"]), fmt_num(f["latency bound ms"].value),
                      _valid(f["server peak QPS"]), fmt_num(f["server p99 ms at peak"].value),
                      fmt_num(cost.get("cpu_ms_per_query"), ".2f"))
        tables.append(t)
    crosscheck = summary.crosscheck_rows(doc)
    if crosscheck:
        t = new_table("The harness's loops beside LoadGen (same stack, same result)", "backend",
                      "harness", "value", "LoadGen", "value", "LoadGen / harness", left=4)
        for c in crosscheck:
            t.add_row(c["backend"], c["harness"], fmt_num(c["harness_value"], ".2f"),
                      c["loadgen"], fmt_num(c["loadgen_value"], ".2f"),
                      "—" if c["ratio"] is None else f"{c['ratio']:.3f}x")
        tables.append(t)
    return tables


def _valid(figure: record.Figure) -> str:
    """A serving figure, or why there is none (an invalid LoadGen run, no valid rate)."""
    return with_spread(figure, ".1f") if figure.value is not None else figure.note or "—"


def _reference(ref: dict[str, Any] | None) -> str:
    if ref is None:
        return "—"
    if "images_per_s" not in ref:
        return f"{ref.get('status')}: {ref.get('error')}"
    return f"{ref['images_per_s']:.2f} ({ref['cores']} core{'s' if ref['cores'] != 1 else ''})"


def _engine(row: dict[str, Any]) -> str:
    return " ".join(filter(None, (row.get("engine"), row.get("engine_version")))) or "—"


def scaling_table(rows: list[dict[str, Any]]) -> Table:
    t = new_table("Data-parallel training (img/s of whole updates, all-reduce included)",
                  "backend", "engine", "workers × cores", "worker batch",
                  "update s, per worker", "img/s", "1 worker alone", "efficiency",
                  "1 worker, all cores", "vs 1 worker")
    for r in rows:
        eff, vs = r.get("efficiency"), r.get("vs_one_worker")
        steps = " / ".join(f"[bold]{s:.1f}[/]" if int(task) == r["pace_worker"] else f"{s:.1f}"
                           for task, s in sorted(r["worker_step_s"].items(),
                                                 key=lambda kv: int(kv[0])))
        hosts = f" on {r['hosts']} hosts" if r["hosts"] > 1 else ""
        t.add_row(r["backend"], _engine(r), f"{r['workers']} × {r['cores_per_worker']}{hosts}",
                  f"{r['worker_batch']} = {r['accumulation']} × {r['micro_batch']}", steps,
                  f"{r['images_per_s']:.2f}", _reference(r.get("alone")),
                  "—" if eff is None else f"{eff:.0%}",
                  _reference(r.get("one_worker_all_cores")),
                  "—" if vs is None else f"{vs:.2f}x")
    return t


def _interval(p: dict[str, Any]) -> str:
    return f"{duration(p['total_s'])} [{duration(p['low'])}, {duration(p['high'])}]"


def hosts_table(rows: list[dict[str, Any]]) -> Table:
    """The paper's full training on N hosts like this run's workers (projected)."""
    t = new_table(f"The paper's {record.PAPER['training_images']:,} images on N hosts like these "
                  f"workers (projected, 95% interval; the paper: ~20 h on one 2-socket Xeon)",
                  "backend", "engine",
                  *(f"{n} hosts" for n in record.HOSTS), "all-reduce s / update", left=2)
    for r in rows:
        ps = r["paper_scale"]
        if ps:
            t.add_row(r["backend"], _engine(r), *(_interval(ps["hosts"][str(n)])
                                                   for n in record.HOSTS),
                      f"{ps['all_reduce_s']:.2f} of {ps['update_s']:.2f}")
    t.caption = "model: " + next(r["paper_scale"]["model"] for r in rows if r["paper_scale"])
    return t


def paper_table(doc: dict[str, Any]) -> Table:
    p = record.PAPER
    table = new_table("Transfer learning vs full training, beside the white paper", "who",
                      "basis", "full training", "transfer", "speed-up", left=2)
    table.add_row("paper", f"{p['machine']}, {p['software']}, LFW, 160 px", "~20 h", "~15 min",
                  "~80x")
    for row in summary.speedups(doc):
        ps = row["paper_scale"]
        table.add_row(row["backend"], f"paper scale, projected from this run's rates "
                      f"({row['image_size']} px, {row['variant']} depth)",
                      duration(ps["full_training_s"]), duration(ps["transfer_s"]),
                      f"{ps['speedup']:.0f}x projected")
        kind = row["full_training_kind"]
        table.add_row(row["backend"], f"this suite as run: {row['training_images']:,} images "
                      f"trained ({kind}), {row['transfer_images']:,} embedded (measured)",
                      duration(row["full_training_s"]), duration(row["transfer_s"]),
                      f"{row['speedup']:.0f}x" + (" projected" if kind == "projected" else ""))
    return table


def ratio_table(doc: dict[str, Any]) -> Table:
    table = new_table(f"Speed relative to {summary.BASELINE_BACKEND} (same suite run, side by "
                      f"side)", "scenario", "backend", "figure", "value",
                      summary.BASELINE_BACKEND, "ratio", left=3)
    for row in summary.backend_ratios(doc):
        table.add_row(row["scenario"], row["backend"], row["figure"], f"{row['value']:.2f}",
                      f"{row['baseline']:.2f}", f"{row['ratio']:.2f}x")
    return table


def _signed(value: float | None, fmt: str = "+.1%") -> str:
    return "—" if value is None else format(value, fmt)


def precision_table(doc: dict[str, Any]) -> Table:
    """Each lower precision against its stack's fp32: speed-up per figure, accuracy deltas."""
    rows = summary.precision_rows(doc)
    speeds = summary.speed_figures(rows)
    table = new_table("Precision: speed relative to the stack's fp32 (same run), accuracy deltas",
                      "backend", "vs", "ran on", *speeds,
                      *(f"Δ {n}" for n in summary.ACCURACY_FIGURES), "time in precision asked",
                      left=3)
    for r in rows:
        table.add_row(r["backend"], r["fp32"], r["isa"],
                      *(fmt_num(r["speed"].get(n), ".2f") + ("x" if r["speed"].get(n) else "")
                        for n in speeds),
                      *(_signed(r["accuracy"].get(n), "+.3f" if n == "LFW AUC" else "+.1%")
                        + ("*" if r["note"] and n in r["accuracy"] else "")
                        for n in summary.ACCURACY_FIGURES),
                      _signed(r["kernel_share"], ".0%"))
    return table


def kernels_table(doc: dict[str, Any]) -> Table:
    table = new_table("Kernels that ran", "run", "source", "asked", "ran on", "top kernels",
                      "time in precision asked", left=5)
    for r in summary.kernel_rows(doc):
        table.add_row(r["run_id"], r["source"], r["asked"], r["isa"], ", ".join(r["top"]),
                      Text(_signed(r["share"], ".0%"), style="red" if r["mismatch"] else ""))
    return table


def render(doc: dict[str, Any]) -> Group:
    parts: list[Any] = scenario_tables(doc)
    notes = sorted({r["accuracy_note"] for r in doc["runs"] if r.get("accuracy_note")})
    parts += [Text(f"* {n}", style="dim") for n in notes]
    parts += [Text(line) for line in quality_lines(doc)]
    if summary.speedups(doc):
        parts.append(paper_table(doc))
    if summary.backend_ratios(doc):
        parts.append(ratio_table(doc))
    if summary.configured_lines(doc):
        parts.append(Text(f"Tuned: {summary.CONFIGURED}:"))
        parts += [Text(f"  {line}") for line in summary.configured_lines(doc)]
    if summary.precision_rows(doc):
        parts.append(precision_table(doc))
    if summary.kernel_rows(doc):
        parts.append(kernels_table(doc))
    grouped: dict[tuple[str, str], list[str]] = {}
    for run in summary.not_ok(doc):
        cause = run.get("reason") or run.get("error", "")
        grouped.setdefault((run.get("status", "?"), cause), []).append(run["run_id"])
    for (status, cause), ids in grouped.items():
        parts.append(Text(f"{status}: {', '.join(ids)}: {cause}",
                          style="yellow" if status == "skipped" else "red"))
    disagree = [r["run_id"] for r in doc["runs"] if r.get("parity", {}).get("agrees") is False]
    if disagree:
        parts.append(Text(f"embeddings disagree with fp32 TensorFlow: {', '.join(disagree)}",
                          style="red"))
    for r in summary.kernel_rows(doc):
        if r["mismatch"]:
            parts.append(Text(f"{r['run_id']}: kernels do not match the precision asked: "
                              f"{r['mismatch']}", style="red"))
    return Group(*parts)


def show(doc: dict[str, Any], console: Console) -> None:
    console.print(render(doc))
