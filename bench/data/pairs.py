"""LFW's verification pairs (`pairs.txt`): read them, resolve them to images, write them.

Format (LFW's View 2, as facenet's validate_on_lfw reads it): a header `10 300` (folds, and pairs
of each class per fold), then folds x 2 x per_fold lines, fold after fold:

    Name      n1  n2          same person:      <root>/Name/Name_000<n1>.jpg and ..._000<n2>.jpg
    Name1     n1  Name2  n2   different people: <root>/Name1/Name1_000<n1>.jpg and Name2's n2

Fields are separated by any whitespace; image numbers are written with at least four digits
(`%04d`); the file may be `.jpg`, `.jpeg` or `.png` in any case (the stem must match exactly).
Blank lines are skipped. Each fold must hold `per_fold` same and `per_fold` different pairs, in
any order; anything else is a `PairsError` naming the file and line.

Rule for missing images: a pair whose image (either one) is not in the directory stays in the
`PairSet` marked missing, is counted and listed (`summary()`), and is left out of the metrics.
Every pair keeps the fold its line position gives it — fold k (from 1) is pair lines
(k-1)*2*per_fold+1 .. k*2*per_fold — so a missing pair never moves another pair into another
fold. (facenet's `lfw.get_paths` is written to drop such a pair, printing only a count —
though its `add_extension` stops with an error on a missing file first — and its KFold would then
cut the remaining list into ten equal consecutive parts, shifting every later fold boundary.)
A fold then tests on fewer pairs; its accuracy is over the pairs it has, and the mean over folds
stays unweighted, as facenet's. A fold left without a same-person or without a
different-people pair cannot be evaluated: `bench.verification` raises, naming the fold.

`write_pairs` makes a file in the same format for any LFW-layout set (the synthetic one). As in
LFW's View 2, the folds are identity-disjoint: each identity appears in one fold only, so the
threshold chosen on nine folds is tested on people it has never seen.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.data.lfw import IMAGE_SUFFIXES, DataError, ImageIndex, scan

if TYPE_CHECKING:
    from bench.verification import Verification

LFW_FOLDS, LFW_PER_FOLD = 10, 300
_HEADER_HOW = "the first line must be `<folds> <pairs per class per fold>`, e.g. `10 300` for LFW"
_LINE_HOW = "expected `name n1 n2` (same person) or `name1 n1 name2 n2` (different people)"


class PairsError(DataError):
    """A pairs file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Pair:
    """One line of pairs.txt, resolved. `path1`/`path2` are None when that image is missing."""

    line: int  # 1-based line number in the file
    fold: int  # 1-based, from the line's position
    same: bool
    name1: str
    number1: int
    name2: str
    number2: int
    path1: str | None
    path2: str | None

    @property
    def missing(self) -> bool:
        return self.path1 is None or self.path2 is None


@dataclass(frozen=True)
class PairSet:
    """Every pair of a pairs file, in file order, missing ones included (see the module rule)."""

    source: Path
    root: Path
    folds: int
    per_fold: int
    pairs: tuple[Pair, ...]

    @cached_property
    def usable(self) -> tuple[Pair, ...]:
        return tuple(p for p in self.pairs if not p.missing)

    @cached_property
    def missing(self) -> tuple[Pair, ...]:
        return tuple(p for p in self.pairs if p.missing)

    @cached_property
    def missing_images(self) -> tuple[str, ...]:
        """Distinct images not found, as `<root>/Name/Name_0003.*`, in order of first mention."""
        seen: dict[str, None] = {}
        for p in self.missing:
            for name, number, path in ((p.name1, p.number1, p.path1),
                                       (p.name2, p.number2, p.path2)):
                if path is None:
                    seen.setdefault(str(self.root / name / f"{_stem(name, number)}.*"))
        return tuple(seen)

    @cached_property
    def images(self) -> tuple[str, ...]:
        """Distinct image paths of the usable pairs, in order of first use: embed these once."""
        seen: dict[str, None] = {}
        for p in self.usable:
            seen.setdefault(p.path1)  # type: ignore[arg-type]
            seen.setdefault(p.path2)  # type: ignore[arg-type]
        return tuple(seen)

    def indices(self) -> np.ndarray:
        """(usable pairs, 2) int array: each usable pair's two images as rows of `images`."""
        row = {path: i for i, path in enumerate(self.images)}
        return np.array([(row[p.path1], row[p.path2]) for p in self.usable],
                        dtype=np.int64).reshape(-1, 2)

    @property
    def issame(self) -> np.ndarray:
        return np.array([p.same for p in self.usable], dtype=bool)

    @property
    def fold_ids(self) -> np.ndarray:
        return np.array([p.fold for p in self.usable], dtype=np.int64)

    def without(self, images: set[str]) -> PairSet:
        """The same pairs, those naming one of `images` (bad images left out) made missing."""
        if not images:
            return self
        pairs = tuple(replace(p, path1=None if p.path1 in images else p.path1,
                              path2=None if p.path2 in images else p.path2) for p in self.pairs)
        return replace(self, pairs=pairs)

    def summary(self, examples: int = 5) -> dict:
        """JSON-safe counts for results and `tlbench data check`."""
        return {"pairs_file": str(self.source), "folds": self.folds, "per_fold": self.per_fold,
                "pairs": len(self.pairs), "usable": len(self.usable),
                "missing_pairs": len(self.missing),
                "missing_images": len(self.missing_images),
                "missing_examples": list(self.missing_images[:examples])}

    def evaluate(self, embeddings: np.ndarray, **options) -> Verification:
        """The 10-fold protocol on `embeddings` (one row per entry of `images`).

        `options` go to `bench.verification.evaluate` (metric, subtract_mean, far_target, ...).
        """
        from bench import verification

        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or len(embeddings) != len(self.images):
            raise ValueError(f"embeddings have shape {embeddings.shape}; expected one row per "
                             f"image of the pair set ({len(self.images)}, dim)")
        rows = self.indices()
        return verification.evaluate(embeddings[rows[:, 0]], embeddings[rows[:, 1]], self.issame,
                                     folds=self.fold_ids, missing_pairs=len(self.missing),
                                     **options)


