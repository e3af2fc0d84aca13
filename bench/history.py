"""The trend of one machine's result files: training and transfer time, by date and commit.

Reads every `*.json` of a folder (`results/<machine>/`), oldest first by the `created` stamp
each file records. One entry per file and backend, holding only figures the file itself gives;
a file that cannot be read is listed as a problem, not silently skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import machine, record, results, summary


class HistoryError(ValueError):
    """A folder with no usable result file."""


def entries_of(doc: dict[str, Any], file: str) -> list[dict[str, Any]]:
    """Per backend: training img/s and total (measured or projected), transfer total."""
    ok = summary.runs_by(doc)
    project = doc.get("project") or {}
    commit = project.get("commit") or ""
    out = []
    for backend in dict.fromkeys(r.get("backend") for r in doc["runs"]):
        train, transfer = ok.get(("full_training", backend)), ok.get(("transfer", backend))
        if not (train or transfer):
            continue
        entry: dict[str, Any] = {
            "file": file,
            "created": doc.get("created", ""),
            "commit": commit,
            "commit_short": (commit[:7] or "no commit") + ("+" if project.get("dirty") else ""),
            "suite": doc.get("suite", {}).get("name", "?"),
            "backend": backend,
            "image_size": (train or transfer)["model"].get("image_size"),
            "train_img_s": None, "train_total_h": None, "train_kind": None,
            "transfer_total_s": None, "extract_img_s": None,
        }
        if train:
            figs = record.figures(train)
            total = figs["train total s"]
            entry.update(train_img_s=figs["train img/s"].value, train_total_h=total.value / 3600,
                         train_kind=total.kind)
        if transfer:
            figs = record.figures(transfer)
            entry.update(transfer_total_s=figs["transfer total s"].value,
                         extract_img_s=figs["extract img/s"].value)
        out.append(entry)
    return out


def collect(folder: str | Path, across_machines: bool = False
            ) -> tuple[list[dict[str, Any]], list[str]]:
    """Entries of every result file in `folder`, oldest first, and the files that failed.
    Files of different hardware make no trend: refused unless `across_machines`."""
    path = Path(folder)
    if not path.is_dir():
        raise HistoryError(f"{path}: not a folder; give results/<machine>/")
    docs, problems = [], []
    for file in sorted(path.glob("*.json")):
        try:
            docs.append((results.load(file), file.name))
        except results.ResultError as exc:
            problems.append(str(exc))
    docs.sort(key=lambda d: (d[0].get("created", ""), d[1]))
    hardware = {}
    for doc, name in docs:
        hardware.setdefault(machine.hardware_id(doc.get("machine") or {}), (name, doc))
    if len(hardware) > 1 and not across_machines:
        named = "; ".join(f"{hw} ({(doc.get('machine') or {}).get('cpu_model')}, e.g. {name})"
                          for hw, (name, doc) in hardware.items())
        raise HistoryError(f"{path}: results of {len(hardware)} different machines ({named}): "
                           f"a trend is drawn on one machine's hardware; pass "
                           f"--across-machines to draw them together")
    entries = [e for doc, name in docs for e in entries_of(doc, name)]
    if not entries:
        raise HistoryError(f"{path}: no result file with a successful training or transfer run"
                           + (f" ({len(problems)} unreadable)" if problems else ""))
    return entries, problems
