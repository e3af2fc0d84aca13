"""PyTorch and JAX through Keras 3: the same model file and weights on each runtime, the same
training math, and what is recorded. Each runtime runs in its own interpreter
(tests/keras3_steps.py), KERAS_BACKEND set, as the harness's workers do; TensorFlow's trainer
in this process is the reference."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

from bench import backends, distributed
from bench.training import make_trainer
from tests.keras3_steps import BATCH, RUNS, TINY_LAYERS, tiny_model, train_tiny

REPO = Path(__file__).resolve().parent.parent
RUNTIMES = [pytest.param(name, marks=pytest.mark.skipif(
    importlib.util.find_spec(module) is None, reason=f"{module} not installed: "
    "pip install -e '.[keras3]'")) for name, module in (("torch", "torch"), ("jax", "jax"),
                                                         ("torch-compile", "torch"))]


def _given(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(3)
    model = tiny_model(keras, bn=True)
    given: dict = {f"tiny{name}_{i}": w for name in TINY_LAYERS
                   for i, w in enumerate(model.get_layer(name).get_weights())}
    given["x"] = rng.normal(size=(2 * BATCH, 6)).astype("float32")
    given["y"] = rng.integers(0, 3, size=2 * BATCH).astype("int32")
    path = tmp_path / "given.npz"
    np.savez(path, **given)
    return path, given


def _tensorflow_reference(given: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """TensorFlow's trainer on the same initial weights and data."""
    def trainer_of(model, spec):
        trainer = make_trainer(model, spec)
        return trainer._replace(micro_step=lambda x, y: trainer.micro_step(tf.constant(x),
                                                                           tf.constant(y)))

    return {run: train_tiny(keras, trainer_of, given, micro, bn)
            for run, (micro, bn) in RUNS.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNTIMES)
