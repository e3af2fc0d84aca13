"""Suite files (TOML) → frozen, validated specs.

A suite is strict: an unknown key, a wrong type or an out-of-range value is an error that names the
file, the key and what to write instead. A typo must never silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import backends as backend_registry
from bench import scenarios as scenario_registry
from bench.spec import SuiteError, at_least, fail, one_of
from bench.training import PretrainSpec

# from the registries (which import no runtime: parsing a suite starts none)
BACKENDS = backend_registry.names()
SCENARIOS = scenario_registry.names()
# a suite naming no scenarios runs these (serving, minutes of LoadGen a stack, is asked for)
DEFAULT_SCENARIOS = tuple(n for n in SCENARIOS if scenario_registry.get(n).default)
MODEL_VARIANTS = ("full", "small")
# the sections plug-ins declare: each scenario's spec, each backend's settings (by section name)
_PLUGIN_SECTIONS: dict[str, type] = {
    **{name: scenario_registry.get(name).spec for name in SCENARIOS},
    **{b.settings: b.config for b in map(backend_registry.get, BACKENDS) if b.settings}}


@dataclass(frozen=True)
class ModelSpec:
    """Which FaceNet to build. `variant = "small"` (1/1/1 repeats) exists for fast tests only."""

    variant: str = "full"
    image_size: int = 160
    embedding_size: int = 512
    weights: str = ""  # path to pretrained weights; empty = the cached pretrained, else random

    def check(self, where: str) -> None:
        one_of(f"{where}.variant", self.variant, MODEL_VARIANTS)
        at_least(f"{where}.image_size", self.image_size, 80)
        at_least(f"{where}.embedding_size", self.embedding_size, 2)


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
        one_of(f"{where}.source", self.source, ("synthetic", "lfw"))
        one_of(f"{where}.on_bad_image", self.on_bad_image, ("error", "skip"))
        if self.source == "lfw" and not self.path:
            fail(f"{where}.path", 'source = "lfw" needs path = "/path/to/lfw" (or --data PATH)')
        at_least(f"{where}.identities", self.identities, 2)
        at_least(f"{where}.min_images", self.min_images, 2)
        if self.max_images < self.min_images:
            fail(f"{where}.max_images", f"must be >= min_images ({self.min_images})")
        at_least(f"{where}.holdout_per_identity", self.holdout_per_identity, 1)
        if self.holdout_per_identity >= self.min_images:
            fail(f"{where}.holdout_per_identity",
                  f"must be < min_images ({self.min_images}) so each identity keeps training "
                  f"images")


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    description: str = ""
    backends: tuple[str, ...] = BACKENDS
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    placement: str = "all"
    use_logical_cores: bool = False  # SMT siblings too (default: one CPU per physical core)
    timeout_s: float = 1800.0  # per run
    join_timeout_s: float = 120.0  # a data-parallel worker's wait for its peers to join
    max_memory_gb: float = 0.0  # per worker (resident, whole process tree); 0 = no cap
    # variables of the shell a worker gets besides the few it always gets (launcher.PASS_ENV)
    pass_env: tuple[str, ...] = ()
    # variables set in every worker, before the runtime is imported (a tuned suite's allocator
    # through LD_PRELOAD, OpenMP's wait policy: bench.knobs)
    env: dict[str, str] = field(default_factory=dict)
    # fresh worker processes per run, interleaved round by round (round 1 of every run, then
    # round 2, ...): the spread between processes is what a regression verdict must see
    repeats: int = 1
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    pretrain: PretrainSpec = field(default_factory=PretrainSpec)
    # every scenario's spec and every backend's settings, by section name (`_SECTIONS`)
    sections: dict[str, Any] = field(default_factory=lambda: {
        name: cls() for name, cls in _PLUGIN_SECTIONS.items()})

    def section(self, name: str) -> Any:
        """A scenario's spec or a backend's settings: the suite's [name]."""
        return self.sections[name]

    def to_dict(self) -> dict[str, Any]:
        """As a result file stores it: each section beside the suite's own keys."""
        out = dataclasses.asdict(dataclasses.replace(self, sections={}))
        del out["sections"]
        return out | {name: dataclasses.asdict(spec) for name, spec in self.sections.items()}


_SUITE_KEYS = ("name", "description", "backends", "scenarios", "placement", "use_logical_cores",
               "timeout_s", "join_timeout_s", "max_memory_gb", "pass_env", "env", "repeats")
