"""The result contract: each scenario's sample series, and its figures, defined once.

A worker records what it timed as **series**: every call of one kind, in the order they ran.
One rule for every scenario: the first call (tracing, compiling, a cold cache), the warm-up
calls and the steady samples are kept apart, in three fields. A sample is the seconds that
`work` images took — one call, or for an asynchronous queue one group of consecutive
completions, about a second's worth (`per = "bin"`: the time from the completion before the
group to its last, over its requests; `bench.measure.completion_bins`). One-off costs (data
decoding, a head's tracing, a measured total) go in **measured**, never inside a series.

**Figures** are computed here and nowhere else — each scenario's declared with it
(bench.scenarios.<name>, read through the registry) — from the series, the one-off measurements and
the run's parameters. A figure judged on a series is the median of that series' per-sample
values (img/s of one sample, or its milliseconds), so the value shown and the samples a
comparison tests are the same thing. Compare, summary, history, the console and the HTML
report all read `figures(run)`.

Schema: frozen dataclasses with one validator (`parse`), not pydantic or msgspec: the worker
emits the contract in two environments (TensorFlow 2.21 with numpy 2.4, and ITEX's TensorFlow
2.15 with numpy 1.26), and the contract imports in both with nothing added to either. The
validator is strict: an unknown key or a value of the wrong type is an error naming its path.

Five modules: `schema` (the record and its validator), `figure` (one figure and its parts),
`figures` (a run's figures), `paper` (the paper's experiment beside this run's), `combine`
(several processes → one record, pure); this package gives their names as `bench.record.X`.
"""

from bench.record.combine import (
    combine_instances,
    combine_workers,
    harmonic,
    pace,
    pooled,
    worker_step_s,
)
from bench.record.figure import HIGHER, LOWER, NEITHER, Figure
from bench.record.figures import (
    DISTURBANCES,
    DISTURBED,
    KERNEL_PRECISIONS,
    KERNEL_SHARE,
    MIN_KERNEL_SHARE,
    cores,
    disturbance,
    disturbance_shares,
    disturbed,
    figures,
    geometric_mean,
    headline,
    headline_name,
    judged,
    kernel_mismatch,
    kernel_time_shares,
    kernels_problem,
    per_core,
    precision_share,
    process_figures,
    references,
    relative_speed,
    rounds,
    samples,
    value,
)
from bench.record.paper import HOSTS, PAPER, on_hosts, speedup
from bench.record.schema import (
    Json,
    Record,
    RecordError,
    Run,
    Series,
    Stage,
    parse,
    parse_run,
    to_dict,
)

__all__ = [
    "DISTURBANCES",
    "DISTURBED",
    "HIGHER",
    "HOSTS",
    "KERNEL_PRECISIONS",
    "KERNEL_SHARE",
    "LOWER",
    "MIN_KERNEL_SHARE",
    "NEITHER",
    "PAPER",
    "Figure",
    "Json",
    "Record",
    "RecordError",
    "Run",
    "Series",
    "Stage",
    "combine_instances",
    "combine_workers",
    "cores",
    "disturbance",
    "disturbance_shares",
    "disturbed",
    "figures",
    "geometric_mean",
    "harmonic",
    "headline",
    "headline_name",
    "judged",
    "kernel_mismatch",
    "kernel_time_shares",
    "kernels_problem",
    "on_hosts",
    "pace",
    "parse",
    "parse_run",
    "per_core",
    "pooled",
    "precision_share",
    "process_figures",
    "references",
    "relative_speed",
    "rounds",
    "samples",
    "speedup",
    "to_dict",
    "value",
    "worker_step_s",
]
