"""LFW's pairs.txt (bench.data.pairs): parsing, resolving to images, missing pairs, writing."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from bench import cli
from bench.data import lfw
from bench.data.pairs import PairsError, read_pairs, write_pairs
from bench.verification import kfold_ids


def _png(path: Path) -> Path:
    """A valid 1 x 1 RGB PNG (lfw.scan checks file structure)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2,
                                                                        0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00\x80\x80\x80"))
                     + chunk(b"IEND", b""))
    return path


def _tree(root: Path, counts: dict[str, int], suffix: str = ".jpg") -> Path:
    for name, count in counts.items():
        for i in range(1, count + 1):
            _png(root / name / f"{name}_{i:04d}{suffix}")  # PNG bytes; the loader sniffs content
    return root


# A 2-fold x 2-per-class file over Ann (3 images), Bob (2), Cy (1), Dee (2).
PAIRS = """2\t2
Ann\t1\t2
Bob\t1\t2
Ann\t1\tCy\t1
Bob\t2\tDee\t1

Ann\t2\t3
Dee\t1\t2
Cy\t1\tDee\t2
Ann\t3\tBob\t1
"""


@pytest.fixture
def lfw_dir(tmp_path: Path) -> Path:
    return _tree(tmp_path / "lfw", {"Ann": 3, "Bob": 2, "Cy": 1, "Dee": 2})


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    return path


def test_same_and_different_lines_resolve_to_lfw_image_paths(lfw_dir: Path,
                                                             tmp_path: Path) -> None:
    found = read_pairs(_write(tmp_path, PAIRS), lfw_dir)
    assert (found.folds, found.per_fold, len(found.pairs)) == (2, 2, 8)
    first, third = found.pairs[0], found.pairs[2]
    assert first.same and first.line == 2 and first.fold == 1
    assert first.path1 == str(lfw_dir / "Ann" / "Ann_0001.jpg")
    assert first.path2 == str(lfw_dir / "Ann" / "Ann_0002.jpg")
    assert not third.same and third.path2 == str(lfw_dir / "Cy" / "Cy_0001.jpg")
    assert [p.fold for p in found.pairs] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert found.pairs[4].line == 7  # the blank line is skipped, not counted as a pair
    assert found.summary()["missing_pairs"] == 0


def test_png_jpeg_and_upper_case_suffixes_are_found(tmp_path: Path) -> None:
    root = tmp_path / "lfw"
    for stem, suffix in [("Ann_0001", ".png"), ("Ann_0002", ".JPEG"), ("Ann_0003", ".JPG"),
                         ("Bob_0001", ".jpeg"), ("Cy_0001", ".PNG"), ("Dee_0001", ".jpg"),
                         ("Dee_0001", ".png"), ("Bob_0002", ".Jpg"), ("Dee_0002", ".jpg")]:
        _png(root / stem.split("_")[0] / f"{stem}{suffix}")
    found = read_pairs(_write(tmp_path, PAIRS), root)
    assert not found.missing
    paths = {Path(p).name for p in found.images}
    assert {"Ann_0001.png", "Ann_0002.JPEG", "Ann_0003.JPG", "Cy_0001.PNG"} <= paths
    assert "Dee_0001.jpg" in paths and "Dee_0001.png" not in paths  # .jpg preferred


def test_missing_images_are_counted_and_no_pair_changes_fold(lfw_dir: Path,
                                                             tmp_path: Path) -> None:
    (lfw_dir / "Bob" / "Bob_0002.jpg").unlink()  # lines 3 and 5, both in fold 1
    found = read_pairs(_write(tmp_path, PAIRS), lfw_dir)
    assert [p.line for p in found.missing] == [3, 5]
    assert found.summary() | {"pairs_file": ""} == {
        "pairs_file": "", "folds": 2, "per_fold": 2, "pairs": 8, "usable": 6,
        "missing_pairs": 2, "missing_images": 1,
        "missing_examples": [str(lfw_dir / "Bob" / "Bob_0002.*")]}
    # Fold ids come from line positions: fold 1 keeps 2 pairs, fold 2 all 4. Re-splitting the
    # 6 usable pairs into two equal halves (facenet's KFold) would move one of fold 2's into 1.
    np.testing.assert_array_equal(found.fold_ids, [1, 1, 2, 2, 2, 2])
    assert list(kfold_ids(6, 2)) == [1, 1, 1, 2, 2, 2]
    np.testing.assert_array_equal(found.issame, [True, False, True, True, False, False])


