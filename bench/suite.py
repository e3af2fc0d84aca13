"""Suite files (TOML) → frozen, validated specs.

A suite is strict: an unknown key, a wrong type or an out-of-range value is an error that names the
file, the key and what to write instead. A typo must never silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Every backend (bench.backends has one class per stack); kept here so that parsing a suite
# imports no runtime. A test checks the two lists agree.
BACKENDS = ("tf-stock", "tf-onednn", "tf-onednn-bf16", "tf-xla", "itex", "itex-bf16", "openvino",
            "openvino-bf16", "openvino-int8", "torch", "torch-compile", "torch-bf16", "jax",
            "jax-classic")
SCENARIOS = ("full_training", "transfer", "fine_tune", "inference")
# Stages of progressive fine-tuning, top of the network first (bench.scenarios.fine_tune).
FINE_TUNE_STAGES = ("Block8", "block8", "Mixed_7a", "block17", "Mixed_6a", "block35", "stem")
MODEL_VARIANTS = ("full", "small")


class SuiteError(ValueError):
    """A suite file (or a command-line override) that cannot be run; the message says the fix."""


def _fail(where: str, message: str) -> typing.NoReturn:
    raise SuiteError(f"{where}: {message}")


def _one_of(where: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(value, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        _fail(where, f"{value!r} is not one of {', '.join(allowed)}{hint}")


def _target(where: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        _fail(where, f"is a fraction of held-out images, 0 to 1 (0 = none); got {value}")


def _at_least(where: str, value: float, low: float) -> None:
    if value < low:
        _fail(where, f"must be >= {low}, got {value}")


@dataclass(frozen=True)
class ModelSpec:
    """Which FaceNet to build. `variant = "small"` (1/1/1 repeats) exists for fast tests only."""

    variant: str = "full"
    image_size: int = 160
    embedding_size: int = 512
    weights: str = ""  # path to pretrained weights; empty = random initialisation

    def check(self, where: str) -> None:
        _one_of(f"{where}.variant", self.variant, MODEL_VARIANTS)
        _at_least(f"{where}.image_size", self.image_size, 80)
        _at_least(f"{where}.embedding_size", self.embedding_size, 2)


@dataclass(frozen=True)
class DataSpec:
    """The images: the embedded synthetic set (default) or a user's LFW-layout directory."""

    source: str = "synthetic"
    path: str = ""  # required for source = "lfw"
    identities: int = 40  # synthetic only
    min_images: int = 4  # synthetic only
    max_images: int = 12  # synthetic only
    seed: int = 0
    holdout_per_identity: int = 1  # images per identity kept out of training for accuracy
    on_bad_image: str = "error"  # "skip": leave unreadable or corrupt images out, listed

    def check(self, where: str) -> None:
        _one_of(f"{where}.source", self.source, ("synthetic", "lfw"))
        _one_of(f"{where}.on_bad_image", self.on_bad_image, ("error", "skip"))
        if self.source == "lfw" and not self.path:
            _fail(f"{where}.path", 'source = "lfw" needs path = "/path/to/lfw" (or --data PATH)')
        _at_least(f"{where}.identities", self.identities, 2)
        _at_least(f"{where}.min_images", self.min_images, 2)
        if self.max_images < self.min_images:
            _fail(f"{where}.max_images", f"must be >= min_images ({self.min_images})")
        _at_least(f"{where}.holdout_per_identity", self.holdout_per_identity, 1)
        if self.holdout_per_identity >= self.min_images:
            _fail(f"{where}.holdout_per_identity",
                  f"must be < min_images ({self.min_images}) so each identity keeps training "
                  f"images")


