"""Data-parallel training on MultiWorkerMirroredStrategy: the update's math, the cluster, the
scaling figures, and real 2-worker runs of the small model (on one host and as two "hosts")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import distributed
from bench.backends.itex import itex_python
from bench.cli import main
from bench.launcher import Launcher, Limits
from bench.pinning import read_topology, resolve
from bench.plan import plan
from bench.report import html
from bench.suite import parse

from .conftest import REPO, only_result

TWO_CORES = pytest.mark.skipif(len(read_topology().physical()) < 2,
                               reason="needs two physical cores: one per worker")


def _interpreters() -> list:
    itex = itex_python()
    return [pytest.param(sys.executable, id="keras3"),
            pytest.param(str(itex), id="itex-keras2", marks=pytest.mark.skipif(
                not itex.exists(), reason=f"no ITEX environment at {itex} (make itex)"))]


def _update(python: str, out: Path, tf_config: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if tf_config:
        env["TF_CONFIG"] = tf_config
    return subprocess.Popen([python, str(REPO / "tests/mwms_update.py"), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("python", _interpreters())
def test_two_workers_make_the_same_update_as_one_process_with_the_global_batch(
        python: str, tmp_path: Path) -> None:
    """The optimizer all-reduces by summation in Keras 3 and Keras 2.15 alike; the trainer's
    scaling must turn that into the global batch's mean (a missing 1/N is a 2x larger step)."""
    _finish(_update(python, tmp_path / "one.npz"))
    cluster = distributed.local_cluster(2)
    procs = [_update(python, tmp_path / f"w{i}.npz", cluster.tf_config(i)) for i in range(2)]
    for proc in procs:
        _finish(proc)
    one, w0, w1 = (np.load(tmp_path / f"{n}.npz") for n in ("one", "w0", "w1"))
    trained = [k for k in one.files if k.startswith("trained")]
    assert len(trained) == 6  # hidden, bn (gamma, beta), out: kernels and biases
    for key in trained:
        np.testing.assert_array_equal(w0[key], w1[key])  # mirrored: one set of weights
        np.testing.assert_allclose(w0[key], one[key], rtol=1e-5, atol=1e-6)
    moved = [not np.allclose(one[k], one[k.replace("trained", "initial")]) for k in trained]
    assert all(moved), "two updates changed every weight"


def test_a_cluster_gives_each_worker_its_tf_config() -> None:
    cluster = distributed.local_cluster(3)
    assert len(set(cluster.workers)) == 3
    assert all(w.startswith("localhost:") for w in cluster.workers)
    config = json.loads(cluster.tf_config(2))
    assert config == {"cluster": {"worker": list(cluster.workers)},
                      "task": {"type": "worker", "index": 2}}


def test_a_cluster_file_is_read_with_this_hosts_index(tmp_path: Path) -> None:
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"worker": ["xeon-a:12345", "xeon-b:12345"]}))
    cluster = distributed.load_cluster(path, 1)
    assert cluster.workers == ("xeon-a:12345", "xeon-b:12345") and cluster.task_index == 1


@pytest.mark.parametrize(("content", "index", "message"), [
    (None, 0, "no such cluster file"),
    ("{not json", 0, "not a readable JSON cluster file"),
    ('{"worker": ["a:1"]}', 0, "at least two host:port"),
    ('{"worker": ["a:1", "b"]}', 0, "at least two host:port"),
    ('{"worker": ["a:1", "b:99999"]}', 0, "at least two host:port"),
    ('["a:1", "b:1"]', 0, "at least two host:port"),
    ('{"worker": ["a:1", "a:1"]}', 0, "listed twice"),
    ('{"worker": ["a:1", "b:1"], "chief": ["c:1"]}', 0, "unknown key(s) ['chief']"),
    ('{"worker": ["a:1", "b:1"]}', 2, "--task-index 2: "),
])
def test_a_bad_cluster_file_names_the_problem_and_the_fix(tmp_path: Path, content: str | None,
                                                          index: int, message: str) -> None:
    path = tmp_path / "cluster.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(distributed.ClusterError) as err:
        distributed.load_cluster(path, index)
    assert message in str(err.value) and str(path) in str(err.value)


