"""`tlbench tune`: each stack at its best on this box — a search over the knobs its backend
declares (`bench.knobs`), then the winner proven against the default in interleaved processes.

For each backend and scenario of the suite:
1. **Search** (successive halving over a seeded sample of the knobs' grid, the default first):
   every trial is a fresh worker process of the run with that configuration, measured through
   the contract, its objective read from its record. Rung 0 measures each configuration on a
   window a third of the suite's (`ETA`); the best third goes on to the full window. The
   search stops drawing configurations when its share of the budget is spent. Not Optuna: on
   these machines a trial is mostly a worker's fixed cost (importing the runtime, building and
   compiling the model: 15-60 s) beside a window of seconds, so a sampler's model of the space
   buys little over a grid sample, while pruning inside a trial is what the rungs already do;
   and it would be a dependency of both environments.
2. **Proof**: the best configuration and the default, interleaved round by round in fresh
   processes (`runner.measure` with a side each, as `tlbench ab`), judged by `compare` on the
   pairs of processes. The tuned figure stands only where that verdict is "improved";
   otherwise the default stands: "no configuration beat the default beyond the machine's
   drift".

Objectives are figures of the contract whose names do not change with the configuration.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import backends, compare, knobs, record, results, runner
from bench import suite as suite_mod
from bench.data.lfw import DataError
from bench.pinning import Topology
from bench.plan import plan, run_id
from bench.scenarios.inference import LATENCY_P50, THROUGHPUT
from bench.scenarios.serving import PEAK

# objective → the scenario it tunes → the contract's figure it maximises
OBJECTIVES = {
    "throughput": {"inference": THROUGHPUT, "transfer": "extract img/s"},
    "training": {"full_training": "train img/s"},
    "latency": {"serving": PEAK},
}
RUNGS = 2  # successive halving's windows: a third of the suite's, then the suite's
FULL = RUNGS - 1  # the rung of a trial on the suite's own window
ETA = 3  # successive halving: a third go on, and rung 0's window is a third of the suite's
# a scenario's keys that set how long it measures (scaled down in rung 0), never what, each
# with the least its section accepts (a projection's window needs 3 micro-steps for an interval)
WINDOW_KEYS = {"warmup_s": 0.0, "duration_s": 0.0, "window_steps": 3, "max_window_steps": 3,
               "single_stream_s": 0.0, "offline_s": 0.0, "server_s": 0.0}
# pairs of processes in a proof: 5 pairs whose log ratios spread by 2-4.5% (as seen between
# processes here) catch a 6-15% change 9 times in 10 at compare's alpha; 3 pairs, 19-48%
PROOF_ROUNDS = 5
MIN_BUDGET_S = 120.0  # below, not even the default's trial and one other fit


def suite_key(knob: knobs.Knob) -> str:
    """Where a knob's value stands in a suite file ("section.key")."""
    return {knobs.SECTION: knob.key, knobs.ENV: "suite.env",
            knobs.PLACEMENT: "suite.placement"}[knob.how]


def parse_duration(text: str) -> float:
    """"45m", "1h", "1h30m", "90s" or plain seconds → seconds."""
    found = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*"
                         r"(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not found or not any(found.groups()):
        raise ValueError(f"--budget {text!r}: write a duration such as 45m, 1h, 1h30m or 600")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in found.groups())
    return hours * 3600 + minutes * 60 + seconds


def targets(suite: suite_mod.Suite, objective: str) -> list[tuple[str, str]]:
    """(backend, scenario) pairs of the suite that the objective tunes."""
    tuned = OBJECTIVES[objective]
    return [(b, s) for s in suite.scenarios if s in tuned for b in suite.backends]


def configure(suite: suite_mod.Suite, backend: str, scenario: str,
              found: tuple[knobs.Knob, ...], config: dict[str, Any],
              window: float = 1.0) -> suite_mod.Suite:
    """The suite of one configuration: that backend and scenario alone, one process, every
    knob's value applied (a section key, a variable, the placement), the scenario's window
    scaled by `window`; checked as a suite file is."""
    sections, env, placement = dict(suite.sections), dict(suite.env), suite.placement
    for knob in found:
        value = config[knob.name]
        knob.check(value)
        if knob.how == knobs.SECTION:
            section, key = knob.key.split(".")
            sections[section] = dataclasses.replace(sections[section], **{key: value})
        elif knob.how == knobs.ENV:
            env = {k: v for k, v in env.items() if k != knob.key} | knob.env(value)
        else:
            placement = value
    spec = sections[scenario]
    if window != 1.0:
        scaled = {k: (max(WINDOW_KEYS[k], round(v * window)) if isinstance(v, int)
                      else v * window)
                  for k, v in dataclasses.asdict(spec).items() if k in WINDOW_KEYS and v}
        spec = sections[scenario] = dataclasses.replace(spec, **scaled)
    for name, section in sections.items():
        section.check(f"tune: {name}")
    return dataclasses.replace(suite, name=f"{suite.name}-tune", backends=(backend,),
                               scenarios=(scenario,), repeats=1, sections=sections, env=env,
                               placement=placement)


