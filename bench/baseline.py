"""A baseline built in the job (`tlbench ab --a-ref REF`): the source tree of a git ref of this
repository and an environment for it, so that baseline and candidate are measured side by side
in one interleaved job, as asv's `continuous` does, instead of against a result stored from
another hour.

- The tree: `git archive` of the ref's commit into `$TLBENCH_CACHE/baselines/<commit>` (a
  plain copy: no worktree for the repository to track), kept for the next job.
- Its environment: when the ref's `pyproject.toml` equals the candidate's (the same pins), the
  candidate's own interpreter — nothing to build. Otherwise a venv at
  `$TLBENCH_CACHE/envs/<hash of that pyproject.toml>` with the ref's package and its `keras3`
  extra installed from it, built once and reused by every ref with the same pins.
- Its workers run with the tree as their working directory: `python -m bench.worker` imports
  the `bench` package of the directory it starts in before any installed one, so the baseline's
  model and scenarios run, under the candidate's runner. The baseline's workers must therefore
  write the candidate's result contract: a ref before a change of it is refused by the
  contract's own check, naming the unknown keys.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.data.synthetic import default_cache_dir

REPO = Path(__file__).resolve().parent.parent
DEFINES_ENV = "pyproject.toml"  # what the environment is built from (as the Makefile's)


class BaselineError(Exception):
    """A baseline that cannot be prepared; the message names the ref and the fix."""


@dataclass(frozen=True)
class Baseline:
    ref: str
    commit: str
    source: Path  # the tree its workers start in
    python: str
    env: str  # "the candidate's" (same pins), "built" or "cached", with the env's folder

    def describe(self) -> dict[str, str]:
        return {"ref": self.ref, "commit": self.commit, "source": str(self.source),
                "env": self.env}


def _git(repo: Path, *args: str, binary: bool = False) -> str | bytes:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, check=False,
                          timeout=300)
    if done.returncode != 0:
        raise BaselineError(f"git {' '.join(args)} failed in {repo}: "
                            f"{done.stderr.decode(errors='replace').strip()}")
    return done.stdout if binary else done.stdout.decode().strip()


def env_key(pyproject: Path) -> str:
    return hashlib.sha256(pyproject.read_bytes()).hexdigest()[:16]


def prepare(ref: str, repo: Path = REPO, cache: Path | None = None,
            note: Callable[[str], None] = print) -> Baseline:
    """The tree and interpreter of `ref`, built or found in the cache."""
    cache = cache or default_cache_dir()
    try:
        commit = str(_git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"))
    except BaselineError:
        raise BaselineError(f"--a-ref {ref}: no such commit in {repo} (a branch, tag or commit "
                            f"of this repository, e.g. HEAD~1 or origin/main; a shallow clone "
                            f"needs `git fetch --deepen 1` for HEAD~1)") from None
    source = cache / "baselines" / commit
    if not (source / DEFINES_ENV).is_file():
        note(f"baseline {ref}: extracting commit {commit[:12]} to {source}")
        archive = _git(repo, "archive", "--format=tar", commit, binary=True)
        source.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(source, ignore_errors=True)  # an extraction cut short
        tmp = Path(tempfile.mkdtemp(dir=source.parent))
        try:
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(tmp, filter="data")
            tmp.rename(source)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if (source / DEFINES_ENV).read_bytes() == (repo / DEFINES_ENV).read_bytes():
        return Baseline(ref, commit, source, sys.executable,
                        f"the candidate's ({DEFINES_ENV} unchanged)")
    key = env_key(source / DEFINES_ENV)
    env = cache / "envs" / key
    python = env / "bin" / "python"
    stamp = env / ".installed"
    if stamp.is_file():
        return Baseline(ref, commit, source, str(python), f"cached: {env}")
    note(f"baseline {ref}: {DEFINES_ENV} differs from the candidate's; building its "
         f"environment in {env} (once for these pins)")
    for cmd in ([sys.executable, "-m", "venv", str(env)],
                [str(python), "-m", "pip", "install", "--quiet", f"{source}[keras3]"]):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BaselineError(f"baseline {ref}: building its environment failed "
                                f"({' '.join(cmd[:4])} …): {done.stderr.strip()[-800:]}; "
                                f"remove {env} and retry")
    stamp.touch()
    return Baseline(ref, commit, source, str(python), f"built: {env}")
