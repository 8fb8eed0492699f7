"""2-D convolution (a cross-correlation, Dumoulin & Visin 2016) with its hand-derived backward pass.

Shapes: x (N, H, W, C_in) NHWC, w (kh, kw, C_in / groups, C_out) HWIO, b (C_out,), output
u (N, H_out, W_out, C_out) with H_out = floor((H + lo + hi - K) / s) + 1, K = (kh - 1) d + 1.

Forward (Bouvrie 2006, section 3.1): u_j = sum_{i in group(j)} x_i * k_ij + b_j, "*" a strided, dilated correlation.

Backward, given the residual delta = dE/du (Bouvrie 2006, section 3.1):
    dE/db_j   = sum_{n,u,v} delta_j(u, v)
    dE/dk_ij  = sum_{n,u,v} delta_j(u, v) P_i(u, v)      the correlation of x with delta: each kernel weight
                                                        is shared by every output position
    dE/dx_i   = sum_j full_correlation(dilate_s(delta_j), rot180(k_ij))
                "rotate the kernel 180 degrees and correlate with the zero-padded error"; with stride s the
                residual is first dilated by s - 1 zeros between entries, with dilation d the kernel is.
In code the rotation is ``w[::-1, ::-1]`` and the in/out channel swap is done group by group (``rot180_swap``).

The module reads as that derivation: the forward (``correlate``), the input gradient
(``full_correlation_input_grad``), the kernel gradient (``correlation_kernel_grad``), the bias gradient, then
the ``custom_vjp`` wiring. Each of the three correlations is a :class:`~jaxcnn.ops.evaluation.Rule`
(``FORWARD``, ``INPUT_GRAD``, ``KERNEL_GRAD``): platforms may register faster evaluations of the same sums
(``jaxcnn/ops/xla_cpu/conv.py``), chosen when the program is lowered; every other platform runs the code below.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn.ops import _checks, primitive
from jaxcnn.ops.evaluation import Rule
from jaxcnn.ops.primitive import undefined_shape
from jaxcnn.ops.padding import Padding2D, check_window_fits, effective_size, resolve_padding

NHWC_HWIO = ("NHWC", "HWIO", "NHWC")
# For the kernel gradient the roles turn around: the input's channels become the "batch" of the
# correlation, its batch the contracted "features", and the residual acts as the kernel.
KERNEL_GRAD_DIMS = ("CHWN", "IHWO", "HWNC")


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """The static hyper-parameters of one correlation, padding already explicit."""

    stride: tuple[int, int]
    padding: Padding2D
    dilation: tuple[int, int]
    groups: int

    def kernel_span(self, kernel_hw: tuple[int, int]) -> tuple[int, int]:
        return effective_size(kernel_hw[0], self.dilation[0]), effective_size(kernel_hw[1], self.dilation[1])


# ---------------------------------------------------------------- forward


def correlate(x: jax.Array, w: jax.Array, geom: ConvGeometry) -> jax.Array:
    """u = x * w: the strided, dilated, grouped cross-correlation, one XLA convolution."""
    return lax.conv_general_dilated(
        x,
        w,
        window_strides=geom.stride,
        padding=geom.padding,
        rhs_dilation=geom.dilation,
        dimension_numbers=NHWC_HWIO,
        feature_group_count=geom.groups,
    )


FORWARD = Rule("conv2d.forward", correlate)


# ---------------------------------------------------------------- dE/dx: through the rotated kernel


def rot180_swap(w: jax.Array, groups: int) -> jax.Array:
    """rot180(k) with in/out channels swapped within each group: (kh, kw, I/g, O) -> (kh, kw, O/g, I)."""
    kh, kw, in_per_group, out = w.shape
    w = w[::-1, ::-1].reshape(kh, kw, in_per_group, groups, out // groups)
    return w.transpose(0, 1, 4, 3, 2).reshape(kh, kw, out // groups, groups * in_per_group)


def full_correlation_input_grad(
    delta: jax.Array, w: jax.Array, geom: ConvGeometry, in_hw: tuple[int, int]
) -> jax.Array:
    """dE/dx = full_correlation(dilate_s(delta), rot180(w)), cut to the input's n rows.

    The stride-dilated delta has D = (m - 1) s + 1 rows (s - 1 zeros between entries, lax's ``lhs_dilation``);
    padding it by lo' = K - 1 - lo before and hi' = n + lo - D after makes the "full" correlation land exactly
    on the n input rows (negative padding crops rows the forward never read).
    """
    span = geom.kernel_span(w.shape[:2])
    pads = tuple(
        (k - 1 - lo, n + lo - (m - 1) * s - 1)
        for n, m, k, s, (lo, _) in zip(in_hw, delta.shape[1:3], span, geom.stride, geom.padding)
    )
    if geom.groups == 1:  # the in/out swap is a relabelling: rot180(w) is read as (kh, kw, O, I)
        kernel, kernel_layout = lax.rev(w, (0, 1)), "HWOI"
    else:
        kernel, kernel_layout = rot180_swap(w, geom.groups), "HWIO"
    return lax.conv_general_dilated(
        delta,
        kernel,
        window_strides=(1, 1),
        padding=pads,
        lhs_dilation=geom.stride,
        rhs_dilation=geom.dilation,
        dimension_numbers=("NHWC", kernel_layout, "NHWC"),
        feature_group_count=geom.groups,
    )


INPUT_GRAD = Rule("conv2d.input_grad", full_correlation_input_grad)


# ---------------------------------------------------------------- dE/dk: the correlation of x with delta


def kernel_grad_padding(in_hw: tuple[int, int], geom: ConvGeometry, kernel_hw: tuple[int, int]) -> Padding2D:
    """The forward's padding with the rows it never read (the (n + lo + hi - K) mod s tail) cropped from the
    bottom, so that the correlation of x with the stride-dilated delta has exactly k taps."""
    span = geom.kernel_span(kernel_hw)
    return tuple(  # type: ignore[return-value]
        (lo, hi - (n + lo + hi - k) % s) for n, k, s, (lo, hi) in zip(in_hw, span, geom.stride, geom.padding)
    )


def correlation_kernel_grad(
    x: jax.Array, delta: jax.Array, geom: ConvGeometry, kernel_hw: tuple[int, int]
) -> jax.Array:
    """dE/dk[a, b, i, o] = sum_{n,u,v} x_pad[n, u s + a d, v s + b d, i] delta[n, u, v, o].

    A correlation of x (channels as batch, batch as the contracted features) with delta (as the kernel,
    dilated by the stride) taken with stride d; with groups, input group j meets only output group j
    (lax's ``batch_group_count``). Low-precision inputs are summed in float32 (``accumulator_dtype``).
    """
    return lax.conv_general_dilated(
        x,
        delta,
        window_strides=geom.dilation,
        padding=kernel_grad_padding(x.shape[1:3], geom, kernel_hw),
        rhs_dilation=geom.stride,
        dimension_numbers=KERNEL_GRAD_DIMS,
        batch_group_count=geom.groups,
        preferred_element_type=accumulator_dtype(x.dtype),
    ).astype(x.dtype)


def accumulator_dtype(dtype: jnp.dtype) -> jnp.dtype | None:
    """float32 for bfloat16 and float16 inputs: dE/dk sums N m_h m_w products per weight, too many for their
    8 or 11 bits of mantissa; None (the input's own dtype) otherwise."""
    return jnp.float32 if jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)) else None


KERNEL_GRAD = Rule("conv2d.kernel_grad", correlation_kernel_grad)


# ---------------------------------------------------------------- dE/db and the bias


def add_bias(u: jax.Array, b: jax.Array | None) -> jax.Array:
    return u if b is None else u + b


def bias_grad(delta: jax.Array, b: jax.Array | None) -> jax.Array | None:
    """dE/db_j = sum over batch and positions (every axis but the channels, the last) of delta_j (None when there
    is no bias)."""
    return None if b is None else jnp.sum(delta, axis=tuple(range(delta.ndim - 1)))


# ---------------------------------------------------------------- custom_vjp wiring


def _forward(x: jax.Array, w: jax.Array, b: jax.Array | None, geom: ConvGeometry) -> jax.Array:
    return add_bias(correlate(x, w, geom), b)


def _manual_forward(x: jax.Array, w: jax.Array, b: jax.Array | None, geom: ConvGeometry) -> jax.Array:
    return add_bias(FORWARD(x, w, geom=geom), b)


@functools.lru_cache(maxsize=None)
def _manual(geom: ConvGeometry):
    @jax.custom_vjp
    def conv(x, w, b):
        return _manual_forward(x, w, b, geom)

    def fwd(x, w, b):
        return _manual_forward(x, w, b, geom), (x, w, b)

    def bwd(res, delta):
        x, w, b = res
        dx = INPUT_GRAD(delta, w, geom=geom, in_hw=x.shape[1:3])
        dw = KERNEL_GRAD(x, delta, geom=geom, kernel_hw=w.shape[:2])
        return dx, dw, bias_grad(delta, b)

    conv.defvjp(fwd, bwd)
    return conv


# ---------------------------------------------------------------- both directions (impl="primitive")
#
# The three correlations are bilinear, and each is the transpose of the other two (module docstring):
#     F(x, w)     = correlate            x <- G(ct, w),   w <- K(x, ct)
#     G(delta, w) = input gradient       delta <- F(ct, w),   w <- K(ct, delta)
#     K(x, delta) = kernel gradient      x <- G(delta, ct),   delta <- F(x, ct)
# so the three primitives below close under differentiation in both directions: the JVP of each is the
# bilinear product rule, d F(x, w) = F(x_dot, w) + F(x, w_dot) (likewise G and K), and every transpose is one of
# the three hand-derived correlations, the same Rule objects the custom_vjp backward above calls. For F's input
# G needs the input's size (in_hw), for its kernel K the kernel's (kernel_hw): both are read from the shape
# of the argument being transposed. conv2d_transpose's forward is G (``jaxcnn/ops/conv_transpose.py``).


def _correlate_dx(ct, x, w, *, geom):
    return INPUT_GRAD_P.bind(ct, w, geom=geom, in_hw=undefined_shape(x)[1:3])


def _correlate_dw(ct, x, w, *, geom):
    return KERNEL_GRAD_P.bind(x, ct, geom=geom, kernel_hw=undefined_shape(w)[:2])


def _input_grad_ddelta(ct, delta, w, *, geom, in_hw):
    return FORWARD_P.bind(ct, w, geom=geom)


def _input_grad_dw(ct, delta, w, *, geom, in_hw):
    return KERNEL_GRAD_P.bind(ct, delta, geom=geom, kernel_hw=undefined_shape(w)[:2])


def _kernel_grad_dx(ct, x, delta, *, geom, kernel_hw):
    return INPUT_GRAD_P.bind(delta, ct, geom=geom, in_hw=undefined_shape(x)[1:3])


def _kernel_grad_ddelta(ct, x, delta, *, geom, kernel_hw):
    return FORWARD_P.bind(x, ct, geom=geom)


FORWARD_P = primitive.bilinear(
    "conv2d", primitive.Rules(FORWARD, transposes=(_correlate_dx, _correlate_dw)), primitive.Batching((True, False))
)
INPUT_GRAD_P = primitive.bilinear(
    "conv2d_input_grad",
    primitive.Rules(INPUT_GRAD, transposes=(_input_grad_ddelta, _input_grad_dw)),
    primitive.Batching((True, False)),
)
KERNEL_GRAD_P = primitive.bilinear(
    "conv2d_kernel_grad",
    primitive.Rules(KERNEL_GRAD, transposes=(_kernel_grad_dx, _kernel_grad_ddelta)),
    primitive.Batching((False, False)),
)


def _bias_transpose(ct, u, b):
    """dE/du = delta, dE/db = sum of delta over every axis but the channels (``bias_grad``)."""
    return ct, bias_grad(ct, b)


# u + b, linear in (u, b) jointly: its JVP is u_dot + b_dot, its transpose the bias rule. Shared by the ops with a
# per-channel (last axis) bias: conv2d, conv2d_transpose, dense, subsample.
ADD_BIAS_P = primitive.linear(
    "add_bias",
    primitive.Rules(lambda u, b: u + b, transposes=(_bias_transpose,)),
    primitive.Batching((True, False), mode="leading"),
)


def add_bias_primitive(u: jax.Array, b: jax.Array | None) -> jax.Array:
    return u if b is None else ADD_BIAS_P.bind(u, b)


def check_conv_args(
    op: str, x: Any, w: Any, b: Any, *, stride: Any, dilation: Any, groups: Any, transposed: bool = False
) -> tuple[jax.Array, jax.Array, jax.Array | None, tuple[int, int], tuple[int, int], int]:
    """Validate and promote the arrays and hyper-parameters shared by conv2d and conv2d_transpose.

    The input is called "x" (conv2d) or "y" (transposed); the bias has one entry per output channel:
    w.shape[3] for conv2d, w.shape[2] * groups for conv2d_transpose.
    """
    x_name = "y" if transposed else "x"
    x = _checks.floating_array(x_name, x)
    w = _checks.floating_array("w", w)
    b = None if b is None else _checks.floating_array("b", b)
    _checks.check_rank(x_name, x, 4, "NHWC")
    _checks.check_rank("w", w, 4, "HWIO: (kh, kw, in_channels // groups, out_channels)")
    if min(w.shape) < 1:
        raise ValueError(f"{op}: every axis of w must be >= 1, got shape {tuple(w.shape)}")
    stride = _checks.as_pair("stride", stride)
    dilation = _checks.as_pair("dilation", dilation)
    groups = _checks.as_int("groups", groups, minimum=1)
    if w.shape[3] % groups:
        raise ValueError(f"{op}: groups={groups} must divide the kernel's out_channels w.shape[3]={w.shape[3]}")
    if b is not None and transposed:
        _checks.check_vector("b", b, w.shape[2] * groups, "output channel (w.shape[2] * groups)")
    elif b is not None:
        _checks.check_vector("b", b, w.shape[3], "kernel output channel w.shape[3]")
    x, w, b = _checks.promote(x, w, b)
    return x, w, b, stride, dilation, groups


def conv2d(
    x: jax.Array,
    w: jax.Array,
    b: jax.Array | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: Any = "VALID",
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    impl: str = "manual",
) -> jax.Array:
    """Cross-correlation u = x * w + b of NHWC ``x`` with the HWIO kernel ``w``.

    Args:
      x: (N, H, W, C_in) input.
      w: (kh, kw, C_in // groups, C_out) kernel.
      b: optional (C_out,) bias.
      stride, dilation: int or (h, w). padding: "VALID", "SAME", p, (ph, pw) or ((top, bottom), (left, right)).
      groups: split channels into this many independent convolutions (C_in = groups * w.shape[2]).
      impl: "manual" (custom_vjp with the derived backward, see the module docstring), "primitive" (the same
        backward as transpose rules, plus forward mode: d u = x_dot * w + x * w_dot + b_dot) or "autodiff".
    Returns:
      (N, H_out, W_out, C_out), H_out = floor((H + lo + hi - (kh - 1) d - 1) / s) + 1.
    """
    impl = _checks.check_impl(impl)
    x, w, b, stride, dilation, groups = check_conv_args(
        "conv2d", x, w, b, stride=stride, dilation=dilation, groups=groups
    )
    if x.shape[3] != w.shape[2] * groups:
        raise ValueError(
            f"conv2d: x has {x.shape[3]} channels (shape {tuple(x.shape)}) but w of shape {tuple(w.shape)} with "
            f"groups={groups} expects {w.shape[2] * groups} (w.shape[2] * groups)"
        )
    span = (effective_size(w.shape[0], dilation[0]), effective_size(w.shape[1], dilation[1]))
    pads = resolve_padding(padding, x.shape[1:3], span, stride)
    check_window_fits("conv2d", x.shape[1:3], span, pads, what="dilated kernel")
    geom = ConvGeometry(stride, pads, dilation, groups)
    if impl == "autodiff":
        return _forward(x, w, b, geom)
    if impl == "primitive":
        return add_bias_primitive(FORWARD_P.bind(x, w, geom=geom), b)
    return _manual(geom)(x, w, b)
