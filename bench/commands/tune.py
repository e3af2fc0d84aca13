"""`tlbench tune`: the search and the proof of `bench.tune`, each trial through the runner,
drawn as a line per finished trial; the tune document, the tuned suites and a table."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import json
import signal
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench import backends, machine, results, runner, tune
from bench import suite as suite_mod
from bench.commands import EXIT_BAD_INPUT
from bench.data.lfw import DataError
from bench.pinning import read_topology
from bench.report import html


def _quiet(_event: runner.Event) -> None:
    """Trials are drawn a line each when they finish, not event by event."""


class Tuner:
    """One `tlbench tune`: its output folder, its document (rewritten after every trial, so an
    interrupted search keeps what it measured) and its clock."""

    def __init__(self, args: argparse.Namespace, suite: suite_mod.Suite, objective: str,
                 budget_s: float, out: Console, choices: dict[str, tuple[Any, ...]],
                 previous: dict[str, Any] | None):
        facts = machine.describe()
        now = dt.datetime.now(dt.UTC)
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        self.folder = Path(args.out) / facts["id"] / f"{stamp}_tune"
        self.suite, self.objective, self.out = suite, objective, out
        self.started, self.budget_s = time.monotonic(), budget_s
        self.path = self.folder.with_suffix(".json")
        self.choices, self.check = choices, args.check
        # a resumed tune's targets by (backend, scenario): finished ones carried over whole,
        # an unfinished one's trials handed back instead of measured again
        self.previous = {(t["backend"], t["scenario"]): t
                         for t in (previous or {}).get("targets", [])}
        self.doc: dict[str, Any] = {
            "tool": {"name": "tlbench"}, "created": now.isoformat(timespec="seconds"),
            "machine": facts, "suite": suite.to_dict(), "objective": objective,
            "choices": {k: list(v) for k, v in choices.items()}, "check": self.check,
            "budget_s": budget_s, "targets": [],
            **({"resumed_from": args.resume} if previous else {})}

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        results.write_atomic(self.path, self.doc)

    def page(self) -> Path:
        """The tune's HTML page beside its document."""
        self.save()
        return html.write(html.render_tune(self.doc), self.path.with_suffix(".html"))

    def measure(self, label: str, trial_suite: suite_mod.Suite, sides: list[runner.Side]
                ) -> runner.Outcome:
        # no pretraining inside a trial or a proof: its minutes would count as that trial's
        # cost; every process of a tune starts from the same weights (the cached ones, else the
        # seeded random ones), and speed does not depend on their values
        trial_suite = dataclasses.replace(
            trial_suite, pretrain=dataclasses.replace(trial_suite.pretrain, enabled=False))
        outcome = runner.measure(trial_suite, sides, self.folder / label, _quiet)
        if outcome.interrupted:
            raise KeyboardInterrupt(outcome.interrupted)
        return outcome

    def target(self, backend: str, scenario: str, share_s: float) -> dict[str, Any]:
        found = tune.restrict(tune.knobs_for(self.suite, backend, scenario, read_topology()),
                              self.choices)
        default = tune.default(found)
        entry: dict[str, Any] = {
            "backend": backend, "scenario": scenario,
            "figure": tune.OBJECTIVES[self.objective][scenario],
            "knobs": [{"name": k.name, "values": list(k.values), "how": k.how, "key": k.key,
                       "obtained": k.obtained, **({"absent": k.absent} if k.absent else {})}
                      for k in found],
            "grid": tune.size(found), "trials": []}
        self.doc["targets"].append(entry)
        done = self.previous.get((backend, scenario), {})
        if done.get("conclusion"):  # resumed: this target finished before
            self.doc["targets"][-1] = done
            self.out.print(escape(f"[{backend} {scenario}] carried over: {done['conclusion']}"))
            return done
        kept = {(_key(t["config"]), t["rung"], t["phase"]): t for t in done.get("trials", [])}
        trial = _TrialMaker(self, entry, backend, scenario, found, default, kept)
        if self.check:  # a judgement of the search, not a tune: no tuned suite
            self.check_search(entry, trial, share_s)
            self.save()
            return entry
        winner = self.search(entry, trial, share_s, reserve_proof=True)
        if winner is not None and winner.config != default:
            row = self.prove(entry, "proof", backend, scenario, found, default, winner.config)
            entry["verdict"] = row.to_dict() if row else None
            entry["conclusion"] = tune.conclusion(row)
        self.write_suite(entry, backend, scenario, found, default, tune.chosen(entry))
        self.save()
        return entry

    def search(self, entry: dict[str, Any], trial: _TrialMaker, share_s: float,
               reserve_proof: bool) -> tune.Trial | None:
        """The default on the full window (its figure, and what a full trial costs), then
        brackets of successive halving over the other configurations until the share is spent —
        less the proof's rounds when `reserve_proof` (two processes a round, each about the
        default's)."""
        started = time.monotonic()
        base = trial(entry["default"], tune.FULL, 1.0, "search")
        entry["default_value"] = base.value
        reserve = 2 * tune.PROOF_ROUNDS * base.wall_s if reserve_proof else 0.0
        left = share_s - reserve - (time.monotonic() - started)
        trials = [base]
        if left < 2 * base.wall_s:
            need = base.wall_s * (1 + 2 * tune.PROOF_ROUNDS + 10 / tune.ETA)
            self.out.print(escape(
                f"[{entry['backend']} {entry['scenario']}] its share of the budget "
                f"({share_s:.0f} s) held the default's trial ({base.wall_s:.0f} s)"
                f"{' and its proof' if reserve_proof else ''}: no search; ten configurations "
                f"need about {need / 60:.0f} min a target"), style="yellow")
        else:
            def left_s() -> float:
                return share_s - reserve - (time.monotonic() - started)

            configs = itertools.islice(tune.grid(trial.found, seed=0), 1, None)
            # no window to shorten: every trial is a full one, successive halving would only
            # measure the promoted ones twice
            search = (tune.halving if tune.scalable(self.suite, entry["scenario"])
                      else tune.exhaustive)
            # bracket after bracket on the next configurations while the share holds a short
            # trial and a full one (a bracket stops early to keep time for its own top rung)
            while left_s() >= 2 * base.wall_s:
                found = search(configs, trial, left_s).trials
                if not found:
                    break
                trials += found
        winner = tune.Search([t for t in trials if t.rung == tune.FULL]).best()
        entry["best"] = dataclasses.asdict(winner) if winner else None
        entry["search_s"] = time.monotonic() - started
        if winner is None:
            entry["conclusion"] = "no trial measured the objective (see the trials' errors)"
        elif winner.config == entry["default"]:
            entry["conclusion"] = f"the default measured best of {len(trials)} trials"
        return winner

    def check_search(self, entry: dict[str, Any], trial: _TrialMaker, share_s: float) -> None:
        """The search judged against the whole grid: every configuration on the full window,
        then the search given a third of the grid's time, then the two picks re-measured
        side by side, interleaved."""
        started = time.monotonic()
        grid = tune.exhaustive(tune.grid(trial.found, seed=0),
                               lambda c, r, w: trial(c, r, w, "grid"),
                               lambda: share_s - (time.monotonic() - started))
        grid_s = sum(t.wall_s for t in grid.trials)
        best = grid.best()
        check: dict[str, Any] = {"grid_trials": len(grid.trials), "grid_s": grid_s,
                                 "grid_best": dataclasses.asdict(best) if best else None}
        entry["check"] = check
        winner = self.search(entry, trial, grid_s / tune.ETA, reserve_proof=False)
        check["search_s"] = entry["search_s"]
        if len(grid.trials) < entry["grid"]:
            entry["conclusion"] = (f"check incomplete: the budget held {len(grid.trials)} of "
                                   f"the grid's {entry['grid']} configurations")
        elif best is None or winner is None:
            entry["conclusion"] = "check failed: no measured trial to compare"
        elif winner.config == best.config:
            entry["conclusion"] = (f"check: the search picked the grid's best in "
                                   f"{check['search_s'] / grid_s:.0%} of the grid's time")
        else:
            row = self.prove(entry, "check", entry["backend"], entry["scenario"], trial.found,
                             best.config, winner.config)
            check["verdict"] = row.to_dict() if row else None
            entry["conclusion"] = (
                f"check: the search's pick at {row.ratio:.3f}x the grid's best ({row.status}, "
                f"{row.note}), in {check['search_s'] / grid_s:.0%} of the grid's time"
                if row and row.ratio else "check: the two picks' runs could not be compared"
                + (f" ({row.status}: {row.note})" if row else ""))

    def prove(self, entry: dict[str, Any], label: str, backend: str, scenario: str,
              found: tuple, base: dict[str, Any], new: dict[str, Any]) -> Any:
        """`new` (B) against `base` (A), interleaved in fresh processes; compare's row of the
        objective figure on their pairs."""
        a = tune.configure(self.suite, backend, scenario, found, base)
        b = tune.configure(self.suite, backend, scenario, found, new)
        self.out.print(escape(f"[{backend} {scenario}] {label}: {tune.config_text(new, base)} "
                              f"against {tune.config_text(base, entry['default'])}, "
                              f"{tune.PROOF_ROUNDS} rounds interleaved"))
        outcome = self.measure(f"{backend}--{scenario}--{label}",
                               dataclasses.replace(a, repeats=tune.PROOF_ROUNDS),
                               [runner.Side("A", None, suite=a), runner.Side("B", None, suite=b)])
        (doc_a, path_a), (doc_b, path_b) = outcome.docs
        entry.setdefault(label, {}).update(base=str(path_a), new=str(path_b))
        return tune.verdict(doc_a, doc_b, self.objective, scenario,
                            frozenset(tune.changed(base, new)))

    def write_suite(self, entry: dict[str, Any], backend: str, scenario: str, found: tuple,
                    default: dict[str, Any], chosen: dict[str, Any]) -> None:
        """The tuned suite: the suite with the chosen configuration, each changed knob's line
        saying what it gained."""
        tuned = tune.configure(self.suite, backend, scenario, found, chosen)
        gained = entry.get("verdict") or {}
        comments: dict[str, str] = {}
        for k in found:  # env knobs share the line of [suite] env: their notes are joined
            if chosen[k.name] != default[k.name]:
                note = f"{k.name} tuned (default {default[k.name]!r})"
                key = tune.suite_key(k)
                comments[key] = f"{comments[key]}; {note}" if key in comments else note
        if comments:
            comments = {key: f"{note}: {gained['ratio']:.3f}x {entry['figure']}, "
                             f"p {gained['p_value']:.2g}" for key, note in comments.items()}
        path = self.folder / f"tuned-{backend}-{scenario}.toml"
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_text(suite_mod.to_toml(
            dataclasses.replace(tuned, name=f"{self.suite.name}-tuned-{backend}-{scenario}"),
            comments, header=f"tlbench tune of {self.suite.name} on {self.doc['machine']['id']}"
                             f" ({self.objective}): {entry.get('conclusion', '')}"))
        entry["tuned_suite"] = str(path)


