"""`tlbench run --tuned`: every stack of a tune at the configuration it chose, side by side in
one run of real workers of the small model (each run its own batch, placement and variables),
the result and its views saying so; bad tune documents refused before any run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import cli, compare, tune
from bench import suite as suite_mod
from bench.data.lfw import DataError
from bench.pinning import read_topology

from .conftest import only_result, write_suite

# torch's tune proved a configuration; tf-onednn's found one the proof did not confirm
CHOICES = {"torch": ({"inference.batch_size": 2, "placement": "cores:0",
                      "omp_wait_policy": "active"}, compare.IMPROVED),
           "tf-onednn": ({"inference.batch_size": 8}, compare.SAME)}


def _said(capsys) -> str:
    captured = capsys.readouterr()
    return " ".join((captured.out + captured.err).split())


def _tune_doc(folder: Path) -> Path:
    """A tune document as `tlbench tune` leaves it: a target per backend with its tuned suite,
    and one an interrupted tune left without one."""
    suite = suite_mod.load(write_suite(folder, backends=tuple(CHOICES), scenarios=("inference",)))
    targets = []
    for backend, (config, status) in CHOICES.items():
        found = tune.knobs_for(suite, backend, "inference", read_topology())
        default = tune.default(found)
        entry = {"backend": backend, "scenario": "inference", "default": default,
                 "best": {"config": {**default, **config}}, "verdict": {"status": status},
                 "conclusion": f"{status} in its proof"}
        path = folder / f"tuned-{backend}-inference.toml"
        path.write_text(suite_mod.to_toml(tune.configure(
            suite, backend, "inference", found, tune.chosen(entry)), {}, header="a tune"))
        targets.append({**entry, "tuned_suite": str(path)})
    targets.append({"backend": "tf-stock", "scenario": "inference", "trials": []})
    doc = folder / "20261207T000000Z_tune.json"
    doc.write_text(json.dumps({"objective": "throughput", "suite": suite.to_dict(),
                               "targets": targets}))
    return doc


def test_a_tune_s_targets_are_configured_as_it_chose_the_unfinished_left_out(tmp_path) -> None:
    path = _tune_doc(tmp_path)
    found = tune.configured(tune.read(str(path), "--tuned"), str(path))
    assert set(found) == {"inference/torch", "inference/tf-onednn"}  # tf-stock: no tuned suite
    torch, tf = found["inference/torch"], found["inference/tf-onednn"]
    assert torch.about["configuration"] == (
        "placement=cores:0, inference.batch_size=2, omp_wait_policy=active")
    assert torch.suite.section("inference").batch_size == 2
    assert torch.suite.placement == "cores:0"
    assert torch.suite.env == {"OMP_WAIT_POLICY": "ACTIVE"}
    # not proven: the default stands, whatever the search's best
    assert tf.about["configuration"] == "the default"
    assert tf.suite.section("inference").batch_size == 4
    broken = json.loads(path.read_text())
    Path(broken["targets"][0]["tuned_suite"]).write_text("[inference]\nbatch = 2\n")
    path.write_text(json.dumps(broken))
    with pytest.raises(DataError, match=r"the tuned suite of torch inference: .*batch"):
        tune.configured(broken, str(path))


@pytest.mark.slow
def test_a_tuned_run_measures_each_stack_at_its_configuration_side_by_side(tmp_path,
                                                                           capsys) -> None:
    out = tmp_path / "results"
    assert cli.main(["run", "--tuned", str(_tune_doc(tmp_path)), "--out", str(out)]) == 0
    said = _said(capsys)
    doc = only_result(out)
    assert doc["suite"]["name"] == "e2e-tuned"
    runs = {r["run_id"]: r for r in doc["runs"]}
    assert set(runs) == {"inference/torch", "inference/tf-onednn"}
    assert all(r["status"] == "ok" for r in runs.values()), [r.get("error") for r in runs.values()]
    torch, tf = runs["inference/torch"], runs["inference/tf-onednn"]
    assert torch["params"]["batch_size"] == 2 and "throughput_bs2" in torch["series"]
    assert torch["placement_obtained"]["cpus"] == [0]
    assert torch["placement_obtained"]["env"]["OMP_WAIT_POLICY"] == "ACTIVE"
    assert tf["params"]["batch_size"] == 4 and len(tf["placement_obtained"]["cpus"]) == len(
        read_topology().physical())
    # torch's tuned variable is its run's alone (the harness's own setting here)
    assert tf["placement_obtained"]["env"].get("OMP_WAIT_POLICY") != "ACTIVE"
    assert doc["configured"]["inference/torch"]["suite"]["placement"] == "cores:0"
    line = "inference/torch: placement=cores:0, inference.batch_size=2, omp_wait_policy=active"
    assert "Tuned: each stack at the configuration its tune chose" in said and line in said
    (path,) = out.glob("*/*.json")
    page = (tmp_path / "reports" / path.with_suffix(".html").name).read_text()
    assert 'id="configured"' in page and line in page


def test_a_tuned_run_refuses_a_suite_beside_it_and_what_is_not_a_tune(tmp_path, capsys) -> None:
    out = tmp_path / "results"
    doc = _tune_doc(tmp_path)
    assert cli.main(["run", "suites/quick.toml", "--tuned", str(doc), "--out", str(out)]) == 2
    assert "--tuned runs the tune's own suite" in _said(capsys)
    result = tmp_path / "a_result.json"
    result.write_text(json.dumps({"runs": []}))
    assert cli.main(["run", "--tuned", str(result), "--out", str(out)]) == 2
    assert "not a tune document" in _said(capsys)
    empty = tmp_path / "check_tune.json"
    empty.write_text(json.dumps({"objective": "throughput", "suite": {}, "targets": []}))
    assert cli.main(["run", "--tuned", str(empty), "--out", str(out)]) == 2
    assert "no finished target" in _said(capsys)
    assert not out.exists()
