"""PyTorch and JAX through Keras 3: the very same `facenet.py` and `.npz` weights on other runtimes.

Keras 3 picks its backend once, when it is imported, from KERAS_BACKEND, which the parent sets
for these backends' workers. TensorFlow is still imported in those workers for the input
pipeline (tf.data decodes the images, as for every backend), never for the model.

- `torch`: eager PyTorch; its CPU convolutions are oneDNN's (mkldnn).
- `torch-compile`: the forward pass and the training step's forward + loss through
  `torch.compile` (Inductor, C++ on CPU); a shape's first call compiles, and is its series' first
  call, apart from the steady samples, as TensorFlow's tracing is. Served, every batch runs on
  one thread (`_serving_thread`).
- `torch-bf16`: Keras's `mixed_bfloat16` policy on the torch backend (needs native bf16).
- `jax` / `jax-classic`: `jax.jit` of Keras's `stateless_call` (XLA:CPU). XLA:CPU's default is
  its thunk runtime; `jax-classic` asks for the classic one (`--xla_cpu_use_thunk_runtime=false`),
  which ran oneDNN convolutions — where the installed XLA no longer has that flag, it is skipped.

Training — full training, fine-tuning and the transfer head — is the TensorFlow recipe's math
written once in `keras.ops` (the losses below); only the gradient and the update are each
runtime's own: PyTorch's autograd (`backward` adds into each weight's `.grad`, micro-step after
micro-step) and `jax.value_and_grad` of the stateless call, the sums carried as arrays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import sys
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bench import knobs, loadgen
from bench.backends import support
from bench.backends.base import (
    Backend,
    cache_facts,
    compile_cache_dir,
    importable,
    policy_problem,
)
from bench.backends.support import EMULATED, Support
from bench.pinning import Topology
from bench.spec import one_of
from bench.training import Trainer, decayed, rmsprop

INSTALL = "pip install -e '.[keras3]'"  # what `make install` runs: PyTorch (CPU) and JAX
CLASSIC_FLAG = "--xla_cpu_use_thunk_runtime=false"


# ---- the training math, one definition in keras.ops for every runtime ----------------------

def softmax_loss(spec, kernels: list[int]):
    """facenet's softmax cross-entropy plus L2 weight decay (tf.nn.l2_loss: sum(w²)/2) on the
    kernels; returns (what is differentiated, the cross-entropy alone)."""
    import keras

    ops = keras.ops
    if spec.center_loss_factor:
        raise ValueError("the center loss is implemented on the TensorFlow backends only; set "
                         "[full_training] center_loss_factor = 0 for torch and jax")

    def loss(logits, labels, values):
        ce = ops.mean(ops.sparse_categorical_crossentropy(
            labels, ops.cast(logits, "float32"), from_logits=True))
        decay = sum(ops.sum(ops.square(values[i])) for i in kernels) / 2
        return ce + spec.weight_decay * decay, ce

    return loss


def head_loss(kind: str, classes: int, kernel: int):
    """The transfer head's loss: softmax cross-entropy, or a linear SVM's multi-class hinge
    (Crammer–Singer) with its margin regulariser 1e-4·|W|², as `heads._head_loss`."""
    import keras

    ops = keras.ops

    def loss(scores, labels, values):
        if kind == "softmax":
            data = ops.mean(ops.sparse_categorical_crossentropy(labels, scores, from_logits=True))
            return data, data
        true = ops.take_along_axis(scores, ops.expand_dims(labels, 1), axis=1)[:, 0]
        others = scores - ops.one_hot(labels, classes) * 1e9
        data = ops.mean(ops.relu(1.0 + ops.max(others, axis=1) - true))
        total = data + 1e-4 * ops.sum(ops.square(values[kernel]))
        return total, total

    return loss


class Keras3Backend(Backend):
    keras_backend: str  # "torch" or "jax"

    def environment(self) -> dict[str, str]:
        # oneDNN inside PyTorch (and XLA's classic runtime) print what they create: the ISA.
        return {"KERAS_BACKEND": self.keras_backend, "ONEDNN_VERBOSE": "profile_create"}

    def skip_reason(self, scenario: str, isa: dict[str, bool],
                    emulated: bool = False) -> str | None:
        if not importable(self.python, self.keras_backend):
            return (f"{self.keras_backend} is not installed in {sys.executable}: install it "
                    f"with `{INSTALL}` (`make install` does)")
        return super().skip_reason(scenario, isa, emulated)

    def obtained_problem(self, doc: dict[str, Any]) -> str | None:
        return policy_problem(doc) if self.precision == "bf16" else None

    def _keras(self) -> dict[str, Any]:
        import keras

        if keras.backend.backend() != self.keras_backend:
            raise RuntimeError(f"{self.name} needs Keras on its {self.keras_backend} backend, "
                               f"but Keras {keras.__version__} runs on "
                               f"{keras.backend.backend()}: was KERAS_BACKEND overridden?")
        if self.precision == "bf16":
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
        return {"keras": keras.__version__, "keras_backend": keras.backend.backend(),
                "precision_policy": keras.mixed_precision.global_policy().name}

    def strategy(self) -> tuple[Any, int, int]:
        if os.environ.get("TF_CONFIG"):  # the cluster as the base hands it to tf.distribute
            raise ValueError(f"data-parallel training (workers > 1) is not offered on "
                             f"{self.name}: it runs on the TensorFlow backends (tf.distribute), "
                             f"torch and torch-bf16 (DDP) and jax; set workers = 1 for "
                             f"{self.name}")
        return None, 0, 1

    def trainer(self, model, spec, strategy=None) -> Trainer:
        loss = softmax_loss(spec, decayed(model.trainable_variables))
        return self._steps(model, loss, rmsprop(spec), 1.0 / spec.accumulation, compiled=True,
                           parallel=spec.accumulation if strategy is not None else 0)

    def train_head(self, train_x: np.ndarray, train_y: np.ndarray, classes: int, spec,
                   evaluate=None) -> dict[str, Any]:
        import keras

        from bench.heads import fit_head

        head = keras.layers.Dense(classes, name="head", dtype="float32")
        head.build((None, train_x.shape[1]))
        optimizer = keras.optimizers.Adam(learning_rate=spec.head_learning_rate)
        loss = head_loss(spec.head, classes, decayed(head.trainable_variables)[0])
        steps = self._steps(head, loss, optimizer, 1.0, compiled=False)
        x, y = train_x.astype(np.float32), train_y.astype(np.int32)

        def fit(n: int) -> float:
            loss = float("nan")
            for _ in range(n):
                loss = steps.micro_step(x, y)
                steps.update()
            return loss

        return fit_head(fit, steps.logits, lambda: steps.prepare(x, y), spec, evaluate)

    @abstractmethod
    def _steps(self, model, loss, optimizer, scale: float, compiled: bool,
               parallel: int = 0) -> Trainer:
        """Micro-step (forward, backward, accumulate), update (apply `scale` x the sums) and
        inference logits of `model` under `loss`; `compiled`: the runtime may compile them;
        `parallel` > 0: data-parallel (the engine `strategy()` joined), gradients averaged
        over the workers once every `parallel` micro-steps."""


def _torch_inference(forward) -> Callable[[np.ndarray], np.ndarray]:
    """`forward` (a tensor → tensor function of the model in inference mode) on numpy, without
    autograd, returning float32 numpy."""
    import torch

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return forward(torch.from_numpy(np.asarray(batch))).float().numpy()

    return run


# torch.ops.mkldnn._is_mkldnn_bf16_supported() is False below AVX-512: ATen's own bf16 kernels
# run instead, converting to fp32 (they compute the right embeddings, slowly).
TORCH_BF16 = support.bf16(
    "oneDNN's avx512_core bf16 kernels: bf16 data, fp32 arithmetic",
    Support(EMULATED, "AVX2", "ATen's bf16 kernels, converting to fp32 (no oneDNN bf16 below "
                              "AVX-512)"))


# torch.compile's modes; "reduce-overhead" and "max-autotune" add CUDA graphs to "default" and
# "max-autotune-no-cudagraphs", and CUDA graphs do nothing on a CPU: tune tries only the two
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_MODES_ON_CPU = ("default", "max-autotune-no-cudagraphs")


@dataclasses.dataclass(frozen=True)
class CompileSpec:
    """torch-compile's settings, the suite's [torch_compile]: torch.compile's `mode`
    ("max-autotune-no-cudagraphs": Inductor benchmarks its kernel choices, e.g. its C++ GEMM
    templates against oneDNN's, while compiling; longer compiles), recorded with the Inductor
    options it set."""

    mode: str = "default"

    def check(self, where: str) -> None:
        one_of(f"{where}.mode", self.mode, COMPILE_MODES)


class TorchBackend(Keras3Backend):
    bf16_support = TORCH_BF16
    keras_backend = "torch"

    def __init__(self, name: str, compiled: bool = False, precision: str = "fp32"):
        self.name = name
        self.compiled = compiled
        self.precision = precision
        self.spec = CompileSpec()
        if compiled:
            self.settings, self.config = "torch_compile", CompileSpec

    def configure(self, params: dict[str, Any]) -> None:
        if self.compiled:
            self.spec = CompileSpec(**params)

    def knobs(self, scenario: str, params: dict[str, Any], settings: dict[str, Any],
              placement: str, topology: Topology) -> tuple[knobs.Knob, ...]:
        """PyTorch's CPU kernels run on GNU OpenMP: its threads spin (ACTIVE) or sleep
        (PASSIVE) between parallel regions ("default": the variable unset). torch-compile adds
        torch.compile's mode."""
        found = (*super().knobs(scenario, params, settings, placement, topology),
                 knobs.variable("omp_wait_policy", "OMP_WAIT_POLICY", ("passive", "active")))
        if not self.compiled:
            return found
        modes = tuple(dict.fromkeys((CompileSpec(**settings).mode, *COMPILE_MODES_ON_CPU)))
        return (*found, knobs.Knob("torch_compile.mode", modes, knobs.SECTION,
                                   "torch_compile.mode", "runtime.torch_compile_mode"))

    def cluster_environment(self, cluster, index: int) -> dict[str, str]:
        if self.compiled:  # refused in the worker, by Keras3Backend.strategy()
            return super().cluster_environment(cluster, index)
        return cluster.torchrun_environment(index)

    def strategy(self) -> tuple[Any, int, int]:
        from bench import distributed

        return super().strategy() if self.compiled else distributed.torch_process_group()

    def engine(self) -> dict[str, str]:
        import torch

        return {"engine": "PyTorch DDP (Gloo)", "engine_version": torch.__version__}

    def start(self, threads: int) -> dict[str, Any]:
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        facts = self._keras()
        return {**facts, "torch": torch.__version__,
                "torch_compile": self.compiled,
                **(self._compile_facts() if self.compiled else {}),
                "mkldnn_available": torch.backends.mkldnn.is_available(),
                "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "intra_op_threads": torch.get_num_threads(),
                "inter_op_threads": torch.get_num_interop_threads(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}

    def _compile_facts(self) -> dict[str, Any]:
        """The mode torch.compile is given, and the Inductor options that mode sets."""
        from torch._inductor import list_mode_options

        return {"torch_compile_mode": self.spec.mode,
                "inductor_options": list_mode_options(self.spec.mode)}

    def environment(self) -> dict[str, str]:
        env = super().environment()
        if self.compiled:  # Inductor's FX-graph and AOT-autograd caches live under this folder
            env["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir("inductor"))
        return env

    def compile_cache(self) -> dict[str, Any] | None:
        if not self.compiled:
            return None
        from torch._dynamo.utils import counters

        hits, misses = (counters["inductor"][f"fxgraph_cache_{k}"] for k in ("hit", "miss"))
        return cache_facts("inductor", "TORCHINDUCTOR_CACHE_DIR", hits, misses)

    def _compile(self, fn):
        import torch

        return torch.compile(fn, dynamic=False, mode=self.spec.mode) if self.compiled else fn

    def predictor(self, loaded: Any, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:

        return _torch_inference(self._compile(_forward(loaded)))

    def server(self, loaded: Any, sizes: tuple[int, ...],
               latency: bool = False) -> loadgen.Server:
        """As every synchronous stack serves; torch-compile's batches all run on one thread of
        their own, whichever thread submits them (the warm-up's, each LoadGen run's
        dispatcher): see `_serving_thread`."""
        served = super().server(loaded, sizes, latency)
        if not self.compiled:
            return served
        thread = _serving_thread(loaded)

        def submit(batch: np.ndarray, done: Callable[[np.ndarray], None]) -> None:
            thread.submit(served.submit, batch, done).result()

        return dataclasses.replace(served, submit=submit,
                                   mode=f"{served.mode}, on one thread (torch.compile's guards)")

    def _steps(self, model, loss, optimizer, scale: float, compiled: bool,
               parallel: int = 0) -> Trainer:
        import torch

        variables = model.trainable_variables
        optimizer.build(variables)
        # DDP (a Keras model on torch is a torch.nn.Module) broadcasts task 0's weights now and
        # averages the summed .grad over the workers in the backward of each update's last
        # micro-step; the others run under no_sync(), accumulating locally
        call = torch.nn.parallel.DistributedDataParallel(model) if parallel else model
        micro_steps = itertools.count(1)

        def forward_loss(x, y):
            return loss(call(x, training=True), y, [v.value for v in variables])

        if compiled and self.compiled:
            _axes_as_tuples(model)
        forward_loss = self._compile(forward_loss) if compiled else forward_loss

        def micro_step(images, labels) -> float:
            local = parallel and next(micro_steps) % parallel
            with call.no_sync() if local else contextlib.nullcontext():
                total, reported = forward_loss(torch.from_numpy(np.asarray(images)),
                                               torch.from_numpy(np.asarray(labels)))
                total.backward()  # adds into every weight's .grad: the sum over micro-steps
            return float(reported.detach())

        def update() -> None:
            with torch.no_grad():
                optimizer.apply([v.value.grad * scale for v in variables], variables)
            for v in variables:  # zeroed, not dropped: updates may follow back to back
                v.value.grad.zero_()  # (the projected scenario times them so)

        return Trainer(micro_step, update, None,
                       _torch_inference(_forward(model)))


def _forward(model) -> Callable[[Any], Any]:
    """The Keras model's forward pass in inference mode, tensor to tensor."""
    return lambda x: model(x, training=False)


@functools.cache
def _serving_thread(loaded: Any) -> ThreadPoolExecutor:
    """The one thread `loaded`'s compiled forward is served on. Keras keeps per-thread state (its
    name scopes, the current call's context) that Dynamo's guards read: called from a thread other
    than the one it compiled in (each LoadGen run has a dispatching thread of its own), the
    forward fails its guards and compiles again, per thread and batch shape, until Dynamo's
    recompile limit (8) leaves it uncompiled. One uncompiled call runs there first, so that the
    thread's Keras state is the state every compiled call sees, and each shape compiles once."""
    thread = ThreadPoolExecutor(1, thread_name_prefix="torch-compile")
    probe = np.zeros((1, *loaded.inputs[0].shape[1:]), np.float32)
    thread.submit(_torch_inference(_forward(loaded)), probe).result()
    return thread


def _axes_as_tuples(model) -> None:
    """BatchNormalization keeps its reduction axes as a list, which Keras wraps in a
    `TrackedList`; Dynamo cannot pass one to `torch.mean` (training mode's `moments`): it breaks
    the graph inside Keras' name scope, which cannot break, so the whole step falls back to
    eager and is compiled layer by layer. The same axes, as a tuple, trace as one graph."""
    for layer in model._flatten_layers():
        axes = getattr(layer, "_reduction_axes", None)
        if isinstance(axes, list):
            object.__setattr__(layer, "_reduction_axes", tuple(axes))


def _xla_pool_threads(threads: int) -> int | None:
    """The threads of XLA:CPU's intra-op pool, counted, not assumed: JAX has no setting for
    them — XLA sizes the pool from the process's CPU affinity, which the placement pinned to
    `threads` CPUs. A small parallel computation starts the pool; its threads are named
    `tf_XLAEigen` in /proc (None: none found by that name, the count unknown)."""
    import jax.numpy as jnp

    x = jnp.ones((256, 256))
    (x @ x).block_until_ready()
    tasks = os.listdir("/proc/self/task")
    pool = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as fh:
                pool += fh.read().strip() == "tf_XLAEigen"
        except OSError:  # a thread that ended meanwhile
            continue
    if pool and pool != threads:
        raise RuntimeError(f"XLA:CPU started {pool} intra-op threads for {threads} pinned CPUs "
                           f"(sched_getaffinity: {sorted(os.sched_getaffinity(0))})")
    return pool


def _jax_forward(model):
    """`model` in inference mode as a jitted function of (trainable, other variables, x)."""
    import jax

    return jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])


class JaxBackend(Keras3Backend):
    keras_backend = "jax"

    def __init__(self, name: str, classic: bool = False):
        self.name = name
        self.classic = classic
        self.precision = "fp32"

    def environment(self) -> dict[str, str]:
        # XLA executables of at least a second's compile are kept under this folder
        env = {**super().environment(), "JAX_COMPILATION_CACHE_DIR": str(compile_cache_dir("jax"))}
        if self.classic:
            env["XLA_FLAGS"] = " ".join(filter(None, (os.environ.get("XLA_FLAGS"),
                                                      CLASSIC_FLAG)))
        return env

    def cluster_environment(self, cluster, index: int) -> dict[str, str]:
        if self.classic:  # refused in the worker, by Keras3Backend.strategy()
            return super().cluster_environment(cluster, index)
        return cluster.jax_environment(index)

    def strategy(self) -> tuple[Any, int, int]:
        if self.classic:
            return super().strategy()
        import jax

        from bench import distributed

        index, count = distributed.jax_join()
        return (jax.distributed if count > 1 else None), index, count

    def engine(self) -> dict[str, str]:
        import jax

        return {"engine": "JAX multi-process (Gloo)", "engine_version": jax.__version__}

    def start(self, threads: int) -> dict[str, Any]:
        import jax
        import jaxlib

        from bench import distributed

        if not self.classic:
            distributed.jax_join()  # before JAX's first computation, which jax.devices() is
        facts = self._keras()
        self._cache_events: Counter[str] = Counter()
        jax.monitoring.register_event_listener(
            lambda event, **_: self._cache_events.update([event.rsplit("/", 1)[-1]]))
        devices = jax.devices()  # initialises XLA:CPU: an unknown XLA flag fails here
        return {**facts, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
                "devices": [str(d) for d in devices],
                "xla_flags": os.environ.get("XLA_FLAGS", ""),
                "xla_cpu_runtime": "classic" if self.classic else "thunk (default)",
                "intra_op_threads": _xla_pool_threads(threads)}

    def compile_cache(self) -> dict[str, Any] | None:
        return cache_facts("jax", "JAX_COMPILATION_CACHE_DIR", self._cache_events["cache_hits"],
                           self._cache_events["cache_misses"])

    def predictor(self, loaded: Any, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
        trainable = [v.value for v in loaded.trainable_variables]
        frozen = [v.value for v in loaded.non_trainable_variables]
        forward = _jax_forward(loaded)

        def run(batch: np.ndarray) -> np.ndarray:
            return np.asarray(forward(trainable, frozen, batch), dtype=np.float32)

        return run

    def _steps(self, model, loss, optimizer, scale: float, compiled: bool,
               parallel: int = 0) -> Trainer:
        import jax
        import jax.numpy as jnp

        variables, others = model.trainable_variables, model.non_trainable_variables
        optimizer.build(variables)
        state = {"t": [v.value for v in variables], "n": [v.value for v in others],
                 "o": [v.value for v in optimizer.variables]}
        state["sums"] = [jnp.zeros_like(t) for t in state["t"]]

        def objective(t, n, x, y):
            outputs, n = model.stateless_call(t, n, x, training=True)
            total, reported = loss(outputs, y, t)
            return total, (reported, n)

        def accumulate(t, n, sums, x, y):
            (_, (reported, n)), grads = jax.value_and_grad(objective, has_aux=True)(t, n, x, y)
            return reported, n, [s + g for s, g in zip(sums, grads, strict=True)]

        def apply(t, o, sums):
            t, o = optimizer.stateless_apply(o, [s * scale for s in sums], t)
            return t, o, [jnp.zeros_like(s) for s in sums]

        jitted = {"micro": jax.jit(accumulate, donate_argnums=(1, 2)),
                  "update": jax.jit(apply, donate_argnums=(0, 1, 2))}
        forward = _jax_forward(model)
        average = None
        if parallel:  # every worker from task 0's weights; the sums averaged before each update
            from jax.experimental import multihost_utils
            from jax.flatten_util import ravel_pytree

            # every array on the device the jitted steps leave their outputs on: an input
            # placed otherwise (the broadcast's, a fresh zeros) compiles the step again
            local = jax.local_devices()[0]
            state["t"], state["n"] = multihost_utils.broadcast_one_to_all((state["t"],
                                                                           state["n"]))
            state.update(jax.device_put(state, local))
            # one all-reduce of every sum, flattened into one vector (one a weight costs a
            # collective's latency each); one device a process, so the mean over the mapped
            # axis spans every worker's
            flat, unflat = jax.jit(lambda s: ravel_pytree(s)[0]), jax.jit(
                ravel_pytree(state["sums"])[1])
            mean = jax.pmap(lambda v: jax.lax.pmean(v, "workers"), axis_name="workers")

            def average(sums):
                return jax.device_put(unflat(mean(flat(sums)[None])[0]), local)

        def micro_step(images, labels) -> float:
            reported, state["n"], state["sums"] = jitted["micro"](
                state["t"], state["n"], state["sums"], np.asarray(images), np.asarray(labels))
            return float(reported)  # waits for the step: its time is the work

        def update() -> None:
            if average:
                state["sums"] = average(state["sums"])
            state["t"], state["o"], state["sums"] = jitted["update"](state["t"], state["o"],
                                                                    state["sums"])
            jax.block_until_ready(state["t"])

        def logits(x: np.ndarray) -> np.ndarray:
            return np.asarray(forward(state["t"], state["n"], np.asarray(x)), dtype=np.float32)

        def sync() -> None:
            """Write the arrays back into the Keras variables (off the clock)."""
            for v, value in zip([*variables, *others], [*state["t"], *state["n"]], strict=True):
                v.assign(value)

        def prepare(x: np.ndarray, y: np.ndarray) -> None:
            """Compile both steps ahead of the first, without running them (off the clock)."""
            for key, args in (("micro", (state["t"], state["n"], state["sums"], x, y)),
                              ("update", (state["t"], state["o"], state["sums"]))):
                jitted[key] = jitted[key].lower(*args).compile()

        return Trainer(micro_step, update, None, logits, sync, prepare)
