"""The commands that measure: `tlbench run`, `tlbench ab` (through `bench.runner`, drawn
here), and `tlbench pretrain`."""

from __future__ import annotations

import argparse
import dataclasses
import io
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench import distributed, results, runner, tune
from bench import suite as suite_mod
from bench.commands import EXIT_BAD_INPUT, EXIT_CANNOT_WRITE, EXIT_FAILED_RUN
from bench.commands.views import rows_of
from bench.data.lfw import DataError
from bench.pinning import read_topology, resolve
from bench.plan import scenario_of
from bench.report import across
from bench.report import console as console_report

DEFAULT_SUITE = "suites/default.toml"  # what `tlbench run` runs without a suite or --tuned
_SUMMARY_WIDTH = 140  # the summary file's columns: its widest table, unfolded
_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())


def _clock(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}"


def eta_s(ahead: tuple[str, ...], previous: dict[str, float],
          measured: dict[str, float]) -> float | None:
    """Seconds left: each run still to measure (by run id; skipped and carried-over runs are
    not among them) at its expected cost — its wall time in the previous result of this suite on
    this machine, else the mean of the runs of its scenario measured so far in this suite, else
    of all measured so far; None while one has no such guess (before the first measured run)."""
    by_scenario: dict[str, list[float]] = {}
    for run_id, wall in measured.items():
        by_scenario.setdefault(scenario_of(run_id), []).append(wall)
    overall = list(measured.values())
    total = 0.0
    for run_id in ahead:
        same = by_scenario.get(scenario_of(run_id)) or overall
        if run_id in previous:
            total += previous[run_id]
        elif same:
            total += sum(same) / len(same)
        else:
            return None
    return total


def _run_line(run: dict[str, Any], index: int, total: int, elapsed: float, eta: float | None,
              round_: str = "") -> str:
    """`[3/28] transfer/tf-stock ok: extract img/s 66.0 (6 s); elapsed 0:02:13, ETA 0:10:01`:
    what a log shows of each finished run; a skip reason or an error whole, on one line."""
    from bench import record

    if run["status"] == "ok":
        figure = record.headline(run)
        what = ("" if figure is None else f"{figure.name} {figure.value:.4g}"
                if figure.value is not None else f"{figure.name}: {figure.note or 'none'}")
    else:
        what = " / ".join(line.strip() for line in str(
            run.get("reason") or run.get("error") or "no cause recorded").splitlines()
            if line.strip())
    return (f"[{index}/{total}] {run['run_id']}{round_} {run['status']}: {what} "
            f"({run.get('wall_s', 0):.0f} s); elapsed {_clock(elapsed)}, "
            f"ETA {'?' if eta is None else _clock(eta)}")


def _suite_of(args: argparse.Namespace, base: suite_mod.Suite, workers: int) -> suite_mod.Suite:
    return suite_mod.override(base, backends=args.backend, scenarios=args.scenario,
                              data=args.data, weights=args.weights, placement=args.placement,
                              workers=workers, pass_env=args.pass_env, skip_bad=args.skip_bad,
                              repeats=args.repeats)


def _tuned(paths: list[str]) -> tuple[suite_mod.Suite, dict[str, runner.Configured]]:
    """`--tuned`: the first tune's suite on the backends and scenarios the tunes configured,
    each of those runs as its tune chose."""
    docs = [(path, tune.read(path, "--tuned")) for path in paths]
    configured = {k: v for path, doc in docs for k, v in tune.configured(doc, path).items()}
    if not configured:
        raise DataError(f"--tuned {', '.join(paths)}: no finished target (a --check, or a tune "
                        f"interrupted before its first target ended, writes no tuned suite; "
                        f"finish it with tlbench tune --resume)")
    base = suite_mod.from_dict(docs[0][1]["suite"], paths[0])
    return suite_mod.override(
        dataclasses.replace(base, name=f"{base.name}-tuned"),
        backends=[c.suite.backends[0] for c in configured.values()],
        scenarios=[c.suite.scenarios[0] for c in configured.values()]), configured


