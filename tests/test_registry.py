"""One registry per kind of plug-in: the suite, the planner and the contract read what each
scenario and backend declares, and nothing keeps a second list of them."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json

from bench import backends, scenarios, suite
from bench.plan import plan
from bench.suite import parse


def test_every_scenario_is_a_package_with_its_declaration_and_its_run() -> None:
    for name in scenarios.names():
        declared = scenarios.get(name)
        assert declared.name == name
        run = importlib.import_module(f"bench.scenarios.{name}.run").run
        assert list(inspect.signature(run).parameters) == ["run", "backend", "progress"]
        spec = declared.spec()
        spec.check(name)  # its defaults are a valid section
        assert declared.headline(dataclasses.asdict(spec))


def test_the_suite_reads_its_sections_from_the_declarations() -> None:
    parsed = parse("[inference]\nbatch_size = 8\n[openvino]\nstreams = 2\n")
    assert set(parsed.sections) == {*scenarios.names(), "openvino", "torch_compile"}
    assert parsed.section("inference") == scenarios.get("inference").spec(batch_size=8)
    assert parsed.section("openvino") == backends.get("openvino").config(streams=2)
    stored = parsed.to_dict()
    assert stored["inference"]["batch_size"] == 8 and stored["openvino"]["streams"] == 2
    assert "sections" not in stored
    as_stored = json.loads(json.dumps(stored))  # as a result file holds it
    assert suite.from_dict(as_stored, "inline.toml") == parsed


def test_a_backend_with_settings_gets_them_in_its_runs_and_others_none() -> None:
    runs = plan(parse('[suite]\nbackends = ["tf-stock", "openvino"]\nscenarios = ["inference"]\n'
                      "[openvino]\nrequests = 3\n"))
    params = {r.backend: r.backend_params for r in runs}
    assert params["openvino"]["requests"] == 3 and params["tf-stock"] == {}
