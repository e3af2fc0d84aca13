"""`tlbench tune`: the search and the proof of `bench.tune`, each trial through the runner,
drawn as a line per finished trial; the tune document, the tuned suites and a table."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
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


def _quiet(_event: runner.Event) -> None:
    """Trials are drawn a line each when they finish, not event by event."""


def _config_text(config: dict[str, Any], default: dict[str, Any]) -> str:
    changes = tune.changed(default, config)
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "the default"


class Tuner:
    """One `tlbench tune`: its output folder, its document (rewritten after every trial, so an
    interrupted search keeps what it measured) and its clock."""

    def __init__(self, args: argparse.Namespace, suite: suite_mod.Suite, objective: str,
                 budget_s: float, out: Console):
        facts = machine.describe()
        now = dt.datetime.now(dt.UTC)
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        self.folder = Path(args.out) / facts["id"] / f"{stamp}_tune"
        self.suite, self.objective, self.out = suite, objective, out
        self.started, self.budget_s = time.monotonic(), budget_s
        self.path = self.folder.with_suffix(".json")
        self.doc: dict[str, Any] = {
            "tool": {"name": "tlbench"}, "created": now.isoformat(timespec="seconds"),
            "machine": facts, "suite": suite.to_dict(), "objective": objective,
            "budget_s": budget_s, "targets": []}

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        results.write_atomic(self.path, self.doc)

    def measure(self, label: str, trial_suite: suite_mod.Suite, sides: list[runner.Side]
                ) -> runner.Outcome:
        outcome = runner.measure(trial_suite, sides, self.folder / label, _quiet)
        if outcome.interrupted:
            raise KeyboardInterrupt(outcome.interrupted)
        return outcome

    def target(self, backend: str, scenario: str, share_s: float) -> dict[str, Any]:
        topology = read_topology()
        found = tune.knobs_for(self.suite, backend, scenario, topology)
        default = tune.default(found)
        entry: dict[str, Any] = {
            "backend": backend, "scenario": scenario,
            "figure": tune.OBJECTIVES[self.objective][scenario],
            "knobs": [{"name": k.name, "values": list(k.values), "how": k.how, "key": k.key,
                       "obtained": k.obtained, **({"absent": k.absent} if k.absent else {})}
                      for k in found],
            "grid": tune.size(found), "trials": []}
        self.doc["targets"].append(entry)
        deadline = time.monotonic() + share_s * tune.SEARCH_SHARE
        best: list[float] = []

        def measure(config: dict[str, Any], rung: int, window: float) -> tune.Trial:
            k = len(entry["trials"]) + 1
            trial_suite = tune.configure(self.suite, backend, scenario, found, config, window)
            t0 = time.monotonic()
            outcome = self.measure(f"{backend}--{scenario}--t{k}", trial_suite,
                                   [runner.Side("", None)])
            doc, path = outcome.docs[0]
            run = doc["runs"][0]
            trial = tune.Trial(config, rung, tune.objective_value(doc, self.objective, scenario),
                               time.monotonic() - t0, str(path),
                               run.get("error") or run.get("reason") or "")
            entry["trials"].append(dataclasses.asdict(trial))
            self.save()
            if trial.value is not None:
                best.append(trial.value)
            shown = "failed: " + trial.error[:120] if trial.value is None else (
                f"{trial.value:.2f}")
            self.out.print(escape(
                f"[{backend} {scenario}] trial {k} (rung {rung}, window x{window:.2g}): "
                f"{shown} {entry['figure']} with {_config_text(config, default)}; best so far "
                f"{max(best) if best else '—'}; {max(0.0, self.left()) / 60:.1f} min left"))
            return trial

        search = tune.halving(tune.grid(found, seed=0), measure,
                              lambda: deadline - time.monotonic())
        winner = search.best()
        entry["best"] = dataclasses.asdict(winner) if winner else None
        default_trials = [t for t in search.trials if t.config == default and t.value]
        entry["default_value"] = default_trials[-1].value if default_trials else None
        chosen = default
        if winner is None:
            entry["conclusion"] = "no trial measured the objective (see the trials' errors)"
        elif winner.config == default:
            entry["conclusion"] = f"the default measured best of {len(search.trials)} trials"
        else:
            chosen = self.prove(entry, backend, scenario, found, default, winner.config)
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
                             f" ({self.objective}): {entry['conclusion']}"))
        entry["tuned_suite"] = str(path)
        self.save()
        return entry

    def prove(self, entry: dict[str, Any], backend: str, scenario: str, found: tuple,
              default: dict[str, Any], best: dict[str, Any]) -> dict[str, Any]:
        """The best configuration (B) against the default (A), interleaved in fresh
        processes; compare's verdict on their pairs decides which stands."""
        a = tune.configure(self.suite, backend, scenario, found, default)
        b = tune.configure(self.suite, backend, scenario, found, best)
        self.out.print(escape(f"[{backend} {scenario}] proof: {_config_text(best, default)} "
                              f"against the default, {tune.PROOF_ROUNDS} rounds interleaved"))
        outcome = self.measure(f"{backend}--{scenario}--proof",
                               dataclasses.replace(a, repeats=tune.PROOF_ROUNDS),
                               [runner.Side("A", None, suite=a), runner.Side("B", None, suite=b)])
        (doc_a, path_a), (doc_b, path_b) = outcome.docs
        row = tune.verdict(doc_a, doc_b, self.objective, scenario,
                           frozenset(tune.changed(default, best)))
        entry["proof"] = {"default": str(path_a), "tuned": str(path_b)}
        entry["verdict"] = row.to_dict() if row else None
        entry["conclusion"] = tune.conclusion(row)
        improved = row is not None and row.status == "improved"
        return best if improved else default


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
                  _config_text(best.get("config") or default, default),
                  f"{len(e['trials'])} / {e['grid']}", e.get("conclusion", ""))
    return t


def cmd_tune(args: argparse.Namespace, out: Console) -> int:
    try:
        budget_s = tune.parse_duration(args.budget)
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
    tuner = Tuner(args, suite, objective, budget_s, out)
    out.print(escape(f"tlbench tune: {len(runnable)} target(s), {budget_s / 60:.0f} min → "
                     f"{tuner.path}"))
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for i, (backend, scenario) in enumerate(runnable):
            share = tuner.left() / (len(runnable) - i)
            if share <= 0:
                break
            entry = tuner.target(backend, scenario, share)
            if len(entry["trials"]) == 1:
                cost = entry["trials"][0]["wall_s"]
                out.print(escape(f"[{backend} {scenario}] its share of the budget "
                                 f"({share:.0f} s) held one trial ({cost:.0f} s), the default's: "
                                 f"no search; a search of 10 trials a target needs --budget "
                                 f"{10 * cost * len(runnable) / 60 / tune.SEARCH_SHARE:.0f}m"),
                          style="yellow")
    except KeyboardInterrupt:
        tuner.doc["interrupted"] = True
        tuner.save()
        out.print(escape(f"interrupted: every finished trial is in {tuner.path}"), style="red")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    tuner.save()
    out.print(table(tuner.doc))
    out.print(escape(f"tune: {tuner.path}; tuned suites in {tuner.folder}"))
    return 0

