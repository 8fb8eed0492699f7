"""The argument contract of every op: a bad argument fails at trace time, by name, with what was seen.

Each row of ``CASES`` is one bad call: the op, its array arguments, its static keyword arguments, the
exception type (ValueError for a bad value or shape, TypeError for a bad type or dtype) and a regex the
message must match; the regex names the argument and the shapes/values that were passed. Every row runs

  * for both implementations (impl="manual" and impl="autodiff"), and
  * eagerly and inside ``jax.jit``: there the function is only *traced* (``jax.jit(f).trace``), so the
    error must come from the Python checks on static shapes, dtypes and hyper-parameters, never from XLA
    lowering or compilation.

Rows marked ``eager_only`` depend on concrete values (integer label ranges) or on non-array arguments that
jit cannot take. A row may carry ``xfail`` to document a known library bug (with the reason).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import ops

IMPLS = ("manual", "autodiff")
F = jnp.float64


def z(*shape, dtype=F):
    """An array of the given shape (values never matter for these checks)."""
    return jnp.zeros(shape, dtype)


def e(text: str) -> str:
    """Escape a literal message fragment (shapes contain parentheses, brackets, dots)."""
    return re.escape(text)


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    op: Callable[..., Any]
    args: tuple
    kwargs: dict
    exc: type[Exception]
    match: str
    eager_only: bool = False
    xfail: str | None = None


def case(id, op, args, kwargs, exc, match, **extra):
    return Case(id, op, tuple(args), dict(kwargs), exc, match, **extra)


# Well-formed arguments each row perturbs.
X = z(1, 5, 5, 2)  # conv2d input NHWC
W = z(2, 2, 2, 3)  # HWIO kernel: 2 in, 3 out
Y = z(1, 3, 3, 3)  # conv2d_transpose input (3 channels = W.shape[3])
P = z(1, 4, 4, 2)  # pooling / sub-sampling input
KEY = jax.random.PRNGKey(0)  # dropout
TRAIN, EVAL = {"training": True}, {"training": False}  # batch_norm modes


def S(c: int) -> dict:
    """A batch_norm state for c channels."""
    return {"mean": z(c), "var": z(c) + 1}


CASES = [
    # ------------------------------------------------------------ conv2d: channels, ranks, groups
    case("conv2d/x-channels-vs-w", ops.conv2d, (z(1, 5, 5, 3), z(2, 2, 2, 4)), {}, ValueError,
         e("x has 3 channels (shape (1, 5, 5, 3)) but w of shape (2, 2, 2, 4)") + ".*" + e("expects 2")),
    case("conv2d/x-channels-vs-w-groups", ops.conv2d, (z(1, 5, 5, 4), z(2, 2, 1, 4)), {"groups": 2}, ValueError,
         e("x has 4 channels (shape (1, 5, 5, 4)) but w of shape (2, 2, 1, 4) with groups=2 expects 2")),
    case("conv2d/groups-not-dividing-in-channels", ops.conv2d, (z(1, 5, 5, 3), z(2, 2, 1, 4)), {"groups": 2},
         ValueError, e("x has 3 channels") + ".*" + e("groups=2 expects 2")),
    case("conv2d/groups-not-dividing-out-channels", ops.conv2d, (z(1, 5, 5, 4), z(2, 2, 2, 3)), {"groups": 2},
         ValueError, e("groups=2 must divide the kernel's out_channels w.shape[3]=3")),
    case("conv2d/x-rank-3", ops.conv2d, (z(5, 5, 2), W), {}, ValueError, e("x must have rank 4") + ".*" + e("(5, 5, 2)")),
    case("conv2d/x-rank-5", ops.conv2d, (z(1, 1, 5, 5, 2), W), {}, ValueError,
         e("x must have rank 4") + ".*" + e("(1, 1, 5, 5, 2)")),
    case("conv2d/w-rank-3", ops.conv2d, (X, z(2, 2, 2)), {}, ValueError, e("w must have rank 4") + ".*" + e("(2, 2, 2)")),
    case("conv2d/w-rank-2", ops.conv2d, (X, z(2, 3)), {}, ValueError, e("w must have rank 4") + ".*" + e("(2, 3)")),
    case("conv2d/groups-0", ops.conv2d, (X, W), {"groups": 0}, ValueError, e("groups must be >= 1, got 0")),
    case("conv2d/groups-float", ops.conv2d, (X, W), {"groups": 1.0}, TypeError, e("groups must be an int, got 1.0")),
    # ------------------------------------------------------------ conv2d: padding
    case("conv2d/padding-negative-int", ops.conv2d, (X, W), {"padding": -1}, ValueError,
         e("padding must be >= 0, got -1")),
    case("conv2d/padding-negative-pair", ops.conv2d, (X, W), {"padding": (1, -2)}, ValueError,
         e("padding[w] must be >= 0, got -2")),
    case("conv2d/padding-negative-pair-of-pairs", ops.conv2d, (X, W), {"padding": ((0, -1), (0, 0))}, ValueError,
         e("padding[h][1] must be >= 0, got -1")),
    case("conv2d/padding-unknown-string", ops.conv2d, (X, W), {"padding": "FULL"}, ValueError,
         "padding must be .*" + e("got 'FULL'")),
    case("conv2d/padding-three-entries", ops.conv2d, (X, W), {"padding": (1, 1, 1)}, ValueError,
         e("padding must have two entries") + ".*" + e("(1, 1, 1)")),
    case("conv2d/padding-float", ops.conv2d, (X, W), {"padding": 1.5}, TypeError, e("padding must be an int, got 1.5")),
    case("conv2d/padding-bool", ops.conv2d, (X, W), {"padding": True}, TypeError, e("padding must be an int, got True")),
    # ------------------------------------------------------------ conv2d: kernel larger than the padded input
    case("conv2d/kernel-too-big", ops.conv2d, (z(1, 2, 4, 2), z(3, 3, 2, 3)), {}, ValueError,
         e("conv2d: the dilated kernel spans 3 along height but the padded input has only 2 (input 2, padding (0, 0))")),
    case("conv2d/kernel-too-wide", ops.conv2d, (z(1, 4, 2, 2), z(1, 3, 2, 3)), {"padding": ((0, 0), (0, 0))}, ValueError,
         e("spans 3 along width but the padded input has only 2")),
    case("conv2d/dilated-kernel-too-big", ops.conv2d, (z(1, 4, 4, 2), W), {"dilation": 4}, ValueError,
         e("dilated kernel spans 5 along height but the padded input has only 4")),
    case("conv2d/dilated-kernel-too-big-with-padding", ops.conv2d, (z(1, 4, 4, 2), W), {"dilation": (1, 6), "padding": 1},
         ValueError, e("spans 7 along width but the padded input has only 6 (input 4, padding (1, 1))")),
    # ------------------------------------------------------------ conv2d: stride and dilation
    case("conv2d/stride-0", ops.conv2d, (X, W), {"stride": 0}, ValueError, e("stride must be >= 1, got 0")),
    case("conv2d/stride-negative", ops.conv2d, (X, W), {"stride": -2}, ValueError, e("stride must be >= 1, got -2")),
    case("conv2d/stride-pair-0", ops.conv2d, (X, W), {"stride": (1, 0)}, ValueError, e("stride[1] must be >= 1, got 0")),
    case("conv2d/stride-float", ops.conv2d, (X, W), {"stride": 1.5}, TypeError,
         e("stride must be an int, got 1.5 of type float")),
    case("conv2d/stride-bool", ops.conv2d, (X, W), {"stride": True}, TypeError,
         e("stride must be an int, got True of type bool")),
    case("conv2d/stride-three-entries", ops.conv2d, (X, W), {"stride": (1, 1, 1)}, ValueError,
         e("stride must be an int or a pair (h, w), got (1, 1, 1)")),
    case("conv2d/dilation-0", ops.conv2d, (X, W), {"dilation": 0}, ValueError, e("dilation must be >= 1, got 0")),
    case("conv2d/dilation-negative", ops.conv2d, (X, W), {"dilation": (-1, 1)}, ValueError,
         e("dilation[0] must be >= 1, got -1")),
    case("conv2d/dilation-float", ops.conv2d, (X, W), {"dilation": 1.5}, TypeError, e("dilation must be an int, got 1.5")),
    case("conv2d/dilation-bool", ops.conv2d, (X, W), {"dilation": (1, True)}, TypeError,
         e("dilation[1] must be an int, got True")),
    # ------------------------------------------------------------ conv2d: bias and dtypes
    case("conv2d/bias-wrong-length", ops.conv2d, (X, W, z(4)), {}, ValueError,
         e("b must have shape (3,)") + ".*" + e("got (4,)")),
    case("conv2d/bias-2d", ops.conv2d, (X, W, z(1, 3)), {}, ValueError, e("b must have shape (3,)") + ".*" + e("got (1, 3)")),
    case("conv2d/x-int", ops.conv2d, (z(1, 5, 5, 2, dtype=jnp.int32), W), {}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got int32")),
    case("conv2d/w-bool", ops.conv2d, (X, z(2, 2, 2, 3, dtype=jnp.bool_)), {}, TypeError,
         e("w must have a floating dtype") + ".*" + e("got bool")),
    case("conv2d/b-int", ops.conv2d, (X, W, z(3, dtype=jnp.int32)), {}, TypeError,
         e("b must have a floating dtype") + ".*" + e("got int32")),
    case("conv2d/x-complex", ops.conv2d, (z(1, 5, 5, 2, dtype=jnp.complex64), W), {}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got complex64")),
    case("conv2d/x-list", ops.conv2d, ([[1.0]], W), {}, TypeError, e("x must be an array, got list"), eager_only=True),
    case("conv2d/w-zero-size-kernel", ops.conv2d, (X, z(0, 2, 2, 3)), {}, ValueError, r"\bw\b.*\(0, 2, 2, 3\)"),
    # ------------------------------------------------------------ conv2d_transpose
    case("conv2d_transpose/y-channels-vs-w", ops.conv2d_transpose, (z(1, 3, 3, 4), W), {}, ValueError,
         e("y has 4 channels (shape (1, 3, 3, 4)) but w of shape (2, 2, 2, 3)") + ".*" + e("3 output channels (w.shape[3])")),
    case("conv2d_transpose/y-rank-3", ops.conv2d_transpose, (z(3, 3, 3), W), {}, ValueError,
         e("y must have rank 4") + ".*" + e("(3, 3, 3)")),
    case("conv2d_transpose/w-rank-5", ops.conv2d_transpose, (Y, z(2, 2, 2, 3, 1)), {}, ValueError,
         e("w must have rank 4") + ".*" + e("(2, 2, 2, 3, 1)")),
    case("conv2d_transpose/groups-not-dividing", ops.conv2d_transpose, (Y, z(2, 2, 1, 3)), {"groups": 2}, ValueError,
         e("groups=2 must divide the kernel's out_channels w.shape[3]=3")),
    case("conv2d_transpose/groups-negative", ops.conv2d_transpose, (Y, W), {"groups": -1}, ValueError,
         e("groups must be >= 1, got -1")),
    case("conv2d_transpose/output-padding-ge-stride", ops.conv2d_transpose, (Y, W), {"stride": 2, "output_padding": 2},
         ValueError, e("output_padding along height must be smaller than max(stride, dilation)=2, got 2")),
    case("conv2d_transpose/output-padding-ge-dilation", ops.conv2d_transpose, (Y, W),
         {"stride": (2, 1), "dilation": (1, 3), "output_padding": (1, 3)}, ValueError,
         e("output_padding along width must be smaller than max(stride, dilation)=3, got 3")),
    case("conv2d_transpose/output-padding-stride-1", ops.conv2d_transpose, (Y, W), {"output_padding": 1}, ValueError,
         e("output_padding along height must be smaller than max(stride, dilation)=1, got 1")),
    case("conv2d_transpose/output-padding-with-same", ops.conv2d_transpose, (Y, W),
         {"stride": 2, "padding": "SAME", "output_padding": 1}, ValueError,
         e('output_padding must be 0 with padding="SAME", got (1, 1)')),
    case("conv2d_transpose/output-padding-with-same-lowercase", ops.conv2d_transpose, (Y, W),
         {"stride": 2, "padding": "same", "output_padding": (0, 1)}, ValueError,
         e('output_padding must be 0 with padding="SAME", got (0, 1)')),
    case("conv2d_transpose/output-padding-negative", ops.conv2d_transpose, (Y, W), {"stride": 2, "output_padding": -1},
         ValueError, e("output_padding must be >= 0, got -1")),
    case("conv2d_transpose/output-padding-float", ops.conv2d_transpose, (Y, W), {"stride": 2, "output_padding": 0.5},
         TypeError, e("output_padding must be an int, got 0.5")),
    case("conv2d_transpose/stride-0", ops.conv2d_transpose, (Y, W), {"stride": 0}, ValueError,
         e("stride must be >= 1, got 0")),
    case("conv2d_transpose/stride-bool", ops.conv2d_transpose, (Y, W), {"stride": True}, TypeError,
         e("stride must be an int, got True")),
    case("conv2d_transpose/dilation-float", ops.conv2d_transpose, (Y, W), {"dilation": 2.0}, TypeError,
         e("dilation must be an int, got 2.0")),
    case("conv2d_transpose/padding-negative-int", ops.conv2d_transpose, (Y, W), {"padding": -1}, ValueError,
         e("padding must be >= 0, got -1")),
    case("conv2d_transpose/padding-negative-pair", ops.conv2d_transpose, (Y, W), {"padding": (-1, 0)}, ValueError,
         e("padding[h] must be >= 0, got -1")),
    case("conv2d_transpose/padding-unknown-string", ops.conv2d_transpose, (Y, W), {"padding": "causal"}, ValueError,
         "padding must be .*" + e("got 'causal'")),
    case("conv2d_transpose/padding-empties-output", ops.conv2d_transpose, (z(1, 1, 1, 3), W), {"padding": 1}, ValueError,
         e("input (1, 1, 1, 3) with kernel span (2, 2), stride (1, 1) and padding ((1, 1), (1, 1)) gives an empty output (0, 0)")),
    case("conv2d_transpose/y-int", ops.conv2d_transpose, (z(1, 3, 3, 3, dtype=jnp.int8), W), {}, TypeError,
         e("y must have a floating dtype") + ".*" + e("got int8")),
    case("conv2d_transpose/bias-wrong-length", ops.conv2d_transpose, (Y, W, z(3)), {}, ValueError,
         e("b must have shape (2,)") + ".*" + e("got (3,)")),
    case("conv2d_transpose/bias-int", ops.conv2d_transpose, (Y, W, z(2, dtype=jnp.int32)), {}, TypeError,
         e("b must have a floating dtype")),
    # ------------------------------------------------------------ max_pool / avg_pool
    *[
        c
        for pool in (ops.max_pool, ops.avg_pool)
        for name in [pool.__name__]
        for c in (
            case(f"{name}/x-rank-3", pool, (z(4, 4, 2),), {}, ValueError, e("x must have rank 4") + ".*" + e("(4, 4, 2)")),
            case(f"{name}/window-too-big", pool, (P,), {"window": 5}, ValueError,
                 e(f"{name}: the window spans 5 along height but the padded input has only 4 (input 4, padding (0, 0))")),
            case(f"{name}/window-too-wide-with-padding", pool, (P,), {"window": (1, 7), "padding": (0, 1)}, ValueError,
                 e("window spans 7 along width but the padded input has only 6 (input 4, padding (1, 1))")),
            case(f"{name}/window-0", pool, (P,), {"window": 0}, ValueError, e("window must be >= 1, got 0")),
            case(f"{name}/window-negative", pool, (P,), {"window": (2, -1)}, ValueError, e("window[1] must be >= 1, got -1")),
            case(f"{name}/window-float", pool, (P,), {"window": 1.5}, TypeError, e("window must be an int, got 1.5")),
            case(f"{name}/window-bool", pool, (P,), {"window": True}, TypeError, e("window must be an int, got True")),
            case(f"{name}/stride-0", pool, (P,), {"stride": 0}, ValueError, e("stride must be >= 1, got 0")),
            case(f"{name}/stride-float", pool, (P,), {"stride": (1, 2.0)}, TypeError, e("stride[1] must be an int, got 2.0")),
            case(f"{name}/stride-bool", pool, (P,), {"stride": False}, TypeError, e("stride must be an int, got False")),
            case(f"{name}/padding-negative-int", pool, (P,), {"padding": -1}, ValueError, e("padding must be >= 0, got -1")),
            case(f"{name}/padding-negative-pair", pool, (P,), {"padding": (0, -1)}, ValueError,
                 e("padding[w] must be >= 0, got -1")),
            case(f"{name}/padding-unknown-string", pool, (P,), {"padding": "REFLECT"}, ValueError,
                 "padding must be .*" + e("got 'REFLECT'")),
            case(f"{name}/x-int", pool, (z(1, 4, 4, 2, dtype=jnp.int32),), {}, TypeError,
                 e("x must have a floating dtype") + ".*" + e("got int32")),
            case(f"{name}/x-bool", pool, (z(1, 4, 4, 2, dtype=jnp.bool_),), {}, TypeError,
                 e("x must have a floating dtype") + ".*" + e("got bool")),
            case(f"{name}/window-entirely-in-padding", pool, (P,), {"window": 2, "padding": 2}, ValueError,
                 r"padding.*\b2\b.*window"),
        )
    ],
    case("avg_pool/count_include_pad-int", ops.avg_pool, (P,), {"count_include_pad": 1}, TypeError,
         e("count_include_pad must be a bool, got 1")),
    # ------------------------------------------------------------ subsample / upsample
    case("subsample/beta-wrong-length", ops.subsample, (P, z(3), z(2)), {}, ValueError,
         e("beta must have shape (2,) (one per channel of x), got (3,)")),
    case("subsample/beta-2d", ops.subsample, (P, z(2, 1), z(2)), {}, ValueError, e("beta must have shape (2,)") + ".*" + e("got (2, 1)")),
    case("subsample/beta-scalar", ops.subsample, (P, z(), z(2)), {}, ValueError, e("beta must have shape (2,)") + ".*" + e("got ()")),
    case("subsample/b-wrong-length", ops.subsample, (P, z(2), z(1)), {}, ValueError,
         e("b must have shape (2,) (one per channel of x), got (1,)")),
    case("subsample/height-not-multiple", ops.subsample, (z(1, 5, 4, 2), z(2), z(2)), {}, ValueError,
         e("subsample: the spatial size (5, 4) of x (shape (1, 5, 4, 2)) must be a multiple of window=(2, 2)")),
    case("subsample/width-not-multiple", ops.subsample, (P, z(2), z(2)), {"window": (2, 3)}, ValueError,
         e("the spatial size (4, 4) of x (shape (1, 4, 4, 2)) must be a multiple of window=(2, 3)")),
    case("subsample/window-larger-than-x", ops.subsample, (z(1, 2, 2, 2), z(2), z(2)), {"window": 4}, ValueError,
         e("the spatial size (2, 2)") + ".*" + e("window=(4, 4)")),
    case("subsample/window-0", ops.subsample, (P, z(2), z(2)), {"window": 0}, ValueError, e("window must be >= 1, got 0")),
    case("subsample/window-float", ops.subsample, (P, z(2), z(2)), {"window": 2.0}, TypeError,
         e("window must be an int, got 2.0")),
    case("subsample/window-bool", ops.subsample, (P, z(2), z(2)), {"window": True}, TypeError,
         e("window must be an int, got True")),
    case("subsample/x-rank-3", ops.subsample, (z(4, 4, 2), z(2), z(2)), {}, ValueError,
         e("x must have rank 4") + ".*" + e("(4, 4, 2)")),
    case("subsample/x-int", ops.subsample, (z(1, 4, 4, 2, dtype=jnp.int64), z(2), z(2)), {}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got int64")),
    case("subsample/beta-int", ops.subsample, (P, z(2, dtype=jnp.int32), z(2)), {}, TypeError,
         e("beta must have a floating dtype") + ".*" + e("got int32")),
    case("upsample/factor-0", ops.upsample, (P,), {"factor": 0}, ValueError, e("factor must be >= 1, got 0")),
    case("upsample/factor-negative", ops.upsample, (P,), {"factor": (2, -2)}, ValueError, e("factor[1] must be >= 1, got -2")),
    case("upsample/factor-float", ops.upsample, (P,), {"factor": 1.5}, TypeError, e("factor must be an int, got 1.5")),
    case("upsample/factor-bool", ops.upsample, (P,), {"factor": True}, TypeError, e("factor must be an int, got True")),
    case("upsample/x-rank-2", ops.upsample, (z(4, 4),), {}, ValueError, e("x must have rank 4") + ".*" + e("(4, 4)")),
    case("upsample/x-bool", ops.upsample, (z(1, 2, 2, 1, dtype=jnp.bool_),), {}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got bool")),
    # ------------------------------------------------------------ dense
    case("dense/in-features", ops.dense, (z(2, 5), z(3, 4)), {}, ValueError,
         e("dense: x has 5 input features (shape (2, 5)) but w of shape (3, 4) expects 3 (w.shape[0])")),
    case("dense/in-features-batched", ops.dense, (z(2, 7, 4), z(3, 4)), {}, ValueError,
         e("x has 4 input features (shape (2, 7, 4))")),
    case("dense/w-rank-1", ops.dense, (z(2, 3), z(3)), {}, ValueError, e("w must have rank 2") + ".*" + e("got shape (3,)")),
    case("dense/w-rank-3", ops.dense, (z(2, 3), z(3, 4, 1)), {}, ValueError, e("w must have rank 2") + ".*" + e("(3, 4, 1)")),
    case("dense/x-scalar", ops.dense, (z(), z(3, 4)), {}, ValueError, e("x must have at least one axis") + ".*" + e("got shape ()")),
    case("dense/bias-wrong-length", ops.dense, (z(2, 3), z(3, 4), z(3)), {}, ValueError,
         e("b must have shape (4,)") + ".*" + e("got (3,)")),
    case("dense/x-int", ops.dense, (z(2, 3, dtype=jnp.int32), z(3, 4)), {}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got int32")),
    case("dense/w-bool", ops.dense, (z(2, 3), z(3, 4, dtype=jnp.bool_)), {}, TypeError,
         e("w must have a floating dtype") + ".*" + e("got bool")),
    # ------------------------------------------------------------ activations
    *[
        case(f"{f.__name__}/x-{np.dtype(dt).name}", f, (z(2, 3, dtype=dt),), {}, TypeError,
             e("x must have a floating dtype") + ".*" + e(f"got {np.dtype(dt).name}"))
        for f in (ops.sigmoid, ops.tanh, ops.relu, ops.softmax, ops.log_softmax)
        for dt in (jnp.int32, jnp.bool_)
    ],
    *[
        c
        for f in (ops.softmax, ops.log_softmax)
        for c in (
            case(f"{f.__name__}/axis-too-large", f, (z(2, 3),), {"axis": 2}, ValueError,
                 e("axis 2 is out of range for x of shape (2, 3)")),
            case(f"{f.__name__}/axis-too-negative", f, (z(2, 3),), {"axis": -3}, ValueError,
                 e("axis -3 is out of range for x of shape (2, 3)")),
            case(f"{f.__name__}/axis-float", f, (z(2, 3),), {"axis": 1.0}, TypeError, e("axis must be an int, got 1.0")),
            case(f"{f.__name__}/axis-bool", f, (z(2, 3),), {"axis": True}, TypeError, e("axis must be an int, got True")),
            case(f"{f.__name__}/axis-on-scalar", f, (z(),), {"axis": 0}, ValueError,
                 e("axis 0 is out of range for x of shape ()")),
        )
    ],
    # ------------------------------------------------------------ mse
    case("mse/shape-mismatch", ops.mse, (z(2, 3), z(2, 4)), {}, ValueError,
         e("mse: pred and target must have the same shape, got (2, 3) and (2, 4)")),
    case("mse/broadcastable-mismatch", ops.mse, (z(2, 3), z(3)), {}, ValueError,
         e("pred and target must have the same shape, got (2, 3) and (3,)")),
    case("mse/transposed", ops.mse, (z(2, 3), z(3, 2)), {}, ValueError, e("got (2, 3) and (3, 2)")),
    case("mse/pred-scalar", ops.mse, (z(), z()), {}, ValueError, e("pred must have a batch axis (N, ...), got shape ()")),
    case("mse/pred-int", ops.mse, (z(2, 3, dtype=jnp.int32), z(2, 3)), {}, TypeError,
         e("pred must have a floating dtype") + ".*" + e("got int32")),
    case("mse/target-int", ops.mse, (z(2, 3), z(2, 3, dtype=jnp.int32)), {}, TypeError,
         e("target must have a floating dtype") + ".*" + e("got int32")),
    # ------------------------------------------------------------ softmax_cross_entropy
    case("xent/int-labels-wrong-length", ops.softmax_cross_entropy, (z(2, 3), z(3, dtype=jnp.int32)), {}, ValueError,
         e("integer labels must have shape logits.shape[:-1]=(2,), got (3,)")),
    case("xent/int-labels-extra-axis", ops.softmax_cross_entropy, (z(2, 3), z(2, 1, dtype=jnp.int32)), {}, ValueError,
         e("integer labels must have shape logits.shape[:-1]=(2,), got (2, 1)")),
    case("xent/int-labels-logits-shape", ops.softmax_cross_entropy, (z(2, 3), z(2, 3, dtype=jnp.int32)), {}, ValueError,
         e("integer labels must have shape logits.shape[:-1]=(2,), got (2, 3)")),
    case("xent/float-labels-wrong-shape", ops.softmax_cross_entropy, (z(2, 3), z(2, 4)), {}, ValueError,
         e("float labels must have the logits' shape (2, 3) (one-hot rows), got (2, 4)")),
    case("xent/float-labels-class-ids", ops.softmax_cross_entropy, (z(2, 3), z(2)), {}, ValueError,
         e("float labels must have the logits' shape (2, 3)") + ".*" + e("got (2,)")),
    case("xent/labels-bool", ops.softmax_cross_entropy, (z(2, 3), z(2, 3, dtype=jnp.bool_)), {}, TypeError,
         e("labels must have a floating dtype") + ".*" + e("got bool")),
    case("xent/logits-int", ops.softmax_cross_entropy, (z(2, 3, dtype=jnp.int32), z(2, dtype=jnp.int32)), {}, TypeError,
         e("logits must have a floating dtype") + ".*" + e("got int32")),
    case("xent/logits-scalar", ops.softmax_cross_entropy, (z(), z(dtype=jnp.int32)), {}, ValueError,
         e("logits must have shape (..., num_classes), got ()")),
    case("xent/label-too-large", ops.softmax_cross_entropy, (z(2, 3), jnp.array([0, 3])), {}, ValueError,
         e("labels must lie in [0, 3) for logits with 3 classes, got values in [0, 3]"), eager_only=True),
    case("xent/label-negative", ops.softmax_cross_entropy, (z(2, 3), jnp.array([-1, 2])), {}, ValueError,
         e("labels must lie in [0, 3) for logits with 3 classes, got values in [-1, 2]"), eager_only=True),
    case("xent/label-numpy-too-large", ops.softmax_cross_entropy, (z(2, 3), np.array([7, 1])), {}, ValueError,
         e("labels must lie in [0, 3)") + ".*" + e("got values in [1, 7]"), eager_only=True),
    # ------------------------------------------------------------ batch_norm
    case("batch_norm/one-value-per-channel", ops.batch_norm, (z(1, 1, 1, 3), z(3), z(3), S(3)), TRAIN, ValueError,
         e("Expected more than 1 value per channel when training, got x of shape (1, 1, 1, 3), axis -1")),
    case("batch_norm/one-value-per-channel-2d", ops.batch_norm, (z(1, 3), z(3), z(3), S(3)), TRAIN, ValueError,
         e("Expected more than 1 value per channel when training, got x of shape (1, 3)")),
    case("batch_norm/one-value-per-channel-axis0", ops.batch_norm, (z(3, 1), z(3), z(3), S(3)), {**TRAIN, "axis": 0},
         ValueError, e("Expected more than 1 value per channel when training, got x of shape (3, 1), axis 0")),
    case("batch_norm/gamma-wrong-length", ops.batch_norm, (P, z(3), z(2), S(2)), TRAIN, ValueError,
         e("batch_norm: gamma must have shape (2,), one per channel of x (shape (1, 4, 4, 2), axis -1), got (3,)")),
    case("batch_norm/gamma-wrong-length-axis1", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "axis": 1}, ValueError,
         e("gamma must have shape (4,), one per channel of x (shape (1, 4, 4, 2), axis 1), got (2,)")),
    case("batch_norm/beta-2d", ops.batch_norm, (P, z(2), z(2, 1), S(2)), TRAIN, ValueError,
         e("beta must have shape (2,)") + ".*" + e("got (2, 1)")),
    case("batch_norm/state-of-another-model", ops.batch_norm, (P, z(2), z(2), S(8)), TRAIN, ValueError,
         e("state['mean'] must have shape (2,), one per channel of x (shape (1, 4, 4, 2), axis -1), got (8,)")
         + ".*" + e("batch-norm state of another layer or model")),
    case("batch_norm/state-of-another-model-eval", ops.batch_norm, (P, z(2), z(2), S(8)), EVAL, ValueError,
         e("state['mean'] must have shape (2,)") + ".*" + e("got (8,)")),
    case("batch_norm/state-var-wrong-length", ops.batch_norm, (P, z(2), z(2), {"mean": z(2), "var": z(3)}), EVAL,
         ValueError, e("state['var'] must have shape (2,)") + ".*" + e("got (3,)")),
    case("batch_norm/state-missing-var", ops.batch_norm, (P, z(2), z(2), {"mean": z(2)}), TRAIN, ValueError,
         e("state must have exactly the keys 'mean' and 'var'") + ".*" + e("got ['mean']")),
    case("batch_norm/state-not-a-dict", ops.batch_norm, (P, z(2), z(2), z(2)), TRAIN, TypeError,
         e("state must be a dict {'mean': (C,), 'var': (C,)}")),
    case("batch_norm/state-int", ops.batch_norm, (P, z(2), z(2), {"mean": z(2, dtype=jnp.int32), "var": z(2)}), TRAIN,
         TypeError, e("state['mean'] must have a floating dtype") + ".*" + e("got int32")),
    case("batch_norm/axis-too-large", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "axis": 4}, ValueError,
         e("axis 4 is out of range for x of shape (1, 4, 4, 2)")),
    case("batch_norm/axis-too-negative", ops.batch_norm, (P, z(2), z(2), S(2)), {**EVAL, "axis": -5}, ValueError,
         e("axis -5 is out of range for x of shape (1, 4, 4, 2)")),
    case("batch_norm/axis-float", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "axis": 3.0}, TypeError,
         e("axis must be an int, got 3.0")),
    case("batch_norm/momentum-negative", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "momentum": -0.1}, ValueError,
         e("momentum must lie in [0, 1]") + ".*" + e("got -0.1")),
    case("batch_norm/momentum-above-1", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "momentum": 1.5}, ValueError,
         e("momentum must lie in [0, 1]") + ".*" + e("got 1.5")),
    case("batch_norm/momentum-nan", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "momentum": float("nan")},
         ValueError, e("momentum must lie in [0, 1]") + ".*" + e("got nan")),
    case("batch_norm/momentum-str", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "momentum": "0.9"}, TypeError,
         e("momentum must be a float, got '0.9'")),
    case("batch_norm/eps-0", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "eps": 0.0}, ValueError,
         e("eps must be a finite number > 0, got 0.0")),
    case("batch_norm/eps-negative", ops.batch_norm, (P, z(2), z(2), S(2)), {**EVAL, "eps": -1e-5}, ValueError,
         e("eps must be a finite number > 0, got -1e-05")),
    case("batch_norm/eps-bool", ops.batch_norm, (P, z(2), z(2), S(2)), {**TRAIN, "eps": True}, TypeError,
         e("eps must be a float, got True")),
    case("batch_norm/training-int", ops.batch_norm, (P, z(2), z(2), S(2)), {"training": 1}, TypeError,
         e("training must be a bool, got 1")),
    case("batch_norm/x-int", ops.batch_norm, (z(1, 4, 4, 2, dtype=jnp.int32), z(2), z(2), S(2)), TRAIN, TypeError,
         e("x must have a floating dtype") + ".*" + e("got int32")),
    case("batch_norm/gamma-bool", ops.batch_norm, (P, z(2, dtype=jnp.bool_), z(2), S(2)), TRAIN, TypeError,
         e("gamma must have a floating dtype") + ".*" + e("got bool")),
    case("batch_norm/x-scalar", ops.batch_norm, (z(), z(1), z(1), S(1)), EVAL, ValueError,
         e("batch_norm: x must have a channel axis, got shape ()")),
    # ------------------------------------------------------------ dropout
    case("dropout/rate-1", ops.dropout, (z(2, 3), KEY), {"rate": 1.0}, ValueError,
         e("rate must lie in [0, 1) (the probability of dropping a unit), got 1.0")),
    case("dropout/rate-negative", ops.dropout, (z(2, 3), KEY), {"rate": -0.5}, ValueError,
         e("rate must lie in [0, 1)") + ".*" + e("got -0.5")),
    case("dropout/rate-nan", ops.dropout, (z(2, 3), KEY), {"rate": float("nan")}, ValueError,
         e("rate must lie in [0, 1)") + ".*" + e("got nan")),
    case("dropout/rate-bool", ops.dropout, (z(2, 3), KEY), {"rate": True}, TypeError, e("rate must be a float, got True")),
    case("dropout/rate-deterministic-still-checked", ops.dropout, (z(2, 3), KEY), {"rate": 2.0, "deterministic": True},
         ValueError, e("rate must lie in [0, 1)") + ".*" + e("got 2.0")),
    case("dropout/key-float", ops.dropout, (z(2, 3), z(2)), {"rate": 0.5}, TypeError,
         e("key must be a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got an array of dtype float64 "
           "and shape (2,)")),
    case("dropout/key-int32", ops.dropout, (z(2, 3), jnp.array([0, 1], jnp.int32)), {"rate": 0.5}, TypeError,
         e("key must be a PRNG key") + ".*" + e("dtype int32")),
    case("dropout/key-python-int", ops.dropout, (z(2, 3), 0), {"rate": 0.5}, TypeError, e("key must be a PRNG key")),
    case("dropout/key-none", ops.dropout, (z(2, 3), None), {"rate": 0.5}, TypeError,
         e("key must be a PRNG key") + ".*" + e("got NoneType")),
    case("dropout/key-batch", ops.dropout, (z(2, 3), jax.random.split(KEY, 3)), {"rate": 0.5}, ValueError,
         e("key must be a single PRNG key of shape (2,) (uint32), got shape (3, 2)")),
    case("dropout/typed-key-batch", ops.dropout, (z(2, 3), jax.random.split(jax.random.key(0), 3)), {"rate": 0.5},
         ValueError, e("key must be a single PRNG key of shape ()") + ".*" + e("got shape (3,)")),
    case("dropout/deterministic-int", ops.dropout, (z(2, 3), KEY), {"rate": 0.5, "deterministic": 1}, TypeError,
         e("deterministic must be a bool, got 1")),
    case("dropout/x-int", ops.dropout, (z(2, 3, dtype=jnp.int32), KEY), {"rate": 0.5}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got int32")),
    # ------------------------------------------------------------ local_response_norm
    case("lrn/size-0", ops.local_response_norm, (P,), {"size": 0}, ValueError, e("size must be >= 1, got 0")),
    case("lrn/size-float", ops.local_response_norm, (P,), {"size": 5.0}, TypeError, e("size must be an int, got 5.0")),
    case("lrn/x-rank-3", ops.local_response_norm, (z(4, 4, 2),), {}, ValueError,
         e("x must have rank 4 (NHWC), got shape (4, 4, 2)")),
    case("lrn/x-rank-5", ops.local_response_norm, (z(1, 1, 4, 4, 2),), {}, ValueError,
         e("x must have rank 4") + ".*" + e("(1, 1, 4, 4, 2)")),
    case("lrn/k-0", ops.local_response_norm, (P,), {"k": 0.0}, ValueError, e("k must be a finite number > 0, got 0.0")),
    case("lrn/alpha-negative", ops.local_response_norm, (P,), {"alpha": -1e-4}, ValueError,
         e("alpha must be a finite number >= 0, got -0.0001")),
    case("lrn/beta-inf", ops.local_response_norm, (P,), {"beta": float("inf")}, ValueError,
         e("beta must be a finite number >= 0, got inf")),
    case("lrn/alpha-str", ops.local_response_norm, (P,), {"alpha": "1e-4"}, TypeError, e("alpha must be a float, got '1e-4'")),
    case("lrn/x-int", ops.local_response_norm, (z(1, 4, 4, 2, dtype=jnp.int32),), {}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got int32")),
    # ------------------------------------------------------------ global_avg_pool
    case("global_avg_pool/x-rank-2", ops.global_avg_pool, (z(2, 3),), {}, ValueError,
         e("x must have rank 4 (NHWC), got shape (2, 3)")),
    case("global_avg_pool/x-rank-3", ops.global_avg_pool, (z(4, 4, 2),), {}, ValueError, e("x must have rank 4") + ".*" + e("(4, 4, 2)")),
    case("global_avg_pool/empty-map", ops.global_avg_pool, (z(1, 0, 3, 2),), {}, ValueError,
         e("global_avg_pool: x has an empty spatial map (shape (1, 0, 3, 2))")),
    case("global_avg_pool/x-bool", ops.global_avg_pool, (z(1, 2, 2, 1, dtype=jnp.bool_),), {}, TypeError,
         e("x must have a floating dtype") + ".*" + e("got bool")),
    # ------------------------------------------------------------ concat / add
    case("concat/empty", ops.concat, ([],), {}, ValueError, e("concat: xs must hold at least one array, got an empty sequence")),
    case("concat/spatial-mismatch", ops.concat, ([z(1, 4, 4, 2), z(1, 3, 4, 1), z(1, 4, 4, 3)],), {}, ValueError,
         e("concat: the arrays of xs must have equal shapes except along axis 3, got shapes "
           "[(1, 4, 4, 2), (1, 3, 4, 1), (1, 4, 4, 3)]")),
    case("concat/channels-mismatch-axis1", ops.concat, ([z(1, 4, 4, 2), z(1, 4, 4, 3)],), {"axis": 1}, ValueError,
         e("equal shapes except along axis 1, got shapes [(1, 4, 4, 2), (1, 4, 4, 3)]")),
    case("concat/rank-mismatch", ops.concat, ([z(1, 4, 4, 2), z(4, 4, 2)],), {}, ValueError,
         e("concat: every array of xs must have the same rank, got shapes [(1, 4, 4, 2), (4, 4, 2)]")),
    case("concat/scalars", ops.concat, ([z(), z()],), {}, ValueError, e("arrays with at least one axis, got shapes [(), ()]")),
    case("concat/axis-too-large", ops.concat, ([z(2, 3), z(2, 3)],), {"axis": 2}, ValueError,
         e("axis 2 is out of range for arrays of rank 2 (shapes [(2, 3), (2, 3)])")),
    case("concat/not-a-list", ops.concat, (z(2, 3),), {}, TypeError, e("concat: xs must be a list or tuple of arrays, got ")),
    case("concat/xs-int", ops.concat, ([z(2, 3), z(2, 3, dtype=jnp.int32)],), {}, TypeError,
         e("xs[1] must have a floating dtype") + ".*" + e("got int32")),
    case("add/shape-mismatch", ops.add, (z(2, 3), z(2, 4)), {}, ValueError,
         e("add: a and b must have the same shape, got (2, 3) and (2, 4)")),
    case("add/broadcastable-mismatch", ops.add, (z(1, 4, 4, 2), z(2)), {}, ValueError,
         e("add: a and b must have the same shape, got (1, 4, 4, 2) and (2,)")),
    case("add/b-int", ops.add, (z(2, 3), z(2, 3, dtype=jnp.int32)), {}, TypeError,
         e("b must have a floating dtype") + ".*" + e("got int32")),
]

MODES = ("eager", "jit")


def _params():
    for c in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        for impl in IMPLS:
            for mode in MODES:
                if mode == "jit" and c.eager_only:
                    continue
                yield pytest.param(c, impl, mode, id=f"{c.id}-{impl}-{mode}", marks=marks)


def _invoke(c: Case, impl: str, mode: str):
    if mode == "eager":
        return c.op(*c.args, impl=impl, **c.kwargs)
    # Trace only: the error must come from the Python checks, before any lowering or compilation.
    return jax.jit(lambda *a: c.op(*a, impl=impl, **c.kwargs)).trace(*c.args)


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


@pytest.mark.parametrize("c, impl, mode", list(_params()))
def test_bad_argument_raises(c: Case, impl: str, mode: str):
    with pytest.raises(c.exc, match=c.match) as info:
        _invoke(c, impl, mode)
    # Exactly the documented type: not a subclass such as jax's own errors from deeper down.
    assert type(info.value) is c.exc


# ---------------------------------------------------------------- unknown impl, for every op


def _good_calls():
    """One well-formed call per public op: (name, op, args, kwargs)."""
    return [
        ("conv2d", ops.conv2d, (X, W), {}),
        ("conv2d_transpose", ops.conv2d_transpose, (Y, W), {}),
        ("max_pool", ops.max_pool, (P,), {}),
        ("avg_pool", ops.avg_pool, (P,), {}),
        ("subsample", ops.subsample, (P, z(2), z(2)), {}),
        ("upsample", ops.upsample, (P,), {}),
        ("dense", ops.dense, (z(2, 3), z(3, 4)), {}),
        ("sigmoid", ops.sigmoid, (z(2, 3),), {}),
        ("tanh", ops.tanh, (z(2, 3),), {}),
        ("relu", ops.relu, (z(2, 3),), {}),
        ("softmax", ops.softmax, (z(2, 3),), {}),
        ("log_softmax", ops.log_softmax, (z(2, 3),), {}),
        ("mse", ops.mse, (z(2, 3), z(2, 3)), {}),
        ("softmax_cross_entropy", ops.softmax_cross_entropy, (z(2, 3), z(2, dtype=jnp.int32)), {}),
        ("batch_norm", ops.batch_norm, (P, z(2), z(2), S(2)), TRAIN),
        ("dropout", ops.dropout, (z(2, 3), KEY), {"rate": 0.5}),
        ("local_response_norm", ops.local_response_norm, (P,), {}),
        ("global_avg_pool", ops.global_avg_pool, (P,), {}),
        ("concat", ops.concat, ([z(2, 3), z(2, 1)],), {}),
        ("add", ops.add, (z(2, 3), z(2, 3)), {}),
    ]


GOOD = _good_calls()


def test_every_public_op_is_covered():
    assert sorted(name for name, *_ in GOOD) == sorted(ops.__all__)


@pytest.mark.parametrize("bad_impl", ["fast", "Manual", "", None, 0])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, op, args, kwargs", GOOD, ids=[g[0] for g in GOOD])
def test_unknown_impl_raises(name, op, args, kwargs, mode, bad_impl):
    with pytest.raises(ValueError, match=e("impl must be one of ('manual', 'autodiff'), got ") + e(repr(bad_impl))):
        _invoke(Case(name, op, args, kwargs, ValueError, ""), bad_impl, mode)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name, op, args, kwargs", GOOD, ids=[g[0] for g in GOOD])
def test_well_formed_calls_trace_and_run(name, op, args, kwargs, impl):
    """The baselines the rows above perturb are themselves valid, eagerly and under jit."""
    eager = op(*args, impl=impl, **kwargs)
    jitted = jax.jit(lambda *a: op(*a, impl=impl, **kwargs))(*args)
    assert jax.tree_util.tree_structure(eager) == jax.tree_util.tree_structure(jitted)
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---------------------------------------------------------------- documented limitations and known bugs


@pytest.mark.parametrize("impl", IMPLS)
def test_out_of_range_labels_are_not_checked_under_jit(impl):
    """Documented limitation: under jit the label values are unknown, so an out-of-range id is not rejected;
    jax.nn.one_hot turns it into an all-zero row and that sample contributes nothing to the loss."""
    logits = jnp.asarray([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], F)
    loss = jax.jit(lambda l, y: ops.softmax_cross_entropy(l, y, impl=impl))(logits, jnp.array([2, 3]))
    only_first = -jax.nn.log_softmax(logits[0])[2] / 2
    np.testing.assert_allclose(float(loss), float(only_first), rtol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
def test_conv2d_transpose_adds_its_bias(impl):
    """Regression: conv2d_transpose once dropped its bias (never checked, never added, zero gradient)."""
    y = jnp.ones((1, 3, 3, 3), F)
    w = jnp.ones((2, 2, 2, 3), F)
    b = jnp.asarray([10.0, 20.0], F)
    with_bias = ops.conv2d_transpose(y, w, b, impl=impl)
    without = ops.conv2d_transpose(y, w, impl=impl)
    np.testing.assert_array_equal(np.asarray(with_bias - without), np.broadcast_to(np.asarray(b), with_bias.shape))