def parse_choices(texts: Iterable[str]) -> dict[str, tuple[Any, ...]]:
    """`--knob NAME=V1,V2` arguments → {NAME: values}; numbers read as numbers."""
    def value(text: str) -> Any:
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    choices: dict[str, tuple[Any, ...]] = {}
    for text in texts:
        name, sep, values = text.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise ValueError(f"--knob {text!r}: write NAME=VALUE[,VALUE...], e.g. "
                             f"openvino.streams=1,2")
        choices[name.strip()] = tuple(value(v.strip()) for v in values.split(","))
    return choices


def restrict(found: tuple[knobs.Knob, ...], choices: dict[str, tuple[Any, ...]]
             ) -> tuple[knobs.Knob, ...]:
    """The knobs with the values a user chose (each checked against its domain here); the
    suite's own value stays first when chosen, so it stays the default the winner must beat."""
    kept = []
    for knob in found:
        chosen = choices.get(knob.name)
        if chosen is None:
            kept.append(knob)
            continue
        for v in chosen:
            knob.check(v)
        order = sorted(dict.fromkeys(chosen), key=lambda v: v != knob.default)
        kept.append(dataclasses.replace(knob, values=tuple(order)))
    return tuple(kept)


def scalable(suite: suite_mod.Suite, scenario: str) -> bool:
    """Whether the scenario has a window to shorten (a key of WINDOW_KEYS); one without (the
    transfer scenario extracts every image) measures every trial on its full run."""
    return any(k in WINDOW_KEYS for k in dataclasses.asdict(suite.section(scenario)))


def default(found: tuple[knobs.Knob, ...]) -> dict[str, Any]:
    """The suite's own configuration: each knob's first value."""
    return {k.name: k.default for k in found}


def size(found: tuple[knobs.Knob, ...]) -> int:
    return math.prod(len(k.values) for k in found)


def grid(found: tuple[knobs.Knob, ...], seed: int) -> Iterator[dict[str, Any]]:
    """The configurations of the knobs: the default first, then every other in a seeded random
    order, drawn as the search asks for them — a many-core box's grid runs to millions (streams
    and requests up to the cores), more than a search ever measures or a list should hold."""
    rng = random.Random(seed)
    seen = {(0,) * len(found)}
    yield default(found)
    while len(seen) < size(found):
        pick = tuple(rng.randrange(len(k.values)) for k in found)
        if pick not in seen:
            seen.add(pick)
            yield {k.name: k.values[i] for k, i in zip(found, pick, strict=True)}


@dataclass
class Trial:
    """One configuration measured in one fresh process."""

    config: dict[str, Any]
    rung: int
    value: float | None  # the objective, None when the run failed or has no figure
    wall_s: float
    result: str = ""  # its result file
    error: str = ""
    phase: str = "search"  # or "grid": the exhaustive check's


@dataclass
class Search:
    trials: list[Trial] = field(default_factory=list)

    def best(self) -> Trial | None:
        """The best trial of the highest rung that has a measured one."""
        for rung in sorted({t.rung for t in self.trials}, reverse=True):
            measured = [t for t in self.trials if t.rung == rung and t.value is not None]
            if measured:
                return max(measured, key=lambda t: t.value)
        return None


