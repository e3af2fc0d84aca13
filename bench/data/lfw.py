"""One loader for any directory in LFW's layout: the synthetic set or a user's real LFW.

Layout: `<root>/<Name>/<Name>_0001.jpg`, one sub-directory per identity; JPEG and PNG files
(`.jpg`, `.jpeg`, `.png`, any case) are read, everything else is ignored.

Rule for broken files: `scan` checks every file's structure cheaply (it reads the headers and the
last few KiB, not the pixels) and raises `DataError` naming the file: empty files, files that are
neither JPEG nor PNG, truncated files (no end-of-image marker / IEND chunk), JPEGs whose header
has no frame (SOF) before the scan data, PNGs with a bad chunk CRC. That is what makes TensorFlow's
decoder fail, and tf.data's own message would not name the file. Damage inside JPEG scan data
passes the check; libjpeg decodes such files with artefacts rather than failing. `verify` decodes
every file (slow: a full pass) for a complete check.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HOW = ("expected {root}/<Name>/<Name>_0001.jpg (one sub-directory per identity, JPEG or PNG "
        "files); run `tlbench data synth` or pass --data PATH")


class DataError(Exception):
    """A data directory or file that cannot be used; the message names the path and the fix."""


@dataclass(frozen=True)
class ImageIndex:
    """The images of a data set: full paths, integer labels, and the identity names."""

    root: Path
    paths: tuple[str, ...]
    labels: tuple[int, ...]  # index into names
    names: tuple[str, ...]  # identity names, sorted
    dropped: int = 0  # identities left out by scan's min_images_per_identity
    skipped: tuple[tuple[str, str], ...] = ()  # (path, problem) of bad images left out

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.labels):
            raise ValueError(f"ImageIndex has {len(self.paths)} paths but {len(self.labels)} "
                             "labels; build it with scan()")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_identities(self) -> int:
        return len(self.names)


def _fail(root: Path, problem: str) -> DataError:
    return DataError(f"{root}: {problem}; " + _HOW.format(root=root))


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data directory: its kind, the file (or identity), and what."""

    kind: str  # one of PROBLEM_KINDS
    path: str
    detail: str

    def text(self) -> str:
        return f"{self.path}: {self.detail}"


# What `audit` reports, in order; only "bad image" makes a directory unusable as it is.
PROBLEM_KINDS = {
    "bad image": "unreadable, empty, truncated or corrupt images",
    "not an image": "files that are not JPEG or PNG images (ignored)",
    "small identity": "identities with too few images (left out)",
}


@dataclass(frozen=True)
class Audit:
    """Every problem of an LFW-layout directory, found in one pass."""

    root: Path
    identities: tuple[tuple[str, tuple[Path, ...]], ...]  # each with its good images
    problems: tuple[Problem, ...]
    images: int  # image files seen, good or bad
    most: int  # the most usable images of one identity

    def of(self, kind: str) -> list[Problem]:
        return [p for p in self.problems if p.kind == kind]

    @property
    def usable(self) -> bool:
        return bool(self.identities) and not self.of("bad image")