def _key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


class _TrialMaker:
    """Measures one configuration of a target in a fresh process (or hands back the trial a
    resumed tune measured before), records it in the target's entry and draws its line."""

    def __init__(self, tuner: Tuner, entry: dict[str, Any], backend: str, scenario: str,
                 found: tuple, default: dict[str, Any], kept: dict[tuple, dict[str, Any]]):
        self.tuner, self.entry, self.found, self.kept = tuner, entry, found, kept
        self.backend, self.scenario = backend, scenario
        entry["default"] = default
        self.best: list[float] = []

    def __call__(self, config: dict[str, Any], rung: int, window: float,
                 phase: str = "search") -> tune.Trial:
        tuner, entry = self.tuner, self.entry
        k = len(entry["trials"]) + 1
        old = self.kept.pop((_key(config), rung, phase), None)
        if old is not None:
            trial = tune.Trial(**{f.name: old[f.name] for f in dataclasses.fields(tune.Trial)})
        else:
            trial_suite = tune.configure(tuner.suite, self.backend, self.scenario, self.found,
                                         config, window)
            t0 = time.monotonic()
            outcome = tuner.measure(f"{self.backend}--{self.scenario}--{phase[0]}{k}",
                                    trial_suite, [runner.Side("", None)])
            doc, path = outcome.docs[0]
            run = doc["runs"][0]
            trial = tune.Trial(config, rung,
                               tune.objective_value(doc, tuner.objective, self.scenario),
                               time.monotonic() - t0, str(path),
                               run.get("error") or run.get("reason") or "", phase)
        entry["trials"].append(dataclasses.asdict(trial))
        tuner.save()
        if trial.value is not None:
            self.best.append(trial.value)
        shown = "failed: " + trial.error[:120] if trial.value is None else f"{trial.value:.2f}"
        tuner.out.print(escape(
            f"[{self.backend} {self.scenario}] {phase} trial {k} (window x{window:.2g}"
            f"{', carried over' if old else ''}): {shown} {entry['figure']} with "
            f"{tune.config_text(config, entry['default'])}; best so far "
            f"{f'{max(self.best):.2f}' if self.best else '—'}; "
            f"{max(0.0, tuner.left()) / 60:.1f} min left"))
        return trial


