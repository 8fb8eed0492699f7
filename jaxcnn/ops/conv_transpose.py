"""Transposed ("fractionally strided", Dumoulin & Visin 2016) convolution and its hand-derived backward pass.

conv2d_transpose(y, w) is the adjoint of x -> conv2d(x, w, stride, padding, dilation, groups) with
respect to x, applied to y: it raises resolution by inserting s - 1 zeros between the entries of y and
correlating with rot180(w). ``w`` is the *forward* conv's HWIO kernel (kh, kw, C / groups, C_y), so
y (N, m_h, m_w, C_y) maps to (N, n_h, n_w, C) with C = w.shape[2] * groups and, per axis,

    n = (m - 1) s + K - lo - hi + output_padding,     K = (k - 1) d + 1        (PyTorch's formula)
    n = m s                                           for padding="SAME" (Keras, lax.conv_transpose)

Backward, given the residual delta = dE/dx_out (N, n_h, n_w, C):
    dE/dy = conv2d(delta, w, stride, padding)            the forward conv is the adjoint of the adjoint;
            its bottom padding is hi - output_padding so that exactly m rows come out
    dE/dw = correlation of delta with y                   conv2d's kernel gradient with delta as the input
    dE/db = sum_{n,u,v} delta

The three are conv2d's own rules (``jaxcnn/ops/conv.py``) with the roles of input and output exchanged: the
forward is conv2d's INPUT_GRAD, dE/dy its FORWARD and dE/dw its KERNEL_GRAD, each evaluated as that rule is on
the platform the program is lowered for. The autodiff twin is the same forward differentiated by JAX.

Both directions (impl="primitive"): the forward is conv2d's input-gradient primitive G(y, w) on the adjoint
geometry (bottom padding hi - output_padding, which G itself never reads), so the JVP is its product rule,
d conv2d_transpose(y, w) = G(y_dot, w) + G(y, w_dot) + b_dot, and the transposes are conv2d's F and K, the
same two rules as the custom_vjp backward above (see the primitive section of ``jaxcnn/ops/conv.py``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax

from jaxcnn.ops import _checks
from jaxcnn.ops.conv import (
    FORWARD,
    INPUT_GRAD,
    KERNEL_GRAD,
    INPUT_GRAD_P,
    ConvGeometry,
    add_bias,
    add_bias_primitive,
    bias_grad,
    check_conv_args,
)
from jaxcnn.ops.padding import effective_size, resolve_padding, same_padding


def _forward(y, w, b, geom: ConvGeometry, out_hw: tuple[int, int]):
    """The autodiff twin: full_correlation(dilate_s(y), rot180(w)) + b, differentiated by JAX.

    The correlation is conv2d's INPUT_GRAD rule, plain lax code on every platform (no custom_vjp): the
    zero-inserted correlation of the textbook on GPUs and TPUs, XLA:CPU's evaluation on the CPU. On the CPU the
    textbook form cannot serve: XLA:CPU of jaxlib 0.10.2 aborts the process while compiling JAX's derivative of
    it for some shapes (tests/test_fuzz.py, "Window dimensions do not match RHS shape" in its algebraic
    simplifier), also when JAX derives the form itself through ``jax.linear_transpose`` of the conv.
    """
    return add_bias(INPUT_GRAD(y, w, geom=geom, in_hw=out_hw), b)


def _manual_forward(y, w, b, geom: ConvGeometry, out_hw: tuple[int, int]):
    return add_bias(INPUT_GRAD(y, w, geom=geom, in_hw=out_hw), b)


def _adjoint_geometry(geom: ConvGeometry, output_padding: tuple[int, int]) -> ConvGeometry:
    """The forward conv on the n-row output that yields exactly m rows: bottom padding hi - output_padding."""
    pads = tuple((lo, hi - op) for (lo, hi), op in zip(geom.padding, output_padding))
    return ConvGeometry(geom.stride, pads, geom.dilation, geom.groups)


@functools.lru_cache(maxsize=None)
def _manual(geom: ConvGeometry, out_hw: tuple[int, int], output_padding: tuple[int, int]):
    adjoint = _adjoint_geometry(geom, output_padding)

    @jax.custom_vjp
    def conv_t(y, w, b):
        return _manual_forward(y, w, b, geom, out_hw)

    def fwd(y, w, b):
        return _manual_forward(y, w, b, geom, out_hw), (y, w, b)

    def bwd(res, delta):
        y, w, b = res
        dy = FORWARD(delta, w, geom=adjoint)
        dw = KERNEL_GRAD(delta, y, geom=adjoint, kernel_hw=w.shape[:2])
        return dy, dw, bias_grad(delta, b)

    conv_t.defvjp(fwd, bwd)
    return conv_t


def conv2d_transpose(
    y: jax.Array,
    w: jax.Array,
    b: jax.Array | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: Any = "VALID",
    output_padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    impl: str = "manual",
) -> jax.Array:
    """Adjoint of ``conv2d(., w, stride=, padding=, dilation=, groups=)`` applied to ``y``, plus ``b``.

    Args:
      y: (N, m_h, m_w, w.shape[3]) input (the forward conv's output space).
      w: the forward conv's (kh, kw, C // groups, C_y) kernel; the result has C = w.shape[2] * groups channels.
      b: optional (C,) bias.
      output_padding: extra rows/cols at the bottom/right, each < max(stride, dilation) (PyTorch);
        must be 0 with padding="SAME".
    Returns:
      (N, n_h, n_w, C) with n = (m - 1) s + (k - 1) d + 1 - lo - hi + output_padding, or m s for "SAME".
    """
    impl = _checks.check_impl(impl)
    y, w, b, stride, dilation, groups = check_conv_args(
        "conv2d_transpose", y, w, b, stride=stride, dilation=dilation, groups=groups, transposed=True
    )
    if y.shape[3] != w.shape[3]:
        raise ValueError(
            f"conv2d_transpose: y has {y.shape[3]} channels (shape {tuple(y.shape)}) but w of shape "
            f"{tuple(w.shape)} is the kernel of a conv with {w.shape[3]} output channels (w.shape[3])"
        )
    output_padding = _checks.as_pair("output_padding", output_padding, minimum=0)
    span = (effective_size(w.shape[0], dilation[0]), effective_size(w.shape[1], dilation[1]))
    in_hw = tuple(y.shape[1:3])
    if isinstance(padding, str) and padding.upper() == "SAME":
        if output_padding != (0, 0):
            raise ValueError(f'conv2d_transpose: output_padding must be 0 with padding="SAME", got {output_padding}')
        out_hw = tuple(m * s for m, s in zip(in_hw, stride))
        pads = tuple(same_padding(n, k, s) for n, k, s in zip(out_hw, span, stride))
    else:
        pads = resolve_padding(padding, in_hw, span, stride)
        for axis, op, s, d in zip(("height", "width"), output_padding, stride, dilation):
            if op >= max(s, d):
                raise ValueError(
                    f"conv2d_transpose: output_padding along {axis} must be smaller than max(stride, dilation)="
                    f"{max(s, d)}, got {op}"
                )
        out_hw = tuple(
            (m - 1) * s + k - lo - hi + op for m, s, k, (lo, hi), op in zip(in_hw, stride, span, pads, output_padding)
        )
    if min(out_hw) < 1:
        raise ValueError(
            f"conv2d_transpose: input {tuple(y.shape)} with kernel span {span}, stride {stride} and padding {pads} "
            f"gives an empty output {out_hw}; reduce the padding"
        )
    geom = ConvGeometry(stride, pads, dilation, groups)
    if impl == "autodiff":
        return _forward(y, w, b, geom, out_hw)
    if impl == "primitive":
        return add_bias_primitive(INPUT_GRAD_P.bind(y, w, geom=_adjoint_geometry(geom, output_padding), in_hw=out_hw), b)
    return _manual(geom, out_hw, output_padding)(y, w, b)
