"""Baseline vs new result (pure): one row per run and figure, with a ratio and its significance.

Runs are paired by their stable `run_id` ("scenario/backend"). Each pair is judged on every
figure that `bench.record` defines on a series, on that figure's own per-sample values, never on
a single summary number:

- `full_training`: whole-update img/s of each steady micro-step (its share of the update, and of
  a data-parallel run's all-reduce, included): the figure the scaling table shows;
- `transfer`: the steady extraction batches (img/s); the ratio of the whole transfer time is
  shown beside it, not judged (one number);
- `fine_tune`: each stage's steady img/s;
- `inference`: batch-1 latency and batch-N throughput (for an asynchronous queue, completions
  counted in sub-windows; for `instances:K`, the instances' summed rate), one row each.

The ratio is the Hodges–Lehmann estimate (the median of all new/base sample ratios): the
estimate that goes with the Mann–Whitney U test used for significance, and robust to the few
slow samples and the drifts of a shared machine. A row is `worse` only when the slowdown is
beyond the threshold *and* significant, `improved` symmetrically, `same` otherwise (with the
reason in the note), `not comparable` when either side is missing, did not run, or ran with
other parameters.

A shared machine's own speed drifts between runs by more than the threshold (on the 2-vCPU dev
VM, 40% between two hours with no CPU steal). Every worker process measures it with a fixed
reference kernel beside its scenario (bench.measure.reference); where both results have it, each
row also shows its change relative to each result's machine speed (`machine_speed`), as context:
that kernel was measured not to track training on the dev VM (RELATIVE_CONTEXT). Interleaving
(`tlbench ab`, repeats) is what puts the drift on both sides alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from bench import measure as bench_measure
from bench import paired, record, scenarios, significance, summary

# Family-wise, two-sided: exit 1 is one decision over every row of a comparison, so the rows'
# p-values are adjusted together (Holm) — eight rows at 0.01 each would raise a false alarm in
# about one comparison in twelve on significance alone. Measured on the dev VM (`make
# drift-rates`, 8 quiet processes a side judged 4 against 4): no A/A pair worse at 0.01 or at
# 0.05 (their smallest p 0.069), the injected 10% training slowdown caught in 4 of 10 at 0.01
# (its p 0.001-0.063) and in 9 of 10 at 0.05 (`--alpha 0.05`). 0.01 stays the default: a
# synthetic run whose processes drift by ±5% gave A/A false alarms at 0.05, so did a real run
# judged 3 against 3 in which the machine slowed by 20%, and CI false alarms are what this tool
# must not raise.
ALPHA = 0.01
DEFAULT_MAX_SLOWDOWN_PCT = 5.0
IMPROVED, SAME, WORSE, NOT_COMPARABLE = "improved", "same", "worse", "not comparable"


class CompareError(ValueError):
    """Two result documents that cannot be compared at all (nothing in common)."""


@dataclass(frozen=True)
class Row:
    run_id: str
    metric: str
    unit: str
    status: str
    base: float | None = None          # each side's headline figure (from its median)
    new: float | None = None
    ratio: float | None = None         # new/base of the figure (Hodges–Lehmann)
    time_change_pct: float | None = None  # + slower, - faster
    p_value: float | None = None       # Mann–Whitney U, two-sided, Holm-adjusted over the rows
    significant: bool = False
    n_base: int = 0
    n_new: int = 0
    total_ratio: float | None = None   # new/base of the run's total time, informative only
    total_kind: str | None = None      # "measured" or "projected" (projected if either is)
    note: str = ""
    # what n counts: the pairs of adjacent processes of one interleaved job (the drift between
    # processes cancels in each pair: bench.paired), the processes of each side (repeats: the
    # verdict sees the drift between them), or the samples of one process a side (it does not)
    judged_on: str = "samples"
    # the primary figure (a run's training time, the CI use): judged in its own family, the
    # other rows adjusted among themselves
    primary: bool = False
    pair_spread: float | None = None   # judged on pairs: the standard deviation of their logs
    # the machine's own speed beside each side's processes (the reference kernel, new/base),
    # and the figure judged relative to it: None when either side has no comparable reference
    machine_ratio: float | None = None
    relative_ratio: float | None = None
    relative_change_pct: float | None = None
    relative_p: float | None = None    # same test as p_value, Holm-adjusted over the rows
    # the median CPU steal share, and other processes' load share, of each side's processes
    # (None: not recorded)
    steal_base: float | None = None
    steal_new: float | None = None
    foreign_base: float | None = None
    foreign_new: float | None = None

    @property
    def comparable(self) -> bool:
        return self.status != NOT_COMPARABLE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# How long to warm up and how long to measure change how many samples there are, not what one
# sample measures: runs that differ only there are still compared.
WINDOW_PARAMS = frozenset({"warmup_steps", "window_steps", "warmup_s", "duration_s"})


def configuration(run: dict[str, Any], tuned: frozenset[str] = frozenset()) -> dict[str, Any]:
    """What must be equal for two runs to be comparable (not paths, not timings). `tuned`: the
    knobs a tuning search changed (`bench.knobs`: "inference.batch_size", "openvino.streams",
    "placement"), whose difference is what a tuned run is compared for."""
    model = run.get("model", {})
    data = run.get("data", {})
    keys = {name.rpartition(".")[2] for name in tuned}
    return {
        "params": {k: v for k, v in run.get("params", {}).items()
                   if k not in WINDOW_PARAMS and k not in keys},
        "model": {k: model[k] for k in ("variant", "image_size", "embedding_size", "pretrained")
                  if k in model},
        "data": {k: data[k] for k in ("identities", "train_images", "test_images") if k in data},
        "threads": None if "placement" in tuned else run.get("placement", {}).get("threads"),
        "backend_params": {k: v for k, v in run.get("backend_params", {}).items()
                           if k not in keys},
    }


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Paths where two nested configurations differ, as 'key: base → new'.

    A key recorded on one side only (a field added by a later tlbench) is not a difference.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in dict.fromkeys([*a, *b]):
            if key in a and key in b:
                out += differences(a[key], b[key], f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} → {b!r}"]


ONE_PROCESS = ("one process a side: the drift between runs is not accounted for (run with "
               "--repeats 3 or more)")


def measure(run_id: str, base: dict[str, Any], new: dict[str, Any],
            figure_b: record.Figure, figure_n: record.Figure,
            speeds: tuple[float, float] | None = None, pairs: bool = False) -> Row:
    """A row with the ratio and the raw p-value of one judged figure; `decide` gives it its
    status. With `pairs` (the two sides of one interleaved job, two or more processes a side)
    the verdict is on each round's pair of processes (bench.paired). Otherwise, with two or
    more processes a side the verdict is on the processes' own figures —
    the ratio their Hodges–Lehmann estimate, the p-value Welch's t on their logarithms — so the
    drift between processes is in it; with one a side, on that process's per-sample values
    (bench.record.samples) and Mann–Whitney U, which cannot see drift between runs.

    With each side's machine speed (`machine_speed`, base and new), the same test is also made
    on the values relative to it (a rate divided by it, a time multiplied by it): the machine's
    own drift between the runs is then out of that second verdict, which `decide` combines
    with the first."""
    processes = figure_b.processes > 1 and figure_n.processes > 1
    primary = figure_b.headline and scenarios.get(base["scenario"]).primary
    disturbance = {"steal_base": record.disturbance(base, "steal"),
                   "steal_new": record.disturbance(new, "steal"),
                   "foreign_base": record.disturbance(base, "foreign_load"),
                   "foreign_new": record.disturbance(new, "foreign_load")}
    if pairs and processes:
        judged = paired.pair(base, new, figure_b.name)
        if not judged.n:
            return Row(run_id, figure_b.name, figure_b.unit, NOT_COMPARABLE,
                       note=f"no pair of processes to judge: {judged.note()}")
        return Row(run_id=run_id, metric=figure_b.name, unit=figure_b.unit, status=SAME,
                   base=figure_b.value, new=figure_n.value, ratio=judged.ratio,
                   time_change_pct=(_time_ratio(judged.ratio, figure_b) - 1) * 100,
                   p_value=judged.p_value(), n_base=judged.n, n_new=judged.n,
                   judged_on="pairs", primary=primary, pair_spread=judged.spread,
                   note=judged.note(), **disturbance)
    base_s, new_s = (_values(side, figure, processes)
                     for side, figure in ((base, figure_b), (new, figure_n)))
    test = significance.welch if processes else significance.mann_whitney
    ratio, p = significance.hodges_lehmann_ratio(base_s, new_s), test(base_s, new_s)
    row = Row(run_id=run_id, metric=figure_b.name, unit=figure_b.unit, status=SAME,
              base=figure_b.value, new=figure_n.value, ratio=ratio,
              time_change_pct=(_time_ratio(ratio, figure_b) - 1) * 100, p_value=p,
              n_base=len(base_s), n_new=len(new_s),
              judged_on="processes" if processes else "samples", primary=primary,
              **disturbance)
    if speeds is None:
        return row
    power = -1 if figure_b.better == record.HIGHER else 1
    rel_b, rel_n = base_s * speeds[0] ** power, new_s * speeds[1] ** power
    relative = significance.hodges_lehmann_ratio(rel_b, rel_n)
    return replace(row, machine_ratio=speeds[1] / speeds[0], relative_ratio=relative,
                   relative_change_pct=(_time_ratio(relative, figure_b) - 1) * 100,
                   relative_p=test(rel_b, rel_n))


def _time_ratio(ratio: float, figure: record.Figure) -> float:
    return 1 / ratio if figure.better == record.HIGHER else ratio


def _values(run: dict[str, Any], figure: record.Figure, processes: bool) -> np.ndarray:
    """What one side is judged on: each process's figure, or one process's samples."""
    if processes:
        return np.asarray([f[figure.name].value for f in record.process_figures(run)
                           if figure.name in f and f[figure.name].value is not None], float)
    return np.asarray(record.samples(run, figure.series), dtype=float)


def machine_speed(doc: dict[str, Any]) -> float | None:
    """The machine's speed over a whole result: the median of every reading of the reference
    kernel its processes took (each CPU, before and after each scenario), None without them.
    One reading is a tenth of a second of a shared VM and scatters by tens of per cent; the
    median of a result's dozens tells the machine's speed over the run to a few per cent,
    which one process's two cannot."""
    readings = [x for run in doc["runs"] if run.get("status") == "ok"
                for ref in record.references(run) if ref for x in ref["readings"]]
    return float(np.median(readings)) if readings else None


