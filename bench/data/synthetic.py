"""The embedded default data set: procedurally drawn, face-like images with identity structure.

Why it exists: the benchmark must run on a fresh box with nothing downloaded, and its accuracy
figures must still mean something. Each identity has fixed traits (face shape, skin tone, eyes,
brows, nose, mouth, hair, ears, glasses, beard, clothing, a background tint) drawn from its own
seed; each image adds nuisance (pose jitter, lighting, background, expression, noise), so identity
is learnable but not trivial. The set is written in LFW's layout (`<Name>/<Name>_0001.jpg`) so the
real loader (`bench.data.lfw`) is the code that reads it.

Determinism: every identity and every image draws from its own `numpy` generator keyed on
(seed, split, identity[, image]), so the same spec gives byte-identical files, and growing
`identities` or `max_images` leaves the existing identities' traits unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# Bump when the drawing changes: it is part of the cache key, so old cached sets are not reused.
GENERATOR_VERSION = 1
JPEG_QUALITY = 90
MARKER = "spec.json"
_SPLITS = {"target": 0, "source": 1}

_HAIR = np.array([[25, 20, 18], [60, 40, 28], [105, 70, 45], [140, 70, 40],
                  [200, 165, 105], [150, 148, 145], [215, 210, 205]], np.float32)
_HAIR_P = np.array([0.25, 0.25, 0.18, 0.08, 0.12, 0.08, 0.04])
_IRIS = np.array([[90, 55, 30], [45, 30, 20], [70, 110, 160], [80, 120, 80],
                  [120, 130, 135], [130, 100, 50]], np.float32)
_SKIN_LIGHT = np.array([238, 204, 182], np.float32)
_SKIN_MID = np.array([198, 146, 108], np.float32)
_SKIN_DARK = np.array([92, 60, 44], np.float32)


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of one synthetic set; checks itself when built."""

    identities: int = 40
    min_images: int = 4
    max_images: int = 12
    image_size: int = 160  # pixel size of the written JPEGs (LFW's are 250; the loader resizes)
    seed: int = 0
    split: str = "target"  # "target" or "source": disjoint identity sets

    def __post_init__(self) -> None:
        for name in ("identities", "min_images", "max_images", "image_size", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"synthetic {name} must be an integer, got {value!r}; "
                                 f"write e.g. {name} = {getattr(SyntheticSpec, name)}")
        if self.identities < 2:
            raise ValueError(f"synthetic identities = {self.identities}: a classifier needs at "
                             "least two classes; write identities = 2 or more")
        if self.min_images < 1:
            raise ValueError(f"synthetic min_images = {self.min_images}; write min_images = 1 "
                             "or more")
        if self.max_images < self.min_images:
            raise ValueError(f"synthetic max_images = {self.max_images} is below min_images = "
                             f"{self.min_images}; write max_images >= {self.min_images}")
        if not 32 <= self.image_size <= 1024:
            raise ValueError(f"synthetic image_size = {self.image_size}; write a size between "
                             "32 and 1024 (LFW's images are 250, FaceNet reads 160)")
        if self.seed < 0:
            raise ValueError(f"synthetic seed = {self.seed}; write a seed >= 0")
        if self.split not in _SPLITS:
            raise ValueError(f"synthetic split = {self.split!r}; write split = \"target\" "
                             "(the identities to learn) or \"source\" (pre-training identities)")

    def name(self, identity: int) -> str:
        """LFW-style identity name, e.g. `Synth_Target_0007` (1-based, like LFW's file numbers)."""
        return f"Synth_{self.split.capitalize()}_{identity + 1:04d}"

    def image_counts(self) -> list[int]:
        """Images per identity, drawn uniformly from [min_images, max_images]."""
        split = _SPLITS[self.split]
        return [int(np.random.default_rng([self.seed, split, i, 1])
                    .integers(self.min_images, self.max_images + 1))
                for i in range(self.identities)]

    def key(self) -> str:
        """Short hash of the spec and the generator version: the cache directory's name."""
        text = json.dumps(_marker(self), sort_keys=True)
        return f"synthetic-{self.split}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _marker(spec: SyntheticSpec) -> dict:
    return {"generator_version": GENERATOR_VERSION, "spec": asdict(spec)}