def _stem(name: str, number: int) -> str:
    return f"{name}_{number:04d}"


# --- reading -----------------------------------------------------------------------------------

def read_pairs(path: Path | str, root: Path | str) -> PairSet:
    """Parse `path` and resolve every pair to images under the LFW-layout directory `root`."""
    path, root = Path(path), Path(root)
    folds, per_fold, rows = _parse(path)
    resolver = _Resolver(root)
    pairs = []
    for position, (line, fields) in enumerate(rows):
        if len(fields) == 3:
            name1, n1, name2, n2 = fields[0], fields[1], fields[0], fields[2]
        else:
            name1, n1, name2, n2 = fields
        number1, number2 = _number(path, line, n1), _number(path, line, n2)
        for name in (name1, name2):
            if "/" in name or "\\" in name or name.startswith("."):
                raise PairsError(f"{path}:{line}: {name!r} is not an identity name (a directory "
                                 f"name under {root}); {_LINE_HOW}")
        same = len(fields) == 3
        if not same and name1 == name2:
            raise PairsError(f"{path}:{line}: a different-people pair names {name1} twice; a "
                             f"same-person pair is written `name n1 n2`")
        pairs.append(Pair(line=line, fold=position // (2 * per_fold) + 1, same=same,
                          name1=name1, number1=number1, name2=name2, number2=number2,
                          path1=resolver.find(name1, number1), path2=resolver.find(name2, number2)))
    _check_folds(path, folds, per_fold, pairs)
    return PairSet(source=path, root=root, folds=folds, per_fold=per_fold, pairs=tuple(pairs))


