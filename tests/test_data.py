"""The synthetic face set and the LFW-layout loader (bench.data)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from bench.data import lfw, synthetic
from bench.data.lfw import DataError
from bench.data.synthetic import SyntheticSpec

SMALL = SyntheticSpec(identities=5, min_images=2, max_images=4, image_size=48, seed=3)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.generate(SMALL, tmp_path_factory.mktemp("small"))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _write(path: Path, pixels: np.ndarray, fmt: str = "png") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    encode = tf.io.encode_png if fmt == "png" else tf.io.encode_jpeg
    path.write_bytes(encode(pixels).numpy())
    return path


def _batches(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


# --- synthetic ---------------------------------------------------------------------------------

def test_generation_is_byte_identical_for_the_same_spec(small_set: Path, tmp_path: Path) -> None:
    again = synthetic.generate(SMALL, tmp_path)
    assert _files(again) == _files(small_set)


def test_another_seed_draws_other_faces(small_set: Path, tmp_path: Path) -> None:
    other = synthetic.generate(replace(SMALL, seed=4), tmp_path)
    first = "Synth_Target_0001/Synth_Target_0001_0001.jpg"
    assert _files(other)[first] != _files(small_set)[first]


def test_layout_is_lfws(small_set: Path) -> None:
    assert small_set.name == "target"
    for person in small_set.iterdir():
        assert re.fullmatch(r"Synth_Target_\d{4}", person.name)
        files = sorted(p.name for p in person.iterdir())
        assert files == [f"{person.name}_{i:04d}.jpg" for i in range(1, len(files) + 1)]
        image = tf.io.decode_jpeg((person / files[0]).read_bytes()).numpy()
        assert image.shape == (48, 48, 3)


def test_identity_count_and_images_per_identity_follow_the_spec(small_set: Path) -> None:
    counts = [len(list(p.iterdir())) for p in small_set.iterdir()]
    assert len(counts) == SMALL.identities
    assert all(SMALL.min_images <= c <= SMALL.max_images for c in counts)
    assert counts == SMALL.image_counts()


def test_more_identities_leave_the_existing_ones_unchanged(small_set: Path,
                                                           tmp_path: Path) -> None:
    bigger = synthetic.generate(replace(SMALL, identities=6), tmp_path)
    old, new = _files(small_set), _files(bigger)
    assert {k: new[k] for k in old} == old


def test_source_and_target_identities_are_disjoint(small_set: Path, tmp_path: Path) -> None:
    source = synthetic.generate(replace(SMALL, split="source"), tmp_path)
    assert source.name == "source"
    names = {p.name for p in source.iterdir()}
    assert all(n.startswith("Synth_Source_") for n in names)
    assert not names & {p.name for p in small_set.iterdir()}
    first_source = (source / "Synth_Source_0001" / "Synth_Source_0001_0001.jpg").read_bytes()
    first_target = (small_set / "Synth_Target_0001" / "Synth_Target_0001_0001.jpg").read_bytes()
    assert first_source != first_target


@pytest.mark.parametrize(("field", "value", "hint"), [
    ("identities", 1, "identities = 2 or more"),
    ("min_images", 0, "min_images = 1"),
    ("max_images", 1, "max_images >= 4"),
    ("image_size", 8, "between 32 and 1024"),
    ("seed", -1, "seed >= 0"),
    ("split", "train", 'split = "target"'),
    ("identities", 2.5, "must be an integer"),
])
def test_spec_rejects_a_bad_field_naming_it_and_the_fix(field: str, value, hint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(hint)) as err:
        SyntheticSpec(**{field: value})
    assert field in str(err.value)


def test_generate_refuses_a_non_empty_directory(small_set: Path) -> None:
    with pytest.raises(FileExistsError, match="not empty"):
        synthetic.generate(SMALL, small_set.parent)


def test_ensure_generates_once_then_reuses_the_cache(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = synthetic.ensure(SMALL, tmp_path)
    assert root == tmp_path / "data" / SMALL.key() / "target"
    marker = json.loads((root.parent / synthetic.MARKER).read_text())
    assert marker["spec"] == asdict(SMALL)

    def no_regeneration(*_args):
        raise AssertionError("ensure regenerated a cached set")

    monkeypatch.setattr(synthetic, "generate", no_regeneration)
    assert synthetic.ensure(SMALL, tmp_path) == root
    assert [p.name for p in (tmp_path / "data").iterdir()] == [SMALL.key()]


def test_ensure_leaves_nothing_behind_when_generation_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = synthetic.generate

    def half_then_crash(spec: SyntheticSpec, root: Path) -> Path:
        (root / spec.split / "Synth_Target_0001").mkdir(parents=True)
        (root / spec.split / "Synth_Target_0001" / "Synth_Target_0001_0001.jpg").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "generate", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        synthetic.ensure(SMALL, tmp_path)
    assert list((tmp_path / "data").iterdir()) == []
    monkeypatch.setattr(synthetic, "generate", real)
    assert len(lfw.scan(synthetic.ensure(SMALL, tmp_path))) == sum(SMALL.image_counts())


def test_ensure_rebuilds_a_set_without_its_marker(tmp_path: Path) -> None:
    partial = tmp_path / "data" / SMALL.key() / "target" / "Synth_Target_0001"
    partial.mkdir(parents=True)
    root = synthetic.ensure(SMALL, tmp_path)
    assert len(lfw.scan(root)) == sum(SMALL.image_counts())


def test_ensure_defaults_to_the_tlbench_cache_variable(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLBENCH_CACHE", str(tmp_path))
    assert synthetic.ensure(SMALL).is_relative_to(tmp_path / "data")


# --- scan --------------------------------------------------------------------------------------

def test_scan_indexes_identities_sorted_with_labels_into_names(small_set: Path) -> None:
    index = lfw.scan(small_set)
    assert index.names == tuple(sorted(p.name for p in small_set.iterdir()))
    assert list(index.paths) == sorted(index.paths)
    for path, label in zip(index.paths, index.labels, strict=True):
        assert Path(path).parent.name == index.names[label]


def test_scan_drops_identities_below_the_minimum_and_counts_them(small_set: Path) -> None:
    counts = SMALL.image_counts()
    index = lfw.scan(small_set, min_images_per_identity=3)
    assert index.dropped == sum(c < 3 for c in counts)
    assert len(index) == sum(c for c in counts if c >= 3)
    with pytest.raises(DataError, match="no identity has 9 or more images"):
        lfw.scan(small_set, min_images_per_identity=9)


@pytest.mark.parametrize(("make", "says"), [
    (lambda d: d / "missing", "no such directory"),
    (lambda d: (d / "file.txt", (d / "file.txt").write_text("x"))[0], "not a directory"),
    (lambda d: d, "empty"),
    (lambda d: (_write(d / "a.png", np.zeros((4, 4, 3), np.uint8)), d)[1], "flat directory"),
    (lambda d: ((d / "Someone").mkdir(), d)[1], "no JPEG or PNG images"),
])
def test_scan_rejects_unusable_directories_saying_what_to_do(tmp_path: Path, make,
                                                             says: str) -> None:
    root = make(tmp_path)
    with pytest.raises(DataError, match=says) as err:
        lfw.scan(root)
    assert str(root) in str(err.value)
    assert "<Name>/<Name>_0001.jpg" in str(err.value) and "tlbench data synth" in str(err.value)


def test_png_grayscale_and_non_square_images_are_accepted(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _write(tmp_path / "A" / "A_0001.png", rng.integers(0, 256, (20, 30, 3), np.uint8))
    _write(tmp_path / "A" / "A_0002.PNG", rng.integers(0, 256, (30, 20, 1), np.uint8))
    _write(tmp_path / "B" / "B_0001.JPG", rng.integers(0, 256, (25, 25, 1), np.uint8), "jpeg")
    _write(tmp_path / "B" / "B_0002.jpeg", rng.integers(0, 256, (25, 25, 3), np.uint8), "jpeg")
    (tmp_path / "B" / "notes.txt").write_text("ignored")
    index = lfw.scan(tmp_path)
    assert index.names == ("A", "B") and index.labels == (0, 0, 1, 1)
    images, labels = _batches(lfw.dataset(index, 16, 3))
    assert images.shape == (4, 16, 16, 3) and labels.tolist() == [0, 0, 1, 1]
    gray = images[1]
    assert np.array_equal(gray[..., 0], gray[..., 2])


def _jpeg(size: int = 32) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (size, size, 3), np.uint8)
    return tf.io.encode_jpeg(pixels, quality=90).numpy()


def _zero_frame_header(data: bytes) -> bytes:
    at = data.index(b"\xff\xc0")
    return data[:at] + bytes(19) + data[at + 19:]


def _bad_png_crc(_data: bytes) -> bytes:
    png = bytearray(tf.io.encode_png(np.full((8, 8, 3), 7, np.uint8)).numpy())
    png[-20] ^= 0xFF  # inside the IDAT chunk's data
    return bytes(png)


@pytest.mark.parametrize(("corrupt", "says"), [
    (lambda d: d[: len(d) // 2], "truncated"),
    (lambda d: d[:-2], "no end-of-image marker"),
    (lambda d: b"<html>not found</html>", "neither JPEG nor PNG"),
    (lambda d: b"", "empty file"),
    (_zero_frame_header, "before any frame header"),
    (_bad_png_crc, "bad CRC"),
])
def test_a_corrupt_image_error_names_its_path(tmp_path: Path, corrupt, says: str) -> None:
    good = tmp_path / "A" / "A_0001.jpg"
    good.parent.mkdir()
    good.write_bytes(_jpeg())
    bad = tmp_path / "A" / "A_0002.jpg"
    bad.write_bytes(corrupt(_jpeg()))
    with pytest.raises(DataError, match=says) as err:
        lfw.scan(tmp_path)
    assert str(bad) in str(err.value)


def test_verify_names_a_file_that_does_not_decode(tmp_path: Path) -> None:
    bad = tmp_path / "A" / "A_0001.jpg"
    bad.parent.mkdir()
    bad.write_bytes(_jpeg()[:300])
    index = lfw.scan(tmp_path, check_files=False)
    with pytest.raises(DataError, match="cannot be decoded") as err:
        lfw.verify(index)
    assert str(bad) in str(err.value)


# --- dataset, split ----------------------------------------------------------------------------

def test_dataset_yields_standardised_float_images_and_int_labels(tmp_path: Path) -> None:
    _write(tmp_path / "Black" / "Black_0001.png", np.zeros((40, 40, 3), np.uint8))
    _write(tmp_path / "White" / "White_0001.png", np.full((40, 40, 3), 255, np.uint8))
    _write(tmp_path / "White" / "White_0002.png", np.full((50, 40, 3), 255, np.uint8))
    index = lfw.scan(tmp_path)
    batches = list(lfw.dataset(index, 32, 2))
    assert [b[0].shape for b in batches] == [(2, 32, 32, 3), (1, 32, 32, 3)]
    images, labels = _batches(batches)
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert labels.tolist() == [0, 1, 1]
    assert np.all(images[0] == -127.5 / 128) and np.all(images[1:] == (255 - 127.5) / 128)


def test_dataset_keeps_index_order_and_shuffles_reproducibly(small_set: Path) -> None:
    index = lfw.scan(small_set)
    _, ordered = _batches(lfw.dataset(index, 32, 4))
    assert ordered.tolist() == list(index.labels)
    first = _batches(lfw.dataset(index, 32, 4, shuffle=True, seed=5))
    second = _batches(lfw.dataset(index, 32, 4, shuffle=True, seed=5))
    assert np.array_equal(first[0], second[0])
    assert sorted(first[1].tolist()) == sorted(index.labels)
    assert first[1].tolist() != list(index.labels)


def test_repeated_dataset_with_drop_remainder_gives_full_batches(
        small_set: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = lfw.scan(small_set)
    ds = lfw.dataset(index, 32, 5, shuffle=True, repeat=True, drop_remainder=True)
    shapes = [tuple(x.shape) for x, _ in ds.take(2 * len(index))]
    assert set(shapes) == {(5, 32, 32, 3)}
    # The pipeline's rate on a clock the test controls: read once before the timed batches and
    # once after, 2.5 s apart, so 3 full batches of 5 images give exactly 15 / 2.5 images/s.
    readings = [100.0, 102.5]
    monkeypatch.setattr(lfw, "time", SimpleNamespace(perf_counter=lambda: readings.pop(0)))
    assert lfw.pipeline_throughput(ds, 3) == 3 * 5 / 2.5
    assert readings == [], "the clock is read before and after the timed batches"


def test_split_holds_out_per_identity_without_overlap(small_set: Path) -> None:
    index = lfw.scan(small_set)
    train, test = lfw.split(index, holdout_per_identity=1, seed=0)
    assert not set(train.paths) & set(test.paths)
    assert sorted(train.paths + test.paths) == sorted(index.paths)
    assert train.names == test.names == index.names
    assert sorted(test.labels) == list(range(index.num_identities))
    assert lfw.split(index, 1, seed=0) == (train, test)
    assert lfw.split(index, 1, seed=1) != (train, test)


def test_split_says_how_many_images_an_identity_needs(small_set: Path) -> None:
    index = lfw.scan(small_set)
    with pytest.raises(DataError, match=r"fewer than 5 images.*min_images_per_identity=5"):
        lfw.split(index, holdout_per_identity=4)


def test_identity_is_learnable_but_not_trivial(tmp_path: Path) -> None:
    """Nearest class mean on raw 32 px pixels: far above chance, far from perfect."""
    spec = SyntheticSpec(identities=20, min_images=6, max_images=10, image_size=64, seed=0)
    train, test = lfw.split(lfw.scan(synthetic.generate(spec, tmp_path)), 2, seed=0)
    x_train, y_train = _batches(lfw.dataset(train, 32, 64))
    x_test, y_test = _batches(lfw.dataset(test, 32, 64))
    x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    means = np.stack([x_train[y_train == c].mean(0) for c in range(spec.identities)])
    distances = ((x_test[:, None, :] - means[None]) ** 2).sum(-1)
    accuracy = float((distances.argmin(1) == y_test).mean())
    chance = 1 / spec.identities
    assert 3 * chance <= accuracy <= 0.9, accuracy


# --- a real download's faults, found in one pass ----------------------------------------------

def faulty_lfw(root: Path) -> dict[str, Path]:
    """An LFW copy with the faults real downloads have; returns the faulty paths by kind."""
    rng = np.random.default_rng(2)
    for name in ("Alice", "Bob", "Carol"):
        for i in range(1, 4):
            _write(root / name / f"{name}_{i:04d}.jpg", rng.integers(0, 256, (40, 40, 3),
                                                                     np.uint8), "jpeg")
    _write(root / "Bob" / "Bob_0004.png", rng.integers(0, 256, (40, 30, 3), np.uint8))
    _write(root / "Carol" / "Carol_0004.png", rng.integers(0, 256, (30, 30, 1), np.uint8))
    faults = {"truncated": root / "Alice" / "Alice_0002.jpg",
              "empty": root / "Bob" / "Bob_0002.jpg",
              "ds_store": root / "Alice" / ".DS_Store", "thumbs": root / "Bob" / "Thumbs.db",
              "readme": root / "README.txt", "single": root / "Dave"}
    data = faults["truncated"].read_bytes()
    faults["truncated"].write_bytes(data[: len(data) // 2])
    faults["empty"].write_bytes(b"")
    for stray in ("ds_store", "thumbs", "readme"):
        faults[stray].write_bytes(b"\x00junk")
    _write(root / "Dave" / "Dave_0001.jpg", rng.integers(0, 256, (40, 40, 3), np.uint8), "jpeg")
    (root / "pairs.txt").write_text(  # 2 folds of 2 + 2; Bob_0009 and Eve do not exist
        "2\t2\nAlice\t1\t3\nCarol\t1\t2\nAlice\t1\tCarol\t1\nBob\t1\tCarol\t2\n"
        "Bob\t1\t9\nBob\t3\t4\nAlice\t3\tBob\t1\nBob\t3\tEve\t1\n")
    return faults


def test_audit_finds_every_problem_in_one_pass_grouped_by_kind(tmp_path: Path) -> None:
    faults = faulty_lfw(tmp_path)
    found = lfw.audit(tmp_path, min_images_per_identity=2)
    bad = {p.path: p.detail for p in found.of("bad image")}
    assert bad == {str(faults["truncated"]): "corrupt image (truncated: no end-of-image marker)",
                   str(faults["empty"]): "empty file"}
    assert {p.path for p in found.of("not an image")} == {
        str(faults[k]) for k in ("ds_store", "thumbs", "readme")}
    assert [p.path for p in found.of("small identity")] == [str(faults["single"])]
    assert [name for name, _ in found.identities] == ["Alice", "Bob", "Carol"]
    assert found.images == 12 and not found.usable  # 3 x 3 + 2 PNGs + Dave's; bad ones: unusable


def test_scan_names_every_bad_image_at_once_or_skips_and_lists_them(tmp_path: Path) -> None:
    faults = faulty_lfw(tmp_path)
    with pytest.raises(DataError) as err:
        lfw.scan(tmp_path, min_images_per_identity=2)
    message = str(err.value)
    assert "2 bad image(s) of 12" in message and 'on_bad_image = "skip"' in message
    assert str(faults["truncated"]) in message and str(faults["empty"]) in message
    index = lfw.scan(tmp_path, min_images_per_identity=2, on_bad_image="skip")
    assert sorted(p for p, _ in index.skipped) == sorted([str(faults["truncated"]),
                                                         str(faults["empty"])])
    assert len(index) == 9 and index.dropped == 1  # Dave, with one image
    assert not {p for p, _ in index.skipped} & set(index.paths)


def test_data_check_lists_every_fault_and_says_the_directory_is_not_usable(
        tmp_path: Path, capsys) -> None:
    from bench import cli

    faults = faulty_lfw(tmp_path)
    assert cli.main(["data", "check", str(tmp_path)]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "12 image files; 3 identities with 2 or more usable images (9 images)" in out
    assert "2 unreadable, empty, truncated or corrupt images" in out
    assert "3 files that are not JPEG or PNG images (ignored)" in out
    assert "1 identities with too few images (left out)" in out
    for path in faults.values():
        assert str(path) in out, path
    assert "2 pair(s) lack an image" in out and "pairs.txt:6: Bob 1 / Bob 9" in out
    assert "not usable as is: 2 bad image(s)" in out and "--skip-bad" in out
    assert 'leave them out with [data] on_bad_image = "skip"' in out, "bracketed text survives"
    faults["truncated"].unlink()
    faults["empty"].unlink()
    assert cli.main(["data", "check", str(tmp_path)]) == 0
    assert "usable as is" in capsys.readouterr().out