def halving(configs: Iterable[dict[str, Any]],
            measure: Callable[[dict[str, Any], int, float], Trial],
            time_left: Callable[[], float], rungs: int = RUNGS, eta: int = ETA) -> Search:
    """Successive halving: rung 0 measures configurations on a window 1/eta^(rungs-1) of the
    suite's while the time holds out, keeping enough for the rungs above (a trial there costs
    at most eta^k times the slowest below: the window is what grows); each later rung measures
    the best 1/eta of the one below on a window eta times longer."""
    search = Search()
    alive = configs
    for rung in range(rungs):
        window = float(eta) ** (rung - rungs + 1)
        measured: list[Trial] = []
        for config in alive:
            cost = max((t.wall_s for t in measured), default=0.0)
            promoted = max(1, (len(measured) + 1) // eta)
            later = sum(promoted * cost * eta ** (r - rung) for r in range(rung + 1, rungs))
            if measured and time_left() < cost + later:
                break
            trial = measure(config, rung, window)
            measured.append(trial)
            search.trials.append(trial)
        ranked = sorted((t for t in measured if t.value is not None), key=lambda t: -t.value)
        alive = [t.config for t in ranked[:max(1, len(ranked) // eta)]]
        if not alive:
            break
    return search


def exhaustive(configs: Iterable[dict[str, Any]],
               measure: Callable[[dict[str, Any], int, float], Trial],
               time_left: Callable[[], float]) -> Search:
    """Every configuration on the full window (the check a search is judged against), while
    the time holds out for one more."""
    search = Search()
    for config in configs:
        cost = max((t.wall_s for t in search.trials), default=0.0)
        if search.trials and time_left() < cost:
            break
        search.trials.append(measure(config, FULL, 1.0))
    return search


def objective_value(doc: dict[str, Any], objective: str, scenario: str) -> float | None:
    """The objective of a trial's one run: its figure in the contract, or None."""
    run = doc["runs"][0] if doc["runs"] else None
    if run is None or run.get("status") != "ok":
        return None
    figure = record.figures(run).get(OBJECTIVES[objective][scenario])
    return figure.value if figure else None


def knobs_for(suite: suite_mod.Suite, backend: str, scenario: str,
              topology: Topology) -> tuple[knobs.Knob, ...]:
    """The backend's knobs for this scenario, the suite's values first."""
    run = next(iter(plan(dataclasses.replace(suite, backends=(backend,),
                                             scenarios=(scenario,)))))
    return backends.get(backend).knobs(scenario, run.params, run.backend_params,
                                       suite.placement, topology)


def changed(default: dict[str, Any], best: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in best.items() if default.get(k) != v}


def config_text(config: dict[str, Any], default: dict[str, Any]) -> str:
    """A configuration as the knobs it changes ("the default" when none)."""
    return ", ".join(f"{k}={v}" for k, v in changed(default, config).items()) or "the default"


def chosen(entry: dict[str, Any]) -> dict[str, Any]:
    """A tuned target's configuration: the search's best where the proof said "improved",
    else the default."""
    proven = (entry.get("verdict") or {}).get("status") == compare.IMPROVED
    return entry["best"]["config"] if proven else entry["default"]


def read(path: str, flag: str) -> dict[str, Any]:
    """A tune document (`<stamp>_tune.json`), as `flag` (--resume, --tuned) names it."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{flag} {path}: cannot read it as a tune document ({exc}); give the "
                        f"<stamp>_tune.json a tlbench tune wrote") from None
    if not isinstance(doc, dict) or "targets" not in doc or "objective" not in doc:
        raise DataError(f"{flag} {path}: not a tune document (no targets); give the "
                        f"<stamp>_tune.json a tlbench tune wrote")
    return doc


def configured(doc: dict[str, Any], path: str) -> dict[str, runner.Configured]:
    """Each finished target of a tune at the configuration it chose (the tuned one where the
    proof said "improved", else the default), by run id: its tuned suite, and what the tune
    concluded. A check, or a target an interrupted tune left, has no tuned suite: left out."""
    found = {}
    for entry in doc["targets"]:
        if not entry.get("tuned_suite"):
            continue
        try:
            suite = suite_mod.load(entry["tuned_suite"])
        except suite_mod.SuiteError as exc:
            raise DataError(f"--tuned {path}: the tuned suite of {entry['backend']} "
                            f"{entry['scenario']}: {exc}") from None
        found[run_id(entry["scenario"], entry["backend"])] = runner.Configured(suite, {
            "tune": path, "tuned_suite": entry["tuned_suite"],
            "configuration": config_text(chosen(entry), entry["default"]),
            "conclusion": entry.get("conclusion", "")})
    return found


def searched(entry: dict[str, Any]) -> int:
    """A target's trials of the search (a check's grid trials apart)."""
    return sum(t["phase"] == "search" for t in entry["trials"])


def verdict(default_doc: dict[str, Any], tuned_doc: dict[str, Any], objective: str,
            scenario: str, tuned: frozenset[str]) -> compare.Row | None:
    """compare's row of the objective figure: the tuned configuration (new) against the
    default (base), on the pairs of processes of one interleaved job — the objective judged
    alone (the one question a tune asks), not Holm-adjusted with the run's other figures."""
    name = OBJECTIVES[objective][scenario]
    rows = compare.compare(default_doc, tuned_doc, tuned=tuned, only=name)
    return rows[0] if rows else None


def trade_off(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """An inference target's trials as points (batch-1 p50 latency, throughput), read from
    each trial's result file; `front`: no other trial is both faster and lower in latency."""
    points = []
    for t in entry["trials"]:
        if t["value"] is None or not t["result"]:
            continue
        try:
            run = results.load(t["result"])["runs"][0]
        except (OSError, results.ResultError):
            continue  # a trial file moved or deleted: the tune document still holds its value
        latency = record.figures(run).get(LATENCY_P50)
        if latency is None or latency.value is None:
            continue
        points.append({"latency_ms": latency.value, "value": t["value"], "rung": t["rung"],
                       "phase": t["phase"], "config": t["config"]})
    for p in points:
        p["front"] = not any(o["value"] >= p["value"] and o["latency_ms"] <= p["latency_ms"]
                             and (o["value"], o["latency_ms"]) != (p["value"], p["latency_ms"])
                             for o in points)
    return points


NO_GAIN = "no configuration beat the default beyond the machine's drift"


def conclusion(row: compare.Row | None) -> str:
    if row is None:
        return "not proven: the proof's runs could not be compared"
    if row.status == compare.IMPROVED:
        return f"tuned: {row.ratio:.3f}x the default, p {row.p_value:.2g} ({row.note})"
    return f"{NO_GAIN} ({row.status}: {row.note})"