def cmd_run(args: argparse.Namespace, out: Console) -> int:
    previous = results.load(args.resume) if args.resume else None
    if args.tuned and (args.suite or previous):
        raise DataError("--tuned runs the tune's own suite: give it no SUITE and no --resume "
                        "(a --tuned run that stopped resumes with --resume RESULT alone)")
    configured: dict[str, runner.Configured] = {}
    if previous:
        base = suite_mod.from_dict(previous["suite"], args.resume)
        configured = {run_id: runner.Configured.from_dict(stored, args.resume)
                      for run_id, stored in (previous.get("configured") or {}).items()}
    elif args.tuned:
        base, configured = _tuned(args.tuned)
    else:
        base = suite_mod.load(args.suite or DEFAULT_SUITE)
    cluster = distributed.load_cluster(args.cluster, args.task_index) if args.cluster else None
    if cluster is None and args.task_index:
        raise distributed.ClusterError("--task-index needs --cluster FILE (the hosts' list)")
    suite = _suite_of(args, base, len(cluster.workers) if cluster else args.workers)
    # the data, weights and variables asked for reach the configured runs too (their tuned
    # placement, sections and env stay theirs)
    configured = {run_id: dataclasses.replace(c, suite=suite_mod.override(
        c.suite, data=args.data, weights=args.weights, pass_env=args.pass_env,
        skip_bad=args.skip_bad)) for run_id, c in configured.items()}
    # Resuming: runs that finished (ok or skipped) are carried over, marked, not measured again.
    carried = {r["run_id"]: {**r, "carried_from": args.resume} for r in previous["runs"]
               if r.get("status") in ("ok", "skipped")} if previous else {}
    code, _ = _measure(suite, [runner.Side("", None, configured=configured)], args, out,
                       carried, cluster)
    return code


def cmd_ab(args: argparse.Namespace, out: Console) -> int:
    """The same suite on two stacks in one job, alternating A B, then B A, round by round (as
    asv continuous does), so the machine's drift falls on both alike; then A vs B compared."""
    from bench import baseline, compare, exports

    for label, python in (("A", args.a), ("B", args.b)):
        if python is not None and not Path(python).is_file():
            raise DataError(f"--{label.lower()} {python}: no such interpreter; give the python "
                            f"of the environment to measure (e.g. .venv/bin/python)")
    sides = [runner.Side("A", args.a, _assignments(args.a_env, "--a-env")),
             runner.Side("B", args.b, _assignments(args.b_env, "--b-env"))]
    if args.a_ref:
        try:
            built = baseline.prepare(args.a_ref, note=lambda text: out.print(escape(text)))
        except baseline.BaselineError as exc:
            raise DataError(str(exc)) from None
        sides[0] = dataclasses.replace(sides[0], python=built.python, source=str(built.source),
                                       baseline=built.describe())
        out.print(escape(f"A: {args.a_ref} = commit {built.commit[:12]}, environment "
                         f"{built.env}"))
        # its workers start in the baseline's tree: paths given here must not depend on it
        args.data, args.weights = (str(Path(p).resolve()) if p else p
                                   for p in (args.data, args.weights))
    suite = _suite_of(args, suite_mod.load(args.suite), args.workers)
    code, docs = _measure(suite, sides, args, out, {}, None)
    if code not in (0, EXIT_FAILED_RUN):
        return code
    (doc_a, path_a), (doc_b, path_b) = docs
    rows = rows_of(doc_a, doc_b, f"{path_a} vs {path_b}", args.max_slowdown, args.alpha)
    if rows is None:
        return EXIT_BAD_INPUT
    out.print(across.compare_table(rows, args.max_slowdown, args.alpha))
    try:  # B's figures and the verdict, for github-action-benchmark and Bencher
        written = exports.write(doc_b, path_b, rows)
        out.print(escape("exports: " + ", ".join(str(p) for p in written)))
    except OSError as exc:
        out.print(f"[yellow]warning:[/] {escape(f'exports not written: {exc}')}")
    worse = compare.regressions(rows)
    if worse:
        out.print(f"[bold red]B is slower[/] in {len(worse)} row(s): "
                  + escape(", ".join(f"{r.run_id} {r.metric} {r.time_change_pct:+.1f}%"
                                     for r in worse)))
        return 1
    return code


