"""`tlbench` command line: run suites, show results, describe the machine, manage data.

Exit codes: 0 success; 1 a run failed (its result is still written); 2 unusable input (suite,
placement, data, result file), named with its fix; 74 a result file could not be written (every
run kept in a fallback file); 75 another suite holds the CPUs; 130 / 143 interrupted by SIGINT /
SIGTERM (finished runs are kept). This module parses the arguments; `bench.commands` carries
each command out (the run loop itself is `bench.runner`'s).
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from bench import __version__, distributed, results
from bench import lock as cpu_lock
from bench import suite as suite_mod
from bench import tune as tune_mod
from bench.commands import (
    EXIT_BAD_INPUT,
    EXIT_BUSY,
    EXIT_CANNOT_WRITE,
    EXIT_FAILED_RUN,
)
from bench.commands.measure import cmd_ab, cmd_pretrain, cmd_run
from bench.commands.tools import cmd_data, cmd_machine, cmd_weights
from bench.commands.tune import cmd_tune
from bench.commands.views import cmd_compare, cmd_rates, cmd_report
from bench.data.lfw import DataError
from bench.models.weights import WeightsError
from bench.pinning import PlacementError

__all__ = ["EXIT_BAD_INPUT", "EXIT_BUSY", "EXIT_CANNOT_WRITE", "EXIT_FAILED_RUN", "main",
           "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tlbench", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"tlbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a suite: one fresh worker process per run")
    run.add_argument("suite", nargs="?", default="",
                     help="the suite file (default: suites/default.toml)")
    run.add_argument("--backend", action="append", default=[], metavar="B",
                     help=f"only these backends ({', '.join(suite_mod.BACKENDS)}); repeatable")
    run.add_argument("--scenario", action="append", default=[], metavar="S",
                     help=f"only these scenarios ({', '.join(suite_mod.SCENARIOS)}); repeatable")
    run.add_argument("--out", default="results", help="results directory (default: results)")
    run.add_argument("--data", default="", metavar="PATH", help="a real LFW-layout directory")
    run.add_argument("--weights", default="", metavar="FILE", help="pretrained FaceNet weights")
    run.add_argument("--placement", default="", help="all | socket:N | cores:LIST | instances:K")
    run.add_argument("--workers", type=int, default=0, metavar="N",
                     help="full_training on N data-parallel workers (MWMS, DDP or "
                     "jax.distributed, by stack), one per core group of the placement")
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
    run.add_argument("--tuned", action="append", default=[], metavar="TUNE_JSON",
                     help="each stack at the configuration a tlbench tune chose (its "
                     "<stamp>_tune.json; repeatable), all in one interleaved run of the tune's "
                     "suite: its speed-ups are tuned against tuned (--placement applies to "
                     "the runs no tune configured)")
    run.set_defaults(func=cmd_run)

    ab = sub.add_parser("ab", help="the same suite on two stacks (two interpreters) in one "
                        "job, alternating round by round, then B compared with A; exit 1 when B "
                        "is significantly slower")
    ab.add_argument("suite", nargs="?", default="suites/ci.toml")
    side_a = ab.add_mutually_exclusive_group(required=True)
    side_a.add_argument("--a", metavar="PYTHON",
                        help="the interpreter of stack A (e.g. an old TensorFlow's "
                        ".venv/bin/python)")
    side_a.add_argument("--a-ref", metavar="REF",
                        help="stack A is this git ref of the repository (e.g. HEAD~1, "
                        "origin/main), its tree and environment built in the job and cached "
                        "(bench.baseline); its workers run its own code")
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

    tun = sub.add_parser("tune", help="each stack at its best here: a search over the knobs "
                         "its backend declares within a budget, the winner proven against the "
                         "default in interleaved processes, a tuned suite written")
    tun.add_argument("suite", nargs="?", default="suites/default.toml")
    tun.add_argument("--backend", action="append", default=[], metavar="B",
                     help="only these backends; repeatable")
    tun.add_argument("--scenario", action="append", default=[], metavar="S",
                     help="only these scenarios; repeatable")
    tun.add_argument("--budget", required=True, metavar="DURATION",
                     help="the whole tune's time: 45m, 1h, 1h30m or seconds")
    tun.add_argument("--objective", choices=sorted(tune_mod.OBJECTIVES), default="throughput",
                     help="throughput: inference img/s and transfer extraction img/s; training: "
                     "train img/s; latency: serving's Server peak at --latency-bound-ms")
    tun.add_argument("--latency-bound-ms", type=float, default=0.0, metavar="X",
                     help="the latency objective: the most queries/s with p99 within X ms")
    tun.add_argument("--knob", action="append", default=[], metavar="NAME=V1,V2",
                     help="search only these values of a knob (repeatable), e.g. "
                     "openvino.streams=1,2 or inference.batch_size=1,2,4,8,16,32; each must be "
                     "in the knob's domain here")
    tun.add_argument("--check", action="store_true",
                     help="judge the search: measure every configuration of the (small, see "
                     "--knob) grid, give the search a third of the grid's time, then re-measure "
                     "the two picks side by side, interleaved")
    tun.add_argument("--resume", default="", metavar="TUNE_JSON",
                     help="continue an interrupted tune (its <stamp>_tune.json): finished "
                     "targets carried over, finished trials not measured again")
    tun.add_argument("--out", default="results", help="results directory (default: results)")
    tun.set_defaults(func=cmd_tune)

    pre = sub.add_parser("pretrain", help="train on the synthetic source identities; cache the "
                         "weights that transfer and inference then start from")
    pre.add_argument("suite", nargs="?", default="suites/default.toml",
                     help="the suite whose model configuration to pretrain")
    pre.add_argument("--identities", type=int, help="(default: the suite's [pretrain])")
    pre.add_argument("--epochs", type=int, help="(default: the suite's [pretrain])")
    pre.add_argument("--batch", type=int, help="micro-batch (default: the suite's [pretrain])")
    pre.add_argument("--learning-rate", type=float, help="(default: the suite's [pretrain])")
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
    cmp_out = cmp_.add_mutually_exclusive_group()
    cmp_out.add_argument("--json", action="store_true", help="rows as JSON on stdout")
    cmp_out.add_argument("--markdown", action="store_true",
                         help="the verdict as Markdown on stdout (a pull request's comment)")
    cmp_.add_argument("--across-machines", action="store_true",
                      help="compare results of different hardware (refused by default)")
    cmp_.set_defaults(func=cmd_compare)

    rat = sub.add_parser("rates", help="compare's false-alarm and detection rates, measured: "
                         "the A and B results of one `tlbench ab --repeats 2N` job, B slowed "
                         "by TLBENCH_INJECT_SLOWDOWN, judged on N pairs of processes many ways")
    rat.add_argument("a", help="side A's result (the stack as it is)")
    rat.add_argument("b", help="side B's result (the same stack, slowed on purpose)")
    rat.add_argument("--half", type=int, default=4, metavar="N",
                     help="pairs of processes in each trial, as a CI job would have (default 4)")
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