def audit(root: Path, min_images_per_identity: int = 1, *, check_files: bool = True) -> Audit:
    """Look at everything under `root` once: each identity's images (checked, see the module
    docstring), the files that are not images, the identities below the minimum. Raises
    DataError only when `root` itself is not an LFW-layout directory."""
    root = Path(root)
    if not root.exists():
        raise _fail(root, "no such directory")
    if not root.is_dir():
        raise _fail(root, "not a directory")
    entries = sorted(root.iterdir())
    if not entries:
        raise _fail(root, "the directory is empty")
    problems: list[Problem] = []
    per_identity: list[tuple[str, list[Path]]] = []
    seen = 0
    for sub in entries:
        if sub.name.startswith(".") or not sub.is_dir():
            if sub.name != "pairs.txt":
                problems.append(Problem("not an image", str(sub),
                                        "a hidden file" if sub.name.startswith(".")
                                        else "a file beside the identity directories"))
            continue
        good, bad = [], 0
        for path in sorted(sub.iterdir()):
            if path in _images([path]):
                seen += 1
                problem = _file_problem(path) if check_files else None
                if problem:
                    problems.append(Problem("bad image", str(path), problem))
                    bad += 1
                else:
                    good.append(path)
            else:
                problems.append(Problem("not an image", str(path),
                                        "a directory" if path.is_dir() else "not a .jpg, "
                                        ".jpeg or .png file"))
        if good or bad:
            per_identity.append((sub.name, good))
    if not per_identity:
        flat = _images(entries)
        if flat:
            raise _fail(root, f"found {len(flat)} images directly in it but no identity "
                              "sub-directories (a flat directory); move each identity's images "
                              "into its own sub-directory")
        raise _fail(root, "no JPEG or PNG images in any sub-directory")
    kept = []
    for name, images in per_identity:
        if len(images) >= min_images_per_identity:
            kept.append((name, tuple(images)))
        else:
            problems.append(Problem("small identity", str(root / name),
                                    f"{len(images)} usable image(s), fewer than "
                                    f"{min_images_per_identity}"))
    return Audit(root, tuple(kept), tuple(problems), seen,
                 max(len(images) for _, images in per_identity))


def listing(problems: list[Problem], first: int = 5) -> str:
    """The first few problems of one kind, and how many more."""
    shown = "; ".join(p.text() for p in problems[:first])
    return shown + (f"; and {len(problems) - first} more" if len(problems) > first else "")


def scan(root: Path, min_images_per_identity: int = 1, *, check_files: bool = True,
         on_bad_image: str = "error") -> ImageIndex:
    """Index `root/<Name>/*.jpg|*.jpeg|*.png`, sorted by name and file, so the order is stable.

    Identities with fewer than `min_images_per_identity` images are dropped (counted in
    `dropped`). With `check_files`, each file's structure is checked (see the module docstring):
    a bad image is an error listing every bad image found, or with `on_bad_image = "skip"` it is
    left out and listed in the index's `skipped`.
    """
    found = audit(root, min_images_per_identity, check_files=check_files)
    bad = found.of("bad image")
    if bad and on_bad_image != "skip":
        raise DataError(f"{found.root}: {len(bad)} bad image(s) of {found.images}: "
                        f"{listing(bad)}; replace or remove them, or leave them out with "
                        f"[data] on_bad_image = \"skip\" (tlbench run --skip-bad)")
    if not found.identities:
        raise _fail(found.root, f"no identity has {min_images_per_identity} or more images "
                                f"(the most is {found.most}, usable); lower "
                                f"min_images_per_identity")
    paths, labels = [], []
    for label, (_, images) in enumerate(found.identities):
        paths += [str(p) for p in images]
        labels += [label] * len(images)
    return ImageIndex(root=found.root, paths=tuple(paths), labels=tuple(labels),
                      names=tuple(name for name, _ in found.identities),
                      dropped=len(found.of("small identity")),
                      skipped=tuple((p.path, p.detail) for p in bad))


def _images(paths: Iterable[Path]) -> list[Path]:
    return sorted(p for p in paths
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                  and p.is_file())