@dataclass(frozen=True)
class FullTrainingSpec:
    """Traditional training from scratch; defaults are the paper's run (80 x 13 x 1024).

    The optimiser follows facenet's softmax recipe: RMSProp(decay 0.9, momentum 0.9, epsilon 1.0),
    L2 weight decay on kernels, dropout keep 0.8. A global batch that does not fit in memory is
    split into micro-batches whose gradients are averaged before one update.
    """

    measure: str = "projected"  # "full" runs every step; "projected" times a window
    epochs: int = 80
    steps_per_epoch: int = 13
    batch_size: int = 1024  # global batch: images per optimiser update
    micro_batch: int = 16  # images per forward/backward pass
    warmup_steps: int = 2  # micro-steps after the first (tracing) one, untimed in the statistics
    window_steps: int = 8  # micro-steps timed for the projection
    learning_rate: float = 0.05
    weight_decay: float = 5e-4
    # facenet's optional center loss on the prelogits (0: off, its default; it used 0.01 at times)
    center_loss_factor: float = 0.0
    center_loss_alfa: float = 0.95  # how slowly the class centres follow their features
    target_accuracy: float = 0.0  # > 0: report the training time to reach it (measure = "full")
    # > 1: data-parallel on tf.distribute.MultiWorkerMirroredStrategy, one worker per core
    # group of the placement (or per host of --cluster); the global batch is kept
    workers: int = 1

    def check(self, where: str) -> None:
        _one_of(f"{where}.measure", self.measure, ("full", "projected"))
        _at_least(f"{where}.workers", self.workers, 1)
        _target(f"{where}.target_accuracy", self.target_accuracy)
        if self.target_accuracy and self.measure != "full":
            _fail(f"{where}.target_accuracy", 'needs measure = "full": a projected run trains '
                  "only a window")
        for name in ("epochs", "steps_per_epoch", "batch_size", "micro_batch", "window_steps"):
            _at_least(f"{where}.{name}", getattr(self, name), 1)
        _at_least(f"{where}.warmup_steps", self.warmup_steps, 0)
        if self.batch_size % (self.micro_batch * self.workers):
            _fail(f"{where}.micro_batch",
                  f"micro_batch x workers ({self.micro_batch} x {self.workers}) must divide "
                  f"batch_size ({self.batch_size}); e.g. micro_batch = 16")
        if self.window_steps < 3:
            _fail(f"{where}.window_steps", "needs >= 3 timed micro-steps for a confidence interval")
        timed = self.total_steps * self.accumulation - 1 - self.warmup_steps
        if self.measure == "full" and timed < 3:
            _fail(f"{where}.epochs", f"measure = \"full\" times only {timed} steady micro-step(s) "
                  f"after the first and the warm-up; raise epochs or steps_per_epoch to time >= 3")
        if self.learning_rate <= 0:
            _fail(f"{where}.learning_rate", "must be > 0")
        _at_least(f"{where}.weight_decay", self.weight_decay, 0.0)
        _at_least(f"{where}.center_loss_factor", self.center_loss_factor, 0.0)
        if not 0.0 <= self.center_loss_alfa <= 1.0:
            _fail(f"{where}.center_loss_alfa", f"is 0 to 1 (facenet: 0.95); got "
                  f"{self.center_loss_alfa}")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def worker_batch(self) -> int:
        """Images each worker contributes to one update."""
        return self.batch_size // self.workers

    @property
    def accumulation(self) -> int:
        """Micro-steps each worker runs per update."""
        return self.worker_batch // self.micro_batch


@dataclass(frozen=True)
class TransferSpec:
    """Figure 1 of the paper: embeddings once with a frozen network, then train a head only.

    head = "softmax" (a dense softmax layer) or "svm" (a linear multi-class SVM, the classifier
    facenet's classifier.py trains on embeddings), both trained full-batch.
    """

    batch_size: int = 32  # extraction batch
    head: str = "softmax"
    head_steps: int = 300  # full-batch optimiser steps on the embeddings
    head_learning_rate: float = 0.05
    target_accuracy: float = 0.0  # > 0: report the time to reach it (evaluation off the clock)
    compare_random: bool = True  # with pretrained weights, also transfer from random weights

    def check(self, where: str) -> None:
        _at_least(f"{where}.batch_size", self.batch_size, 1)
        _one_of(f"{where}.head", self.head, ("softmax", "svm"))
        _at_least(f"{where}.head_steps", self.head_steps, 1)
        if self.head_learning_rate <= 0:
            _fail(f"{where}.head_learning_rate", "must be > 0")
        _target(f"{where}.target_accuracy", self.target_accuracy)


@dataclass(frozen=True)
class FineTuneSpec:
    """Paper §V: unfreeze the pretrained network's top blocks one stage at a time."""

    stages: int = 2  # how many of FINE_TUNE_STAGES to add, top first
    steps_per_stage: int = 20
    batch_size: int = 16
    learning_rate: float = 0.005
    weight_decay: float = 5e-4
    target_accuracy: float = 0.0

    def check(self, where: str) -> None:
        if not 1 <= self.stages <= len(FINE_TUNE_STAGES):
            _fail(f"{where}.stages", f"must be 1..{len(FINE_TUNE_STAGES)} (stages, top first: "
                  f"{', '.join(FINE_TUNE_STAGES)})")
        _at_least(f"{where}.steps_per_stage", self.steps_per_stage, 2)
        _at_least(f"{where}.batch_size", self.batch_size, 1)
        if self.learning_rate <= 0:
            _fail(f"{where}.learning_rate", "must be > 0")
        _at_least(f"{where}.weight_decay", self.weight_decay, 0.0)
        _target(f"{where}.target_accuracy", self.target_accuracy)