def test_the_command_line_refuses_what_cannot_run_before_any_worker(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nbackends = ["tf-onednn"]\nscenarios = ["full_training"]\n'
                     '[full_training]\nbatch_size = 64\nmicro_batch = 8\n')
    out = ["--out", str(tmp_path / "r")]
    assert main(["run", str(suite), "--placement", "cores:0", "--workers", "2", *out]) == 2
    assert "1 physical cores cannot be split into 2 equal groups" in capsys.readouterr().err
    assert main(["run", str(suite), "--workers", "3", *out]) == 2
    assert "micro_batch x workers (8 x 3) must divide batch_size (64)" in capsys.readouterr().err
    assert main(["run", str(suite), "--task-index", "1", *out]) == 2
    assert "--task-index needs --cluster" in capsys.readouterr().err
    assert main(["run", str(suite), "--cluster", str(tmp_path / "none.json"), *out]) == 2
    assert "no such cluster file" in capsys.readouterr().err
    assert not (tmp_path / "r").exists(), "nothing ran, nothing was written"


def _ok(batch: int, step_s: float, cores: int, task: int = 0) -> dict:
    return {"status": "ok", "derived": {"step_s": step_s, "step_images_per_s": batch / step_s},
            "placement": {"cpus": list(range(cores))}, "log": "x.log",
            "distributed": {"worker_batch": 16, "micro_batch": 8, "accumulation": 2,
                            "task_index": task}}


def test_scaling_efficiency_is_n_workers_at_the_slowest_pace_over_n_times_one_alone() -> None:
    fast, slow = _ok(32, 1.0, 1, task=0), _ok(32, 1.6, 1, task=1)
    out = distributed.scaling([fast, slow], _ok(16, 0.8, 1), _ok(32, 1.28, 2), 2)
    assert out["images_per_s"] == pytest.approx(32 / 1.6)  # synchronous: worker 1 sets the pace
    assert out["pace_worker"] == 1 and out["worker_step_s"] == {"0": 1.0, "1": 1.6}
    assert out["efficiency"] == pytest.approx((32 / 1.6) / (2 * 16 / 0.8))
    assert out["vs_one_worker"] == pytest.approx((32 / 1.6) / (32 / 1.28))
    assert out["alone"]["cores"] == 1 and out["one_worker_all_cores"]["cores"] == 2
    failed = distributed.scaling([fast], {"status": "failed", "error": "boom"}, None, 2)
    assert failed["alone"] == {"status": "failed", "error": "boom"}
    assert "efficiency" not in failed and "one_worker_all_cores" not in failed


SUITE = """
[suite]
name = "dist"
backends = ["{backend}"]
scenarios = ["full_training"]
timeout_s = 300

[model]
variant = "small"
image_size = 80
embedding_size = 32

[data]
identities = 4
min_images = 5
max_images = 6

[full_training]
measure = "full"
epochs = 2
steps_per_epoch = 2
batch_size = 8
micro_batch = 2
warmup_steps = 1
window_steps = 3
workers = 2
target_accuracy = 0.01
center_loss_factor = 0.01
"""


