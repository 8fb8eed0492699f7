"""What the benchmark measures: op cases (forward+backward or backward only) and whole training steps/epochs.

Every case builds its own arrays (float32, a fixed seed) and returns ``timing.Variant`` objects, one per
contestant, ready for ``timing.compare``:

* ops: ``jit(vjp)`` of the op w.r.t. its array arguments, impl="manual" vs "autodiff" vs "primitive" (or, for the
  "bwd" cases, only the backward: the residuals of ``jax.vjp`` fed to a jitted pullback);
* training steps: the jitted, state-donating ``jaxcnn.train.step.make_train_step`` (forward, backward, optax
  SGD update) for each impl, and the PyTorch twin of the same network (``torch_models``);
* epochs: one jitted ``lax.scan`` over the epoch (``make_epoch_scan``) vs a Python loop of jitted steps over
  the same batches, as ``jaxcnn.train.run`` runs them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import numpy as np
import optax

from jaxcnn import ops
from jaxcnn.bench.batches import random_arrays, synthetic_batch
from jaxcnn.bench.timing import Variant
from jaxcnn.models import get_model
from jaxcnn.train.step import epoch_order, init_state, make_epoch_scan, make_train_step

# impl="primitive": the same hand-derived delta rules wired as transpose rules of JAX primitives (forward mode too).
IMPLS = ("manual", "autodiff", "primitive")
LEARNING_RATE = 0.01


@dataclasses.dataclass(frozen=True)
class OpCase:
    """One op on one shape. ``call(impl, *arrays)`` runs the op; ``shapes`` are the arrays' shapes.

    ``wrt`` lists the arguments differentiated (default: all); ``backward_only`` times the pullback alone.
    """

    name: str
    shape: str
    batch: int
    call: Callable[..., jax.Array]
    shapes: tuple[tuple[int, ...], ...]
    wrt: tuple[int, ...] | None = None
    backward_only: bool = False

    @property
    def what(self) -> str:
        return "bwd" if self.backward_only else "fwd+bwd"


def _conv(stride=1, padding="VALID", dilation=1, groups=1) -> Callable[..., jax.Array]:
    def call(impl, x, w, b):
        return ops.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups, impl=impl)

    return call


def _conv_t(stride, padding) -> Callable[..., jax.Array]:
    def call(impl, y, w, b):
        return ops.conv2d_transpose(y, w, b, stride=stride, padding=padding, impl=impl)

    return call


def _pool(op: Callable, **kw) -> Callable[..., jax.Array]:
    def call(impl, x):
        return op(x, impl=impl, **kw)

    return call


def _dense(impl, x, w, b):
    return ops.dense(x, w, b, impl=impl)


def _relu(impl, x):
    return ops.relu(x, impl=impl)


def _subsample(impl, x, beta, b):
    return ops.subsample(x, beta, b, window=2, impl=impl)


OP_BATCHES = {"full": (128, 64, 16), "quick": (128, 64, 4), "smoke": (2, 2, 2)}


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def op_cases(mode: str = "full") -> list[OpCase]:
    """The per-op table: the LeNet-5 layers at batch 128, then 32x32x64 layers at batch 64 (grouped conv: 16).

    ``mode`` "quick" keeps every shape but runs the grouped conv (seconds a call under autodiff on a CPU) at
    batch 4; "smoke" runs everything at batch 2 (for tests: the numbers mean nothing).
    """
    if mode not in OP_BATCHES:
        raise ValueError(f"mode must be one of {sorted(OP_BATCHES)}, got {mode!r}")
    n1, n2, ng = OP_BATCHES[mode]
    x64 = (n2, 32, 32, 64)
    w3 = (3, 3, 64, 64)

    def conv(name, call, x, w, **kw):
        return OpCase(name, f"{_dims(x)} -> {w[3]}", x[0], call, (x, w, (w[3],)), **kw)

    def pool(name, call, x, **kw):
        return OpCase(name, _dims(x), x[0], call, (x,), **kw)

    return [
        conv("lenet5 conv1 5x5 SAME", _conv(padding="SAME"), (n1, 28, 28, 1), (5, 5, 1, 6)),
        pool("lenet5 max_pool 2x2", _pool(ops.max_pool, window=2), (n1, 28, 28, 6)),
        conv("lenet5 conv2 5x5", _conv(), (n1, 14, 14, 6), (5, 5, 6, 16)),
        pool("lenet5 max_pool 2x2", _pool(ops.max_pool, window=2), (n1, 10, 10, 16)),
        OpCase("lenet5 dense", f"{n1}x400 -> 120", n1, _dense, ((n1, 400), (400, 120), (120,))),
        pool("lenet5 relu", _relu, (n1, 28, 28, 6)),
        OpCase("lenet5_classic subsample 2x2", _dims((n1, 28, 28, 6)), n1, _subsample, ((n1, 28, 28, 6), (6,), (6,))),
        conv("conv 3x3 SAME", _conv(padding="SAME"), x64, w3),
        conv("conv 3x3 stride 2 SAME", _conv(2, "SAME"), x64, w3),
        conv("conv 3x3 stride 2 SAME, dx only", _conv(2, "SAME"), x64, w3, wrt=(0,)),
        conv("conv 3x3 stride 2 SAME, dx only", _conv(2, "SAME"), x64, w3, wrt=(0,), backward_only=True),
        conv("conv 4x4 stride 2 pad 1", _conv(2, 1), (n2, 32, 32, 32), (4, 4, 32, 64)),
        conv("conv 3x3 dilation 2 SAME", _conv(padding="SAME", dilation=2), x64, w3),
        conv("conv 3x3 groups 4 SAME", _conv(padding="SAME", groups=4), (ng, 32, 32, 64), (3, 3, 16, 64)),
        OpCase("conv2d_transpose 4x4 stride 2 pad 1", f"{_dims((n2, 16, 16, 64))} -> 32", n2, _conv_t(2, 1),
               ((n2, 16, 16, 64), (4, 4, 32, 64), (32,))),
        pool("max_pool 2x2", _pool(ops.max_pool, window=2), x64),
        pool("max_pool 2x2", _pool(ops.max_pool, window=2), x64, backward_only=True),
        pool("max_pool 3x3 stride 2", _pool(ops.max_pool, window=3, stride=2), x64),
        pool("avg_pool 2x2", _pool(ops.avg_pool, window=2), x64),
        pool("avg_pool 3x3 stride 2", _pool(ops.avg_pool, window=3, stride=2), x64),
        OpCase("subsample 2x2", _dims(x64), n2, _subsample, (x64, (64,), (64,))),
    ]  # fmt: skip


def op_variants(case: OpCase, impls: tuple[str, ...] = IMPLS, seed: int = 0) -> dict[str, Variant]:
    """One jitted callable per impl; the cotangent is a fixed random array of the output's shape."""
    arrays = random_arrays(seed, *case.shapes)
    wrt = tuple(range(len(arrays))) if case.wrt is None else case.wrt
    out_shape = jax.eval_shape(lambda *a: case.call("autodiff", *a), *arrays).shape
    (ct,) = random_arrays(seed + 1, out_shape)
    variants = {}
    for impl in impls:

        def partial_op(*diff, impl=impl):
            full = list(arrays)
            for i, v in zip(wrt, diff):
                full[i] = v
            return case.call(impl, *full)

        diff = tuple(arrays[i] for i in wrt)
        if case.backward_only:
            _, pullback = jax.vjp(partial_op, *diff)
            fn, args = jax.jit(lambda pullback, ct: pullback(ct)), (pullback, ct)
        else:

            def forward_backward(diff, ct, partial_op=partial_op):
                out, pullback = jax.vjp(partial_op, *diff)
                return out, pullback(ct)

            fn, args = jax.jit(forward_backward), (diff, ct)
        variants[impl] = Variant(functools.partial(fn, *args), compile=functools.partial(_compile, fn, *args))
    return variants