def table(doc: dict[str, Any]) -> Table:
    t = Table(title=f"tlbench tune ({doc['objective']}): the default against the tuned "
                    f"configuration, judged on interleaved processes", title_justify="left")
    for col in ("backend", "scenario", "figure", "default", "best trial", "its configuration",
                "trials / grid", "conclusion"):
        t.add_column(col)
    for e in doc["targets"]:
        best = e.get("best") or {}
        default = {k["name"]: k["values"][0] for k in e["knobs"]}
        t.add_row(e["backend"], e["scenario"], e["figure"],
                  "—" if e.get("default_value") is None else f"{e['default_value']:.2f}",
                  "—" if best.get("value") is None else f"{best['value']:.2f}",
                  tune.config_text(best.get("config") or default, default),
                  f"{tune.searched(e)} / {e['grid']}",
                  e.get("conclusion", ""))
    return t


def _resumed(path: str, suite: suite_mod.Suite, objective: str,
             choices: dict[str, tuple[Any, ...]], check: bool) -> dict[str, Any] | None:
    """The tune document --resume continues: it must be a tune of the same suite, objective,
    knob choices and mode, or its trials would answer another question."""
    if not path:
        return None
    doc = tune.read(path, "--resume")
    mine = {"suite": suite.to_dict(), "objective": objective,
            "choices": {k: list(v) for k, v in choices.items()}, "check": check}
    differ = [k for k, v in mine.items() if json.loads(json.dumps(v)) != doc.get(k)]
    if differ:
        raise DataError(f"--resume {path}: its {', '.join(differ)} differ from this command's; "
                        f"resume with the suite, objective, --knob and --check it ran with")
    return doc