def _parse(path: Path) -> tuple[int, int, list[tuple[int, list[str]]]]:
    """(folds, per_fold, [(line number, fields)]) with the header and field counts checked."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PairsError(f"{path}: no such pairs file; LFW's is pairs.txt from the LFW site, "
                         "`tlbench data pairs DIR` writes one for any LFW-layout "
                         "directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PairsError(f"{path}: cannot be read as text ({exc})") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise PairsError(f"{path}:1: no header; {_HEADER_HOW}")
    header = lines[0].split()
    if len(header) != 2 or not all(re.fullmatch(r"\d+", h) for h in header) \
            or int(header[0]) < 2 or int(header[1]) < 1:
        raise PairsError(f"{path}:1: bad header {lines[0].strip()!r}; {_HEADER_HOW} (at least "
                         "2 folds: the threshold is chosen on the others)")
    folds, per_fold = int(header[0]), int(header[1])
    rows = []
    for number, raw in enumerate(lines[1:], start=2):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) not in (3, 4):
            raise PairsError(f"{path}:{number}: {len(fields)} fields in {raw.strip()!r}; "
                             f"{_LINE_HOW}")
        rows.append((number, fields))
    expected = folds * 2 * per_fold
    if len(rows) != expected:
        raise PairsError(f"{path}: the header says {folds} folds x {per_fold} pairs of each "
                         f"class = {expected} pair lines, found {len(rows)}; the file is "
                         "truncated or its header is wrong")
    return folds, per_fold, rows


def _number(path: Path, line: int, text: str) -> int:
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise PairsError(f"{path}:{line}: image number {text!r} is not a positive integer; "
                         f"{_LINE_HOW}")
    return int(text)


def _check_folds(path: Path, folds: int, per_fold: int, pairs: list[Pair]) -> None:
    for fold in range(folds):
        members = pairs[fold * 2 * per_fold:(fold + 1) * 2 * per_fold]
        same = sum(p.same for p in members)
        if same != per_fold:
            raise PairsError(
                f"{path}:{members[0].line}-{members[-1].line}: fold {fold + 1} has {same} "
                f"same-person and {len(members) - same} different-people pairs; the header "
                f"`{folds} {per_fold}` needs {per_fold} of each in every fold")


class _Resolver:
    """Finds `<root>/Name/Name_0001.<jpg|jpeg|png, any case>`, listing each directory once."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise PairsError(f"{root}: not a directory; pass the LFW-layout directory the "
                             "pairs refer to")
        self.root = root
        self._listing: dict[str, dict[str, str]] = {}

    def find(self, name: str, number: int) -> str | None:
        if name not in self._listing:
            self._listing[name] = self._list(name)
        return self._listing[name].get(_stem(name, number))

    def _list(self, name: str) -> dict[str, str]:
        folder = self.root / name
        rank = {suffix: i for i, suffix in enumerate(IMAGE_SUFFIXES)}
        found: dict[str, tuple[int, str]] = {}
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        for entry in sorted(entries, key=lambda e: e.name):
            stem, suffix = os.path.splitext(entry.name)
            order = rank.get(suffix.lower())
            if order is None or not entry.is_file():
                continue
            if stem not in found or order < found[stem][0]:  # .jpg before .jpeg before .png
                found[stem] = (order, str(folder / entry.name))
        return {stem: p for stem, (_, p) in found.items()}


# --- writing -----------------------------------------------------------------------------------

