"""Which evaluation of a rule runs is chosen per platform at lowering time (``jaxcnn/ops/evaluation.py``):
programs exported on this machine for "cuda" and for "cpu" hold the textbook forms and the XLA:CPU evaluations
respectively, and one program for both holds both choices."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcnn import ops


def _exported(fn, platforms, *shapes) -> str:
    structs = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
    return jax.export.export(jax.jit(fn), platforms=platforms)(*structs).mlir_module()


def _convolutions(module: str) -> list[str]:
    return [line for line in module.splitlines() if "stablehlo.convolution" in line]


def test_a_program_exported_for_a_gpu_runs_the_textbook_forms():
    """Exported on this CPU-only machine: for "cuda" the strided input gradient is the one zero-inserted
    correlation of the textbook, for "cpu" the polyphase correlations; the choice is made at lowering time."""

    def dx(x, w):
        return jax.grad(lambda x: ops.conv2d(x, w, stride=2, padding="SAME").sum())(x)

    shapes = ((4, 16, 16, 16), (3, 3, 16, 16))
    on_gpu, on_cpu = (_convolutions(_exported(dx, [p], *shapes)) for p in ("cuda", "cpu"))
    assert len(on_gpu) == 1 and "lhs_dilate = [2, 2]" in on_gpu[0]
    assert len(on_cpu) == 4 and not any("lhs_dilate" in c for c in on_cpu)  # 3 x 3 stride 2: four phases
    both = _exported(dx, ["cpu", "cuda"], *shapes)
    assert "stablehlo.case" in both  # one program for both platforms holds both choices
    assert any("lhs_dilate = [2, 2]" in c for c in _convolutions(both)) and len(_convolutions(both)) > 5


def test_the_max_pool_records_winners_by_a_variadic_reduction_on_cpu_only():
    def dx(x):
        return jax.grad(lambda x: ops.max_pool(x, window=2).sum())(x)

    on_gpu, on_cpu = (_exported(dx, [p], (4, 16, 16, 8)) for p in ("cuda", "cpu"))
    assert "stablehlo.reduce_window" in on_gpu and "stablehlo.reduce(" not in on_gpu
    assert "stablehlo.reduce(" in on_cpu and "stablehlo.reduce_window" not in on_cpu


def test_thin_forward_is_width_blocked_on_cpu_only():
    def forward(x, w):
        return ops.conv2d(x, w, padding="SAME")

    shapes = ((8, 28, 28, 1), (5, 5, 1, 6))
    on_gpu, on_cpu = (_convolutions(_exported(forward, [p], *shapes)) for p in ("cuda", "cpu"))
    assert len(on_gpu) == len(on_cpu) == 1
    assert "tensor<5x5x1x6xf32>" in on_gpu[0] and "tensor<5x5x1x6xf32>" not in on_cpu[0]