def generate(spec: SyntheticSpec, root: Path) -> Path:
    """Write the set to `root/<split>/<Name>/<Name>_0001.jpg` and return `root/<split>`.

    Refuses a non-empty `root/<split>` (stale files from another spec would be mixed in).
    """
    import tensorflow as tf  # late: only needed to encode JPEGs

    out = Path(root) / spec.split
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; remove it or use ensure(), which caches "
                              "one directory per spec")
    split = _SPLITS[spec.split]
    for i, count in enumerate(spec.image_counts()):
        traits = _traits(np.random.default_rng([spec.seed, split, i, 0]))
        name = spec.name(i)
        (out / name).mkdir(parents=True, exist_ok=True)
        for j in range(count):
            rng = np.random.default_rng([spec.seed, split, i, 2, j])
            pixels = draw_face(traits, rng, spec.image_size)
            data = tf.io.encode_jpeg(pixels, format="rgb", quality=JPEG_QUALITY).numpy()
            (out / name / f"{name}_{j + 1:04d}.jpg").write_bytes(data)
    return out


def default_cache_dir() -> Path:
    """`$TLBENCH_CACHE`, else `~/.cache/tlbench`."""
    env = os.environ.get("TLBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tlbench"


def ensure(spec: SyntheticSpec, cache_dir: Path | None = None) -> Path:
    """Return the cached set for `spec`, generating it first if needed.

    Rule: the set lives in `<cache>/data/<key>/` where the key hashes the spec and the generator
    version; it is built in a temporary sibling directory and moved into place with one
    `os.rename`, and the marker file (`spec.json`) is written before the move. So a directory at
    the key's path is always complete; one without a matching marker is not trusted and is
    rebuilt. Two processes racing both build, the first rename wins and the other discards its
    copy.
    """
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    data = base / "data"
    final = data / spec.key()
    if _is_complete(final, spec):
        return final / spec.split
    data.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{spec.key()}-", dir=data))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cached set is readable like any cache
    try:
        generate(spec, tmp)
        (tmp / MARKER).write_text(json.dumps(_marker(spec), indent=2, sort_keys=True) + "\n")
        if final.exists() and not _is_complete(final, spec):
            shutil.rmtree(final, ignore_errors=True)  # no marker, or another spec
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final, spec):  # lost a race only if the winner is complete
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final / spec.split


def _is_complete(path: Path, spec: SyntheticSpec) -> bool:
    try:
        return json.loads((path / MARKER).read_text()) == json.loads(json.dumps(_marker(spec)))
    except (OSError, ValueError):
        return False


# --- drawing -----------------------------------------------------------------------------------