def test_a_keras3_runtime_trains_as_tensorflow_does_and_embeds_the_same(
        name: str, tmp_path: Path) -> None:
    """Micro-batches give the global batch's update, the update is TensorFlow's to float
    precision (same RMSProp, decay, BatchNorm), and the transfer head learns separable
    classes."""
    given_path, given = _given(tmp_path)
    env = {**os.environ, **backends.get(name).environment()}
    out = tmp_path / "out.npz"
    done = subprocess.run([sys.executable, str(REPO / "tests/keras3_steps.py"), name,
                           str(given_path), str(out)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(out)
    assert str(got["keras_backend"]) == backends.get(name).keras_backend
    # compiled, the steps are one graph each: a graph break falls back to eager, layer by layer
    assert int(got["graph_breaks"]) == 0
    reference = _tensorflow_reference(given)
    assert [len(reference[run]) for run in RUNS] == [4, 4, 8]  # dense (kernel, bias), BN's 4
    for run, weights in reference.items():
        for i, ref in enumerate(weights):
            np.testing.assert_allclose(got[f"{run}{i}"], ref, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{name} {run} weight {i} is not TensorFlow's")
    initial = [given[f"tiny{n}_{i}"] for n in ("hidden", "out") for i in range(2)]
    for i, start in enumerate(initial):
        np.testing.assert_allclose(got[f"split{i}"], got[f"whole{i}"], rtol=1e-4, atol=1e-6)
        assert not np.allclose(got[f"whole{i}"], start), "the update moved the weights"
    # with BatchNorm, its moving statistics (weights 4, 5) were updated in training mode
    assert not np.allclose(got["bn_split4"], given["tinybn_2"])
    assert float(got["head_softmax"]) == 1.0 and float(got["head_svm"]) == 1.0


def test_an_absent_runtime_is_skipped_with_its_install_command(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    for name in ("torch", "torch-compile", "jax", "jax-classic"):
        reason = backends.get(name).skip_reason("inference", {})
        assert "not installed" in reason and "pip install -e '.[keras3]'" in reason, reason


def test_each_keras3_backend_sets_its_keras_backend_and_only_jax_classic_its_xla_runtime(
        ) -> None:
    env = {name: backends.get(name).environment() for name in
           ("torch", "torch-compile", "torch-bf16", "jax", "jax-classic")}
    assert {name: e["KERAS_BACKEND"] for name, e in env.items()} == {
        "torch": "torch", "torch-compile": "torch", "torch-bf16": "torch", "jax": "jax",
        "jax-classic": "jax"}
    assert "--xla_cpu_use_thunk_runtime=false" in env["jax-classic"]["XLA_FLAGS"]
    assert "XLA_FLAGS" not in env["jax"]
    bf16 = backends.get("torch-bf16")
    assert bf16.precision == "bf16"
    assert "no native bf16" in bf16.skip_reason("inference", {"avx2": True, "avx512f": True})


@pytest.mark.parametrize("name", ["torch-compile", "jax-classic"])
def test_keras3_backends_without_an_engine_refuse_data_parallel_training_with_the_fix(
        monkeypatch, name: str) -> None:
    cluster = distributed.local_cluster(2)
    monkeypatch.setattr(os, "environ", {**os.environ,
                                        **backends.get(name).cluster_environment(cluster, 0)})
    with pytest.raises(ValueError, match=f"set workers = 1 for {name}"):
        backends.get(name).strategy()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "engine"), [("torch", "PyTorch DDP (Gloo)"),
                                              ("jax", "JAX multi-process (Gloo)")])
def test_two_data_parallel_workers_make_the_same_update_as_one_process_with_the_global_batch(
        tmp_path: Path, name: str, engine: str) -> None:
    """The runtime's trainer on its engine, each worker on its share of the micro-batches,
    worker 1 started from other weights: both end with the weights one process trains on the
    whole batch (task 0's weights broadcast, then the summed gradients averaged once an
    update)."""
    given_path, _ = _given(tmp_path)
    backend = backends.get(name)
    env = {**os.environ, **backend.environment()}
    done = subprocess.run([sys.executable, str(REPO / "tests/keras3_steps.py"), name,
                           str(given_path), str(tmp_path / "one.npz")], env=env,
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    cluster = distributed.local_cluster(2)
    procs = [subprocess.Popen([sys.executable, str(REPO / "tests/keras3_steps.py"), name,
                               str(given_path), str(tmp_path / f"w{i}.npz")],
                              env={**env, **backend.cluster_environment(cluster, i),
                                   distributed.JOIN_TIMEOUT_VAR: "60"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              cwd=REPO) for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    one, w0, w1 = (np.load(tmp_path / f"{n}.npz") for n in ("one", "w0", "w1"))
    assert str(w0["engine"]) == engine
    for i in range(4):  # hidden and out: kernel, bias
        np.testing.assert_array_equal(w0[f"split{i}"], w1[f"split{i}"])
        np.testing.assert_allclose(w0[f"split{i}"], one[f"split{i}"], rtol=1e-5, atol=1e-6)


COMPILE_ONCE = """
import json, os, sys
import keras
import numpy as np
from bench import backends
from tests.keras3_steps import tiny_model
backend = backends.get(sys.argv[1])
backend.start(threads=len(os.sched_getaffinity(0)))
keras.utils.set_random_seed(0)
predict = backend.predictor(tiny_model(keras, bn=True), 4)
predict(np.ones((4, 6), np.float32))
print(json.dumps(backend.compile_cache()))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=p.marks) for n, p in
                                  zip(("torch-compile", "jax"), RUNTIMES[:2], strict=True)])
def test_compiled_code_is_kept_in_the_tlbench_cache_and_the_second_process_says_cached(
        name: str, tmp_path: Path, monkeypatch) -> None:
    """The runtime's persistent cache lives in the tlbench cache folder (removing it makes the
    next run cold), and a worker records whether its compiled code came from there."""
    cache = tmp_path / "tlbench-cache"
    monkeypatch.setenv("TLBENCH_CACHE", str(cache))
    env = {**os.environ, **backends.get(name).environment(),
           # the tiny model compiles in well under JAX's 1 s floor for caching
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    states = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", COMPILE_ONCE, name], env=env,
                              capture_output=True, text=True, timeout=600, cwd=REPO)
        assert done.returncode == 0, done.stderr[-3000:]
        states.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert states[0]["state"] == "cold" and states[0]["misses"] >= 1, states
    assert states[1]["state"] == "cached" and states[1]["hits"] >= 1, states
    assert Path(states[0]["dir"]).is_relative_to(cache / "compile")
    assert any(Path(states[0]["dir"]).iterdir())


SERVED = """
import json, os, sys, threading
import keras
import numpy as np
from torch._dynamo.utils import counters
from bench import backends
from tests.keras3_steps import tiny_model
backend = backends.get("torch-compile")
backend.start(threads=len(os.sched_getaffinity(0)))
keras.utils.set_random_seed(0)
model = tiny_model(keras, bn=True)
server = backend.server(model, (1, 2))
x = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
outputs = []

def serve() -> None:
    for n in (1, 2, 1):
        server.submit(x[:n], outputs.append)

serve()
for _ in range(3):  # each LoadGen run dispatches from a thread of its own
    thread = threading.Thread(target=serve)
    thread.start()
    thread.join()
expected = keras.ops.convert_to_numpy(model(x, training=False))
print(json.dumps({"graphs": counters["stats"]["unique_graphs"], "calls": len(outputs),
                  "close": all(np.allclose(o, expected[:len(o)], atol=1e-5) for o in outputs)}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", [p for p in RUNTIMES if p.values[0] == "torch-compile"])
def test_a_compiled_forward_served_from_many_threads_compiles_once_a_shape(
        name: str, tmp_path: Path, monkeypatch) -> None:
    """LoadGen dispatches each run's queries from a new thread; Keras's thread-local name scopes
    are in Dynamo's guards, so a forward called there compiled again, thread after thread, until
    Dynamo's recompile limit left it uncompiled (3.6 s a query at 160 px)."""
    monkeypatch.setenv("TLBENCH_CACHE", str(tmp_path / "tlbench-cache"))
    env = {**os.environ, **backends.get(name).environment()}
    done = subprocess.run([sys.executable, "-c", SERVED], env=env, capture_output=True,
                          text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "graphs": 2, "calls": 12, "close": True}


MODE = """
import json, os, sys
import keras
import numpy as np
from bench import backends
from tests.keras3_steps import tiny_model
backend = backends.get("torch-compile")
backend.configure({"mode": sys.argv[1]})
facts = backend.start(threads=len(os.sched_getaffinity(0)))
keras.utils.set_random_seed(0)
model = tiny_model(keras, bn=True)
x = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
got = backend.predictor(model, 2)(x)
expected = keras.ops.convert_to_numpy(model(x, training=False))
print(json.dumps({"mode": facts["torch_compile_mode"], "options": facts["inductor_options"],
                  "close": bool(np.allclose(got, expected, atol=1e-5))}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", [p for p in RUNTIMES if p.values[0] == "torch-compile"])
def test_torch_compile_s_mode_from_the_suite_compiles_and_is_recorded(
        name: str, tmp_path: Path, monkeypatch) -> None:
    """`[torch_compile] mode` (a knob of tune) reaches torch.compile; the run records it and the
    Inductor options it sets, and the forward compiled so computes what Keras does."""
    monkeypatch.setenv("TLBENCH_CACHE", str(tmp_path / "tlbench-cache"))
    env = {**os.environ, **backends.get(name).environment()}
    done = subprocess.run([sys.executable, "-c", MODE, "max-autotune-no-cudagraphs"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "mode": "max-autotune-no-cudagraphs", "close": True,
        "options": {"max_autotune": True, "coordinate_descent_tuning": True}}