def _assignments(items: list[str], flag: str) -> dict[str, str]:
    """NAME=VALUE arguments as a dict; a malformed one is refused, naming it."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise DataError(f"{flag} {item!r}: give NAME=VALUE (e.g. {flag} "
                            f"TLBENCH_INJECT_SLOWDOWN=0.10)")
        out[name.strip()] = value
    return out


def write_reports(doc: dict[str, Any], path: Path, reports_dir: Path) -> tuple[Path, Path]:
    """The report files of a result as it stands: the HTML page and the console summary as
    text, in reports/ beside the results folder (./reports for the default ./results). Written
    after every measured run, so a suite stopped early leaves its first answer."""
    from bench.report import html

    page = html.write(html.render(doc, str(path)), html.default_path(path, reports_dir))
    text = Console(file=io.StringIO(), width=_SUMMARY_WIDTH, color_system=None)
    console_report.show(doc, text)
    summary = page.with_suffix(".txt")
    summary.write_text(text.file.getvalue(), encoding="utf-8")
    return page, summary


def _measure(suite: suite_mod.Suite, sides: list[runner.Side], args: argparse.Namespace,
             out: Console, carried: dict[str, dict[str, Any]],
             cluster: distributed.Cluster | None) -> tuple[int, list[tuple[dict, Path]]]:
    """The runner's suite, drawn: live progress on a terminal, one plain line per finished run
    otherwise; then each side's tables and HTML page. Returns the exit code and each side's
    (document, path)."""
    started = time.monotonic()
    with Progress(*_COLUMNS, console=out, disable=not out.is_terminal) as bars:
        overall: list[Any] = []  # the suite's bar, once the runner says how many runs
        phases: dict[str, Any] = {}
        measured: dict[str, float] = {}  # wall seconds of each run measured so far
        unwritable: list[OSError] = []  # the report files could not be written: not again
        previous: dict[str, float] = {}  # of each run in the previous result of this suite

        def draw(event: runner.Event) -> None:
            if event.kind in (runner.STARTED, runner.NOTE):
                previous.update(event.previous)
                out.print(event.text)
                return
            if not overall:
                overall.append(bars.add_task("suite", total=event.total))
            if event.kind == runner.CARRIED:
                bars.advance(overall[0])
            elif event.kind == runner.RUN_STARTED:
                phases[event.label] = bars.add_task(f"  {escape(event.label)}: starting",
                                                    total=None)
            elif event.kind == runner.PHASE:
                bars.update(phases[event.label],
                            description=f"  {escape(event.label)}: {escape(event.phase)}",
                            completed=event.done, total=event.of)
            elif event.kind == runner.RUN_FINISHED:
                record = event.record or {}
                if record.get("status") != "skipped":
                    measured[record["run_id"]] = record["wall_s"]
                bars.update(phases[event.label], description=f"  {escape(event.label)}: "
                            f"{record['status']} ({record['wall_s']:.0f} s)", completed=1,
                            total=1)
                bars.advance(overall[0])
                if record.get("status") != "skipped" and not unwritable:
                    try:  # a first answer, kept as it grows
                        write_reports(*event.result, Path(args.out).parent / "reports")
                    except OSError as exc:  # the result file is what must survive: go on
                        unwritable.append(exc)
                        out.print(f"[yellow]cannot write the report files[/] "
                                  f"({escape(str(exc))}): the suite goes on, its result file "
                                  f"kept; `tlbench report RESULT` writes them later")
                if not out.is_terminal:  # a CI log: one plain line per finished run
                    where = " ".join(filter(None, [
                        f"round {event.round}/{event.repeats}" if event.repeats > 1 else "",
                        f"side {event.side}" if event.side else ""]))
                    elapsed = time.monotonic() - started
                    out.print(_run_line(record, event.index, event.total, elapsed,
                                        eta_s(event.ahead, previous, measured),
                                        f" ({where})" if where else ""), markup=False,
                              highlight=False, soft_wrap=True)

        try:
            outcome = runner.measure(suite, sides, Path(args.out), draw, carried, cluster,
                                     getattr(args, "resume", "") or None,
                                     getattr(args, "allow_concurrent", False))
        except results.SaveError as exc:
            print(f"tlbench: error: {exc}", file=sys.stderr)
            return EXIT_CANNOT_WRITE, []
    if outcome.interrupted:
        for doc, path in outcome.docs:
            out.print(f"[red]interrupted ({outcome.interrupted})[/]: {len(doc['runs'])} "
                      f"finished run(s) kept in {escape(str(path))}")
        return 128 + signal.Signals[outcome.interrupted].value, []
    for doc, path in outcome.docs:
        console_report.show(doc, out)
        try:
            page, summary = write_reports(doc, path, Path(args.out).parent / "reports")
        except OSError as exc:
            print(f"tlbench: error: cannot write the report files of {path} ({exc}); the result "
                  f"file is complete: `tlbench report {path} --html PATH` writes them where "
                  f"there is room", file=sys.stderr)
            return EXIT_CANNOT_WRITE, outcome.docs
        out.print(f"result: {escape(str(path))}\nHTML report: {escape(str(page))}\n"
                  f"summary: {escape(str(summary))}")
    if outcome.failed:
        out.print(f"[red]{len(outcome.failed)} run(s) failed[/]: "
                  + escape(f"{', '.join(outcome.failed)} (logs in "
                           + ", ".join(str(s.launcher.log_dir) for s in sides) + ")"))
        return EXIT_FAILED_RUN, outcome.docs
    return 0, outcome.docs


def cmd_pretrain(args: argparse.Namespace, out: Console) -> int:
    """Pretraining in its own process, pinned like a worker (what a suite with `[pretrain]
    enabled = true` runs before its first run when the weights are not cached)."""
    from bench.launcher import Launcher, Limits
    from bench.models.store import weights_path

    suite = suite_mod.override(suite_mod.load(args.suite), placement=args.placement)
    topology = read_topology()
    placement = resolve(suite.placement, topology, suite.use_logical_cores)
    model = dataclasses.asdict(suite.model)
    given = {"identities": args.identities, "epochs": args.epochs, "micro_batch": args.batch,
             "learning_rate": args.learning_rate}  # each over the suite's [pretrain]
    spec = dataclasses.replace(suite.pretrain, **{k: v for k, v in given.items()
                                                  if v is not None})
    launcher = Launcher(topology, log_dir=weights_path(model).parent, pass_env=suite.pass_env,
                        env=suite.env)
    with Progress(*_COLUMNS, console=out) as bars:
        task = bars.add_task("pretrain", total=None)
        made = launcher.pretrain(
            model, spec, suite.data.seed, placement,
            Limits(timeout_s=suite.timeout_s, max_memory_gb=suite.max_memory_gb),
            lambda e: bars.update(task, description=escape(e["phase"]),
                                  completed=e.get("done") or 0, total=e.get("total")))
    if "error" in made:
        out.print("[red]pretraining failed[/]: " + escape(
            f"{made['error']} (log {made['log']})\n{made['log_tail']}"))
        return EXIT_FAILED_RUN
    out.print(escape(
        f"pretrained weights: {made['path']} ({made['steps']} steps on {made['images']} images "
        f"of {made['identities']} source identities, final loss {made['final_loss']:.3f}, "
        f"{made['wall_s']:.0f} s); transfer and inference runs of this model configuration now "
        f"start from them"))
    return 0
