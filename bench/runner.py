"""The run loop: a suite measured on one stack (`tlbench run`) or two (`tlbench ab`).

plan → lock the CPUs → one result file a side → every run of every side, round by round, each
through the launcher → results finished, parity applied. It draws nothing: it reports what
happens as `Event`s to a callback (the CLI draws progress and log lines from them), and returns
what it measured. Interrupted by SIGINT or SIGTERM it kills the running worker and keeps every
finished run; a result file that cannot be written raises `results.SaveError` once every other
side's file is finished.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape

from bench import __version__, distributed, machine, parity, results
from bench import lock as cpu_lock
from bench import suite as suite_mod
from bench.data.lfw import DataError
from bench.models.checkpoint import is_tf1_checkpoint
from bench.pinning import read_topology, resolve
from bench.plan import expand, interleaved, plan, scenario_of

PRETRAIN = "pretrain"  # the label of the pretraining's events, and its entry among failed runs

# what an Event is about
STARTED, NOTE, CARRIED, RUN_STARTED, PHASE, RUN_FINISHED = (
    "started", "note", "carried", "run started", "phase", "run finished")


@dataclass(frozen=True)
class Event:
    """Something the run loop did, for whoever draws it."""

    kind: str  # STARTED, NOTE, CARRIED (an earlier result's run), RUN_STARTED, PHASE, RUN_FINISHED
    text: str = ""  # STARTED: the suite line; NOTE: a message (rich markup, its data escaped)
    label: str = ""  # the run's id, with its side in brackets in an A/B job
    index: int = 0  # this run's place in the measuring order, from 1
    total: int = 0  # the processes the order holds
    round: int = 1
    repeats: int = 1
    side: str = ""
    phase: str = ""  # PHASE: what the worker does now
    done: float = 0
    of: float | None = None
    # the run ids of the processes after this one that will start a worker (not skipped or
    # carried over), and STARTED: each run's wall time in the previous result of this suite
    ahead: tuple[str, ...] = ()
    previous: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] | None = None  # RUN_FINISHED: what the launcher returned
    # RUN_FINISHED: the side's result document with this run in it, and its file
    result: tuple[dict[str, Any], Path] | None = None


@dataclass(frozen=True)
class Configured:
    """One run's own configuration: its scenario's and backend's sections, placement and
    environment from `suite` (a tuned suite of that backend and scenario); `about`: where it
    came from, kept in the result beside it."""

    suite: suite_mod.Suite
    about: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.about, "suite": self.suite.to_dict()}

    @classmethod
    def from_dict(cls, stored: dict[str, Any], where: str) -> Configured:
        about = {k: v for k, v in stored.items() if k != "suite"}
        return cls(suite_mod.from_dict(stored["suite"], where), about)


@dataclass
class Side:
    """One stack a suite is measured on: its label, interpreter, result file and launcher."""

    label: str  # "" for a plain run; "A" / "B" for an interleaved A/B comparison
    python: str | None  # None: each backend's own interpreter
    env: dict[str, str] = field(default_factory=dict)  # set in its every worker
    # the tree whose `bench` its workers import (their working directory; None: this one's) and
    # what it is (a baseline built in the job: bench.baseline)
    source: str | None = None
    baseline: dict[str, str] | None = None
    # the side's own settings of the same runs (a tuned configuration against the default:
    # sections, placement, env); None: the suite's
    suite: suite_mod.Suite | None = None
    # runs with a configuration of their own, by run id (`tlbench run --tuned`: each stack at
    # its tuned configuration, all in one interleaved run)
    configured: dict[str, Configured] = field(default_factory=dict)
    path: Path | None = None
    result: results.ResultFile | None = None
    launcher: Any = None


@dataclass
class Outcome:
    """What a measured suite left: each side's finished document, the runs that failed, and
    the signal that stopped it (None when it ran to the end)."""

    docs: list[tuple[dict[str, Any], Path]]
    failed: list[str]
    interrupted: str | None = None


class Interrupted(Exception):
    """SIGINT or SIGTERM of the suite: stop the current worker, keep what was measured."""


def _interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def preflight(suite: suite_mod.Suite, note: Callable[[str], None]) -> None:
    """Check what can be checked before any worker starts, so bad input costs no run: the data
    (every bad image at once; with on_bad_image = "skip", which are left out) and the weights
    (opened and checked against the suite's model)."""
    if suite.data.source == "lfw":
        from bench.data import lfw

        index = lfw.scan(Path(suite.data.path).expanduser(),
                         min_images_per_identity=suite.data.holdout_per_identity + 1,
                         on_bad_image=suite.data.on_bad_image)
        if index.skipped:
            note(f"[yellow]on_bad_image = \"skip\"[/]: {len(index.skipped)} bad image(s) "
                 f"left out and listed in the result, e.g. "
                 + escape(f"{index.skipped[0][0]} ({index.skipped[0][1]})"))
        if (index.root / "pairs.txt").is_file():  # a broken pairs file would fail every run
            from bench.data import pairs

            pairs.read_pairs(index.root / "pairs.txt", index.root)
    given = suite.model.weights
    if given and not (Path(given).expanduser().is_file() or is_tf1_checkpoint(given)):
        raise DataError(f"weights {given} do not exist; pass a .npz written by tlbench (e.g. by "
                        f"`tlbench pretrain`) or a TF1 checkpoint prefix (Sandberg's "
                        f"model-20180402-114759.ckpt-275)")
    if given and not is_tf1_checkpoint(given):
        from bench.models import weights

        weights.inspect(Path(given).expanduser(), dataclasses.asdict(suite.model))


def pretrain_first(suite: suite_mod.Suite, starts: list[str], launcher: Any, placement: Any,
                   limits: Any, on_event: Callable[[Event], None]) -> dict[str, Any] | None:
    """The suite's pretraining (`[pretrain] enabled`, no weights given): when a run still
    to measure (`starts`) starts from weights and this model configuration has none cached,
    they are made now, in a process of their own, counted in the suite's time; when cached, the
    suite says so. What happened, for the result (None: no pretraining asked or needed)."""
    from bench import scenarios
    from bench.models.store import weights_path

    spec = suite.pretrain
    if not spec.enabled or suite.model.weights or not any(
            run_id and scenarios.get(scenario_of(run_id)).from_weights for run_id in starts):
        return None
    model = dataclasses.asdict(suite.model)
    path = weights_path(model)
    if path.is_file():
        made = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        on_event(Event(NOTE, text=escape(
            f"pretrained weights from the cache: {path} (made {made:%Y-%m-%d %H:%M} UTC); "
            f"remove it to pretrain again")))
        return {"cached": True, "path": str(path), "made": made.isoformat(timespec="seconds")}
    on_event(Event(NOTE, text=escape(
        f"pretraining FaceNet on {spec.identities} synthetic source identities ({spec.epochs} "
        f"epochs), once for this model configuration: transfer, fine-tuning and inference start "
        f"from these weights, in this run and every later one (cached in {path})")))
    total = len(starts)
    on_event(Event(RUN_STARTED, label=PRETRAIN, total=total))
    made = launcher.pretrain(
        model, spec, suite.data.seed, placement, limits, lambda e: on_event(Event(
            PHASE, label=PRETRAIN, total=total, phase=e["phase"], done=e.get("done") or 0,
            of=e.get("total"))))
    if "error" in made:
        on_event(Event(NOTE, text="[red]pretraining failed[/]: " + escape(
            f"{made['error']} (log {made['log']}); the runs start from random weights")))
    else:
        on_event(Event(NOTE, text=escape(
            f"pretrained in {made['wall_s']:.0f} s ({made['steps']} steps, final loss "
            f"{made['final_loss']:.3f}): {made['path']}")))
    return {"cached": False, **made}


def settings(side: Side, suite: suite_mod.Suite) -> dict[str, suite_mod.Suite]:
    """Where a side's runs take their sections, placement and env from, by run id: "" for the
    side's own (its suite, else the suite's), and each configured run's own suite."""
    return {"": side.suite or suite, **{r: c.suite for r, c in side.configured.items()}}


def held_cpus(placements: Iterable[Any]) -> tuple[int, ...]:
    """The CPUs every side's placement uses (and every configured run's), together."""
    return tuple(sorted({c for p in placements for c in p.cpus}))


def finish(result: results.ResultFile, interrupted: str | None) -> None:
    """A side's file completed: parity of each run against fp32 TensorFlow, then saved."""
    from bench import backends

    parity.annotate(result.doc["runs"], lambda name: backends.get(name).precision)
    result.finish(interrupted=interrupted)


def measure(suite: suite_mod.Suite, sides: list[Side], out_dir: Path,
            on_event: Callable[[Event], None], carried: dict[str, dict[str, Any]] | None = None,
            cluster: distributed.Cluster | None = None, resumed_from: str | None = None,
            allow_concurrent: bool = False) -> Outcome:
    """Every run of `suite` on every side, interleaved round by round; one result file a side
    under `out_dir`. `carried`: runs of an earlier result (by run id) kept, not measured."""
    carried = carried or {}
    topology = read_topology()
    placements = {(id(side), run_id): resolve(own.placement, topology, own.use_logical_cores)
                  for side in sides for run_id, own in settings(side, suite).items()}
    preflight(suite, lambda text: on_event(Event(NOTE, text=text)))
    with cpu_lock.acquire(held_cpus(placements.values()), allow_concurrent) as held:
        try:
            return _measure(suite, sides, out_dir, on_event, carried, cluster, resumed_from,
                            held, topology, placements)
        except results.SaveError as exc:  # the suite stops: nothing more can be kept there
            for side in sides:
                if side.result is not None and side.result.path != exc.path:
                    try:
                        side.result.finish(interrupted=f"stopped: {exc.path} could not be "
                                                       f"written")
                    except results.SaveError:
                        continue
            raise


def _measure(suite: suite_mod.Suite, sides: list[Side], out_dir: Path,
             on_event: Callable[[Event], None], carried: dict[str, dict[str, Any]],
             cluster: distributed.Cluster | None, resumed_from: str | None,
             held: cpu_lock.CpuLock, topology: Any,
             placements: dict[tuple[int, str], Any]) -> Outcome:
    """`placements`: by side (its id) and run id, as `settings` gives them."""
    from bench import backends
    from bench.launcher import Launcher, Limits

    runs = plan(suite)
    now = dt.datetime.now(dt.UTC)
    facts = machine.describe()
    isa = facts["isa"]  # every process of every run planned before any starts
    planned, launchers = {}, {}
    for side in sides:
        for run in plan(side.suite or suite):
            key = (id(side), run.run_id)
            if run.run_id in side.configured:  # its own sections (plan), placement and env
                run = next(r for r in plan(side.configured[run.run_id].suite)
                           if r.run_id == run.run_id)
            planned[key] = expand(
                run, placements.get(key, placements[(id(side), "")]), topology,
                backends.get(run.backend).skip_reason(run.scenario, isa),
                cluster.workers if cluster else None, cluster.task_index if cluster else 0)
    skipped = {run_id for (_, run_id), p in planned.items() if p.skip_reason}
    for side in sides:
        own = side.suite or suite
        name = f"{suite.name}-{side.label}" if side.label else suite.name
        side.path = results.new_path(out_dir, facts["id"], name, now)
        software = machine.software()
        if side.python:  # the packages of the environment this side's workers run in
            software["workers"] = {"python": side.python, "packages": machine.env_versions(
                machine.site_packages(side.python))}
        side.result = results.ResultFile(side.path, {
            "tool": {"name": "tlbench", "version": __version__},
            "created": now.isoformat(timespec="seconds"), "machine": facts,
            "software": software, "project": machine.project_commit(),
            "suite": own.to_dict(), "resumed_from": resumed_from or None,
            "cluster": dataclasses.asdict(cluster) if cluster else None,
            "lock": held.describe(),
            **({"configured": {run_id: c.to_dict() for run_id, c in side.configured.items()}}
               if side.configured else {}),
            **({"ab": {"side": side.label, "python": side.python, "env": side.env,
                       **({"baseline": side.baseline} if side.baseline else {})}}
               if side.label else {})})
        # a configured run's workers get its suite's variables (a tuned allocator, OpenMP wait)
        for run_id, given in settings(side, suite).items():
            launchers[(id(side), run_id)] = Launcher(
                topology, log_dir=side.path.with_suffix(".logs"),
                pass_env=given.pass_env, env={**given.env, **side.env},
                cwd=side.source, **({"python": side.python} if side.python else {}))
        side.launcher = launchers[(id(side), "")]
    limits = Limits(timeout_s=suite.timeout_s, max_memory_gb=suite.max_memory_gb,
                    join_timeout_s=suite.join_timeout_s)
    resuming = f", {len(carried)} carried over from {resumed_from}" if carried else ""
    on_event(Event(STARTED, previous=results.previous_costs(out_dir, facts["id"], suite.name),
                   text=(
        f"tlbench {__version__}: suite [bold]{escape(suite.name)}[/] ("
        + escape(f"{len(runs)} runs{resuming}) on {facts['cpu_model']}, CPUs "
                 f"{list(held_cpus(placements.values()))} → "
                 + ", ".join(str(s.path) for s in sides)))))
    if held.concurrent:
        on_event(Event(NOTE, text=(
            f"[yellow]--allow-concurrent: another suite measures on CPU(s) "
            f"{sorted(c for h in held.concurrent for c in h['on'])}[/] (the result says so)")))
    order = interleaved(runs, suite.repeats, sides)
    starts = ["" if run.run_id in carried or run.run_id in skipped else run.run_id
              for _, run, _ in order]  # the run id where a process starts a worker, else ""
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        # in this tree's code: an A side built from another commit (`tlbench ab --a-ref`) may
        # predate pretraining
        own = next((side for side in sides if side.source is None), sides[0])
        weights = pretrain_first(suite, starts, own.launcher, placements[(id(own), "")], limits,
                                 on_event)
        if weights is not None:
            for side in sides:
                side.result.doc["pretrain"] = weights
                side.result.save()
        for index, (round_, run, side) in enumerate(order, start=1):
            label = run.run_id + (f" [{side.label}]" if side.label else "")
            common = {"label": label, "index": index, "total": len(order), "round": round_,
                      "repeats": suite.repeats, "side": side.label,
                      "ahead": tuple(filter(None, starts[index:]))}
            if run.run_id in carried:
                if round_ == 1:
                    side.result.add_run(carried[run.run_id])
                on_event(Event(CARRIED, **common, record=carried[run.run_id]))
                continue
            launcher = launchers.get((id(side), run.run_id), side.launcher)
            launcher.log_suffix = f".r{round_}" if round_ > 1 else ""
            on_event(Event(RUN_STARTED, **common))

            def phase(event: dict[str, Any], common: dict[str, Any] = common) -> None:
                on_event(Event(PHASE, **common, phase=event["phase"],
                               done=event.get("done") or 0, of=event.get("total")))

            record = launcher.run(planned[(id(side), run.run_id)], limits, phase)
            if round_ == 1:
                side.result.add_run(record)
            else:
                side.result.add_repeat(run.run_id, round_, record)
            on_event(Event(RUN_FINISHED, **common, record=record,
                           result=(side.result.doc, side.path)))
    except Interrupted as exc:  # the launcher has killed the running worker
        for side in sides:
            finish(side.result, str(exc))
        return Outcome([(s.result.doc, s.path) for s in sides], [], interrupted=str(exc))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    failed = [PRETRAIN] if weights is not None and "error" in weights else []
    for side in sides:
        finish(side.result, None)
        failed += [f"{r['run_id']}{f' [{side.label}]' if side.label else ''}"
                   for r in side.result.doc["runs"] if r["status"] == "failed"]
    return Outcome([(s.result.doc, s.path) for s in sides], failed)
