from bench.plan import plan
from bench.suite import parse


def test_runs_are_grouped_by_scenario_with_backends_side_by_side() -> None:
    suite = parse('[suite]\nbackends = ["tf-stock", "tf-onednn"]\n'
                  'scenarios = ["inference", "transfer"]\n')
    ids = [r.run_id for r in plan(suite)]
    assert ids == ["inference/tf-stock", "inference/tf-onednn",
                   "transfer/tf-stock", "transfer/tf-onednn"]


def test_run_ids_are_stable_and_carry_the_scenario_parameters() -> None:
    text = '[suite]\nscenarios = ["inference"]\n[inference]\nbatch_size = 8\n'
    first, second = plan(parse(text)), plan(parse(text))
    assert [r.to_dict() for r in first] == [r.to_dict() for r in second]
    assert first[0].params["batch_size"] == 8
    assert first[0].model["variant"] == "full"
