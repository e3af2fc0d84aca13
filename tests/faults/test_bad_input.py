"""Bad input is found before any worker starts and reported whole; skipping is never silent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.models import weights
from bench.models.store import build_base

from ..conftest import only_result, write_suite
from ..test_data import faulty_lfw


def test_bad_images_stop_the_run_before_any_worker_naming_all_of_them(tmp_path: Path,
                                                                      capsys) -> None:
    faults = faulty_lfw(tmp_path / "lfw")
    suite = write_suite(tmp_path, backends=("tf-onednn",), scenarios=("inference",))
    assert main(["run", str(suite), "--data", str(tmp_path / "lfw"),
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert str(faults["truncated"]) in err and str(faults["empty"]) in err and "--skip-bad" in err
    assert not (tmp_path / "r").exists(), "no worker started, no result written"


@pytest.mark.slow
def test_skip_bad_runs_without_them_lists_them_and_logs_a_line_per_run(tmp_path: Path,
                                                                       capsys) -> None:
    faults = faulty_lfw(tmp_path / "lfw")
    suite = write_suite(tmp_path, backends=("tf-stock", "tf-onednn"), scenarios=("inference",))
    assert main(["run", str(suite), "--data", str(tmp_path / "lfw"), "--skip-bad",
                 "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    doc = only_result(tmp_path / "r")
    assert doc["suite"]["data"]["on_bad_image"] == "skip"
    for run in doc["runs"]:
        assert run["status"] == "ok", run.get("error")
        skipped = {s["path"] for s in run["data"]["skipped_images"]}
        assert skipped == {str(faults["truncated"]), str(faults["empty"])}
    assert "2 bad image(s) left out" in " ".join(out.split())
    # not a terminal: one plain line per finished run, with its headline figure and the ETA
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert [line.split()[0:3] for line in lines] == [["[1/2]", "inference/tf-stock", "ok:"],
                                                      ["[2/2]", "inference/tf-onednn", "ok:"]]
    assert all("throughput img/s" in line for line in lines)
    assert lines[-1].endswith("ETA 0:00:00")


@pytest.mark.parametrize(("content", "says"), [
    (np.random.default_rng(0).bytes(4096), "not a .npz archive"),
    (b"", "an empty file"),
])
def test_a_junk_weights_file_is_refused_before_any_worker_without_pickle_advice(
        tmp_path: Path, capsys, content: bytes, says: str) -> None:
    junk = tmp_path / "weights.npz"
    junk.write_bytes(content)
    suite = write_suite(tmp_path, backends=("tf-onednn",), scenarios=("inference",))
    assert main(["run", str(suite), "--weights", str(junk), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert str(junk) in err and says in err and "tlbench pretrain" in err
    assert "pickle" not in err
    assert not (tmp_path / "r").exists()


def test_weights_of_another_configuration_are_refused_saying_what_each_is(tmp_path: Path,
                                                                         capsys) -> None:
    path = weights.save(build_base({"variant": "small", "image_size": 80, "embedding_size": 8}),
                        tmp_path / "small-8d.npz")
    assert weights.inspect(path, {"variant": "small", "embedding_size": 8}) == {
        "variant": "small", "repeats": {"block35": 1, "block17": 1, "block8": 1},
        "variables": len(weights.read(path)), "embedding_size": 8}
    suite = write_suite(tmp_path, backends=("tf-onednn",), scenarios=("inference",))
    assert main(["run", str(suite), "--weights", str(path), "--out", str(tmp_path / "r")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "weights of Inception-ResNet-v1 small" in err and "8-d embedding" in err
    assert "the suite's model is small (block repeats (1, 1, 1)), 64-d" in err
    np.savez(tmp_path / "other.npz", kernel=np.zeros(3))
    assert main(["run", str(suite), "--weights", str(tmp_path / "other.npz"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "a .npz, but not of its weights: its arrays are named e.g. 'kernel'" in \
        capsys.readouterr().err
