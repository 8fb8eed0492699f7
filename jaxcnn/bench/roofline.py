"""The matmul roofline: what share of this machine's float32 FLOP/s a training step turns into work.

Work is counted once per model from the jaxpr of the impl="autodiff" training step, the same on every backend
(``jaxpr_flops``): the textbook algorithm, each convolution and matmul of the forward pass and its two of the
backward pass at 2 FLOPs a multiply-add, plus one FLOP per element of each elementwise or reducing operation.
It matches XLA:CPU's cost analysis of the same step to a few percent, and unlike that analysis it also prints on
backends whose compiler gives no count (an NVIDIA GPU's).
The manual step, the autodiff step and PyTorch are all credited with that same count, so their GFLOP/s rank as
their images/s do. (The manual step's own count is higher: its width-blocked convolutions also multiply the
zeros of the blocked kernels.)

The peak is measured in the same run: a square float32 product ``a @ b`` of n x n matrices (2 n^3 FLOPs) timed
by the harness, ``jnp.dot`` under jit and, when PyTorch is installed, ``torch.mm``. The roofline of a row is the
higher of the two rates: the most this machine was seen to do. Both run at their library's default precision, as
the steps do: exact float32 on a CPU; on a recent NVIDIA GPU JAX's default is TF32 (for the step's convolutions
too), PyTorch's full float32.
"""

from __future__ import annotations

import importlib

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

from jaxcnn.bench.timing import Variant


def matmul_flops(n: int) -> float:
    """FLOPs of an (n, n) @ (n, n) product: n^2 outputs of n multiply-adds."""
    return 2.0 * n**3


def matmul_variants(n: int, torch: bool = True, seed: int = 0) -> dict[str, Variant]:
    """{"jax"[, "pytorch"]}: one float32 (n, n) @ (n, n) product per call, on fixed random matrices."""
    if n < 1:
        raise ValueError(f"matmul size n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    dot = jax.jit(jnp.dot)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    variants = {"jax": Variant(lambda: dot(ja, jb), compile=lambda: dot.lower(ja, jb).compile())}
    if torch:
        from jaxcnn.bench import torch_models

        if not torch_models.status():
            t = importlib.import_module("torch")
            dev = torch_models.device()
            ta, tb = t.from_numpy(a).to(dev), t.from_numpy(b).to(dev)
            sync = (lambda _: t.cuda.synchronize()) if dev == "cuda" else (lambda _: None)
            variants["pytorch"] = Variant(lambda: t.mm(ta, tb), sync=sync)
    return variants


# Primitives counted as one FLOP per output element (reductions: per input element).
ELEMENTWISE = frozenset({
    "add", "sub", "mul", "div", "neg", "max", "min", "exp", "exp2", "log", "log1p", "tanh", "logistic", "sqrt",
    "rsqrt", "pow", "integer_pow", "square", "abs", "sign", "select_n", "erf", "expm1", "add_any", "rem",
})  # fmt: skip
REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "argmax", "argmin", "reduce_window_sum",
                        "reduce_window_max", "select_and_scatter_add", "select_and_gather_add", "cumsum"})  # fmt: skip


def _size(aval) -> int:
    return int(np.prod(aval.shape, dtype=np.int64)) if hasattr(aval, "shape") else 1


def _sub_jaxprs(params: dict):
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax.extend.core.Jaxpr):
                yield item


def _taps_in_input(in_size: int, out_size: int, window: int, stride: int, lo: int, lhs_dilation: int,
                   rhs_dilation: int) -> int:
    """Along one axis, the (output position, kernel tap) pairs that read a real input element: not the padding,
    not a zero that lhs dilation inserts."""
    where = np.arange(out_size)[:, None] * stride + np.arange(window)[None, :] * rhs_dilation - lo
    real = (where >= 0) & (where <= (in_size - 1) * lhs_dilation) & (where % lhs_dilation == 0)
    return int(real.sum())


def _conv_multiply_adds(eqn) -> float:
    """Multiply-adds of a conv_general_dilated that meet real inputs (XLA's cost analysis counts the same)."""
    lhs, rhs, out = (v.aval.shape for v in (*eqn.invars[:2], eqn.outvars[0]))
    params, dims = eqn.params, eqn.params["dimension_numbers"]
    pairs = 1
    for axis, (lo, _) in enumerate(params["padding"]):
        pairs *= _taps_in_input(
            lhs[dims.lhs_spec[2 + axis]], out[dims.out_spec[2 + axis]], rhs[dims.rhs_spec[2 + axis]],
            params["window_strides"][axis], lo, params["lhs_dilation"][axis], params["rhs_dilation"][axis],
        )  # fmt: skip
    batch_and_features = out[dims.out_spec[0]] * out[dims.out_spec[1]]
    return float(pairs) * batch_and_features * rhs[dims.rhs_spec[1]]


def jaxpr_flops(jaxpr) -> float:
    """FLOPs of a jaxpr: 2 per multiply-add of every convolution (those that meet a real input element) and
    matmul, 1 per element of the elementwise and reducing primitives; sub-jaxprs (jit, custom rules, cond: the
    costliest branch, scan: times its length) are walked."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name, params = eqn.primitive.name, eqn.params
        if name == "conv_general_dilated":
            total += 2.0 * _conv_multiply_adds(eqn)
        elif name == "dot_general":
            (contract, _), _ = params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * _size(eqn.outvars[0].aval) * int(np.prod([lhs[d] for d in contract], dtype=np.int64))
        elif name in ELEMENTWISE:
            total += _size(eqn.outvars[0].aval)
        elif name in REDUCTIONS:
            total += _size(eqn.invars[0].aval)
        elif name == "cond":
            total += max(jaxpr_flops(branch.jaxpr) for branch in params["branches"])
        elif name == "scan":
            total += params["length"] * jaxpr_flops(params["jaxpr"].jaxpr)
        else:
            total += sum(jaxpr_flops(sub) for sub in _sub_jaxprs(params))
    return total


def _autodiff_step(model, batch: int):
    """The impl="autodiff" training step of ``model`` and its arguments at ``batch``."""
    from jaxcnn.bench.cases import optimizer, synthetic_batch
    from jaxcnn.train.step import init_state, make_train_step

    opt = optimizer()
    x, y = synthetic_batch(model, batch)
    return make_train_step(model, opt, "autodiff"), (init_state(model, opt, jax.random.PRNGKey(0)), x, y)


def step_flops_per_image(model, batch: int) -> float:
    """FLOPs of one image's share of a training step: ``jaxpr_flops`` of the autodiff step, over ``batch``."""
    step, args = _autodiff_step(model, batch)
    return jaxpr_flops(jax.make_jaxpr(step)(*args).jaxpr) / batch


def xla_step_flops_per_image(model, batch: int) -> float | None:
    """XLA's cost analysis of the same lowered step, per image; None where the backend gives no count. The tests
    hold ``step_flops_per_image`` to it on the CPU."""
    step, args = _autodiff_step(model, batch)
    analysis = jax.jit(step).lower(*args).cost_analysis()
    if isinstance(analysis, (list, tuple)):  # one dict per computation in older jaxlibs
        analysis = analysis[0]
    flops = (analysis or {}).get("flops")
    return float(flops) / batch if flops and flops > 0 else None