def machine_comparable(base_doc: dict[str, Any], new_doc: dict[str, Any]) -> str | None:
    """Why the two results' machine speeds cannot be compared — one has none, or their
    reference kernels differ (another numpy: another kernel) — or None when they can."""
    kernels = [{k for r in doc["runs"] if r.get("status") == "ok"
                for ref in record.references(r) if ref for k in ref["kernels"]}
               for doc in (base_doc, new_doc)]
    if not (kernels[0] and kernels[1]):
        return "no reference kernel in " + (
            "either result" if not (kernels[0] or kernels[1])
            else "the baseline" if not kernels[0] else "the new result")
    if kernels[0] != kernels[1]:
        return (f"the reference kernels differ ({', '.join(sorted(kernels[0]))} vs "
                f"{', '.join(sorted(kernels[1]))}): the machine's speed is not compared")
    return None


# The change relative to the reference kernel is shown, never judged on: in a quiet interleaved
# run on the 2-vCPU dev VM (16 processes, no CPU steal) the kernel's readings scattered 2.1-6.1
# Gelem/s — highest in a process's first tenth of a second, as the host's clock falls under a
# sustained load — uncorrelated with training, whose processes agreed within 5%; halves of the
# run's processes then showed the machine up to 32% slower than it was, and judging relative to
# it vetoed 3 of 5 caught 10% slowdowns.
RELATIVE_CONTEXT = "context, not judged"


