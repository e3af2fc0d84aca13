"""Generated suite files never make the parser raise anything but a clean SuiteError."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.suite import _SECTIONS, _SUITE_KEYS, SuiteError, parse

KEYS = {"suite": _SUITE_KEYS, **{name: tuple(cls.__dataclass_fields__) for name, cls
                                 in _SECTIONS.items()}}
scalars = st.one_of(
    st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(), st.text(max_size=12),
    st.sampled_from(["tf-stock", "tf-onednn", "full", "small", "lfw", "synthetic", "projected",
                     "inference", "all", "socket:0", "cores:0"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3))


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)  # ints as digits, strings as basic TOML strings


@st.composite
def suite_texts(draw) -> str:
    lines = []
    for section in draw(st.lists(st.sampled_from([*KEYS, "extra"]), unique=True, max_size=5)):
        lines.append(f"[{section}]")
        known = KEYS.get(section, ("x",))
        for key in draw(st.lists(st.one_of(st.sampled_from(known),
                                           st.from_regex(r"[a-z_]{1,10}", fullmatch=True)),
                                 unique=True, max_size=4)):
            lines.append(f"{key} = {toml_value(draw(values))}")
    return "\n".join(lines) + "\n"


def _parse_cleanly(text: str) -> None:
    try:
        suite = parse(text, "fuzz.toml")
    except SuiteError as exc:
        assert str(exc).startswith("fuzz.toml"), exc
    else:
        assert suite.backends and suite.scenarios


@settings(max_examples=300, deadline=None)
@given(suite_texts())
def test_structured_suites_parse_or_fail_cleanly(text: str) -> None:
    _parse_cleanly(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_fails_cleanly(text: str) -> None:
    _parse_cleanly(text)