def _choices_fit(choices: dict[str, tuple[Any, ...]], suite: suite_mod.Suite,
                 runnable: list[tuple[str, str]]) -> None:
    """Every --knob names a knob of some target and every value is in its domain here, checked
    before the first trial."""
    topology = read_topology()
    offered: set[str] = set()
    for backend, scenario in runnable:
        found = tune.knobs_for(suite, backend, scenario, topology)
        offered |= {k.name for k in found}
        try:
            tune.restrict(found, choices)
        except ValueError as exc:
            raise DataError(f"--knob: {exc}") from None
    unknown = sorted(set(choices) - offered)
    if unknown:
        raise DataError(f"--knob {', '.join(unknown)}: no such knob for "
                        f"{', '.join(f'{b} {s}' for b, s in runnable)}; their knobs here: "
                        f"{', '.join(sorted(offered))}")


def cmd_tune(args: argparse.Namespace, out: Console) -> int:
    try:
        budget_s = tune.parse_duration(args.budget)
        choices = tune.parse_choices(args.knob)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    suite = suite_mod.override(suite_mod.load(args.suite), backends=args.backend,
                               scenarios=args.scenario)
    objective = "latency" if args.latency_bound_ms else args.objective
    if args.latency_bound_ms:
        serving = dataclasses.replace(suite.section("serving"),
                                      latency_bound_ms=args.latency_bound_ms)
        suite = dataclasses.replace(suite, sections={**suite.sections, "serving": serving})
    chosen = tune.targets(suite, objective)
    if not chosen:
        out.print(escape(f"tlbench tune: the suite runs no scenario the {objective} objective "
                         f"tunes ({', '.join(tune.OBJECTIVES[objective])}); add one with "
                         f"--scenario"), style="red")
        return EXIT_BAD_INPUT
    isa = machine.describe()["isa"]
    runnable = []
    for backend, scenario in chosen:
        why = backends.get(backend).skip_reason(scenario, isa)
        if why:
            out.print(escape(f"[{backend} {scenario}] skipped: {why}"), style="yellow")
        else:
            runnable.append((backend, scenario))
    if not runnable:
        return EXIT_BAD_INPUT
    if budget_s < tune.MIN_BUDGET_S:
        out.print(escape(f"tlbench tune: --budget {args.budget} is shorter than a single trial "
                         f"(a worker's start alone takes 15-60 s here); give at least "
                         f"{tune.MIN_BUDGET_S / 60:.0f}m per target"), style="red")
        return EXIT_BAD_INPUT
    _choices_fit(choices, suite, runnable)
    previous = _resumed(args.resume, suite, objective, choices, args.check)
    tuner = Tuner(args, suite, objective, budget_s, out, choices, previous)
    out.print(escape(f"tlbench tune: {len(runnable)} target(s), {budget_s / 60:.0f} min → "
                     f"{tuner.path}"))
    handler = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for i, (backend, scenario) in enumerate(runnable):
            share = tuner.left() / (len(runnable) - i)
            if share <= 0:
                break
            tuner.target(backend, scenario, share)
    except KeyboardInterrupt:
        tuner.doc["interrupted"] = True
        tuner.page()
        out.print(escape(f"interrupted: every finished trial is in {tuner.path}; the same "
                         f"command with --resume {tuner.path} continues"), style="red")
        return 130
    finally:
        signal.signal(signal.SIGTERM, handler)
    page = tuner.page()
    out.print(table(tuner.doc))
    out.print(escape(f"tune: {tuner.path}, its page {page}; tuned suites in {tuner.folder}; "
                     f"every stack at its chosen configuration, side by side in one run: "
                     f"tlbench run --tuned {tuner.path}"))
    return 0

