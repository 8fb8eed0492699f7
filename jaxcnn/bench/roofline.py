"""The matmul roofline: what share of this machine's float32 FLOP/s a training step turns into work.

Work is counted once per model, as XLA's cost analysis of the impl="autodiff" training step as JAX lowers it
(before XLA's own rewrites, so nothing is compiled for it): the textbook algorithm (each convolution and matmul
of the forward pass and its two of the backward pass, plus the elementwise work), at 2 FLOPs a multiply-add.
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


def step_flops_per_image(model, batch: int) -> float | None:
    """FLOPs of one image's share of a training step: XLA's count for the lowered autodiff step, over ``batch``;
    None where the backend's cost analysis gives no count (the tables then print "-")."""
    from jaxcnn.bench.cases import optimizer, synthetic_batch
    from jaxcnn.train.step import init_state, make_train_step

    opt = optimizer()
    x, y = synthetic_batch(model, batch)
    state = init_state(model, opt, jax.random.PRNGKey(0))
    analysis = jax.jit(make_train_step(model, opt, "autodiff")).lower(state, x, y).cost_analysis()
    if isinstance(analysis, (list, tuple)):  # one dict per computation in older jaxlibs
        analysis = analysis[0]
    flops = (analysis or {}).get("flops")
    return float(flops) / batch if flops and flops > 0 else None