def _verdict(change_pct: float, significant: bool, max_slowdown_pct: float) -> str:
    limit = 1 + max_slowdown_pct / 100
    if significant and 1 + change_pct / 100 > limit:
        return WORSE
    if significant and 1 + change_pct / 100 < 1 / limit:
        return IMPROVED
    return SAME


def decide(row: Row, p_adjusted: float, max_slowdown_pct: float, alpha: float,
           family: int, relative_p_adjusted: float | None = None) -> Row:
    """Status from the family-adjusted p-value and the slowdown threshold, as measured. With
    the machine's reference on both sides, the note adds the change relative to the machine's
    speed and its verdict, as context only (see RELATIVE_CONTEXT). A row either side of which
    was disturbed — a median record.DISTURBED share of CPU steal or of other processes' load on
    its CPUs — is not judged: the note says so (judged on pairs, the disturbed pairs were left
    out instead)."""
    significant = p_adjusted < alpha
    status = _verdict(row.time_change_pct, significant, max_slowdown_pct)
    if status == WORSE:
        note = f"slower beyond {max_slowdown_pct:g}%, significant"
    elif status == IMPROVED:
        note = f"faster beyond {max_slowdown_pct:g}%, significant"
    elif significant:
        note = f"significant, within ±{max_slowdown_pct:g}%"
    elif (row.judged_on == "samples"
          and family * significance.min_p_value(row.n_base, row.n_new) >= alpha):
        note = f"too few samples ({row.n_base}/{row.n_new}): inconclusive"
    else:
        note = "not significant"
    if row.judged_on == "pairs":
        note += f"; {row.note}"
        detectable = paired.detectable_change(row.n_base, row.pair_spread, alpha / family)
        if detectable is not None:
            catch = (f"catch a {detectable:.1%} change" if detectable < 1 else
                     "are too few to catch even a doubling")
            note += (f" (at their spread, {row.pair_spread:.1%}, these pairs {catch} "
                     f"{paired.POWER:.0%} of the time)")
    elif row.judged_on == "processes":
        note += f"; between {row.n_base}/{row.n_new} processes"
    else:
        note += f"; {ONE_PROCESS}"
    if relative_p_adjusted is not None:
        relative = _verdict(row.relative_change_pct, relative_p_adjusted < alpha,
                            max_slowdown_pct)
        drift = (row.machine_ratio - 1) * 100
        speed = (f"{'faster' if drift > 0 else 'slower'} by {abs(drift):.1f}%"
                 if abs(drift) >= 0.05 else "steady")
        note += (f"; the machine {speed} (reference kernel), relative to it "
                 f"{row.relative_change_pct:+.1f}% ({relative}; {RELATIVE_CONTEXT})")
    disturbed = [(side, x, what) for side, x, kind, what in (
        ("baseline", row.steal_base, "steal", "steal"),
        ("new", row.steal_new, "steal", "steal"),
        ("baseline", row.foreign_base, "foreign_load", "other processes"),
        ("new", row.foreign_new, "foreign_load", "other processes"))
        if x is not None and x >= record.DISTURBED[kind]]
    if status != SAME and disturbed and row.judged_on != "pairs":  # pairs: left out in pairing
        side, share, what = max(disturbed, key=lambda d: d[1])
        note += (f"; not judged {status}: the {side} processes lost a median {share:.0%} of "
                 f"their CPUs' time to {what}, a disturbed machine — rerun on a quiet one")
        status = SAME
    return replace(row, status=status, p_value=p_adjusted, significant=significant,
                   relative_p=relative_p_adjusted, note=note)