@dataclass(frozen=True)
class InferenceSpec:
    """Latency at batch 1 and throughput at `batch_size`, each over a time window."""

    batch_size: int = 32
    warmup_s: float = 3.0
    duration_s: float = 10.0

    def check(self, where: str) -> None:
        _at_least(f"{where}.batch_size", self.batch_size, 1)
        _at_least(f"{where}.warmup_s", self.warmup_s, 0.0)
        if self.duration_s <= 0:
            _fail(f"{where}.duration_s", "must be > 0, e.g. duration_s = 10")


@dataclass(frozen=True)
class OpenVinoSpec:
    """OpenVINO's settings (the openvino* backends): NNCF post-training quantisation of the
    `openvino-int8` IR (calibration images come from the training split only), and
    benchmark_app's knobs for the throughput measurement (`-hint -nstreams -nthreads -nireq
    -pin`), each read back from the compiled model and recorded as obtained. 0 and "auto"
    leave the choice to OpenVINO (threads: the placement's)."""

    calibration_images: int = 300  # NNCF's default subset_size; the split's size if smaller
    preset: str = "performance"  # NNCF QuantizationPreset: symmetric, or "mixed" activations
    fast_bias_correction: bool = True  # NNCF's default; false: the slower full bias correction
    hint: str = "throughput"  # PERFORMANCE_HINT: "throughput", "latency", or "none" (unset)
    streams: int = 0  # NUM_STREAMS; 0: the hint's choice
    threads: int = 0  # INFERENCE_NUM_THREADS; 0: the placement's threads
    requests: int = 0  # the async queue's requests; 0: OPTIMAL_NUMBER_OF_INFER_REQUESTS
    pin: str = "auto"  # ENABLE_CPU_PINNING: "yes", "no", or "auto" (OpenVINO's default)

    def check(self, where: str) -> None:
        _at_least(f"{where}.calibration_images", self.calibration_images, 1)
        _one_of(f"{where}.preset", self.preset, ("performance", "mixed"))
        _one_of(f"{where}.hint", self.hint, ("throughput", "latency", "none"))
        _one_of(f"{where}.pin", self.pin, ("yes", "no", "auto"))
        for key in ("streams", "threads", "requests"):
            _at_least(f"{where}.{key}", getattr(self, key), 0)


SCENARIO_SPECS: dict[str, type] = {
    "full_training": FullTrainingSpec,
    "transfer": TransferSpec,
    "fine_tune": FineTuneSpec,
    "inference": InferenceSpec,
}


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    description: str = ""
    backends: tuple[str, ...] = BACKENDS
    scenarios: tuple[str, ...] = SCENARIOS
    placement: str = "all"
    use_logical_cores: bool = False  # SMT siblings too (default: one CPU per physical core)
    timeout_s: float = 1800.0  # per run
    max_memory_gb: float = 0.0  # per worker (resident, whole process tree); 0 = no cap
    # variables of the shell a worker gets besides the few it always gets (launcher.PASS_ENV)
    pass_env: tuple[str, ...] = ()
    # fresh worker processes per run, interleaved round by round (round 1 of every run, then
    # round 2, ...): the spread between processes is what a regression verdict must see
    repeats: int = 1
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    full_training: FullTrainingSpec = field(default_factory=FullTrainingSpec)
    transfer: TransferSpec = field(default_factory=TransferSpec)
    fine_tune: FineTuneSpec = field(default_factory=FineTuneSpec)
    inference: InferenceSpec = field(default_factory=InferenceSpec)
    openvino: OpenVinoSpec = field(default_factory=OpenVinoSpec)

    def scenario_spec(self, scenario: str) -> Any:
        return getattr(self, scenario)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SUITE_KEYS = ("name", "description", "backends", "scenarios", "placement", "use_logical_cores",
               "timeout_s", "max_memory_gb", "pass_env", "repeats")
_SECTIONS: dict[str, type] = {"model": ModelSpec, "data": DataSpec, **SCENARIO_SPECS,
                              "openvino": OpenVinoSpec}


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, "a list of strings")


def _coerce(where: str, value: Any, tp: Any) -> Any:
    """Check one TOML value against a dataclass field type (ints are accepted as floats)."""
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            _fail(where, f"must be a list of strings, e.g. [\"a\", \"b\"]; got {value!r}")
        return tuple(value)
    ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    if not ok:
        _fail(where, f"must be {_type_name(tp)}; got {value!r} ({type(value).__name__})")
    return value


def _unknown_key(where: str, key: str, valid: typing.Iterable[str]) -> typing.NoReturn:
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    _fail(where, f"unknown key {key!r}; {hint}valid keys: {', '.join(valid)}")