def test_an_identity_directory_that_is_absent_counts_as_missing(lfw_dir: Path,
                                                                tmp_path: Path) -> None:
    for f in (lfw_dir / "Cy").iterdir():
        f.unlink()
    (lfw_dir / "Cy").rmdir()
    found = read_pairs(_write(tmp_path, PAIRS), lfw_dir)
    assert [p.line for p in found.missing] == [4, 9]


def test_embeddings_are_computed_once_per_image_and_evaluated_by_fold(lfw_dir: Path,
                                                                      tmp_path: Path) -> None:
    (lfw_dir / "Bob" / "Bob_0002.jpg").unlink()
    found = read_pairs(_write(tmp_path, PAIRS), lfw_dir)
    assert len(found.images) == len(set(found.images)) == 7  # of 8 pairs' 16 mentions
    rows = found.indices()
    assert [Path(found.images[i]).stem for i in rows[0]] == ["Ann_0001", "Ann_0002"]
    # identities as orthogonal axes: same-person distance 0, different 2
    person = {name: i for i, name in enumerate(["Ann", "Bob", "Cy", "Dee"])}
    embeddings = np.eye(4)[[person[Path(p).parent.name] for p in found.images]]
    result = found.evaluate(embeddings)
    assert result.accuracy == 1.0 and result.missing_pairs == 2 and result.pairs == 6


@pytest.mark.parametrize(("text", "message"), [
    ("", r"pairs\.txt:1: no header"),
    ("10\n", r"pairs\.txt:1: bad header '10'"),
    ("ten 300\n", r"pairs\.txt:1: bad header 'ten 300'.*e\.g\. `10 300`"),
    ("1 2\n", r"pairs\.txt:1: bad header.*at least 2 folds"),
    (PAIRS.replace("Bob\t1\t2\n", "Bob\t1\t2\t3\t4\n"), r"pairs\.txt:3: 5 fields"),
    (PAIRS.replace("Bob\t1\t2\n", "Bob\tone\t2\n"), r"pairs\.txt:3: image number 'one'"),
    (PAIRS.replace("Bob\t1\t2\n", "Bob\t0\t2\n"), r"pairs\.txt:3: image number '0'"),
    (PAIRS.replace("Cy\t1\tDee\t2\n", ""), r"header says 2 folds x 2 pairs .* = 8 pair lines, "
                                           r"found 7"),
    (PAIRS.replace("Ann\t1\tCy\t1\n", "Ann\t1\tAnn\t3\n"), r"pairs\.txt:4: .* names Ann twice"),
    (PAIRS.replace("Ann\t1\tCy\t1\n", "Ann\t1\t3\n"),
     r"pairs\.txt:2-5: fold 1 has 3 same-person and 1 different-people pairs"),
    (PAIRS.replace("Bob\t1\t2\n", "../etc\t1\t2\n"), r"pairs\.txt:3: '\.\./etc' is not an "
                                                    r"identity name"),
])
def test_a_malformed_file_is_an_error_naming_file_and_line(lfw_dir: Path, tmp_path: Path,
                                                           text: str, message: str) -> None:
    with pytest.raises(PairsError, match=message):
        read_pairs(_write(tmp_path, text), lfw_dir)


def test_a_missing_pairs_file_or_directory_is_named(lfw_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PairsError, match=r"nope\.txt: no such pairs file"):
        read_pairs(tmp_path / "nope.txt", lfw_dir)
    with pytest.raises(PairsError, match=r"elsewhere: not a directory"):
        read_pairs(_write(tmp_path, PAIRS), tmp_path / "elsewhere")