TOTALS = ("train total s", "transfer total s", "fine-tune total s")


def _total(base: dict[str, Any], new: dict[str, Any]) -> tuple[float | None, str | None]:
    fb, fn = record.figures(base), record.figures(new)
    name = next((n for n in TOTALS if n in fb and n in fn), None)
    if name is None or not (fb[name].value and fn[name].value):
        return None, None
    kind = "projected" if "projected" in (fb[name].kind, fn[name].kind) else "measured"
    return fn[name].value / fb[name].value, kind


def _why_not_ok(side: str, run: dict[str, Any]) -> str:
    cause = run.get("reason") or run.get("error") or "no cause recorded"
    return f"{run.get('status', 'no status')} in {side}: {str(cause).splitlines()[0][:200]}"


def compare_run(run_id: str, base: dict[str, Any] | None, new: dict[str, Any] | None,
                speeds: tuple[float, float] | None = None, paired_rounds: bool = False,
                tuned: frozenset[str] = frozenset()) -> list[Row]:
    """Measured rows of one pair (status still to be decided), or one `not comparable` row."""
    if base is None or new is None:
        side = "base" if base is None else "new"
        return [Row(run_id, "", "", NOT_COMPARABLE, note=f"missing in {side}")]
    for side, run in (("base", base), ("new", new)):
        if run.get("status") != "ok":
            return [Row(run_id, "", "", NOT_COMPARABLE, note=_why_not_ok(side, run))]
    diff = differences(configuration(base, tuned), configuration(new, tuned))
    if diff:
        return [Row(run_id, "", "", NOT_COMPARABLE,
                    note="different parameters: " + "; ".join(diff[:4])
                    + (f" (+{len(diff) - 4} more)" if len(diff) > 4 else ""))]
    judged_n = {f.name: f for f in record.judged(new)}
    figures = [(f, judged_n[f.name]) for f in record.judged(base) if f.name in judged_n]
    if not figures:
        why = base.get("note") or new.get("note") or "no sample series in common to judge"
        return [Row(run_id, "", "", NOT_COMPARABLE, note=why)]
    total_ratio, total_kind = _total(base, new)
    rows = [measure(run_id, base, new, b, n, speeds, paired_rounds) for b, n in figures]
    if total_ratio is not None:
        rows[0] = replace(rows[0], total_ratio=total_ratio, total_kind=total_kind)
    return rows


