"""`tlbench` command line: run suites, show results, describe the machine, manage data.

Exit codes: 0 success; 1 a run failed (its result is still written); 2 unusable input (suite,
placement, data, result file), named with its fix; 130 interrupted (finished runs are kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
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

from bench import __version__, machine, results
from bench import suite as suite_mod
from bench.data.lfw import DataError
from bench.pinning import PlacementError, read_topology, resolve
from bench.plan import plan
from bench.report import console as console_report

EXIT_FAILED_RUN, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


class Interrupted(Exception):
    """SIGINT or SIGTERM of the suite: stop the current worker, keep what was measured."""


def _interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _preflight(suite: suite_mod.Suite) -> None:
    """Check what can be checked before any worker starts, so bad input costs no run."""
    if suite.data.source == "lfw":
        from bench.data import lfw

        lfw.scan(Path(suite.data.path).expanduser(),
                 min_images_per_identity=suite.data.holdout_per_identity + 1)
    if suite.model.weights and not Path(suite.model.weights).expanduser().is_file():
        raise DataError(f"weights file {suite.model.weights} does not exist; pass a *.weights.h5 "
                        f"written by tlbench")


def cmd_run(args: argparse.Namespace, out: Console) -> int:
    suite = suite_mod.override(suite_mod.load(args.suite), backends=args.backend,
                               scenarios=args.scenario, data=args.data, weights=args.weights,
                               placement=args.placement)
    topology = read_topology()
    placement = resolve(suite.placement, topology)
    _preflight(suite)
    runs = plan(suite)
    now = dt.datetime.now(dt.UTC)
    path = results.new_path(Path(args.out), machine.machine_id(), suite.name, now)
    header = {
        "tool": {"name": "tlbench", "version": __version__},
        "created": now.isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "software": machine.software(),
        "project": machine.project_commit(),
        "suite": suite.to_dict(),
    }
    result = results.ResultFile(path, header)
    from bench.launcher import Launcher

    launcher = Launcher(topology, log_dir=path.with_suffix(".logs"))
    out.print(f"tlbench {__version__}: suite [bold]{suite.name}[/] ({len(runs)} runs) on "
              f"{header['machine']['cpu_model']}, CPUs {list(placement.cpus)} → {path}")
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    try:
        with Progress(*columns, console=out, transient=False) as bars:
            overall = bars.add_task("suite", total=len(runs))
            for run in runs:
                phase = bars.add_task(f"  {run.run_id}: starting", total=None)

                def on_event(event: dict[str, Any], phase: int = phase, run_id: str = run.run_id):
                    bars.update(phase, description=f"  {run_id}: {event['phase']}",
                                completed=event.get("done") or 0, total=event.get("total"))

                record = launcher.run(run, placement, suite.timeout_s, on_event)
                result.add_run(record)
                bars.update(phase, description=f"  {run.run_id}: {record['status']} "
                            f"({record['wall_s']:.0f} s)", completed=1, total=1)
                bars.advance(overall)
    except Interrupted as exc:  # the launcher has killed the running worker
        result.finish(interrupted=str(exc))
        out.print(f"[red]interrupted ({exc})[/]: {len(result.doc['runs'])} finished run(s) kept "
                  f"in {path}")
        return EXIT_INTERRUPTED
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    result.finish(interrupted=None)
    console_report.show(result.doc, out)
    out.print(f"result: {path}")
    failed = [r["run_id"] for r in result.doc["runs"] if r["status"] == "failed"]
    if failed:
        out.print(f"[red]{len(failed)} run(s) failed[/]: {', '.join(failed)} (logs in "
                  f"{launcher.log_dir})")
        return EXIT_FAILED_RUN
    return 0


def cmd_report(args: argparse.Namespace, out: Console) -> int:
    doc = results.load(args.result)
    console_report.show(doc, out)
    return 0


def cmd_machine(args: argparse.Namespace, out: Console) -> int:
    facts = {"machine": machine.describe(), "software": machine.software()}
    if args.json:
        print(json.dumps(facts, indent=1))
    else:
        out.print_json(data=facts)
    return 0


def cmd_data(args: argparse.Namespace, out: Console) -> int:
    from bench.data import lfw, synthetic

    if args.action == "synth":
        spec = synthetic.SyntheticSpec(identities=args.identities, seed=args.seed)
        root = synthetic.ensure(spec, Path(args.dir) if args.dir else None)
        out.print(f"synthetic data set: {root}")
        return 0
    index = lfw.scan(Path(args.path).expanduser())
    out.print(f"{args.path}: {len(index.paths)} images of {len(index.names)} identities "
              f"({index.dropped} identities dropped)")
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
    run.add_argument("--placement", default="", help="all | socket:N | cores:LIST")
    run.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="show a result file's tables")
    rep.add_argument("result")
    rep.set_defaults(func=cmd_report)

    mach = sub.add_parser("machine", help="topology, ISA and installed backends")
    mach.add_argument("--json", action="store_true")
    mach.set_defaults(func=cmd_machine)

    data = sub.add_parser("data", help="the synthetic data set; check an LFW directory")
    dsub = data.add_subparsers(dest="action", required=True)
    synth = dsub.add_parser("synth", help="generate (or find cached) the synthetic set")
    synth.add_argument("--identities", type=int, default=40)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--dir", default="", help="cache directory (default ~/.cache/tlbench)")
    check = dsub.add_parser("check", help="scan an LFW-layout directory and report problems")
    check.add_argument("path")
    data.set_defaults(func=cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = Console()
    if not out.is_terminal:  # piped or under make: wide enough for the tables, no wrapping
        out = Console(width=max(out.width, 140))
    try:
        return args.func(args, out)
    except (suite_mod.SuiteError, PlacementError, DataError, results.ResultError) as exc:
        print(f"tlbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
