"""Faster evaluations of conv2d's three correlations on XLA:CPU (``jaxcnn/ops/conv.py`` derives them).

Each function computes the same sum as the textbook form it is registered for, in a shape XLA:CPU runs faster;
the op rows of ``python -m jaxcnn bench`` (manual against autodiff) measure each choice, and
``tests/ops/test_conv.py`` checks each evaluation against the textbook form in float64.

* forward (``manual_correlate``): thin correlations (few channels) fold r adjacent columns into the channels
  (``width_blocked_correlate``); otherwise XLA's convolution. The autodiff twin keeps XLA's convolution, so
  the two forwards agree to round-off, not bit for bit.
* input gradient (``correlate_input_grad``, ``input_grad_path``): group by group, width-blocked for stride 1
  and few channels, col2im for few input channels, polyphase for strides, else the textbook's zero-inserted
  correlation.
* kernel gradient (``kernel_gradient``, ``kernel_grad_path``): one correlation already in NHWC/HWIO form,
  width-blocked for very thin convs.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn.ops import conv
from jaxcnn.ops.conv import (
    NHWC_HWIO,
    ConvGeometry,
    accumulator_dtype,
    correlate,
    correlation_kernel_grad,
    full_correlation_input_grad,
    kernel_grad_padding,
    rot180_swap,
)

# Grouped convs with up to this many groups are differentiated group by group (see split_groups); beyond it the
# unrolled program would grow with the group count (a depthwise conv has one group per channel).
MAX_SPLIT_GROUPS = 8
# An input gradient with at most this many channels (per group) is computed by col2im (multiply, then
# overlap-add): XLA:CPU runs convolutions with so few output channels far below its speed.
COL2IM_MAX_CHANNELS = 8
# A stride-1 input gradient of a conv with at most this many output channels is the width-blocked correlation of
# delta with the rotated kernel (``use_blocked_input_grad``); with more, col2im's matrix product pays off.
BLOCKED_INPUT_GRAD_MAX_CHANNELS = 16
# The manual forward of a thin correlation (few channels) folds r columns into the channels (``forward_path``),
# the largest r in WIDTH_BLOCK_FACTORS with r (C_in + C_out) <= this: XLA:CPU runs thin convolutions far below
# its speed.
WIDTH_BLOCK_MAX_CHANNELS = 80
WIDTH_BLOCK_FACTORS = (4, 2)
# The kernel gradient is width-blocked by KERNEL_GRAD_BLOCK (``kernel_grad_path``) only when
# KERNEL_GRAD_BLOCK (C_in + C_out) <= this: for wider convs the plain correlation is the faster one.
KERNEL_GRAD_BLOCK = 4
KERNEL_GRAD_BLOCK_MAX_CHANNELS = 32


def manual_correlate(x: jax.Array, w: jax.Array, geom: ConvGeometry) -> jax.Array:
    """The same u = x * w for the manual impl, in the form ``forward_path`` picks for the kernel's shape."""
    if forward_path(w.shape, geom) == "width_blocked":
        return width_blocked_correlate(x, w, geom, width_block_factor(w.shape, geom))
    return correlate(x, w, geom)


def forward_path(w_shape: tuple[int, ...], geom: ConvGeometry) -> str:
    """How the manual forward evaluates the correlation (bench cases "lenet5 conv1 5x5 SAME" and "lenet5 conv2
    5x5"; the bench's step table times whole networks):
      * "width_blocked": ungrouped, stride and dilation 1 along the width, k_w > 1, few channels
        (``width_block_factor`` > 1, ``width_blocked_correlate``);
      * "convolution": otherwise XLA's convolution, as in the autodiff twin.

    (A plain sum over the kernel's taps, one broadcast multiply-add each, is faster still for LeNet-5's first
    layer on its own, but XLA fuses that sum into the activation after it, and with tanh the fused loop is
    several times slower than the blocked correlation followed by tanh.)
    """
    return "width_blocked" if width_block_factor(w_shape, geom) > 1 else "convolution"


def width_block_factor(w_shape: tuple[int, ...], geom: ConvGeometry) -> int:
    """The r of ``width_blocked_correlate``: the largest of WIDTH_BLOCK_FACTORS with r (C_in + C_out) <=
    WIDTH_BLOCK_MAX_CHANNELS for an ungrouped conv with stride and dilation 1 along the width and more than one
    tap across it (with k_w = 1 the blocked kernel is block-diagonal: r times the work, nothing gained); else 1."""
    _, kw, c_in, c_out = w_shape
    if not width_blockable(kw, geom):
        return 1
    return next((r for r in WIDTH_BLOCK_FACTORS if r * (c_in + c_out) <= WIDTH_BLOCK_MAX_CHANNELS), 1)