def one_job(base_doc: dict[str, Any], new_doc: dict[str, Any]) -> bool:
    """The two sides of one interleaved `tlbench ab` job: their processes pair round by round."""
    sides = [doc.get("ab") or {} for doc in (base_doc, new_doc)]
    return ({s.get("side") for s in sides} == {"A", "B"}
            and base_doc.get("created") == new_doc.get("created"))


def compare(base_doc: dict[str, Any], new_doc: dict[str, Any],
            max_slowdown_pct: float = DEFAULT_MAX_SLOWDOWN_PCT,
            alpha: float = ALPHA, pairs: bool | None = None,
            tuned: frozenset[str] = frozenset(), only: str = "") -> list[Row]:
    """Rows for every run id of either document, in the base's order, then the new ones.
    `pairs`: judge round k of one side against round k of the other (bench.paired); by default
    when the two are the sides of one interleaved job. `tuned`: knobs whose values may differ
    (`configuration`). `only`: that figure's rows alone, the one question asked (a tune's
    objective), so no other figure shares its Holm family. The primary rows (training time) are
    Holm-adjusted among themselves, the others among themselves, so that the secondary rows do
    not dilute the primary verdict's power.

    Raises CompareError when the two documents share no run id at all.
    """
    pairs = one_job(base_doc, new_doc) if pairs is None else pairs
    base_runs = {r["run_id"]: r for r in base_doc["runs"]}
    new_runs = {r["run_id"]: r for r in new_doc["runs"]}
    if not set(base_runs) & set(new_runs):
        raise CompareError(f"nothing in common: the baseline has runs {sorted(base_runs)}, the "
                           f"new result {sorted(new_runs)}")
    speeds = (None if machine_comparable(base_doc, new_doc)
              else (machine_speed(base_doc), machine_speed(new_doc)))
    rows: list[Row] = []
    for run_id in dict.fromkeys([*base_runs, *new_runs]):
        rows += [r for r in compare_run(run_id, base_runs.get(run_id), new_runs.get(run_id),
                                        speeds, pairs, tuned) if not only or r.metric == only]
    for primary in (True, False):
        judged = [i for i, r in enumerate(rows) if r.comparable and r.primary == primary]
        adjusted = significance.holm([rows[i].p_value for i in judged])
        relative = [i for i in judged if rows[i].relative_p is not None]
        relative_p = significance.holm([rows[i].relative_p for i in relative])
        relative_adjusted = dict(zip(relative, relative_p, strict=True))
        for i, p in zip(judged, adjusted, strict=True):
            rows[i] = decide(rows[i], p, max_slowdown_pct, alpha, len(judged),
                             relative_adjusted.get(i))
    return rows