def _section(where: str, cls: type, table: Any) -> Any:
    if not isinstance(table, dict):
        _fail(where, f"must be a table ([{where.rsplit(':', 1)[-1]}]), got {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            _unknown_key(f"{where}", key, fields)
        values[key] = _coerce(f"{where}.{key}", value, hints[key])
    spec = cls(**values)
    spec.check(where)
    return spec


def parse(text: str, path: str = "inline.toml") -> Suite:
    """Parse and validate suite TOML text; `path` names the file in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: not valid TOML: {exc}") from None
    return _from_doc(doc, path)


def from_dict(stored: dict[str, Any], where: str) -> Suite:
    """Rebuild (and re-validate) a suite stored in a result file by `Suite.to_dict`."""
    doc = {"suite": {k: stored[k] for k in _SUITE_KEYS if k in stored},
           **{k: stored[k] for k in _SECTIONS if k in stored}}
    return _from_doc(doc, stored.get("path") or where)


def _from_doc(doc: dict[str, Any], path: str) -> Suite:
    for key in doc:
        if key != "suite" and key not in _SECTIONS:
            _unknown_key(path, key, ["suite", *_SECTIONS])
    head = doc.get("suite", {})
    if not isinstance(head, dict):
        _fail(f"{path}: suite", "must be a table [suite]")
    hints = typing.get_type_hints(Suite)
    values: dict[str, Any] = {}
    for key, value in head.items():
        if key not in _SUITE_KEYS:
            _unknown_key(f"{path}: suite", key, _SUITE_KEYS)
        values[key] = _coerce(f"{path}: suite.{key}", value, hints[key])
    values.setdefault("name", Path(path).stem)
    for section, cls in _SECTIONS.items():
        if section in doc:
            values[section] = _section(f"{path}: {section}", cls, doc[section])
    suite = Suite(path=path, **values)
    _check_suite(suite, f"{path}: suite")
    return suite


def _check_suite(suite: Suite, where: str) -> None:
    if not suite.name or not suite.name.replace("-", "").replace("_", "").isalnum():
        _fail(f"{where}.name", f"{suite.name!r} must be letters, digits, '-' or '_'")
    if not suite.backends:
        _fail(f"{where}.backends", f"needs at least one of {', '.join(BACKENDS)}")
    if not suite.scenarios:
        _fail(f"{where}.scenarios", f"needs at least one of {', '.join(SCENARIOS)}")
    for b in suite.backends:
        _one_of(f"{where}.backends", b, BACKENDS)
    for s in suite.scenarios:
        _one_of(f"{where}.scenarios", s, SCENARIOS)
    for name, items in (("backends", suite.backends), ("scenarios", suite.scenarios)):
        if len(set(items)) != len(items):
            _fail(f"{where}.{name}", f"lists an entry twice: {list(items)}")
    if suite.timeout_s <= 0:
        _fail(f"{where}.timeout_s", "must be > 0 seconds")
    if suite.max_memory_gb < 0:
        _fail(f"{where}.max_memory_gb", "must be >= 0 (0 means no cap)")
    if suite.repeats < 1:
        _fail(f"{where}.repeats", f"must be 1 or more worker processes per run; got "
              f"{suite.repeats}")
    for name in suite.pass_env:
        if not name or "=" in name or not name.replace("_", "").isalnum():
            _fail(f"{where}.pass_env", f"{name!r} is not a variable name; write e.g. "
                  f"[\"MY_PROXY\"] (the value is taken from the shell)")


def load(path: str | Path) -> Suite:
    """Read and validate a suite file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(f"{p}: no such suite file; the shipped suites are suites/*.toml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{p}: cannot read the suite file: {exc}") from None
    return parse(text, str(p))


def override(suite: Suite, *, backends: typing.Sequence[str] = (),
             scenarios: typing.Sequence[str] = (), data: str = "", weights: str = "",
             placement: str = "", workers: int = 0, pass_env: typing.Sequence[str] = (),
             skip_bad: bool = False, repeats: int = 0) -> Suite:
    """Apply command-line choices (`--backend`, `--scenario`, `--data`, ...) and re-validate."""
    changes: dict[str, Any] = {}
    if workers:
        changes["full_training"] = dataclasses.replace(suite.full_training, workers=workers)
        changes["full_training"].check("--workers")
    if backends:
        changes["backends"] = tuple(dict.fromkeys(backends))
    if scenarios:
        changes["scenarios"] = tuple(dict.fromkeys(scenarios))
    if placement:
        changes["placement"] = placement
    if pass_env:
        changes["pass_env"] = tuple(dict.fromkeys([*suite.pass_env, *pass_env]))
    if repeats:
        changes["repeats"] = repeats
    if data or skip_bad:
        changes["data"] = dataclasses.replace(
            suite.data, **({"source": "lfw", "path": data} if data else {}),
            **({"on_bad_image": "skip"} if skip_bad else {}))
        changes["data"].check("--data" if data else "--skip-bad")
    if weights:
        changes["model"] = dataclasses.replace(suite.model, weights=weights)
    new = dataclasses.replace(suite, **changes)
    _check_suite(new, "command line")
    return new

