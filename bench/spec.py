"""What a section of a suite file may hold: the checks every settings class runs (`check`), and
the error they raise. Each scenario's spec and each backend's settings class is declared with
its plug-in (bench.scenarios, bench.backends); bench.suite reads them from the registries."""

from __future__ import annotations

import difflib
import typing


class SuiteError(ValueError):
    """A suite file (or a command-line override) that cannot be run; the message says the fix."""


def fail(where: str, message: str) -> typing.NoReturn:
    raise SuiteError(f"{where}: {message}")


def one_of(where: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(value, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        fail(where, f"{value!r} is not one of {', '.join(allowed)}{hint}")


def target(where: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        fail(where, f"is a fraction of held-out images, 0 to 1 (0 = none); got {value}")


def at_least(where: str, value: float, low: float) -> None:
    if value < low:
        fail(where, f"must be >= {low}, got {value}")