def other_hardware(base_doc: dict[str, Any], new_doc: dict[str, Any]) -> str | None:
    """Why two results are not of one machine's hardware (a regression is judged on one), or
    None when they are."""
    from bench.machine import hardware_id

    ids = [hardware_id(doc.get("machine") or {}) for doc in (base_doc, new_doc)]
    if ids[0] == ids[1]:
        return None
    models = [(doc.get("machine") or {}).get("cpu_model") for doc in (base_doc, new_doc)]
    return (f"different machines: {ids[0]} ({models[0]}) vs {ids[1]} ({models[1]}); a "
            f"regression is judged on one machine's hardware — pass --across-machines to "
            f"compare them anyway")


def context_notes(base_doc: dict[str, Any], new_doc: dict[str, Any]) -> list[str]:
    """What a reader should know before trusting the rows: other machine, other software."""
    notes = []
    if not one_job(base_doc, new_doc):
        notes.append(f"two jobs (created {base_doc.get('created')} and {new_doc.get('created')}):"
                     f" the machine's drift between them is in every row — measure both in one "
                     f"interleaved job to cancel it (tlbench ab --a-ref REF, make bench-ci "
                     f"BASELINE_REF=REF)")
    bm, nm = base_doc.get("machine", {}), new_doc.get("machine", {})
    for key in ("cpu_model", "logical_cpus", "sockets"):
        if bm.get(key) != nm.get(key):
            notes.append(f"different machines: {key} {bm.get(key)!r} → {nm.get(key)!r}")
    bp = base_doc.get("software", {}).get("packages", {})
    np_ = new_doc.get("software", {}).get("packages", {})
    changed = [f"{k} {bp.get(k)} → {np_.get(k)}" for k in sorted({*bp, *np_})
               if bp.get(k) != np_.get(k)]
    if changed:
        notes.append("software changed: " + ", ".join(changed))
    why_not = machine_comparable(base_doc, new_doc)
    if why_not is None:
        speed_b, speed_n = machine_speed(base_doc), machine_speed(new_doc)
        notes.append(f"the machine's own speed (reference kernel, median of every reading): "
                     f"base {speed_b:.2f}, new {speed_n:.2f} {bench_measure.REFERENCE_UNIT}, "
                     f"new/base {speed_n / speed_b:.3f}x")
    elif "differ" in why_not:
        notes.append(why_not)
    for kind, what in (("steal", "CPU steal (the hypervisor's other work on these vCPUs)"),
                       ("foreign_load", "other processes' load on the runs' CPUs")):
        shares = [summary.disturbance(doc, kind) for doc in (base_doc, new_doc)]
        if any(shares):
            notes.append(f"{what}: base {shares[0] or 'none notable'}, new "
                         f"{shares[1] or 'none notable'}")
    return notes


def regressions(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.status == WORSE]