_SECTIONS: dict[str, type] = {"model": ModelSpec, "data": DataSpec, "pretrain": PretrainSpec,
                              **_PLUGIN_SECTIONS}


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, "a list of strings")


def _coerce(where: str, value: Any, tp: Any) -> Any:
    """Check one TOML value against a dataclass field type (ints are accepted as floats)."""
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    origin = typing.get_origin(tp)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            fail(where, f"must be a table of strings, e.g. {{ OMP_WAIT_POLICY = \"PASSIVE\" }}; "
                        f"got {value!r}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            fail(where, f"must be a list of strings, e.g. [\"a\", \"b\"]; got {value!r}")
        return tuple(value)
    ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    if not ok:
        fail(where, f"must be {_type_name(tp)}; got {value!r} ({type(value).__name__})")
    return value


def _unknown_key(where: str, key: str, valid: typing.Iterable[str]) -> typing.NoReturn:
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    fail(where, f"unknown key {key!r}; {hint}valid keys: {', '.join(valid)}")


def _section(where: str, cls: type, table: Any) -> Any:
    if not isinstance(table, dict):
        fail(where, f"must be a table ([{where.rsplit(':', 1)[-1]}]), got {table!r}")
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
        fail(f"{path}: suite", "must be a table [suite]")
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
    sections = {name: values.pop(name, cls()) for name, cls in _PLUGIN_SECTIONS.items()}
    suite = Suite(path=path, sections=sections, **values)
    _check_suite(suite, f"{path}: suite")
    return suite


def _check_suite(suite: Suite, where: str) -> None:
    if not suite.name or not suite.name.replace("-", "").replace("_", "").isalnum():
        fail(f"{where}.name", f"{suite.name!r} must be letters, digits, '-' or '_'")
    if not suite.backends:
        fail(f"{where}.backends", f"needs at least one of {', '.join(BACKENDS)}")
    if not suite.scenarios:
        fail(f"{where}.scenarios", f"needs at least one of {', '.join(SCENARIOS)}")
    for b in suite.backends:
        one_of(f"{where}.backends", b, BACKENDS)
    for s in suite.scenarios:
        one_of(f"{where}.scenarios", s, SCENARIOS)
    for name, items in (("backends", suite.backends), ("scenarios", suite.scenarios)):
        if len(set(items)) != len(items):
            fail(f"{where}.{name}", f"lists an entry twice: {list(items)}")
    for key in ("timeout_s", "join_timeout_s"):
        if getattr(suite, key) <= 0:
            fail(f"{where}.{key}", "must be > 0 seconds")
    if suite.max_memory_gb < 0:
        fail(f"{where}.max_memory_gb", "must be >= 0 (0 means no cap)")
    if suite.repeats < 1:
        fail(f"{where}.repeats", f"must be 1 or more worker processes per run; got "
              f"{suite.repeats}")
    for name in suite.pass_env:
        if not name or "=" in name or not name.replace("_", "").isalnum():
            fail(f"{where}.pass_env", f"{name!r} is not a variable name; write e.g. "
                  f"[\"MY_PROXY\"] (the value is taken from the shell)")
    for name in suite.env:
        if not name or not name.replace("_", "").isalnum() or name[0].isdigit():
            fail(f"{where}.env", f"{name!r} is not a variable name; write e.g. "
                  f"{{ OMP_WAIT_POLICY = \"PASSIVE\" }}")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def to_toml(suite: Suite, comments: dict[str, str] | None = None, header: str = "") -> str:
    """The suite as a suite file that `load` reads back to the same suite: every section and
    key written out, `comments` ("section.key" → text) after the keys they explain."""
    comments = comments or {}
    lines = [f"# {line}" for line in header.splitlines()]
    stored = suite.to_dict()
    for section in ("suite", *_SECTIONS):
        table = ({k: stored[k] for k in _SUITE_KEYS} if section == "suite"
                 else stored[section])
        lines += ["", f"[{section}]"]
        for key, value in table.items():
            note = comments.get(f"{section}.{key}")
            lines.append(f"{key} = {_toml(value)}" + (f"  # {note}" if note else ""))
    return "\n".join(lines).lstrip("\n") + "\n"


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
        parallel = {name: dataclasses.replace(suite.section(name), workers=workers)
                    for name in SCENARIOS if scenario_registry.get(name).data_parallel}
        for spec in parallel.values():
            spec.check("--workers")
        changes["sections"] = {**suite.sections, **parallel}
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

