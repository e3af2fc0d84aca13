"""The bf16 code paths, run for real even on a CPU without native bf16.

On such a CPU the suite skips bf16 (it would measure emulation); here the launcher is told the
CPU has AMX so that the workers run anyway, and what they compute is checked — oneDNN's bf16
kernels are used, the precision asked for is obtained, the embeddings agree with fp32.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import backends, parity
from bench.launcher import Launcher, Limits
from bench.pinning import read_topology, resolve
from bench.plan import expand, plan
from bench.suite import load

from .conftest import write_suite

pytestmark = pytest.mark.slow
BF16 = ("tf-onednn-bf16", "itex-bf16", "openvino-bf16", "torch-bf16")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("bf16")
    suite = load(write_suite(folder, backends=("tf-stock", *BF16), scenarios=("inference",)))
    topology = read_topology()
    launcher = Launcher(topology, folder / "logs")  # no skip: bf16 runs even where emulated
    records = [launcher.run(expand(run, resolve("all", topology), topology),
                            Limits(timeout_s=300)) for run in plan(suite)]
    parity.annotate(records, lambda name: backends.get(name).precision)
    return {r["backend"]: r for r in records}


@pytest.mark.parametrize("name", BF16)
def test_bf16_embeddings_agree_with_fp32_tensorflow(runs, name: str) -> None:
    run = runs[name]
    assert run["status"] == "ok", run.get("error")
    assert run["parity"]["min_cosine_required"] == parity.MIN_COSINE["bf16"]
    assert run["parity"]["agrees"], run["parity"]["cosine_min"]


@pytest.mark.parametrize("name", ["tf-onednn-bf16", "itex-bf16"])
def test_onednn_runs_bf16_kernels(runs, name: str) -> None:
    assert any("bf16" in impl or "amx" in impl for impl in runs[name]["onednn"]["implementations"])


@pytest.mark.parametrize("name", ["tf-onednn-bf16", "torch-bf16"])
def test_keras_mixed_precision_policy_is_set_for_keras3_bf16(runs, name: str) -> None:
    assert runs[name]["runtime"]["precision_policy"] == "mixed_bfloat16"


def test_openvino_obtains_the_bf16_precision_it_asks_for(runs) -> None:
    obtained = runs["openvino-bf16"]["runtime"]["obtained"]
    assert {v["precision"] for k, v in obtained.items() if k != "ir"} == {"bf16"}
    assert Path(obtained["ir"]).is_file()