# --- writing -----------------------------------------------------------------------------------

COUNTS = {f"Person_{i:02d}": 2 + i % 4 for i in range(12)}  # 12 identities, 2..5 images


@pytest.fixture
def numbered(tmp_path: Path) -> Path:
    return _tree(tmp_path / "set", COUNTS)


def test_written_pairs_read_back_complete_balanced_and_identity_disjoint(numbered: Path) -> None:
    found = write_pairs(numbered, numbered / "pairs.txt", folds=3, per_fold=4, seed=0)
    assert (found.folds, found.per_fold, len(found.pairs), len(found.missing)) == (3, 4, 24, 0)
    assert (numbered / "pairs.txt").read_text().splitlines()[0] == "3\t4"
    people = [{p.name1 for p in found.pairs if p.fold == f}
              | {p.name2 for p in found.pairs if p.fold == f} for f in (1, 2, 3)]
    assert not (people[0] & people[1] or people[0] & people[2] or people[1] & people[2])
    keys = [(p.name1, p.number1, p.name2, p.number2) for p in found.pairs]
    assert len(set(keys)) == len(keys)  # no pair twice
    for p in found.pairs:
        assert (p.name1 == p.name2) == p.same and (p.number1, p.name1) != (p.number2, p.name2)
    assert lfw.scan(numbered).num_identities == len(COUNTS)  # pairs.txt is not an identity


def test_writing_is_deterministic_per_seed(numbered: Path, tmp_path: Path) -> None:
    texts = [write_pairs(numbered, tmp_path / f"{i}.txt", folds=3, seed=seed).source.read_text()
             for i, seed in enumerate((5, 5, 6))]
    assert texts[0] == texts[1] != texts[2]


def test_the_default_per_fold_is_what_every_fold_can_supply(numbered: Path,
                                                            tmp_path: Path) -> None:
    found = write_pairs(numbered, tmp_path / "p.txt", folds=3)
    with pytest.raises(PairsError, match=rf"--per-fold {found.per_fold} or fewer"):
        write_pairs(numbered, tmp_path / "q.txt", folds=3, per_fold=found.per_fold + 1)


def test_an_image_index_is_accepted_and_unnumbered_files_are_ignored(numbered: Path,
                                                                     tmp_path: Path) -> None:
    _png(numbered / "Person_00" / "portrait.jpg")
    found = write_pairs(lfw.scan(numbered), tmp_path / "p.txt", folds=2, per_fold=3)
    assert all("portrait" not in p for p in found.images)


def test_too_few_identities_for_the_folds_is_an_error_with_the_fix(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tiny", {"A": 3, "B": 3, "C": 1})
    with pytest.raises(PairsError, match=r"3 identities .* cannot fill 10 identity-disjoint "
                                         r"folds.*--folds 2 or fewer"):
        write_pairs(root, root / "pairs.txt")
    with pytest.raises(PairsError, match=r"fold \d has no identity with 2 or more images"):
        write_pairs(_tree(tmp_path / "singles", {"A": 1, "B": 1, "C": 3, "D": 1}),
                    tmp_path / "x.txt", folds=2)


# --- command line ------------------------------------------------------------------------------

def test_cli_writes_pairs_and_check_reports_them(numbered: Path, capsys) -> None:
    assert cli.main(["data", "pairs", str(numbered), "--folds", "3", "--per-fold", "2"]) == 0
    assert "3 identity-disjoint folds x 2" in capsys.readouterr().out
    (numbered / "Person_01" / "Person_01_0002.jpg").unlink()
    assert cli.main(["data", "check", str(numbered)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert re.search(r"pairs\.txt: 12 pairs in 3 folds x 2 per class; \d+ missing", out)


def test_cli_check_with_a_broken_pairs_file_exits_2(numbered: Path, capsys) -> None:
    (numbered / "pairs.txt").write_text("10 300\nPerson_00 1\n")
    assert cli.main(["data", "check", str(numbered)]) == 2
    assert "pairs.txt:2: 2 fields" in capsys.readouterr().err