def _compile(jitted: Callable, *args) -> None:
    """Compile ahead of time; the jitted function's later calls with such arguments hit the same executable."""
    jitted.lower(*args).compile()


# ---------------------------------------------------------------- whole models


def optimizer() -> optax.GradientTransformation:
    """Plain SGD: the update is a few elementwise ops, so the step is the forward and backward passes."""
    return optax.sgd(LEARNING_RATE)


def jax_step_variant(model, impl: str, batch: int, seed: int = 0) -> Variant:
    """A jitted training step (state donated, as jaxcnn.train.run jits it), chained from call to call."""
    opt = optimizer()
    step = jax.jit(make_train_step(model, opt, impl), donate_argnums=0)
    x, y = synthetic_batch(model, batch, seed)
    holder = {"state": init_state(model, opt, jax.random.PRNGKey(seed))}

    def call():
        holder["state"], metrics = step(holder["state"], x, y)
        return metrics

    return Variant(call, compile=lambda: _compile(step, holder["state"], x, y))


def sharded_step_variant(model, impl: str, batch: int, devices: int, seed: int = 0) -> Variant:
    """The training step data parallel over a mesh of ``devices`` devices, jitted as jaxcnn.train.run does."""
    from jaxcnn.train import parallel

    mesh = parallel.make_mesh(devices)
    parallel.check_divisible(batch, mesh)
    replicated, split = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    opt = optimizer()
    step = jax.jit(
        make_train_step(model, opt, impl),
        in_shardings=(replicated, split, split),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    x, y = parallel.global_batch(mesh, *map(np.asarray, synthetic_batch(model, batch, seed)))
    holder = {"state": parallel.replicate(init_state(model, opt, jax.random.PRNGKey(seed)), mesh)}

    def call():
        holder["state"], metrics = step(holder["state"], x, y)
        return metrics

    return Variant(call, compile=lambda: _compile(step, holder["state"], x, y))


def step_variants(
    name: str, batch: int, impls: tuple[str, ...] = IMPLS, torch: bool = True, torch_compile: bool = False
) -> tuple[dict[str, Variant], str]:
    """{"manual", "autodiff", "primitive"[, "pytorch"[, "pytorch_compiled"]]} training steps of model ``name``; the second
    value says why the PyTorch variants are absent ("" when present)."""
    from jaxcnn.bench import torch_models

    model = get_model(name)
    variants = {impl: jax_step_variant(model, impl, batch) for impl in impls}
    status = torch_models.status() if torch else "not requested"
    if not status:
        try:
            variants["pytorch"] = torch_models.step_variant(model, batch, LEARNING_RATE)
            if torch_compile:
                variants["pytorch_compiled"] = torch_models.step_variant(model, batch, LEARNING_RATE, compiled=True)
        except NotImplementedError as err:
            status = f"unsupported: {err}"
    return variants, status


def epoch_variants(name: str, batch: int, steps: int, impls: tuple[str, ...] = IMPLS) -> dict[str, Variant]:
    """For each impl, "<impl> scan" (one jitted lax.scan per epoch) and "<impl> loop" (a jitted step per batch).

    Both walk the same batches (``epoch_order``) of ``steps * batch`` synthetic images resident on the device.
    """
    model = get_model(name)
    opt = optimizer()
    images, labels = synthetic_batch(model, steps * batch)
    key = jax.random.PRNGKey(0)
    variants = {}
    for impl in impls:
        train_step = make_train_step(model, opt, impl)
        scan = jax.jit(make_epoch_scan(train_step, batch), donate_argnums=0)
        step = jax.jit(train_step, donate_argnums=0)
        order = epoch_order(key, 0, images.shape[0], batch)
        scan_holder = {"state": init_state(model, opt, key)}
        loop_holder = {"state": init_state(model, opt, key)}

        def run_scan(scan=scan, holder=scan_holder):
            holder["state"], metrics = scan(holder["state"], images, labels, key, 0)
            return metrics

        def run_loop(step=step, holder=loop_holder, order=order):
            metrics = None
            for b in range(order.shape[0]):
                idx = order[b]
                holder["state"], metrics = step(holder["state"], images[idx], labels[idx])
            return metrics

        first = order[0]
        compile_scan = functools.partial(_compile, scan, scan_holder["state"], images, labels, key, 0)
        compile_step = functools.partial(_compile, step, loop_holder["state"], images[first], labels[first])
        variants[f"{impl} scan"] = Variant(run_scan, compile=compile_scan)
        variants[f"{impl} loop"] = Variant(run_loop, compile=compile_step)
    return variants