@pytest.mark.slow
@TWO_CORES
def test_two_workers_train_side_by_side_each_pinned_to_its_own_core(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "dist.toml"
    suite.write_text(SUITE.format(backend="tf-onednn"))
    assert main(["run", str(suite), "--out", str(tmp_path / "r")]) == 0
    doc = only_result(tmp_path / "r")
    run = doc["runs"][0]
    assert run["status"] == "ok", run.get("error")
    workers = run["workers"]
    assert [w["status"] for w in workers] == ["ok", "ok"]
    cpus = [w["placement_obtained"]["cpus"] for w in workers]
    assert len(cpus[0]) == len(cpus[1]) and not set(cpus[0]) & set(cpus[1])
    pace = run["scaling"]["pace_worker"]  # the record is the slowest worker's
    assert run["distributed"] == {
        "strategy": "MultiWorkerMirroredStrategy", "workers": 2, "task_index": pace,
        "worker_batch": 4, "micro_batch": 2, "accumulation": 2,
        "shard_images": run["distributed"]["shard_images"]}
    train_images = run["data"]["train_images"]
    assert train_images - 1 <= 2 * run["distributed"]["shard_images"] <= train_images + 1
    assert json.loads(run["env"]["TF_CONFIG"])["task"]["index"] == pace
    assert run["total"]["kind"] == "measured" and run["total"]["steps"] == 4
    assert run["time_to_accuracy"]["reached"] in (True, False)
    assert 0.0 <= run["accuracy"] <= 1.0
    scaling = run["scaling"]
    assert scaling["workers"] == 2 and scaling["cores_per_worker"] == len(cpus[0])
    assert scaling["alone"]["cores"] == len(cpus[0])
    assert scaling["one_worker_all_cores"]["cores"] == len(run["placement"]["cpus"])
    assert scaling["efficiency"] == pytest.approx(
        scaling["images_per_s"] / (2 * scaling["alone"]["images_per_s"]))
    slowest = max(workers, key=lambda w: w["derived"]["step_s"])
    assert scaling["images_per_s"] == slowest["derived"]["step_images_per_s"]
    assert run["derived"]["images_per_s"] == pytest.approx(2 * slowest["derived"]["images_per_s"])
    assert run["peak_rss_mb"] == pytest.approx(sum(w["peak_rss_mb"] for w in workers))
    efficiency = f"{scaling['efficiency']:.0%}"
    assert "Data-parallel training" in capsys.readouterr().out.replace("\n", " ")
    page = html.render(doc, "dist.json")
    assert "Data-parallel training (MultiWorkerMirroredStrategy)" in page
    assert f"<td class=\"n\">{efficiency}</td>" in page
    assert f"<strong>{slowest['derived']['step_s']:.1f}</strong>" in page  # the pace, in bold


@pytest.mark.slow
@TWO_CORES
def test_a_cluster_file_runs_one_worker_per_host(tmp_path: Path) -> None:
    """Two "hosts" on localhost, each `tlbench run --cluster --task-index`, as on a fleet."""
    suite = tmp_path / "dist.toml"
    suite.write_text(SUITE.format(backend="tf-onednn").replace('measure = "full"',
                     'measure = "projected"').replace("target_accuracy = 0.01", ""))
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"worker": list(distributed.local_cluster(2).workers)}))
    hosts = [subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(suite), "--cluster", str(cluster),
         "--task-index", str(i), "--placement", f"cores:{i}", "--out", str(tmp_path / f"h{i}")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
    for host in hosts:
        out, _ = host.communicate(timeout=600)
        assert host.returncode == 0, out[-3000:]
    for i in (0, 1):
        doc = only_result(tmp_path / f"h{i}")
        run = doc["runs"][0]
        assert doc["cluster"]["task_index"] == i
        assert run["status"] == "ok" and run["distributed"]["task_index"] == i
        assert run["cluster"] == {"workers": json.loads(cluster.read_text())["worker"],
                                  "this_host": [i]}
        assert run["placement_obtained"]["cpus"] == [i]
        assert "one_worker_all_cores" not in run["scaling"]  # one host: alone is the reference
        assert run["scaling"]["alone"]["cores"] == 1


@pytest.mark.slow
@TWO_CORES
def test_when_one_worker_dies_the_other_is_stopped_and_the_run_fails(tmp_path: Path) -> None:
    dies = tmp_path / "python"  # worker 1 is killed at start; worker 0 would wait for it
    dies.write_text('#!/bin/sh\ncase "$TF_CONFIG" in *\'"index": 1\'*) kill -KILL $$;; esac\n'
                    f'exec {sys.executable} "$@"\n')
    dies.chmod(0o755)
    suite = parse(SUITE.format(backend="tf-onednn").replace("timeout_s = 300", "timeout_s = 200"))
    topology = read_topology()
    launcher = Launcher(topology, tmp_path / "logs", isa={}, python=str(dies))
    record = launcher.run(plan(suite)[0], resolve("all", topology), Limits(timeout_s=200))
    assert record["status"] == "failed"
    assert record["error"] == ("worker 1: worker killed by signal SIGKILL; "
                               "worker 0: stopped: another worker of this run failed")
    assert [w["status"] for w in record["workers"]] == ["failed", "failed"]
    assert "scaling" not in record