def width_blockable(kw: int, geom: ConvGeometry) -> bool:
    """Whether columns can fold into channels: ungrouped, stride and dilation 1 along the width, k_w > 1."""
    return geom.groups == 1 and geom.stride[1] == 1 and geom.dilation[1] == 1 and kw > 1


def blocks_read(kw: int, r: int) -> int:
    """c = ceil((kw - 1 + r) / r): the column blocks of r that one output block's kw-wide windows reach."""
    return -(-(kw - 1 + r) // r)


def width_blocked_kernel(w: jax.Array, r: int) -> jax.Array:
    """(kh, kw, I, O) -> (kh, c, r I, r O), c = ceil((kw - 1 + r) / r) column blocks:

        K[a, j, (p, i), (q, o)] = w[a, r j + p - q, i, o]    (0 where r j + p - q is not a tap in [0, kw))

    Output column q of a block meets input column p of block j through tap r j + p - q.
    """
    kh, kw, _, _ = w.shape
    c = blocks_read(kw, r)
    shifted = [jnp.pad(w, ((0, 0), (q, c * r - kw - q), (0, 0), (0, 0))) for q in range(r)]  # [a, r j + p, i, o]
    stacked = jnp.stack(shifted, axis=3)  # (kh, c r, I, r, O): [a, r j + p, i, q, o]
    return stacked.reshape(kh, c, r * w.shape[2], r * w.shape[3])


def fold_columns(x: jax.Array, lo: int, out_width: int, kw: int, r: int) -> jax.Array:
    """(N, H, W, C) -> (N, H, B + c - 1, r C): x padded by ``lo`` zero columns before and by zeros after to whole
    blocks of r columns, block J holding columns r J .. r J + r - 1 as channels (p, i), a reshape of NHWC.

    B = ceil(out_width / r) output blocks, c = ceil((kw - 1 + r) / r) blocks read by each; the padded width
    (B + c - 1) r >= W + lo + hi because (c - 1) r >= kw - 1.
    """
    n, h, width, channels = x.shape
    c = blocks_read(kw, r)
    padded = (-(-out_width // r) + c - 1) * r
    x_pad = jnp.pad(x, ((0, 0), (0, 0), (lo, padded - width - lo), (0, 0)))
    return x_pad.reshape(n, h, padded // r, r * channels)


def blocked_geometry(geom: ConvGeometry) -> ConvGeometry:
    """The geometry of the width-blocked correlation: the height's stride, padding and dilation; the width
    already padded (``fold_columns``), stride 1."""
    return ConvGeometry((geom.stride[0], 1), (geom.padding[0], (0, 0)), (geom.dilation[0], 1), 1)


def width_blocked_correlate(x: jax.Array, w: jax.Array, geom: ConvGeometry, r: int) -> jax.Array:
    """u = x * w with r adjacent columns folded into the channels ("space to depth" along the width).

    With v = r J + q and input column r J' + p (``fold_columns``: (N, H, W, C) -> (N, H, W / r, r C)),

        u[n, u, r J + q, o] = sum_{a, j, p, i} x_pad[n, s u + d a, r (J + j) + p, i] K[a, j, (p, i), (q, o)]

    an ordinary correlation with r times the channels on each side and c = ceil((kw - 1 + r) / r) taps across
    (``width_blocked_kernel``); the output's columns past the last real one are cut. c r / kw times the
    multiply-adds (the extra ones multiply zeros), but XLA:CPU runs the wider shape faster (bench case
    "lenet5 conv2 5x5"). Needs stride and dilation 1 along the width.
    """
    n, _, width, _ = x.shape
    kw, c_out = w.shape[1], w.shape[3]
    lo_w, hi_w = geom.padding[1]
    m_w = width + lo_w + hi_w - kw + 1
    u = correlate(fold_columns(x, lo_w, m_w, kw, r), width_blocked_kernel(w, r), blocked_geometry(geom))
    return u.reshape(n, u.shape[1], -1, c_out)[:, :, :m_w]



def correlate_input_grad(delta: jax.Array, w: jax.Array, geom: ConvGeometry, in_hw: tuple[int, int]) -> jax.Array:
    """dE/dx = full_correlation(dilate_s(delta), rot180(w)), cut to the input's n rows.

    The same sum is computed the way XLA:CPU runs it faster (``input_grad_path`` picks; the bench's conv rows
    measure each path):
      * "split_groups": groups > 1 (up to MAX_SPLIT_GROUPS): one ungrouped gradient per group; XLA:CPU runs
        grouped convolutions as generic loops, ungrouped ones in its convolution library;
      * "blocked": stride 1, few channels on both sides: the full correlation itself, width-blocked
        (``blocked_input_grad``);
      * "col2im": few input channels: multiply first, then overlap-add (``col2im_input_grad``);
      * "polyphase": stride > 1 without dilation: one correlation per phase, no inserted zeros;
      * "dilated": otherwise the zero-inserted ("lhs-dilated") correlation, the textbook form
        (``conv.full_correlation_input_grad``).
    """
    path = input_grad_path(w.shape, geom)
    if path == "split_groups":
        one = dataclasses.replace(geom, groups=1)
        return split_groups(lambda d, k: correlate_input_grad(d, k, one, in_hw), delta, w, geom.groups)
    if path == "blocked":
        return blocked_input_grad(delta, w, geom, in_hw)
    if path == "col2im":
        return col2im_input_grad(delta, w, geom, in_hw)
    if path == "polyphase":
        return polyphase_input_grad(delta, w, geom, in_hw)
    return full_correlation_input_grad(delta, w, geom, in_hw)


def input_grad_path(w_shape: tuple[int, ...], geom: ConvGeometry) -> str:
    """Which formulation ``correlate_input_grad`` uses for this kernel shape and geometry (see there)."""
    if 1 < geom.groups <= MAX_SPLIT_GROUPS:
        return "split_groups"
    if use_blocked_input_grad(w_shape, geom):
        return "blocked"
    if use_col2im(w_shape, geom):
        return "col2im"
    if use_polyphase(w_shape[:2], geom):
        return "polyphase"
    return "dilated"


def full_correlation_geometry(w_shape: tuple[int, ...], geom: ConvGeometry) -> ConvGeometry:
    """For stride 1: dE/dx = delta * rot180(w) padded by K - 1 - lo before and K - 1 - hi after (may be < 0)."""
    span = geom.kernel_span(w_shape[:2])
    pads = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(span, geom.padding))
    return ConvGeometry((1, 1), pads, geom.dilation, 1)  # type: ignore[arg-type]


def use_blocked_input_grad(w_shape: tuple[int, ...], geom: ConvGeometry) -> bool:
    """Stride 1, ungrouped, at most BLOCKED_INPUT_GRAD_MAX_CHANNELS conv outputs, padding < K (so the full
    correlation's padding is >= 0), and a width-blocking factor > 1 for the rotated (kh, kw, O, I) kernel.

    Followed by a 2 x 2 max-pool backward as in a network (the bench's lenet5 step), this beats col2im for few
    outputs; with many outputs col2im's matrix product is the faster one.
    """
    if geom.groups != 1 or geom.stride != (1, 1) or w_shape[3] > BLOCKED_INPUT_GRAD_MAX_CHANNELS:
        return False
    full = full_correlation_geometry(w_shape, geom)
    swapped = (*w_shape[:2], w_shape[3], w_shape[2])
    return min(min(p) for p in full.padding) >= 0 and width_block_factor(swapped, full) > 1


def blocked_input_grad(delta: jax.Array, w: jax.Array, geom: ConvGeometry, in_hw: tuple[int, int]) -> jax.Array:
    """dE/dx = full_correlation(delta, rot180(w)) for stride 1, as a width-blocked correlation
    (``width_blocked_correlate``) of delta, padded by K - 1 - lo before and n + lo - m after, with the
    (kh, kw, O, I) kernel: exactly the input's n rows, as in the textbook form. (n + lo - m is K - 1 - hi when
    the forward reads every input row; conv2d_transpose's output_padding asks for rows it does not read, whose
    gradient is zero.)"""
    span = geom.kernel_span(w.shape[:2])
    pads = tuple((k - 1 - lo, n + lo - m) for k, (lo, _), n, m in zip(span, geom.padding, in_hw, delta.shape[1:3]))
    full = ConvGeometry((1, 1), pads, geom.dilation, 1)  # type: ignore[arg-type]
    kernel = rot180_swap(w, 1)
    return width_blocked_correlate(delta, kernel, full, width_block_factor(kernel.shape, full))


def use_col2im(w_shape: tuple[int, ...], geom: ConvGeometry) -> bool:
    """Few input channels (the correlation's output channels), ungrouped: see ``col2im_input_grad``."""
    return geom.groups == 1 and w_shape[2] <= COL2IM_MAX_CHANNELS


def col2im_input_grad(delta: jax.Array, w: jax.Array, geom: ConvGeometry, in_hw: tuple[int, int]) -> jax.Array:
    """dE/dx by "multiply first, then overlap-add" (col2im, the adjoint of im2col).

    dE/dx_pad[n, s u + d a, s v + d b, i] accumulates delta[n, u, v, :] . w[a, b, i, :] over every output
    (u, v) and tap (a, b). One matrix product gives all the terms, cols[n, u, v, (a, b, i)] = delta[n, u, v] @
    w[a, b, i]^T (a GEMM with k_h k_w I columns), and each tap's slab cols[..., a, b, :] is added back at rows
    d a + s u (a zero-interleaved placement for s > 1), then cut to the input rows [lo, lo + n). No zero of the
    stride-dilated or padded delta is multiplied; the overlap-add reads k_h k_w times the output's size.
    (XLA fuses this sum into a consumer that reads each element several times, e.g. the 2 x 2 broadcast of the
    max-pool backward before it, and redoes it per read; still faster than the convolution there.)
    """
    n, m1, m2, o = delta.shape
    kh, kw, i, _ = w.shape
    (sh, sw), (dh, dw), ((lo_h, _), (lo_w, _)) = geom.stride, geom.dilation, geom.padding
    cols = (delta.reshape(-1, o) @ w.reshape(-1, o).T).reshape(n, m1, m2, kh, kw, i)
    hp, wp = lo_h + in_hw[0], lo_w + in_hw[1]
    zero = jnp.zeros((), delta.dtype)
    total = None
    for a in range(kh):
        for b in range(kw):
            edges = (
                (0, 0, 0),
                (a * dh, hp - a * dh - (m1 - 1) * sh - 1, sh - 1),
                (b * dw, wp - b * dw - (m2 - 1) * sw - 1, sw - 1),
                (0, 0, 0),
            )
            placed = lax.pad(cols[:, :, :, a, b, :], zero, edges)
            total = placed if total is None else total + placed
    return total[:, lo_h:, lo_w:, :]



def use_polyphase(kernel_hw: tuple[int, int], geom: ConvGeometry) -> bool:
    """The polyphase input gradient applies to ungrouped, undilated convs with a stride and kernel >= stride.

    (With k < s some phases have no kernel tap at all, and the zero-inserted correlation does no extra work.)
    """
    return (
        geom.groups == 1
        and geom.dilation == (1, 1)
        and geom.stride != (1, 1)
        and all(k >= s for k, s in zip(kernel_hw, geom.stride))
    )


def polyphase_kernel(w: jax.Array, stride: tuple[int, int]) -> jax.Array:
    """(kh, kw, I, O) -> (Ch, Cw, O, sh sw I): the s x s sub-kernels w[p::s, q::s], each rotated 180 degrees
    and zero-padded at the back to C = ceil(k / s) taps, stacked along the output channels in (p, q, i) order."""
    kh, kw, i, o = w.shape
    (sh, sw) = stride
    ch, cw = -(-kh // sh), -(-kw // sw)
    w = jnp.pad(w, ((0, ch * sh - kh), (0, cw * sw - kw), (0, 0), (0, 0)))
    w = w.reshape(ch, sh, cw, sw, i, o)[::-1, :, ::-1]  # tap a = s c + p; rotate the c axes
    return w.transpose(0, 2, 5, 1, 3, 4).reshape(ch, cw, o, sh * sw * i)


def stack_phases(kernel_hw: tuple[int, int], stride: tuple[int, int]) -> bool:
    """Whether ``polyphase_input_grad`` computes the phases as ONE correlation (``stacked_phases``): when the
    kernel is a multiple of the stride on both axes, so that no sub-kernel is zero-padded. Otherwise one
    correlation per phase (``separate_phases``) skips the zero taps, which pays off on XLA:CPU (bench cases
    "conv 3x3 stride 2 SAME, dx only" and "conv 4x4 stride 2 pad 1")."""
    return all(k % s == 0 for k, s in zip(kernel_hw, stride))


def stacked_phases(delta: jax.Array, w: jax.Array, stride: tuple[int, int], out_hw: tuple[int, int]) -> jax.Array:
    """All phases of ``polyphase_input_grad`` from one stride-1 correlation of delta with ``polyphase_kernel``
    (C = ceil(k / s) taps, the shorter sub-kernels zero-padded), s_h s_w I output channels:
    (N, T_h, T_w, s_h, s_w, I)."""
    n, m1, m2, _ = delta.shape
    ch, cw = (-(-k // s) for k, s in zip(w.shape[:2], stride))
    phases = lax.conv_general_dilated(
        delta, polyphase_kernel(w, stride), window_strides=(1, 1),
        padding=((ch - 1, out_hw[0] - m1), (cw - 1, out_hw[1] - m2)), dimension_numbers=NHWC_HWIO,
    )  # fmt: skip
    return phases.reshape(n, *out_hw, *stride, w.shape[2])


def separate_phases(delta: jax.Array, w: jax.Array, stride: tuple[int, int], out_hw: tuple[int, int]) -> jax.Array:
    """All phases of ``polyphase_input_grad``, phase (p, q) its own full correlation of delta with
    w[p::s_h, q::s_w] rotated 180 degrees, exactly ceil((k_h - p) / s_h) x ceil((k_w - q) / s_w) taps:
    (N, T_h, T_w, s_h, s_w, I)."""
    m1, m2 = delta.shape[1:3]
    (sh, sw) = stride

    def phase(p: int, q: int) -> jax.Array:
        sub = rot180_swap(w[p::sh, q::sw], 1)
        cp, cq = sub.shape[:2]
        pads = ((cp - 1, out_hw[0] - m1), (cq - 1, out_hw[1] - m2))
        return lax.conv_general_dilated(delta, sub, (1, 1), pads, dimension_numbers=NHWC_HWIO)

    return jnp.stack([jnp.stack([phase(p, q) for q in range(sw)], axis=3) for p in range(sh)], axis=3)


def polyphase_input_grad(delta: jax.Array, w: jax.Array, geom: ConvGeometry, in_hw: tuple[int, int]) -> jax.Array:
    """dE/dx of a strided correlation without the zeros of dilate_s(delta): one correlation per phase.

    Per axis, in padded coordinates q = i + lo, the forward reads x_pad[s j + a] for output j and tap a, so

        dE/dx_pad[s t + p] = sum_c delta[t - c] w[p + s c]        (taps a = p + s c; out-of-range terms are 0)

    i.e. phase p of dx is the *full* correlation of delta with the sub-kernel w[p::s] rotated 180 degrees, delta
    padded by (its taps - 1) before and cropped or padded to T = ceil((lo + n) / s) rows after. The s_h s_w phases
    come from one correlation or one each (``stack_phases``), are interleaved (depth-to-space:
    dx_pad[s t + p] = phase p at t) and cut to the n input rows [lo, lo + n). Work per output pixel: about
    k_h k_w / (s_h s_w) taps instead of k_h k_w, of which all but that many multiply inserted zeros.
    """
    n, i = delta.shape[0], w.shape[2]
    (sh, sw), ((lo_h, _), (lo_w, _)) = geom.stride, geom.padding
    out_hw = (-(-(lo_h + in_hw[0]) // sh), -(-(lo_w + in_hw[1]) // sw))
    phases_of = stacked_phases if stack_phases(w.shape[:2], geom.stride) else separate_phases
    phases = phases_of(delta, w, geom.stride, out_hw)
    dx_pad = phases.transpose(0, 1, 3, 2, 4, 5).reshape(n, out_hw[0] * sh, out_hw[1] * sw, i)
    return dx_pad[:, lo_h : lo_h + in_hw[0], lo_w : lo_w + in_hw[1], :]


def split_groups(grad: Callable[[jax.Array, jax.Array], jax.Array], a: jax.Array, b: jax.Array, groups: int) -> jax.Array:
    """Concatenate ``grad(a_j, b_j)`` over the groups j along the last axis; ``a_j``, ``b_j``: group j's slice
    of the last axis of ``a`` and ``b``.

    Group j of a grouped conv is an ordinary conv from input channels [j I/g, (j + 1) I/g) to output channels
    [j O/g, (j + 1) O/g) with kernel w[..., j O/g : (j + 1) O/g]. Its input gradient (a = delta, b = w) has the
    group's input channels and its kernel gradient (a = delta, b = x) the group's output channels, so the
    concatenation restores the channel layout of dx and of dw.
    """
    sa, sb = a.shape[-1] // groups, b.shape[-1] // groups
    return jnp.concatenate([grad(a[..., j * sa : (j + 1) * sa], b[..., j * sb : (j + 1) * sb]) for j in range(groups)], axis=-1)


def kernel_gradient(x: jax.Array, delta: jax.Array, geom: ConvGeometry, kernel_hw: tuple[int, int]) -> jax.Array:
    """dE/dk in the form ``kernel_grad_path`` picks: ``width_blocked_kernel_grad`` or ``correlate_kernel_grad``."""
    if kernel_grad_path((*kernel_hw, x.shape[3] // geom.groups, delta.shape[3]), geom) == "width_blocked":
        return width_blocked_kernel_grad(x, delta, geom, kernel_hw, KERNEL_GRAD_BLOCK)
    return correlate_kernel_grad(x, delta, geom, kernel_hw)


def kernel_grad_path(w_shape: tuple[int, ...], geom: ConvGeometry) -> str:
    """"width_blocked" for an ungrouped conv with stride and dilation 1 along the width, k_w > 1 and
    KERNEL_GRAD_BLOCK (C_in + C_out) <= KERNEL_GRAD_BLOCK_MAX_CHANNELS (bench case "lenet5 conv1 5x5 SAME"),
    else "correlation"."""
    _, kw, c_in, c_out = w_shape
    narrow = KERNEL_GRAD_BLOCK * (c_in + c_out) <= KERNEL_GRAD_BLOCK_MAX_CHANNELS
    return "width_blocked" if narrow and width_blockable(kw, geom) else "correlation"


def width_blocked_kernel_grad(
    x: jax.Array, delta: jax.Array, geom: ConvGeometry, kernel_hw: tuple[int, int], r: int
) -> jax.Array:
    """dE/dk through the width-blocked correlation of ``width_blocked_correlate``.

    The blocked kernel is a linear placement of w, K[a, j, (p, i), (q, o)] = w[a, r j + p - q, i, o], so dE/dw is
    the adjoint of that placement applied to the blocked kernel's gradient dE/dK (``correlate_kernel_grad`` of
    the blocked x and the blocked delta): dE/dw[a, b, i, o] = sum_q dE/dK[a, j, (p, i), (q, o)] at r j + p = b + q.
    The zero columns that pad delta to whole blocks meet no real output and add nothing.
    """
    kh, kw = kernel_hw
    m_w, c_out = delta.shape[2:]
    c = blocks_read(kw, r)
    x_blocks = fold_columns(x, geom.padding[1][0], m_w, kw, r)
    delta_blocks = fold_columns(delta, 0, m_w, 1, r)  # zero columns to whole blocks: they meet no real output
    dk = correlate_kernel_grad(x_blocks, delta_blocks, blocked_geometry(geom), (kh, c))
    dk = dk.reshape(kh, c * r, x.shape[3], r, c_out)
    return sum(dk[:, q : q + kw, :, q, :] for q in range(r))


def correlate_kernel_grad(x: jax.Array, delta: jax.Array, geom: ConvGeometry, kernel_hw: tuple[int, int]) -> jax.Array:
    """``correlation_kernel_grad`` with the operands transposed explicitly into NHWC / HWIO order, x to
    (I, H, W, N) and delta to (m_h, m_w, N, O), and the (I, k_h, k_w, O) result back to HWIO: XLA:CPU runs
    only that canonical form in its convolution library, and inside a while loop (an epoch as one lax.scan) it does not
    transpose other forms itself but falls back to a generic loop many times slower. Groups (up to
    MAX_SPLIT_GROUPS) are split into ungrouped correlations; more keep the textbook's batch-group count.
    """
    if geom.groups > MAX_SPLIT_GROUPS:
        return correlation_kernel_grad(x, delta, geom, kernel_hw)
    pads = kernel_grad_padding(x.shape[1:3], geom, kernel_hw)

    def one_group(x_j: jax.Array, delta_j: jax.Array) -> jax.Array:
        dw = lax.conv_general_dilated(
            x_j.transpose(3, 1, 2, 0), delta_j.transpose(1, 2, 0, 3), window_strides=geom.dilation, padding=pads,
            rhs_dilation=geom.stride, dimension_numbers=NHWC_HWIO, preferred_element_type=accumulator_dtype(x.dtype),
        )  # fmt: skip
        return dw.transpose(1, 2, 0, 3).astype(x.dtype)

    if geom.groups == 1:
        return one_group(x, delta)
    return split_groups(lambda d_j, x_j: one_group(x_j, d_j), delta, x, geom.groups)


conv.FORWARD.register("cpu", manual_correlate)
conv.INPUT_GRAD.register("cpu", correlate_input_grad)
conv.KERNEL_GRAD.register("cpu", kernel_gradient)
