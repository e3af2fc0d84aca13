"""Result files of schema_version 1, read through one explicit migration into the contract (2).

Version 1 stored samples, statistics and derived figures side by side, each view recomputing its
own; version 2 stores series and one-off measurements only, and `bench.record` computes every
figure. The migration keeps every sample as measured and drops the stored figures, so a file of
either version gives the same figure by the same definition. What version 1 did not record is
not invented:

- the first training micro-step and the first update were timed together (`first_step_s`, the
  shard's decoding included): it becomes the micro-step series' first call, the update series
  has none;
- extraction batches were timed with their decoding; they stay as they are, and say so;
- an asynchronous queue (OpenVINO) recorded request latencies, not completions: its throughput
  series is dropped, its throughput as counted (completions in the window) is shown, not
  judged, and the run notes why;
- `instances:K` kept only the pooled latency samples: the summed throughput is shown, not
  judged;
- data-parallel runs kept the slowest worker's samples (these become the run's series, with the
  global batch as their work) and the scaling references' figures only.
"""

from __future__ import annotations

from typing import Any

from bench.record import Series, Stage, to_dict

KEPT = ("run_id", "backend", "scenario", "status", "params", "model", "data", "placement",
        "placement_obtained", "env", "started", "log", "wall_s", "worker_wall_s", "runtime",
        "runtime_start_s", "peak_rss_mb", "energy", "onednn", "reason", "error", "traceback",
        "log_tail", "carried_from", "accuracy", "accuracy_note", "chance_accuracy",
        "accuracy_random_weights", "time_to_accuracy", "lfw_verification", "parity", "loss",
        "head", "head_final_loss", "distributed", "cluster")


def _peak(efficiency: dict[str, Any] | None) -> dict[str, Any] | None:
    if not efficiency:
        return None
    if "peak_gflops" not in efficiency:
        return {"reason": efficiency.get("reason", "no peak recorded")}
    return {k: v for k, v in {"precision": efficiency.get("precision"),
                              "cores": efficiency.get("cores"),
                              "gflops": efficiency["peak_gflops"],
                              "machine_peak_gflops": efficiency.get("machine_peak_gflops"),
                              "basis": efficiency.get("basis")}.items() if v is not None}


def _training(run: dict[str, Any], out: dict[str, Any]) -> None:
    samples, params = run["samples"], run["params"]
    workers = params.get("workers", 1)
    out["series"] = {
        "micro_step": Series.of(params["micro_batch"] * workers, run["first_step_s"],
                                samples.get("warmup_micro_step_s", []), samples["micro_step_s"]),
        "update": Series.of(params["batch_size"] // workers, None, [], samples["update_s"]),
    }
    pipeline = run.get("derived", {}).get("input_pipeline_images_per_s")
    out["measured"] = {} if pipeline is None else {"input_pipeline_images_per_s": pipeline}
    if run.get("total", {}).get("kind") == "measured":
        out["measured"]["total_s"] = run["total"]["total_s"]
    scaling = run.get("scaling")
    if scaling:
        out["references"] = {
            name: _reference(run, scaling[name], workers if name == "alone" else 1)
            for name in ("alone", "one_worker_all_cores") if name in scaling}
        out["processes"] = [{k: w[k] for k in ("status", "error", "placement", "log", "wall_s",
                                                "peak_rss_mb") if w.get(k) is not None}
                            for w in run.get("workers", [])]


def _reference(run: dict[str, Any], ref: dict[str, Any], share: int) -> dict[str, Any]:
    """A scaling reference of version 1 kept only its whole-update img/s: a one-sample series
    of one whole update (the global batch, or one worker's share) gives the same figure."""
    if "images_per_s" not in ref:
        return {"run_id": run["run_id"], "backend": run["backend"], "scenario": run["scenario"],
                "status": ref.get("status", "failed"), "error": ref.get("error")}
    batch = run["params"]["batch_size"] // share
    params = {**run["params"], "workers": 1, "batch_size": batch, "micro_batch": batch}
    return to_dict({"run_id": run["run_id"], "backend": run["backend"],
                    "scenario": run["scenario"], "status": "ok", "params": params,
                    "log": ref.get("log"),
                    "series": {"micro_step": Series.of(batch, None, [],
                                                       [batch / ref["images_per_s"]])}})


def _transfer(run: dict[str, Any], out: dict[str, Any]) -> None:
    seconds = run["samples"]["extract_batch_s"]
    out["series"] = {"extract_batch": Series.of(run["params"]["batch_size"], seconds[0], [],
                                                seconds[1:])}
    out["measured"] = {"extraction_s": run["extraction_s"], "head_s": run["head_s"]}
    out["note"] = ("schema 1: extraction batches timed with their decoding; the head's tracing "
                   "inside head_s")


def _fine_tune(run: dict[str, Any], out: dict[str, Any]) -> None:
    out["stages"] = [Stage(stage=s["stage"], unfrozen=tuple(s["unfrozen"]),
                           trainable_weights=s["trainable_weights"], steps=s["steps"],
                           series=Series.of(run["params"]["batch_size"], s["step_s"][0], [],
                                            s["step_s"][1:]),
                           stage_s=s["stage_s"], elapsed_s=s["elapsed_s"],
                           accuracy=s["accuracy"]) for s in run["stages"]]


def _inference(run: dict[str, Any], out: dict[str, Any]) -> None:
    samples, batch = run["samples"], run["params"]["batch_size"]
    first = run.get("first_call_s", {})
    name = f"throughput_bs{batch}"
    warm = samples.get("latency_bs1_warmup", [])
    out["series"] = {"latency_bs1": Series.of(1, warm[0] if warm else None, warm[1:],
                                              samples["latency_bs1"])}
    mode = run.get("throughput_mode", "synchronous batches")
    asynchronous = not mode.startswith("synchronous")
    out["throughput"] = {"mode": mode, "asynchronous": asynchronous}
    if run.get("instances") or asynchronous:  # the figure as counted, from completions
        out["measured"] = {"throughput_images_per_s": run["derived"]["images_per_s"]}
    if run.get("instances"):
        out["note"] = ("schema 1: instances kept only their pooled latency samples; their summed "
                       "throughput is shown, not judged")
        out["processes"] = [{k: w[k] for k in ("status", "placement", "log", "wall_s",
                                                "peak_rss_mb") if w.get(k) is not None}
                            for w in run["instances"]]
    elif asynchronous:
        out["note"] = ("schema 1: an asynchronous queue's request latencies, not completions; "
                       "its throughput (completions in the window) is shown, not judged")
    else:
        warm = samples.get(f"{name}_warmup", [])
        out["series"][name] = Series.of(batch, first.get(name), warm[1:], samples[name])


_SCENARIOS = {"full_training": _training, "transfer": _transfer, "fine_tune": _fine_tune,
              "inference": _inference}


def migrate_run(run: dict[str, Any]) -> dict[str, Any]:
    out = {k: run[k] for k in KEPT if run.get(k) is not None}
    out.setdefault("params", {})
    if run.get("efficiency"):
        out["peak"] = _peak(run["efficiency"])
    if run.get("status") == "ok":
        _SCENARIOS[run["scenario"]](run, out)
    return {k: v for k, v in to_dict(out).items() if v != {} or k == "params"}


def migrate(doc: dict[str, Any]) -> dict[str, Any]:
    """A whole version-1 document → version 2 (the header is unchanged)."""
    return {**doc, "schema_version": 2, "migrated_from": 1,
            "runs": [migrate_run(r) for r in doc["runs"]]}