def _traits(rng: np.random.Generator) -> dict:
    """Fixed traits of one identity. Lengths are in face units: the image spans [-1, 1]."""
    tone = rng.uniform(0.0, 1.0)
    skin = (_SKIN_LIGHT + (_SKIN_MID - _SKIN_LIGHT) * tone * 2 if tone < 0.5
            else _SKIN_MID + (_SKIN_DARK - _SKIN_MID) * (tone - 0.5) * 2)
    hair = _HAIR[rng.choice(len(_HAIR), p=_HAIR_P)] + rng.uniform(-12, 12, 3)
    t = {
        "face_rx": rng.uniform(0.38, 0.52), "face_ry": rng.uniform(0.50, 0.64),
        "jaw": rng.uniform(0.0, 0.35),  # how much the face narrows towards the chin
        "skin": np.clip(skin + rng.uniform(-10, 10, 3), 0, 255),
        "hair": np.clip(hair, 0, 255), "hair_style": int(rng.integers(0, 5)),
        "hairline": rng.uniform(0.35, 0.75), "hair_curve": rng.uniform(-0.6, 0.9),
        "eye_dx": rng.uniform(0.14, 0.22), "eye_y": rng.uniform(-0.12, -0.02),
        "eye_rx": rng.uniform(0.060, 0.090), "eye_ry": rng.uniform(0.028, 0.046),
        "iris": _IRIS[rng.integers(len(_IRIS))] + rng.uniform(-10, 10, 3),
        "brow_gap": rng.uniform(0.05, 0.09), "brow_thick": rng.uniform(0.012, 0.030),
        "brow_tilt": rng.uniform(-0.25, 0.25), "brow_len": rng.uniform(1.0, 1.5),
        "nose_len": rng.uniform(0.10, 0.20), "nose_w": rng.uniform(0.045, 0.085),
        "mouth_y": rng.uniform(0.22, 0.34), "mouth_w": rng.uniform(0.09, 0.17),
        "mouth_h": rng.uniform(0.014, 0.034), "smile": rng.uniform(-0.3, 2.0),
        "lips": rng.uniform(0.25, 0.6),  # how far lip colour moves from skin to red
        "ear": rng.uniform(0.8, 1.3),
        "beard": rng.uniform() < 0.2, "glasses": rng.uniform() < 0.2,
        "glasses_colour": rng.uniform(0, 120, 3), "glasses_round": rng.uniform() < 0.5,
        "shirt": rng.uniform(20, 235, 3), "background": rng.uniform(40, 220, 3),
    }
    # float32 colours keep the canvas arithmetic in float32.
    return {k: v.astype(np.float32) if isinstance(v, np.ndarray) else v for k, v in t.items()}


def _soft(dist: np.ndarray, pw: float) -> np.ndarray:
    """Anti-aliased coverage from an (approximate) signed distance: negative inside."""
    return np.clip(0.5 - dist / pw, 0.0, 1.0)


def _ellipse(u: np.ndarray, v: np.ndarray, cx: float, cy: float, rx: float, ry: float,
             pw: float) -> np.ndarray:
    du, dv = (u - cx) / rx, (v - cy) / ry
    f = du * du + dv * dv - 1.0
    grad = 2.0 * np.sqrt((du / rx) ** 2 + (dv / ry) ** 2) + 1e-6
    return _soft(f / grad, pw)


