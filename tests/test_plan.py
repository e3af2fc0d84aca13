from pathlib import Path

import pytest

from bench.pinning import read_topology, resolve
from bench.plan import expand, interleaved, plan
from bench.suite import SuiteError, parse

from .conftest import fake_sysfs


def test_runs_are_grouped_by_scenario_with_backends_side_by_side() -> None:
    suite = parse('[suite]\nbackends = ["tf-stock", "tf-onednn"]\n'
                  'scenarios = ["inference", "transfer"]\n')
    ids = [r.run_id for r in plan(suite)]
    assert ids == ["inference/tf-stock", "inference/tf-onednn",
                   "transfer/tf-stock", "transfer/tf-onednn"]


def test_the_papers_stacks_run_first_every_scenario_of_theirs_then_the_others() -> None:
    suite = parse('[suite]\nbackends = ["torch", "tf-stock", "jax", "openvino"]\n'
                  'scenarios = ["full_training", "transfer"]\n')
    assert [r.run_id for r in plan(suite)] == [
        "full_training/tf-stock", "full_training/openvino", "transfer/tf-stock",
        "transfer/openvino", "full_training/torch", "full_training/jax", "transfer/torch",
        "transfer/jax"]


def test_run_ids_are_stable_and_carry_the_scenario_parameters() -> None:
    text = '[suite]\nscenarios = ["inference"]\n[inference]\nbatch_size = 8\n'
    first, second = plan(parse(text)), plan(parse(text))
    assert [r.to_dict() for r in first] == [r.to_dict() for r in second]
    assert first[0].params["batch_size"] == 8
    assert first[0].model["variant"] == "full"


def _two_socket(tmp_path: Path):
    return read_topology(fake_sysfs(tmp_path), allowed=set(range(8)))


def test_instances_are_planned_as_processes_with_stable_ids_one_per_core_group(
        tmp_path: Path) -> None:
    topology = _two_socket(tmp_path)
    [infer, train] = plan(parse('[suite]\nbackends = ["tf-onednn"]\n'
                                'scenarios = ["inference", "transfer"]\n'))
    placement = resolve("instances:2", topology)
    planned = expand(infer, placement, topology)
    assert planned.kind == "instances" and planned.references == ()
    assert [(p.process_id, p.role, p.placement.cpus) for p in planned.group] == [
        ("inference/tf-onednn#0", "instance", (0, 1)),
        ("inference/tf-onednn#1", "instance", (2, 3))]
    single = expand(train, placement, topology)
    assert single.kind == "single" and single.group[0].placement.cpus == (0, 1, 2, 3)
    assert "instances apply to inference" in single.note


def test_data_parallel_workers_and_their_references_are_planned(tmp_path: Path) -> None:
    topology = _two_socket(tmp_path)
    [run] = plan(parse('[suite]\nbackends = ["tf-onednn"]\nscenarios = ["full_training"]\n'
                       '[full_training]\nbatch_size = 64\nmicro_batch = 8\nworkers = 2\n'
                       'measure = "full"\ntarget_accuracy = 0.5\n'))
    planned = expand(run, resolve("all", topology), topology)
    assert planned.kind == "workers" and planned.workers == 2 and planned.cluster is None
    assert [(p.process_id, p.task_index, p.placement.cpus) for p in planned.group] == [
        ("full_training/tf-onednn#0", 0, (0, 1)), ("full_training/tf-onednn#1", 1, (2, 3))]
    alone, whole = planned.references
    assert (alone.process_id, alone.role, alone.placement.cpus) == (
        "full_training/tf-onednn@alone", "alone", (0, 1))
    assert alone.params["batch_size"] == 32 and alone.params["workers"] == 1
    assert alone.params["measure"] == "projected" and alone.params["target_accuracy"] == 0.0
    assert (whole.role, whole.params["batch_size"], whole.placement.cpus) == (
        "one_worker_all_cores", 64, (0, 1, 2, 3))
    fleet = expand(run, resolve("socket:1", topology), topology,
                   cluster=("a:1", "b:1"), task_index=1)
    assert [(p.process_id, p.task_index) for p in fleet.group] == [
        ("full_training/tf-onednn#1", 1)]
    assert [p.role for p in fleet.references] == ["alone"]


def test_a_skipped_run_starts_no_process() -> None:
    [run] = plan(parse('[suite]\nbackends = ["openvino"]\nscenarios = ["full_training"]\n'))
    planned = expand(run, None, None, skip_reason="does not train")
    assert planned.skip_reason == "does not train" and planned.group == ()


def test_repeats_are_interleaved_round_by_round_never_in_a_row() -> None:
    runs = plan(parse('[suite]\nbackends = ["tf-stock", "tf-onednn"]\nscenarios = ["inference"]\n'
                      'repeats = 3\n'))
    order = [(k, r.run_id) for k, r, _ in interleaved(runs, 3)]
    assert order == [(1, "inference/tf-stock"), (1, "inference/tf-onednn"),
                     (2, "inference/tf-stock"), (2, "inference/tf-onednn"),
                     (3, "inference/tf-stock"), (3, "inference/tf-onednn")]


def test_an_a_b_job_measures_each_round_s_pair_back_to_back_alternating_who_goes_first() -> None:
    runs = plan(parse('[suite]\nbackends = ["tf-stock", "tf-onednn"]\nscenarios = ["inference"]\n'))
    order = [(k, r.backend, side) for k, r, side in interleaved(runs, 3, ("A", "B"))]
    assert order == [(1, "tf-stock", "A"), (1, "tf-stock", "B"),
                     (1, "tf-onednn", "A"), (1, "tf-onednn", "B"),
                     (2, "tf-stock", "B"), (2, "tf-stock", "A"),
                     (2, "tf-onednn", "B"), (2, "tf-onednn", "A"),
                     (3, "tf-stock", "A"), (3, "tf-stock", "B"),
                     (3, "tf-onednn", "A"), (3, "tf-onednn", "B")]


def test_openvino_runs_carry_the_openvino_section_and_others_do_not() -> None:
    runs = plan(parse('[suite]\nbackends = ["tf-onednn", "openvino", "openvino-int8"]\n'
                      'scenarios = ["inference"]\n[openvino]\ncalibration_images = 64\n'
                      'preset = "mixed"\nstreams = 2\npin = "no"\n'))
    params = {r.backend: r.backend_params for r in runs}
    assert params["tf-onednn"] == {}
    assert params["openvino-int8"] == params["openvino"] == {
        "calibration_images": 64, "preset": "mixed", "fast_bias_correction": True,
        "hint": "throughput", "streams": 2, "threads": 0, "requests": 0, "pin": "no"}


def test_a_bad_openvino_setting_is_an_error_naming_the_key() -> None:
    with pytest.raises(SuiteError, match=r"openvino.preset: 'mix' is not one of .*did you mean"):
        parse('[openvino]\npreset = "mix"\n', "s.toml")
    with pytest.raises(SuiteError, match=r"openvino.calibration_images: must be >= 1"):
        parse('[openvino]\ncalibration_images = 0\n', "s.toml")
    with pytest.raises(SuiteError, match=r"openvino.hint: 'thruput' is not one of"):
        parse('[openvino]\nhint = "thruput"\n', "s.toml")
    with pytest.raises(SuiteError, match=r"openvino.requests: must be >= 0"):
        parse('[openvino]\nrequests = -1\n', "s.toml")