def _file_problem(path: Path) -> str | None:
    """What is wrong with `path` as a JPEG or PNG file, or None when it is sound."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if not head:
                return "empty file"
            if head.startswith(b"\xff\xd8\xff"):
                problem = _check_jpeg(f)
            elif head == _PNG_SIGNATURE:
                problem = _check_png(f)
            else:
                return "neither JPEG nor PNG data"
    except OSError as e:
        return f"cannot read ({e.strerror}): fix its permissions or remove it"
    return f"corrupt image ({problem})" if problem else None


def _check_jpeg(f) -> str | None:
    """Walk the marker segments up to the scan data, then look for the end-of-image marker."""
    f.seek(2)
    has_frame = False
    while True:
        byte = f.read(1)
        if not byte:
            return "truncated header"
        if byte != b"\xff":
            continue  # libjpeg skips stray bytes between segments (with a warning); so do we
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            return "truncated header"
        m = marker[0]
        if m == 0x00 or m == 0x01 or 0xD0 <= m <= 0xD8:
            continue  # stand-alone markers
        if m == 0xD9:
            return "end-of-image marker before any image data"
        raw = f.read(2)
        if len(raw) < 2:
            return "truncated header"
        (length,) = struct.unpack(">H", raw)
        if length < 2:
            return f"bad segment length at byte {f.tell() - 2}"
        if m in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            sof = f.read(5)
            if len(sof) < 5 or 0 in struct.unpack(">HH", sof[1:5]):
                return "bad frame header (zero or missing size)"
            f.seek(length - 7, 1)
            has_frame = True
        elif m == 0xDA:
            if not has_frame:
                return "scan data before any frame header (SOF)"
            break
        else:
            f.seek(length - 2, 1)
    scan_start = f.tell()
    end = f.seek(0, 2)
    f.seek(max(end - 4096, scan_start))
    # Encoders may pad after the end-of-image marker, so look for it near the end, not at it.
    if b"\xff\xd9" not in f.read():
        return "truncated: no end-of-image marker"
    return None


def _check_png(f) -> str | None:
    """Walk the chunks, checking each CRC; the last must be IEND."""
    first = True
    while True:
        header = f.read(8)
        if len(header) < 8:
            return "truncated: no IEND chunk"
        length, kind = struct.unpack(">I4s", header)
        if first and (kind != b"IHDR" or length != 13):
            return "first chunk is not IHDR"
        body = f.read(length)
        crc = f.read(4)
        if len(body) < length or len(crc) < 4:
            return f"truncated inside the {kind.decode('latin-1')} chunk"
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            return f"bad CRC in the {kind.decode('latin-1')} chunk"
        if first and (body[0:4] == b"\0\0\0\0" or body[4:8] == b"\0\0\0\0"):
            return "zero width or height"
        if kind == b"IEND":
            return None
        first = False


def verify(index: ImageIndex) -> None:
    """Decode every image with TensorFlow; raise DataError naming the first that fails."""
    import tensorflow as tf

    for path in index.paths:
        try:
            tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
            raise DataError(f"{path}: cannot be decoded ({e.message.splitlines()[0]}); "
                            "replace or remove the file") from e


def split(index: ImageIndex, holdout_per_identity: int = 1,
          seed: int = 0) -> tuple[ImageIndex, ImageIndex]:
    """(train, test): per identity, `holdout_per_identity` images chosen with `seed` go to test.

    Both keep the same `names`, so labels mean the same identity in each; each keeps index order.
    """
    if holdout_per_identity < 1:
        raise ValueError(f"holdout_per_identity = {holdout_per_identity}; write 1 or more")
    labels = np.asarray(index.labels)
    need = holdout_per_identity + 1
    counts = np.bincount(labels, minlength=index.num_identities)
    short = [index.names[i] for i in np.flatnonzero(counts < need)]
    if short:
        raise DataError(
            f"{index.root}: {len(short)} identities (e.g. {short[0]}, with "
            f"{counts[index.names.index(short[0])]} images) have fewer than {need} images, "
            f"which holding out {holdout_per_identity} per identity needs; scan with "
            f"min_images_per_identity={need} or lower holdout_per_identity")
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for label in range(index.num_identities):
        members = np.flatnonzero(labels == label)
        test[rng.permutation(members)[:holdout_per_identity]] = True
    return _subset(index, ~test), _subset(index, test)


def shard(index: ImageIndex, count: int, position: int) -> ImageIndex:
    """Every `count`-th image from `position`: disjoint shards, one per data-parallel worker."""
    if not 0 <= position < count:
        raise ValueError(f"shard {position} of {count} does not exist")
    keep = np.arange(len(index.paths)) % count == position
    return _subset(index, keep)


def _subset(index: ImageIndex, keep: np.ndarray) -> ImageIndex:
    rows = np.flatnonzero(keep)
    return ImageIndex(root=index.root, paths=tuple(index.paths[i] for i in rows),
                      labels=tuple(index.labels[i] for i in rows), names=index.names,
                      dropped=index.dropped, skipped=index.skipped)


MEAN, SCALE = 127.5, 128.0  # facenet's fixed image standardisation


def dataset(index: ImageIndex, image_size: int, batch_size: int, *, shuffle: bool = False,
            seed: int = 0, repeat: bool = False, cache: bool = True,
            drop_remainder: bool = False, raw: bool = False) -> tf.data.Dataset:
    """Batches of (images float32 [B,H,W,3] standardised (x-127.5)/128, labels int32 [B]).

    Each image is decoded (JPEG or PNG; grayscale becomes 3 channels), centrally cropped to a
    square and resized to `image_size` (bilinear, antialiased when shrinking), then cached as
    uint8 (a quarter of float32's memory: 77 KB per 160 px image). Standardisation happens after
    batching, one op per batch. Order is the index's unless `shuffle` (reshuffled each epoch,
    reproducible with `seed`); `repeat` repeats forever, with batches running across epochs.
    `raw`: the uint8 images, not standardised (`standardise` does it later, on numpy batches).
    """
    import tensorflow as tf

    if image_size < 1 or batch_size < 1:
        raise ValueError(f"image_size = {image_size}, batch_size = {batch_size}; both must be "
                         "1 or more")
    if not index.paths:
        raise DataError(f"{index.root}: the index has no images; " + _HOW.format(root=index.root))
    autotune = tf.data.AUTOTUNE

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        shape = tf.shape(image)
        side = tf.minimum(shape[0], shape[1])
        image = tf.image.crop_to_bounding_box(image, (shape[0] - side) // 2,
                                              (shape[1] - side) // 2, side, side)
        image = tf.image.resize(image, [image_size, image_size], method="bilinear",
                                antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8), label

    def standardised(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return (tf.cast(images, tf.float32) - MEAN) / SCALE, labels

    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(index.paths, tf.string), tf.constant(index.labels, tf.int32)))
    ds = ds.map(load, num_parallel_calls=autotune, deterministic=True)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(index.paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if not raw:
        ds = ds.map(standardised, num_parallel_calls=autotune, deterministic=True)
    return ds.prefetch(autotune)


def standardise(images: np.ndarray) -> np.ndarray:
    """facenet's fixed standardisation of decoded uint8 images: (x - 127.5) / 128, float32."""
    return (images.astype(np.float32) - MEAN) / SCALE


def pad_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """A short batch padded with zero images to `size`, so that every call has one shape and no
    runtime traces or compiles a second graph (the caller keeps only the first rows' outputs)."""
    if len(batch) >= size:
        return batch
    return np.concatenate([batch, np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)])


def pipeline_throughput(ds: tf.data.Dataset, batches: int) -> float:
    """Images/s of iterating `ds` alone, after one warm pass so that its cache is filled.

    A finite dataset gets one full warm pass, then `batches` batches are timed (repeating it if
    it is shorter). A repeated (infinite) dataset is warmed with `batches` batches of the same
    iterator and the next `batches` are timed: pass at least an epoch's worth to time the
    cached steady state.
    """
    import tensorflow as tf

    if batches < 1:
        raise ValueError(f"batches = {batches}; write 1 or more")
    if ds.cardinality() == tf.data.INFINITE_CARDINALITY:
        it = iter(ds)
        for _ in range(batches):
            next(it)
        timed = (next(it) for _ in range(batches))
    else:
        for _ in ds:
            pass
        timed = iter(ds.repeat().take(batches))
    images = 0
    start = time.perf_counter()
    for batch in timed:
        images += int(batch[0].shape[0])
    return images / (time.perf_counter() - start)