def _paint(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    a = alpha[..., None]
    canvas += a * (colour - canvas)


class _Frame:
    """The face's coordinate frame on the pixel grid, and windows around small features.

    Small features (eyes, brows, nose, mouth) are drawn only inside a window of pixels around
    them: the same picture, several times faster than masking the whole image for each.
    """

    def __init__(self, size: int, tx: float, ty: float, scale: float, angle: float) -> None:
        c = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
        self.x, self.y = np.meshgrid(c, c)  # image frame: x right, y down, [-1, 1]
        self.cos, self.sin = float(np.cos(angle)), float(np.sin(angle))
        self.size, self.tx, self.ty, self.scale = size, tx, ty, scale
        self.u = (self.cos * (self.x - tx) + self.sin * (self.y - ty)) / scale
        self.v = (-self.sin * (self.x - tx) + self.cos * (self.y - ty)) / scale
        self.pw = 2.0 / size / scale  # one pixel in face units

    def window(self, cx: float, cy: float, r: float) -> tuple[slice, slice]:
        """Pixel rows and columns covering the face-frame disc at (cx, cy) of radius r."""
        x = self.scale * (self.cos * cx - self.sin * cy) + self.tx
        y = self.scale * (self.sin * cx + self.cos * cy) + self.ty
        half = self.size / 2
        col, row, rad = (x + 1) * half - 0.5, (y + 1) * half - 0.5, r * self.scale * half + 2
        return (slice(max(int(row - rad), 0), max(int(row + rad) + 2, 0)),
                slice(max(int(col - rad), 0), max(int(col + rad) + 2, 0)))


def draw_face(t: dict, rng: np.random.Generator, size: int) -> np.ndarray:
    """One image of the identity with traits `t`, nuisance drawn from `rng`: uint8 [size,size,3]."""
    # Per-image nuisance: pose, lighting, background, expression, noise.
    tx, ty = (float(a) for a in np.clip(rng.normal(0, 0.05, 2), -0.12, 0.12))
    scale = rng.uniform(0.88, 1.12)
    angle = float(np.clip(rng.normal(0, 0.12), -0.3, 0.3))
    bright = rng.uniform(0.7, 1.2)
    light_amp, light_dir = rng.uniform(0.0, 0.35), rng.uniform(0, 2 * np.pi)
    cast = rng.uniform(0.93, 1.07, 3).astype(np.float32)
    bg = t["background"] + (rng.uniform(30, 230, 3) - t["background"]) * rng.uniform(0.2, 0.8)
    shirt = t["shirt"] + (rng.uniform(20, 235, 3) - t["shirt"]) * rng.uniform(0.0, 0.6)
    gaze = rng.normal(0, 0.25, 2)
    blink = 0.25 if rng.uniform() < 0.08 else rng.uniform(0.8, 1.1)
    smile = t["smile"] + rng.normal(0, 0.5)
    noise = rng.uniform(2.0, 9.0)

    fr = _Frame(size, tx, ty, scale, angle)
    u, v, pw = fr.u, fr.v, fr.pw
    canvas = np.empty((size, size, 3), np.float32)
    canvas[:] = bg.astype(np.float32)
    canvas *= (1.0 - 0.125 * (fr.y[..., None] + 1))  # background darker towards the bottom

    frx, fry, cy = t["face_rx"], t["face_ry"], 0.06
    skin, hair = t["skin"], t["hair"]
    style = t["hair_style"]  # 0 short, 1 long, 2 receding, 3 fringe, 4 volume
    _paint(canvas, _ellipse(u, v, 0, 1.3, 0.95, 0.55, pw), shirt.astype(np.float32))  # shoulders
    _paint(canvas, _ellipse(u, v, 0, cy + fry * 0.9, frx * 0.5, 0.4, pw), skin * 0.82)  # neck
    if style in (1, 4):  # hair behind the head
        grow = 1.3 if style == 4 else 1.18
        back = _ellipse(u, v, 0, cy - 0.05, frx * grow, fry * 1.12, pw)
        if style == 1:
            drop = _soft(np.maximum(np.abs(u) - frx * 1.2, v - (cy + fry * 1.15)), pw)
            back = np.maximum(back, drop * _soft(cy - 0.1 - v, pw * 40))
        _paint(canvas, back, hair * 0.85)
    if style != 1:  # ears
        for side in (-1, 1):
            ex, er = side * frx * 0.97, 0.10 * t["ear"]
            w = fr.window(ex, cy - 0.02, er)
            _paint(canvas[w], _ellipse(u[w], v[w], ex, cy - 0.02, er * 0.55, er, pw),
                   skin * 0.92)

    # Face: an ellipse narrowing towards the chin, shaded darker at the rim.
    dv = (v - cy) / fry
    rxv = frx * (1.0 - t["jaw"] * np.clip(dv, 0, 1) ** 2)
    r = np.sqrt((u / rxv) ** 2 + dv**2)
    face = _soft((r - 1.0) * min(frx, fry) * 0.9, pw)
    shade = (1.0 - 0.22 * np.clip(r, 0, 1) ** 3)[..., None]
    a = face[..., None]
    canvas += a * (skin * shade - canvas)

    ey, edx = cy + t["eye_y"], t["eye_dx"]
    my = cy + t["mouth_y"]
    if t["beard"]:
        beard = face * _soft(my - 0.07 - v, pw * 6) * 0.85
        _paint(canvas, beard, hair * 0.9)

    # Hair on top of the head, above a curved hairline.
    if style != 2 or t["hairline"] < 0.6:
        line = {0: 1.0, 1: 1.0, 2: 1.35, 3: 0.55, 4: 1.0}[style] * t["hairline"]
        cap = _ellipse(u, v, 0, cy - fry * 0.12, frx * (1.12 if style == 4 else 1.06),
                       fry * 0.98, pw)
        edge = v - (cy - fry * line + t["hair_curve"] * fry * (u / frx) ** 2)
        _paint(canvas, cap * _soft(edge, pw * 2), hair)

    brow_colour = np.minimum(hair * 0.75, 110)
    iris_colour, pupil = t["iris"], np.array([15, 12, 12], np.float32)
    erx = t["eye_rx"]
    for side in (-1, 1):
        cx = side * edx
        # Brow: a thin ellipse tilted by brow_tilt, mirrored left/right.
        by = ey - t["brow_gap"] - t["eye_ry"]
        w = fr.window(cx, by, erx * t["brow_len"])
        uw, vw = u[w] - cx, v[w] - by
        ca, sa = np.cos(t["brow_tilt"] * side), np.sin(t["brow_tilt"] * side)
        bu, bv = ca * uw + sa * vw, -sa * uw + ca * vw
        brow = _ellipse(bu, bv, 0, 0, erx * t["brow_len"], t["brow_thick"], pw)
        _paint(canvas[w], brow, brow_colour)
        # Eye: sclera, iris and pupil clipped to it; glasses around it.
        gr = erx * 1.45
        w = fr.window(cx, ey, gr)
        uw, vw, cw = u[w], v[w], canvas[w]
        ery = t["eye_ry"] * blink
        sclera = _ellipse(uw, vw, cx, ey, erx, ery, pw)
        _paint(cw, sclera, np.array([236, 234, 228], np.float32))
        ix, iy = cx + gaze[0] * erx * 0.4, ey + gaze[1] * ery * 0.3
        ir = t["eye_ry"] * 0.95
        _paint(cw, sclera * _ellipse(uw, vw, ix, iy, ir, ir, pw), iris_colour)
        _paint(cw, sclera * _ellipse(uw, vw, ix, iy, ir * 0.45, ir * 0.45, pw), pupil)
        if t["glasses"]:
            gry = gr if t["glasses_round"] else gr * 0.7
            outer = _ellipse(uw, vw, cx, ey, gr, gry, pw)
            inner = _ellipse(uw, vw, cx, ey, gr - 0.018, gry - 0.018, pw)
            _paint(cw, np.clip(outer - inner, 0, 1), t["glasses_colour"])

    if t["glasses"]:
        gap = edx - erx * 1.45
        w = fr.window(0, ey, gap + 0.02)
        bridge = _soft(np.maximum(np.abs(u[w]) - gap, np.abs(v[w] - ey + 0.02) - 0.008), pw)
        _paint(canvas[w], bridge, t["glasses_colour"])

    # Nose: a shaded ridge and two nostrils.
    nl, nw = t["nose_len"], t["nose_w"]
    ny = ey + 0.04
    w = fr.window(0, ny + nl * 0.6, nl * 0.7)
    uw, vw, cw = u[w], v[w], canvas[w]
    ridge = _ellipse(uw, vw, 0.02, ny + nl * 0.55, nw * 0.45, nl * 0.55, pw) * 0.35
    _paint(cw, ridge, skin * 0.7)
    for side in (-1, 1):
        nostril = _ellipse(uw, vw, side * nw * 0.5, ny + nl, nw * 0.35, nw * 0.18, pw) * 0.8
        _paint(cw, nostril, skin * 0.45)

    # Mouth: an ellipse bent by the smile (corners up for smile > 0).
    mw = t["mouth_w"]
    w = fr.window(0, my, mw + 0.06)
    uw = u[w]
    bent = v[w] - my + smile * 0.08 * (uw / mw) ** 2
    lips_colour = skin + (np.array([170, 60, 70], np.float32) - skin) * t["lips"]
    _paint(canvas[w], _ellipse(uw, bent, 0, 0, mw, t["mouth_h"], pw), lips_colour)
    _paint(canvas[w], _ellipse(uw, bent, 0, 0, mw * 0.9, 0.006, pw), skin * 0.3)

    # Lighting, colour cast and sensor noise.
    light = 1.0 + light_amp * (fr.x * np.cos(light_dir) + fr.y * np.sin(light_dir))
    canvas *= (bright * light)[..., None] * cast
    canvas += rng.normal(0.0, noise, canvas.shape).astype(np.float32)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
