"""One suite at a time on a CPU: a machine-wide lock per CPU, held while a suite measures.

A suite (`tlbench run`, `tlbench ab`) locks every CPU of its placement: one file per CPU in the
lock folder (`/tmp/tlbench-locks`, or $TLBENCH_LOCK_DIR), each held with flock(2) — so the
kernel drops it when the process ends, however it ends — and holding who holds it (pid, command,
CPUs, since when). Another suite on any of those CPUs is refused, naming them; with
`--allow-concurrent` it runs anyway, and its result says beside whom (`lock.concurrent`).

The scope is the CPU, not the machine, so what must run side by side still can: the "hosts" of
one multi-host training run on one machine each lock only their own CPUs (`--placement`), and
the two processes of `make test` each lock in a folder of their own ($TLBENCH_LOCK_DIR), which
their results record (`lock.machine_wide` false).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCK_DIR_VAR = "TLBENCH_LOCK_DIR"
DEFAULT_DIR = Path("/tmp/tlbench-locks")  # every user's suites see the same folder


class BusyError(RuntimeError):
    """Another suite holds CPUs this one would measure on; the message names it and the fix."""


def folder() -> Path:
    return Path(os.environ.get(LOCK_DIR_VAR) or DEFAULT_DIR)


@dataclass
class CpuLock:
    """The locks this suite holds, and the other suites it runs beside (when allowed)."""

    folder: Path
    cpus: tuple[int, ...]
    held: dict[int, int] = field(default_factory=dict)  # CPU → open file descriptor
    concurrent: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """What a result records of it."""
        return {"folder": str(self.folder), "machine_wide": self.folder == DEFAULT_DIR,
                "cpus": list(self.cpus), "held": sorted(self.held),
                "concurrent": self.concurrent}

    def release(self) -> None:
        for fd in self.held.values():
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the descriptor drops its flock
        self.held.clear()

    def __enter__(self) -> CpuLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> dict[str, Any]:
    """Who holds a lock file, as its holder wrote it (empty while it is still writing)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 65536).decode() or "{}")
    except (OSError, ValueError):
        return {}


def acquire(cpus: tuple[int, ...], allow_concurrent: bool = False,
            where: Path | None = None) -> CpuLock:
    """Lock these CPUs for this process. Busy CPUs raise BusyError naming their holders, unless
    `allow_concurrent`: then the free ones are locked and the holders recorded."""
    lock = CpuLock(where or folder(), tuple(sorted(cpus)))
    try:
        lock.folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            lock.folder.chmod(0o1777)  # any user's suite locks here, as in /tmp
    except OSError as exc:
        raise BusyError(f"cannot use the lock folder {lock.folder}: {exc.strerror}; set "
                        f"{LOCK_DIR_VAR} to a writable folder") from None
    me = {"pid": os.getpid(), "command": " ".join(sys.argv), "cpus": list(lock.cpus),
          "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    busy: dict[int, dict[str, Any]] = {}
    for cpu in lock.cpus:
        path = lock.folder / f"cpu{cpu}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            lock.release()
            raise BusyError(f"cannot open the lock file {path}: {exc.strerror}; set "
                            f"{LOCK_DIR_VAR} to a writable folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            busy[cpu] = _holder(fd)
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        lock.held[cpu] = fd
    if busy:
        lock.concurrent = _by_holder(busy)
        if not allow_concurrent:
            lock.release()
            raise BusyError(
                f"another tlbench suite is measuring on CPU(s) "
                f"{', '.join(str(c) for c in sorted(busy))}: "
                + "; ".join(f"pid {h.get('pid', '?')} ({h.get('command') or 'command unknown'}"
                            f", since {h.get('since', '?')}, CPUs {h['on']})"
                            for h in lock.concurrent)
                + f" (locks in {lock.folder}). Two suites on the same CPUs measure each "
                  f"other: wait for it to finish, run on other CPUs (--placement), or pass "
                  f"--allow-concurrent to run anyway, labelled in the result")
    return lock


def _by_holder(busy: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Busy CPUs grouped by the suite that holds them."""
    groups: dict[Any, dict[str, Any]] = {}
    for cpu, holder in sorted(busy.items()):
        entry = groups.setdefault(holder.get("pid"), {**holder, "on": []})
        entry["on"].append(cpu)
    return list(groups.values())
