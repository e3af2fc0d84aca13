"""Result files: the only writer and reader of `results/<machine>/<stamp>_<suite>.json`.

Every write is atomic (temporary file, fsync, rename), so a reader — or a crash — never sees half
a file. A suite's file is created when the suite starts and replaced, whole, after every run, so a
run already measured survives whatever happens to the next one. An existing file of another suite
run is never overwritten: a new stamp-derived name is chosen.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bench import record, schema_v1

SCHEMA_VERSION = 2  # 1 is read through bench.schema_v1's migration


class ResultError(ValueError):
    """A result file that cannot be used; the message names the file and what to do."""


# what to do when a result file cannot be written, by the cause
_WRITE_FIXES = {
    errno.ENOSPC: "free space on that disk, or give --out a folder on another one",
    errno.EDQUOT: "free space within your quota, or give --out a folder on another disk",
    errno.EROFS: "the file system is read-only: give --out a writable folder",
    errno.EACCES: "no permission to write there: give --out a folder you can write",
    errno.EPERM: "no permission to write there: give --out a folder you can write",
}


class SaveError(RuntimeError):
    """A result file that could not be written. The document, with every run measured so far,
    is kept in a fallback file where one could be written (`kept`); the message names both."""

    def __init__(self, path: Path, exc: OSError, kept: Path | None, measured: int):
        self.path, self.kept = path, kept
        fix = _WRITE_FIXES.get(exc.errno, "check the folder given to --out")
        where = (" No run had been measured yet: nothing is lost." if not measured else
                 f" Every run measured so far, the last one included, is kept in {kept}: "
                 f"`tlbench report {kept}` shows it, `tlbench run --resume {kept}` runs what it "
                 f"is missing." if kept else
                 " It could not be kept anywhere else either (the temporary folder and "
                 "~/.cache/tlbench/unsaved failed too): the runs measured since the file's last "
                 "good write are lost.")
        super().__init__(f"cannot write the result file {path}: "
                         f"{exc.strerror or exc} — {fix}.{where}")


def _keep_elsewhere(path: Path, doc: dict[str, Any]) -> Path | None:
    """The document written to the first fallback folder that takes it, or None."""
    for folder in (Path(tempfile.gettempdir()) / "tlbench-unsaved",
                   Path.home() / ".cache/tlbench/unsaved"):
        target = folder / f"{path.stem}-{os.getpid()}.json"
        try:
            write_atomic(target, doc)
        except OSError:
            continue
        return target
    return None


def write_atomic(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; results are for everyone to read
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=False, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def new_path(out_dir: Path, machine_id: str, suite_name: str, now: dt.datetime) -> Path:
    """A fresh file name under out_dir/machine_id; never one that already exists."""
    folder = out_dir / machine_id
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{stamp}_{suite_name}.json"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{n}_{suite_name}.json"
    return path


def previous_costs(out_dir: Path, machine_id: str, suite_name: str) -> dict[str, float]:
    """Each run's wall time (seconds, by run id) in the newest earlier result of this suite on
    this machine that measured it; {} when there is none. Unreadable files are passed over:
    this is a guess at how long a run will take, never a figure."""
    costs: dict[str, float] = {}
    for path in sorted((out_dir / machine_id).glob(f"*_{suite_name}.json")):  # oldest first
        try:
            runs = load(path)["runs"]
        except ResultError:
            continue
        costs.update({r["run_id"]: r["wall_s"] for r in runs
                      if r["status"] != "skipped" and r.get("wall_s")})
    return costs


class ResultFile:
    """One suite run's result document, saved whole after every change."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **header,
                                    "complete": False, "runs": []}
        # Claim the name now, exclusively, so two concurrent suites cannot share one file.
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "x", encoding="utf-8"):
                pass
        except FileExistsError:
            raise  # new_path never names one: another writer took it
        except OSError as exc:
            raise SaveError(path, exc, None, 0) from None
        self.save()

    def add_run(self, run: dict[str, Any]) -> None:
        """Append a run, checked against the contract first (see `_checked`)."""
        self.doc["runs"].append(_checked(run))
        self.save()

    def add_repeat(self, run_id: str, round_: int, run: dict[str, Any]) -> None:
        """A later round's process of a run already added: kept under its `repeats`. A failed
        process fails the run (naming its round); every process stays in the file."""
        target = next(r for r in self.doc["runs"] if r["run_id"] == run_id)
        process = _checked(run)
        target.setdefault("repeats", []).append(process)
        if process["status"] != "ok" and target["status"] == "ok":
            target.update(status="failed", error=f"round {round_}: {process.get('error')}")
        self.save()

    def finish(self, **fields: Any) -> None:
        self.doc.update(fields)
        self.doc["complete"] = True
        self.save()

    def save(self) -> None:
        """The whole document, atomically: a failed write leaves the file as it was (every
        earlier run in it) and raises SaveError, the document kept in a fallback file."""
        try:
            write_atomic(self.path, self.doc)
        except OSError as exc:
            measured = len(self.doc["runs"])
            kept = _keep_elsewhere(self.path, self.doc) if measured else None
            raise SaveError(self.path, exc, kept, measured) from None


def _checked(run: dict[str, Any]) -> dict[str, Any]:
    """The run if it fits the contract; else a failed run naming the break (with its log),
    never a record written half-valid."""
    try:
        record.parse_run(run)
    except record.RecordError as exc:
        return {**{k: run[k] for k in ("run_id", "backend", "scenario", "params", "model",
                                       "data", "placement", "env", "log", "wall_s") if k in run},
                "status": "failed", "error": f"the run's record breaks the result contract: "
                                             f"{exc}"}
    return run


def load(path: str | Path) -> dict[str, Any]:
    """Load and check a result file; refuse truncated files and unknown schema versions. A
    version-1 file is migrated (bench.schema_v1); every run is parsed against the contract,
    once: the runs come back as read-only `record.Run`s carrying their typed records."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultError(f"{p}: no such result file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultError(f"{p}: cannot read: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultError(f"{p}: not valid JSON (truncated or edited?) at line {exc.lineno}: "
                          f"{exc.msg}; re-run the suite to get a new file") from None
    if not isinstance(doc, dict) or "schema_version" not in doc:
        raise ResultError(f"{p}: not a tlbench result file (no schema_version)")
    version = doc["schema_version"]
    if version not in (1, SCHEMA_VERSION):
        raise ResultError(f"{p}: schema_version {version!r} is not supported by this tlbench "
                          f"(reads versions 1 and {SCHEMA_VERSION}); use the tlbench release "
                          f"that wrote it, or re-run the suite")
    if not isinstance(doc.get("runs"), list):
        raise ResultError(f"{p}: has no list of runs")
    try:
        if version == 1:
            doc = schema_v1.migrate(doc)
        doc["runs"] = [record.Run(run, f"run {i}") for i, run in enumerate(doc["runs"])]
    except (record.RecordError, KeyError, TypeError, IndexError, ValueError) as exc:
        raise ResultError(f"{p}: run does not fit the result contract (schema_version "
                          f"{version}): {exc}; re-run the suite") from None
    return doc
