from __future__ import annotations

from pathlib import Path

import pytest

from bench import suite as suite_mod
from bench.cli import main
from bench.suite import SuiteError, parse

from .conftest import REPO

SHIPPED = sorted((REPO / "suites").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_suite_parses(path: Path) -> None:
    suite = suite_mod.load(path)
    assert suite.name == path.stem
    assert suite.model.variant == "full", "shipped suites use the real depth"


def test_paper_suite_is_the_papers_config() -> None:
    suite = suite_mod.load(REPO / "suites/paper.toml")
    ft = suite.section("full_training")
    assert (ft.epochs, ft.steps_per_epoch, ft.batch_size) == (80, 13, 1024)
    assert ft.total_steps * ft.batch_size == 1_064_960
    assert suite.model.image_size == 160 and suite.data.source == "lfw"


def test_defaults_fill_missing_sections() -> None:
    suite = parse('[suite]\nname = "x"\n')
    assert suite.backends == suite_mod.BACKENDS
    assert suite.section("full_training").accumulation == 1024 // 16


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[suite]\nbakends = ["tf-stock"]\n', "unknown key 'bakends'; did you mean 'backends'?"),
        ("[modle]\n", "unknown key 'modle'; did you mean 'model'?"),
        ("[model]\nimage_szie = 96\n", "unknown key 'image_szie'; did you mean 'image_size'"),
        ("[model]\nimage_size = \"96\"\n", "model.image_size: must be an integer"),
        ("[model]\nimage_size = true\n", "model.image_size: must be an integer"),
        ("[inference]\nduration_s = \"long\"\n", "inference.duration_s: must be a number"),
        ('[suite]\nbackends = ["tf-onedn"]\n', "'tf-onedn' is not one of"),
        ('[suite]\nscenarios = ["training"]\n', "suite.scenarios: 'training' is not one of"),
        ('[suite]\nbackends = []\n', "suite.backends: needs at least one"),
        ('[suite]\nbackends = ["tf-stock", "tf-stock"]\n', "lists an entry twice"),
        ("[full_training]\nbatch_size = 100\nmicro_batch = 16\n", "must divide batch_size"),
        ("[full_training]\nbatch_size = 32\nmicro_batch = 8\nworkers = 3\n",
         "micro_batch x workers (8 x 3) must divide batch_size (32)"),
        ("[full_training]\nworkers = 0\n", "full_training.workers: must be >= 1"),
        ("[full_training]\nmeasure = \"estimate\"\n", "'estimate' is not one of full, projected"),
        ("[full_training]\nwindow_steps = 2\n", "needs >= 3 timed micro-steps"),
        ('[full_training]\nmeasure = "full"\nepochs = 1\nsteps_per_epoch = 2\nbatch_size = 16\n'
         "warmup_steps = 0\n", "times only 1 steady micro-step"),
        ("[full_training]\ntarget_accuracy = 0.5\n", 'target_accuracy: needs measure = "full"'),
        ("[transfer]\ntarget_accuracy = 50\n", "is a fraction of held-out images"),
        ("[transfer]\nhead = \"knn\"\n", "'knn' is not one of softmax, svm"),
        ("[fine_tune]\nstages = 9\n", "must be 1..7"),
        ('[data]\nsource = "lfw"\n', 'needs path = "/path/to/lfw"'),
        ("[model]\nvariant = \"tiny\"\n", "'tiny' is not one of full, small"),
        ("[model]\nimage_size = 32\n", "model.image_size: must be >= 80"),
        ("[data]\nmin_images = 2\nholdout_per_identity = 2\n", "must be < min_images"),
        ("[suite]\ntimeout_s = 0\n", "suite.timeout_s: must be > 0"),
        ("model = 3\n", "model: must be a table"),
    ],
)
def test_bad_suite_names_file_key_and_fix(text: str, expected: str) -> None:
    with pytest.raises(SuiteError) as err:
        parse(text, "suites/bad.toml")
    assert str(err.value).startswith("suites/bad.toml")
    assert expected in str(err.value)


def test_toml_syntax_error_names_file_and_line() -> None:
    with pytest.raises(SuiteError, match=r"bad\.toml: not valid TOML: .*line 3"):
        parse("[suite]\nname = \"x\"\ntimeout_s = ten\n", "bad.toml")


def test_override_filters_and_revalidates() -> None:
    base = parse("")
    s = suite_mod.override(base, backends=["tf-onednn"], scenarios=["inference"])
    assert s.backends == ("tf-onednn",) and s.scenarios == ("inference",)
    with pytest.raises(SuiteError, match="'nope' is not one of"):
        suite_mod.override(base, backends=["nope"])
    with_data = suite_mod.override(base, data="/some/lfw")
    assert with_data.data.source == "lfw" and with_data.data.path == "/some/lfw"


def test_cli_exits_2_on_a_broken_suite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("[suite]\nbackend = [\"tf-stock\"]\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert "broken.toml" in err and "did you mean 'backends'" in err
    assert not (tmp_path / "res").exists(), "nothing is written for a suite that cannot run"


def test_cli_exits_2_on_a_missing_suite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "no such suite file" in capsys.readouterr().err


def test_cli_exits_2_on_a_missing_lfw_directory(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    code = main(["run", str(REPO / "suites/quick.toml"), "--data", str(tmp_path / "lfw"),
                 "--out", str(tmp_path / "res")])
    assert code == 2
    assert str(tmp_path / "lfw") in capsys.readouterr().err


def test_workers_split_the_global_batch_and_keep_the_micro_batch() -> None:
    text = "[full_training]\nbatch_size = 1024\nmicro_batch = 16\nworkers = 2\n"
    spec = parse(text).section("full_training")
    assert (spec.worker_batch, spec.accumulation) == (512, 32)
    one = suite_mod.override(parse("[full_training]\n"), workers=4).section("full_training")
    assert (one.workers, one.worker_batch, one.accumulation) == (4, 256, 16)