def write_pairs(index_or_dir: ImageIndex | Path | str, path: Path | str, folds: int = LFW_FOLDS,
                per_fold: int | None = None, seed: int = 0) -> PairSet:
    """Write a pairs file in LFW's format for an LFW-layout set; return it read back.

    Identities are dealt to `folds` identity-disjoint folds (largest first, snake order, ties in
    a seeded order), then each fold draws `per_fold` distinct same-person pairs (two images of
    one identity) and `per_fold` distinct different-people pairs from its own identities, all
    with `seed`. `per_fold=None` takes the largest count every fold can supply, at most LFW's
    300. Only files named `<Name>_<number>.<ext>` can be written into a pairs file; others are
    ignored, as are identities whose names hold whitespace. Same seed and set, same file.
    """
    index = index_or_dir if isinstance(index_or_dir, ImageIndex) else scan(Path(index_or_dir))
    path = Path(path)
    if folds < 2:
        raise PairsError(f"folds = {folds}; write 2 or more (the threshold is chosen on the "
                         "other folds)")
    numbers = _numbered(index)
    if len(numbers) < 2 * folds:
        raise PairsError(
            f"{index.root}: {len(numbers)} identities with numbered images "
            f"(<Name>_0001.jpg) cannot fill {folds} identity-disjoint folds, which need 2 "
            f"each; use --folds {max(2, len(numbers) // 2)} or fewer, or more identities")
    rng = np.random.default_rng(seed)
    groups = _deal(numbers, folds, rng)
    same_caps = [sum(math.comb(len(numbers[n]), 2) for n in g) for g in groups]
    diff_caps = [_diff_count([len(numbers[n]) for n in g]) for g in groups]
    supply = min(*same_caps, *diff_caps)
    if supply < 1:
        raise PairsError(
            f"{index.root}: with {folds} identity-disjoint folds, fold "
            f"{same_caps.index(min(same_caps)) + 1} has no identity with 2 or more images, so "
            f"no same-person pair; use fewer --folds or identities with more images")
    if per_fold is None:
        per_fold = min(LFW_PER_FOLD, supply)
    elif per_fold < 1:
        raise PairsError(f"per_fold = {per_fold}; write 1 or more")
    elif per_fold > supply:
        weakest = min(range(folds), key=lambda f: min(same_caps[f], diff_caps[f]))
        raise PairsError(
            f"{index.root}: per_fold = {per_fold}, but with {folds} identity-disjoint folds "
            f"fold {weakest + 1} can supply only {supply} distinct pairs of a class "
            f"({same_caps[weakest]} same-person, {diff_caps[weakest]} different-people); use "
            f"--per-fold {supply} or fewer, fewer --folds, or more images")
    lines = [f"{folds}\t{per_fold}"]
    for group in groups:
        same = _sample(rng, per_fold, _same_draw(group, numbers, rng), _same_all(group, numbers))
        diff = _sample(rng, per_fold, _diff_draw(group, numbers, rng), _diff_all(group, numbers))
        lines += [f"{a}\t{i}\t{j}" for a, i, j in sorted(same)]
        lines += [f"{a}\t{i}\t{b}\t{j}" for a, i, b, j in sorted(diff)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return read_pairs(path, index.root)


def _numbered(index: ImageIndex) -> dict[str, list[int]]:
    """Identity → sorted distinct image numbers, from files named `<Name>_<digits>.<ext>`
    (identities whose names hold whitespace cannot be written in the format: left out)."""
    numbers: dict[str, set[int]] = {}
    for file, label in zip(index.paths, index.labels, strict=True):
        name = index.names[label]
        if re.search(r"\s", name):
            continue
        match = re.fullmatch(re.escape(name) + r"_(\d+)", Path(file).stem)
        if match and int(match[1]) >= 1:
            numbers.setdefault(name, set()).add(int(match[1]))
    return {name: sorted(found) for name, found in sorted(numbers.items())}


def _deal(numbers: dict[str, list[int]], folds: int, rng: np.random.Generator) -> list[list[str]]:
    """Identities to folds: by image count, largest first (ties seeded), in snake order."""
    names = list(numbers)
    tie = rng.permutation(len(names))
    order = sorted(range(len(names)), key=lambda i: (-len(numbers[names[i]]), tie[i]))
    groups: list[list[str]] = [[] for _ in range(folds)]
    for rank, i in enumerate(order):
        lap, offset = divmod(rank, folds)
        groups[offset if lap % 2 == 0 else folds - 1 - offset].append(names[i])
    return groups


def _diff_count(sizes: list[int]) -> int:
    total = sum(sizes)
    return (total * total - sum(s * s for s in sizes)) // 2


def _sample(rng: np.random.Generator, k: int, draw: Callable[[], tuple],
            everything: Callable[[], list[tuple]]) -> list[tuple]:
    """`k` distinct pairs: up to 8k random draws, then (a pool too small for that) a choice
    from the full list, so a nearly exhausted pool costs no endless redraws."""
    candidates = None
    chosen: dict[tuple, None] = {}
    for _ in range(8 * k):
        if len(chosen) == k:
            break
        chosen.setdefault(draw())
    if len(chosen) < k:
        candidates = everything()
        picks = rng.choice(len(candidates), size=k, replace=False)
        return [candidates[i] for i in sorted(picks)]
    return list(chosen)


def _same_draw(group: list[str], numbers: dict[str, list[int]],
               rng: np.random.Generator) -> Callable[[], tuple]:
    """Uniform over same-person pairs: an identity weighted by its pair count, two images."""
    names = [n for n in group if len(numbers[n]) >= 2]
    weights = np.array([math.comb(len(numbers[n]), 2) for n in names], dtype=float)
    weights /= weights.sum()

    def draw() -> tuple:
        name = names[rng.choice(len(names), p=weights)]
        i, j = sorted(rng.choice(numbers[name], size=2, replace=False).tolist())
        return (name, i, j)

    return draw


def _same_all(group: list[str], numbers: dict[str, list[int]]) -> Callable[[], list[tuple]]:
    return lambda: [(name, i, j) for name in sorted(group)
                    for a, i in enumerate(numbers[name]) for j in numbers[name][a + 1:]]


def _diff_draw(group: list[str], numbers: dict[str, list[int]],
               rng: np.random.Generator) -> Callable[[], tuple]:
    """Uniform over different-people pairs: two of the fold's images, redrawn if one person's."""
    images = [(name, n) for name in group for n in numbers[name]]

    def draw() -> tuple:
        while True:
            a, b = rng.choice(len(images), size=2, replace=False)
            (name1, i), (name2, j) = sorted((images[a], images[b]))
            if name1 != name2:
                return (name1, i, name2, j)

    return draw


def _diff_all(group: list[str], numbers: dict[str, list[int]]) -> Callable[[], list[tuple]]:
    def everything() -> list[tuple]:
        names = sorted(group)
        return [(a, i, b, j) for x, a in enumerate(names) for b in names[x + 1:]
                for i in numbers[a] for j in numbers[b]]

    return everything

