"""What a scenario declares (`Scenario`): its name, the suite section of its spec, how its
samples and figures are read from a record, its headline, and how it may be placed. Its run —
the worker's side, in the runtime — is the `run` module of its package (`run(run, backend,
progress)`), imported only by the worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.record.figure import Figure
from bench.record.schema import Record


@dataclass(frozen=True)
class Scenario:
    name: str  # also its suite section and its package under bench/scenarios
    spec: type  # the suite section's settings, a frozen dataclass with `check(where)`
    figures: Callable[[Record], list[Figure]]  # every figure of one process's record
    samples: Callable[[Record, str], np.ndarray]  # a judged figure's per-sample values
    headline: Callable[[dict[str, Any]], str]  # the headline figure's name, from the params
    trains: bool = False  # trains the network itself (a backend without training skips it)
    data_parallel: bool = False  # may run as several data-parallel workers (`workers`)
    instances: bool = False  # may run as several instances side by side (the placement)
    # its headline is a regression verdict's primary figure (judged in a family of its own):
    # training time, what the mission's CI tracks
    primary: bool = False
    # modules the worker's interpreter must import, each with how to install it: a backend
    # whose environment lacks one skips the scenario with that command
    needs: tuple[tuple[str, str], ...] = ()
    default: bool = True  # run by a suite that names no scenarios
    # starts from the resolved weights (a suite's pretraining serves it), not from scratch
    from_weights: bool = True
