"""`tlbench` command line: run suites, show results, describe the machine, manage data.

Exit codes: 0 success; 1 a run failed (its result is still written); 2 unusable input (suite,
placement, data, result file), named with its fix; 74 a result file could not be written (every
run kept in a fallback file); 75 another suite holds the CPUs; 130 / 143 interrupted by SIGINT /
SIGTERM (finished runs are kept). The run loop itself is `bench.runner`'s; this module parses
arguments and draws.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench import __version__, distributed, machine, results, runner
from bench import lock as cpu_lock
from bench import suite as suite_mod
from bench.data.lfw import DataError
from bench.models.weights import WeightsError
from bench.pinning import PlacementError, read_topology, resolve
from bench.report import console as console_report

EXIT_FAILED_RUN, EXIT_BAD_INPUT = 1, 2  # interrupted: 128 + the signal (130 for SIGINT)
# sysexits.h: EX_IOERR, a result file could not be written; EX_TEMPFAIL, another suite holds
# the CPUs (try again later)
EXIT_CANNOT_WRITE, EXIT_BUSY = 74, 75
_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())


def _clock(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}"


def _run_line(run: dict[str, Any], index: int, total: int, started: float,
              round_: str = "") -> str:
    """`[3/28] transfer/tf-stock ok: extract img/s 66.0 (6 s); elapsed 0:02:13, ETA 0:10:01`:
    what a log shows of each finished run (the ETA: the mean run so far, times the runs left)."""
    from bench import record

    if run["status"] == "ok":
        figure = record.headline(run)
        what = f"{figure.name} {figure.value:.4g}" if figure and figure.value is not None else ""
    else:
        what = (str(run.get("reason") or run.get("error") or "no cause recorded")
                .splitlines() or [""])[0][:120]
    elapsed = time.monotonic() - started
    eta = elapsed / index * (total - index)
    return (f"[{index}/{total}] {run['run_id']}{round_} {run['status']}: {what} "
            f"({run.get('wall_s', 0):.0f} s); elapsed {_clock(elapsed)}, ETA {_clock(eta)}")


def _suite_of(args: argparse.Namespace, base: suite_mod.Suite, workers: int) -> suite_mod.Suite:
    return suite_mod.override(base, backends=args.backend, scenarios=args.scenario,
                              data=args.data, weights=args.weights, placement=args.placement,
                              workers=workers, pass_env=args.pass_env, skip_bad=args.skip_bad,
                              repeats=args.repeats)


def cmd_run(args: argparse.Namespace, out: Console) -> int:
    previous = results.load(args.resume) if args.resume else None
    base = (suite_mod.from_dict(previous["suite"], args.resume) if previous
            else suite_mod.load(args.suite))
    cluster = distributed.load_cluster(args.cluster, args.task_index) if args.cluster else None
    if cluster is None and args.task_index:
        raise distributed.ClusterError("--task-index needs --cluster FILE (the hosts' list)")
    suite = _suite_of(args, base, len(cluster.workers) if cluster else args.workers)
    # Resuming: runs that finished (ok or skipped) are carried over, marked, not measured again.
    carried = {r["run_id"]: {**r, "carried_from": args.resume} for r in previous["runs"]
               if r.get("status") in ("ok", "skipped")} if previous else {}
    code, _ = _measure(suite, [runner.Side("", None)], args, out, carried, cluster)
    return code


def cmd_ab(args: argparse.Namespace, out: Console) -> int:
    """The same suite on two stacks in one job, alternating A B, then B A, round by round (as
    asv continuous does), so the machine's drift falls on both alike; then A vs B compared."""
    from bench import compare

    for label, python in (("A", args.a), ("B", args.b)):
        if not Path(python).is_file():
            raise DataError(f"--{label.lower()} {python}: no such interpreter; give the python "
                            f"of the environment to measure (e.g. .venv/bin/python)")
    suite = _suite_of(args, suite_mod.load(args.suite), args.workers)
    sides = [runner.Side("A", args.a, _assignments(args.a_env, "--a-env")),
             runner.Side("B", args.b, _assignments(args.b_env, "--b-env"))]
    code, docs = _measure(suite, sides, args, out, {}, None)
    if code not in (0, EXIT_FAILED_RUN):
        return code
    (doc_a, path_a), (doc_b, path_b) = docs
    rows = _rows(doc_a, doc_b, f"{path_a} vs {path_b}", args.max_slowdown, args.alpha)
    if rows is None:
        return EXIT_BAD_INPUT
    out.print(console_report.compare_table(rows, args.max_slowdown, args.alpha))
    worse = compare.regressions(rows)
    if worse:
        out.print(f"[bold red]B is slower[/] in {len(worse)} row(s): "
                  + ", ".join(f"{r.run_id} {r.metric} {r.time_change_pct:+.1f}%" for r in worse))
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

        def draw(event: runner.Event) -> None:
            if event.kind in (runner.STARTED, runner.NOTE):
                out.print(event.text)
                return
            if not overall:
                overall.append(bars.add_task("suite", total=event.total))
            if event.kind == runner.CARRIED:
                bars.advance(overall[0])
            elif event.kind == runner.RUN_STARTED:
                phases[event.label] = bars.add_task(f"  {event.label}: starting", total=None)
            elif event.kind == runner.PHASE:
                bars.update(phases[event.label], description=f"  {event.label}: {event.phase}",
                            completed=event.done, total=event.of)
            elif event.kind == runner.RUN_FINISHED:
                record = event.record or {}
                bars.update(phases[event.label], description=f"  {event.label}: "
                            f"{record['status']} ({record['wall_s']:.0f} s)", completed=1,
                            total=1)
                bars.advance(overall[0])
                if not out.is_terminal:  # a CI log: one plain line per finished run
                    where = " ".join(filter(None, [
                        f"round {event.round}/{event.repeats}" if event.repeats > 1 else "",
                        f"side {event.side}" if event.side else ""]))
                    out.print(_run_line(record, event.index, event.total, started,
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
                      f"finished run(s) kept in {path}")
        return 128 + signal.Signals[outcome.interrupted].value, []
    from bench.report import html

    for doc, path in outcome.docs:
        console_report.show(doc, out)
        # reports/ beside the results folder: ./reports for the default ./results
        page = html.write(html.render(doc, str(path)),
                          html.default_path(path, Path(args.out).parent / "reports"))
        out.print(f"result: {path}\nHTML report: {page}")
    if outcome.failed:
        out.print(f"[red]{len(outcome.failed)} run(s) failed[/]: {', '.join(outcome.failed)} "
                  "(logs in " + ", ".join(str(s.launcher.log_dir) for s in sides) + ")")
        return EXIT_FAILED_RUN, outcome.docs
    return 0, outcome.docs


def cmd_pretrain(args: argparse.Namespace, out: Console) -> int:
    """Train on the synthetic source identities in this process, pinned like a worker."""
    import os

    from bench.backends import get
    from bench.pinning import pin_self

    suite = suite_mod.override(suite_mod.load(args.suite), placement=args.placement)
    placement = resolve(suite.placement, read_topology(), suite.use_logical_cores)
    # oneDNN's runtime as the tf-onednn worker has it, without its verbose lines: this process
    # prints to the user's terminal, and pretraining's kernels are not a measurement
    os.environ.update({**placement.environment(), **get("tf-onednn").environment()})
    os.environ.pop("ONEDNN_VERBOSE")
    pin_self(placement.cpus)
    from bench.pretrain import pretrain

    model = {**dataclasses.asdict(suite.model), "weights": ""}
    with Progress(*_COLUMNS, console=out) as bars:
        task = bars.add_task("pretrain", total=None)

        def progress(phase: str, done: float = 0, total: float | None = None) -> None:
            bars.update(task, description=phase, completed=done, total=total)

        facts = pretrain(model, identities=args.identities, epochs=args.epochs,
                         micro_batch=args.batch, learning_rate=args.learning_rate,
                         seed=suite.data.seed, progress=progress)
    out.print(f"pretrained weights: {facts['path']} ({facts['steps']} steps on "
              f"{facts['images']} images of {facts['identities']} source identities, final "
              f"loss {facts['final_loss']:.3f}); transfer and inference runs of this model "
              f"configuration now start from them")
    return 0


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
        out.print(console_report.history_table(entries, args.history))
        for problem in problems:
            out.print(f"[yellow]skipped[/] {problem}")
        page = html.render_history(entries, args.history, problems)
        name = f"history-{Path(args.history).resolve().name}.html"
        path = html.write(page, args.html or Path("reports") / name)
        out.print(f"HTML report: {path}")
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
        rows = _rows(base, doc, f"{args.baseline} vs {args.result}", args.max_slowdown,
                     args.alpha, args.across_machines)
        if rows is None:
            return EXIT_BAD_INPUT
        out.print(console_report.compare_table(rows, args.max_slowdown, args.alpha))
        extra = {"baseline": base, "baseline_source": args.baseline, "rows": rows,
                 "max_slowdown_pct": args.max_slowdown}
    page = html.render(doc, args.result, **extra)
    path = html.write(page, args.html or html.default_path(args.result))
    out.print(f"HTML report: {path}")
    return 0


def _rows(base: dict[str, Any], new: dict[str, Any], which: str, max_slowdown: float,
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
    for table in console_report.fleet_tables(view):
        out.print(table)
    path = html.write(html.render_fleet(view), args.html or Path("reports") / "fleet.html")
    out.print(f"HTML report: {path}")
    return 0


def cmd_compare(args: argparse.Namespace, out: Console) -> int:
    """Exit 1 only for a significant slowdown beyond the threshold; 2 for unusable input."""
    from bench import compare

    if not 0 <= args.max_slowdown < 1000:
        print(f"tlbench: error: --max-slowdown {args.max_slowdown:g} is not a percentage "
              f"(write e.g. --max-slowdown 5)", file=sys.stderr)
        return EXIT_BAD_INPUT
    base, new = results.load(args.base), results.load(args.new)
    rows = _rows(base, new, f"{args.base} vs {args.new}", args.max_slowdown, args.alpha,
                 args.across_machines)
    if rows is None:
        return EXIT_BAD_INPUT
    notes = compare.context_notes(base, new)
    worse = compare.regressions(rows)
    if args.json:
        print(json.dumps({"base": args.base, "new": args.new,
                          "max_slowdown_pct": args.max_slowdown, "alpha": args.alpha,
                          "notes": notes, "worse": len(worse),
                          "rows": [r.to_dict() for r in rows]}, indent=1))
    else:
        out.print(console_report.compare_table(rows, args.max_slowdown, args.alpha))
        for note in notes:
            out.print(f"[yellow]note[/]: {note}")
    if not any(r.comparable for r in rows):
        print(f"tlbench: error: {args.base} vs {args.new}: nothing comparable (every run in "
              f"common failed, was skipped, or ran with other parameters)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if worse:
        if not args.json:
            out.print(f"[bold red]{len(worse)} regression(s)[/]: "
                      + ", ".join(f"{r.run_id} {r.metric} {r.time_change_pct:+.1f}%"
                                  for r in worse))
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
        for table in console_report.rates_tables(view):
            out.print(table)
    return 0


def cmd_machine(args: argparse.Namespace, out: Console) -> int:
    """What a result file's header records, as tables (or JSON): topology, ISA, peak, backends."""
    from bench import backends
    from bench.backends import support

    facts = {"machine": machine.describe(), "software": machine.software()}
    facts["support"] = {"cpu_class": support.class_label(facts["machine"]["isa"]),
                        "backends": backends.support_rows(facts["machine"]["isa"])}
    if args.json:
        print(json.dumps(facts, indent=1))
    else:
        from bench.report import machine as machine_report

        out.print(machine_report.render(facts))
    return 0


def cmd_data(args: argparse.Namespace, out: Console) -> int:
    from bench.data import synthetic

    if args.action == "synth":
        spec = synthetic.SyntheticSpec(identities=args.identities, seed=args.seed)
        root = synthetic.ensure(spec, Path(args.dir) if args.dir else None)
        out.print(f"synthetic data set: {root}")
        return 0
    from bench.data import pairs

    if args.action == "pairs":
        root = Path(args.path).expanduser()
        target = Path(args.out).expanduser() if args.out else root / "pairs.txt"
        written = pairs.write_pairs(root, target, folds=args.folds, per_fold=args.per_fold,
                                    seed=args.seed)
        out.print(f"{target}: {written.folds} identity-disjoint folds x {written.per_fold} "
                  f"same-person and {written.per_fold} different-people pairs "
                  f"({len(written.pairs)} pairs of {len(written.images)} images)")
        return 0
    return _data_check(args, out)


def _data_check(args: argparse.Namespace, out: Console) -> int:
    """Every problem of an LFW-layout directory (and its pairs file) in one pass, grouped by
    kind; exit 0 when it is usable as it is, 2 when not."""
    from bench.data import lfw, pairs

    root = Path(args.path).expanduser()
    t0 = time.perf_counter()
    found = lfw.audit(root, min_images_per_identity=args.min_images)
    usable_images = sum(len(images) for _, images in found.identities)
    out.print(f"{root}: {found.images:,} image files; {len(found.identities):,} identities "
              f"with {args.min_images} or more usable images ({usable_images:,} images)")
    for kind, what in lfw.PROBLEM_KINDS.items():
        listed = found.of(kind)
        if listed:
            style = "red" if kind == "bad image" else "yellow"
            out.print(f"[{style}]{len(listed)} {what}[/]:")
            for problem in listed[:args.show]:
                out.print(f"  {problem.text()}", markup=False)
            if len(listed) > args.show:
                out.print(f"  ... and {len(listed) - args.show} more")
    pairs_file = Path(args.pairs).expanduser() if args.pairs else root / "pairs.txt"
    pairs_usable = True
    if args.pairs or pairs_file.is_file():
        try:
            found_pairs = pairs.read_pairs(pairs_file, root)
        except pairs.PairsError as exc:
            print(f"tlbench: error: {exc}", file=sys.stderr)
            pairs_usable = False
        else:
            facts = found_pairs.summary()
            out.print(f"{pairs_file}: {facts['pairs']} pairs in {facts['folds']} folds x "
                      f"{facts['per_fold']} per class; {facts['missing_pairs']} missing")
            bad = {p.path for p in found.of("bad image")}
            for pair in found_pairs.missing[:args.show]:
                out.print(f"  {pairs_file}:{pair.line}: {pair.name1} {pair.number1} / "
                          f"{pair.name2} {pair.number2}: an image does not exist", markup=False)
            if found_pairs.missing:
                out.print(f"[yellow]{len(found_pairs.missing)} pair(s) lack an image[/] "
                          f"({facts['missing_images']} image(s)): they are left out of the LFW "
                          f"figures; every other pair keeps its fold")
            on_bad = [p for p in found_pairs.usable if {p.path1, p.path2} & bad]
            if on_bad:
                out.print(f"[red]{len(on_bad)} pair(s) name a bad image[/], e.g. "
                          f"{pairs_file}:{on_bad[0].line}")
    seconds = time.perf_counter() - t0
    bad = found.of("bad image")
    if found.usable and pairs_usable:
        out.print(f"[green]usable as is[/] (checked in {seconds:.1f} s)")
        return 0
    why = (f"{len(bad)} bad image(s): replace or remove them, or leave them out with "
           f"[data] on_bad_image = \"skip\" (tlbench run --skip-bad)" if bad
           else "no identity has enough usable images" if not found.identities
           else "the pairs file cannot be used")
    out.print(f"[red]not usable as is[/]: {why} (checked in {seconds:.1f} s)")
    return EXIT_BAD_INPUT


def cmd_weights(args: argparse.Namespace, out: Console) -> int:
    """Convert Sandberg's TF1 checkpoint into the harness's weights file (.npz)."""
    from bench.models.checkpoint import CheckpointError, import_checkpoint

    try:
        path, report = import_checkpoint(args.checkpoint, args.out or None,
                                         image_size=args.image_size,
                                         embedding_size=args.embedding_size,
                                         variant=args.variant)
    except (CheckpointError, ValueError) as exc:
        print(f"tlbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    ignored = ", ".join(f"{n} {kind}" for kind, n in report.ignored.items()) or "none"
    out.print(f"{report.prefix}: {report.variables} variables into {report.layers} layers "
              f"(ignored: {ignored}) → {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tlbench", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"tlbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite: one fresh worker process per run")
    run.add_argument("suite", nargs="?", default="suites/default.toml")
    run.add_argument("--backend", action="append", default=[], metavar="B",
                     help=f"only these backends ({', '.join(suite_mod.BACKENDS)}); repeatable")
    run.add_argument("--scenario", action="append", default=[], metavar="S",
                     help=f"only these scenarios ({', '.join(suite_mod.SCENARIOS)}); repeatable")
    run.add_argument("--out", default="results", help="results directory (default: results)")
    run.add_argument("--data", default="", metavar="PATH", help="a real LFW-layout directory")
    run.add_argument("--weights", default="", metavar="FILE", help="pretrained FaceNet weights")
    run.add_argument("--placement", default="", help="all | socket:N | cores:LIST | instances:K")
    run.add_argument("--workers", type=int, default=0, metavar="N",
                     help="full_training on N data-parallel workers (MultiWorkerMirroredStrategy),"
                     " one per core group of the placement")
    run.add_argument("--cluster", default="", metavar="FILE",
                     help='several hosts: JSON {"worker": ["host:port", ...]}, the same on every '
                     "host; this host runs only its own worker (see docs/placement.md)")
    run.add_argument("--task-index", type=int, default=0, metavar="I",
                     help="with --cluster: this host's position in the worker list (0 = chief)")
    run.add_argument("--repeats", type=int, default=0, metavar="N",
                     help="N fresh worker processes per run, interleaved round by round "
                     "([suite] repeats); figures are the median over them, compare judges the "
                     "spread between them")
    run.add_argument("--skip-bad", action="store_true",
                     help='leave unreadable or corrupt images of --data out, listed in the '
                     'result ([data] on_bad_image = "skip"); default: stop before any run')
    run.add_argument("--pass-env", action="append", default=[], metavar="NAME",
                     help="pass this variable of the shell to the workers (repeatable; also "
                     "[suite] pass_env). Workers get only PATH, HOME, the locale, the cache "
                     "folder and what the harness sets, recorded in the result")
    run.add_argument("--allow-concurrent", action="store_true",
                     help="run even while another tlbench suite measures on the same CPUs "
                     "(refused by default); the result names it")
    run.add_argument("--resume", default="", metavar="RESULT",
                     help="run only what RESULT (an interrupted or failed suite run) is missing, "
                     "into a new result file that carries its finished runs over")
    run.set_defaults(func=cmd_run)

    ab = sub.add_parser("ab", help="the same suite on two stacks (two interpreters) in one "
                        "job, alternating round by round, then B compared with A; exit 1 when B "
                        "is significantly slower")
    ab.add_argument("suite", nargs="?", default="suites/ci.toml")
    ab.add_argument("--a", required=True, metavar="PYTHON",
                    help="the interpreter of stack A (e.g. an old TensorFlow's .venv/bin/python)")
    ab.add_argument("--b", required=True, metavar="PYTHON", help="the interpreter of stack B")
    for side in ("a", "b"):
        ab.add_argument(f"--{side}-env", action="append", default=[], metavar="NAME=VALUE",
                        help=f"a variable set in every worker of side {side.upper()}, over the "
                        f"backend's own (recorded); e.g. TF_ENABLE_ONEDNN_OPTS=0, or the "
                        f"test-only TLBENCH_INJECT_SLOWDOWN=0.10")
    for flag, kwargs in (("--backend", {"action": "append", "default": []}),
                         ("--scenario", {"action": "append", "default": []}),
                         ("--out", {"default": "results"}), ("--data", {"default": ""}),
                         ("--weights", {"default": ""}), ("--placement", {"default": ""}),
                         ("--workers", {"type": int, "default": 0}),
                         ("--pass-env", {"action": "append", "default": []}),
                         ("--skip-bad", {"action": "store_true"}),
                         ("--allow-concurrent", {"action": "store_true"}),
                         ("--repeats", {"type": int, "default": 0}),
                         ("--max-slowdown", {"type": float, "default": 5.0}),
                         ("--alpha", {"type": _alpha, "default": None})):
        ab.add_argument(flag, **kwargs, help="as for tlbench run / compare")
    ab.set_defaults(func=cmd_ab)

    pre = sub.add_parser("pretrain", help="train on the synthetic source identities; cache the "
                         "weights that transfer and inference then start from")
    pre.add_argument("suite", nargs="?", default="suites/default.toml",
                     help="the suite whose model configuration to pretrain")
    pre.add_argument("--identities", type=int, default=40)
    pre.add_argument("--epochs", type=int, default=20)
    pre.add_argument("--batch", type=int, default=16)
    pre.add_argument("--learning-rate", type=float, default=0.05)
    pre.add_argument("--placement", default="")
    pre.set_defaults(func=cmd_pretrain)

    rep = sub.add_parser("report", help="a result file's tables and its self-contained HTML page")
    rep.add_argument("result", nargs="*", help="a result file (results/<machine>/*.json); "
                     "several: the fleet view, machines side by side")
    rep.add_argument("--reference", metavar="RESULT",
                     help="the fleet view's reference machine (default: the first RESULT)")
    rep.add_argument("--baseline", metavar="RESULT", help="compare against this result file")
    rep.add_argument("--html", metavar="PATH",
                     help="where to write the page (default: reports/<result file stem>.html)")
    rep.add_argument("--history", metavar="DIR",
                     help="the trend of every result file in DIR (results/<machine>/)")
    rep.add_argument("--max-slowdown", type=float, default=5.0, metavar="PCT",
                     help="with --baseline: the slowdown beyond which a change is worse")
    rep.add_argument("--alpha", type=_alpha, default=None, help=ALPHA_HELP)
    rep.add_argument("--across-machines", action="store_true",
                     help="a --history or --baseline over different hardware (refused by "
                     "default)")
    rep.add_argument("--json", action="store_true",
                     help="every run's figures as JSON on stdout (no tables, no page)")
    rep.set_defaults(func=cmd_report)

    cmp_ = sub.add_parser("compare", help="new vs baseline result, run by run, with "
                          "significance; exit 1 on a significant slowdown beyond the threshold")
    cmp_.add_argument("base")
    cmp_.add_argument("new")
    cmp_.add_argument("--max-slowdown", type=float, default=5.0, metavar="PCT",
                      help="slowdown (%%) beyond which a significant change is a regression "
                      "(default 5)")
    cmp_.add_argument("--alpha", type=_alpha, default=None, help=ALPHA_HELP)
    cmp_.add_argument("--json", action="store_true", help="rows as JSON on stdout")
    cmp_.add_argument("--across-machines", action="store_true",
                      help="compare results of different hardware (refused by default)")
    cmp_.set_defaults(func=cmd_compare)

    rat = sub.add_parser("rates", help="compare's false-alarm and detection rates, measured: "
                         "the A and B results of one `tlbench ab --repeats 2N` job, B slowed "
                         "by TLBENCH_INJECT_SLOWDOWN, judged N processes against N many ways")
    rat.add_argument("a", help="side A's result (the stack as it is)")
    rat.add_argument("b", help="side B's result (the same stack, slowed on purpose)")
    rat.add_argument("--half", type=int, default=4, metavar="N",
                     help="processes a side in each trial, as a CI run would have (default 4)")
    rat.add_argument("--trials", type=int, default=10, help="A/A and A/B trials (default 10)")
    rat.add_argument("--seed", type=int, default=0, help="of the trials' draws (default 0)")
    rat.add_argument("--max-slowdown", type=float, default=5.0, metavar="PCT",
                     help="as for tlbench compare")
    rat.add_argument("--alpha", type=_alpha, default=None, help=ALPHA_HELP)
    rat.add_argument("--json", action="store_true", help="the trials and rates as JSON")
    rat.set_defaults(func=cmd_rates)

    mach = sub.add_parser("machine", help="CPU, topology, ISA, peak GFLOP/s, installed "
                          "backends and RAPL energy, as a result file records them")
    mach.add_argument("--json", action="store_true", help="the same facts as JSON on stdout")
    mach.set_defaults(func=cmd_machine)

    data = sub.add_parser("data", help="the synthetic data set; check an LFW directory")
    dsub = data.add_subparsers(dest="action", required=True)
    synth = dsub.add_parser("synth", help="generate (or find cached) the synthetic set")
    synth.add_argument("--identities", type=int, default=40)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--dir", default="", help="cache directory (default ~/.cache/tlbench)")
    check = dsub.add_parser("check", help="scan an LFW-layout directory and report problems "
                            "(and its pairs.txt, if present)")
    check.add_argument("path")
    check.add_argument("--pairs", default="", metavar="FILE",
                       help="the pairs file to check (default: PATH/pairs.txt, if present)")
    check.add_argument("--min-images", type=int, default=2, metavar="N",
                       help="images an identity needs (a suite holding out 1 per identity: 2)")
    check.add_argument("--show", type=int, default=5, metavar="N",
                       help="how many problems of each kind to list (default 5)")
    pairs_ = dsub.add_parser("pairs", help="write a pairs.txt in LFW's format (identity-"
                             "disjoint folds) for an LFW-layout directory")
    pairs_.add_argument("path")
    pairs_.add_argument("--out", default="", metavar="FILE",
                        help="where to write it (default: PATH/pairs.txt)")
    pairs_.add_argument("--folds", type=int, default=10)
    pairs_.add_argument("--per-fold", type=int, default=None, metavar="N",
                        help="pairs of each class per fold (default: as many as every fold "
                        "can supply, at most LFW's 300)")
    pairs_.add_argument("--seed", type=int, default=0)
    data.set_defaults(func=cmd_data)

    wts = sub.add_parser("weights", help="import pretrained weights into the harness's format")
    wsub = wts.add_subparsers(dest="action", required=True)
    imp = wsub.add_parser("import", help="convert Sandberg's TF1 checkpoint (e.g. "
                          "model-20180402-114759.ckpt-275) into a .npz for --weights")
    imp.add_argument("checkpoint", help="the checkpoint prefix (or its .index file, or its "
                     "folder)")
    imp.add_argument("--out", default="", metavar="FILE.npz",
                     help="where to write the weights (default: <prefix>.npz)")
    imp.add_argument("--image-size", type=int, default=160)
    imp.add_argument("--embedding-size", type=int, default=512,
                     help="512 for 20180402-114759, 128 for 20170512-110547")
    imp.add_argument("--variant", choices=("full", "small"), default="full",
                     help=argparse.SUPPRESS)  # "small": for tests
    wts.set_defaults(func=cmd_weights)
    return p


ALPHA_HELP = ("family-wise significance level of the verdicts (default: bench.compare.ALPHA; "
              "docs/validation-log.md gives the false-alarm and detection rates measured at two "
              "levels)")


def _alpha(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text}: a significance level is between 0 and 1 "
                                         f"(write e.g. --alpha 0.01)")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "alpha", 1) is None:  # the commands that judge: compare's level
        from bench.compare import ALPHA

        args.alpha = ALPHA
    out = Console()
    if not out.is_terminal:  # piped or under make: wide enough for the tables, no wrapping
        out = Console(width=max(out.width, 140))
    try:
        return args.func(args, out)
    except (suite_mod.SuiteError, PlacementError, DataError, results.ResultError,
            distributed.ClusterError, WeightsError) as exc:
        print(f"tlbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except cpu_lock.BusyError as exc:
        print(f"tlbench: error: {exc}", file=sys.stderr)
        return EXIT_BUSY


if __name__ == "__main__":
    sys.exit(main())
