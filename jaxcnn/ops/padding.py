"""Padding and output-shape arithmetic for windowed ops (conv, transposed conv, pooling).

One spatial axis at a time. Notation: input size n, kernel size k, dilation d, effective kernel
K = (k - 1) d + 1, stride s, padding lo (top/left) and hi (bottom/right).

    forward output size          m = floor((n + lo + hi - K) / s) + 1           (Dumoulin & Visin 2016)
    rows the forward never reads r = (n + lo + hi - K) mod s

The input gradient of a strided correlation is a *full* correlation of the stride-dilated residual
(m - 1) s + 1 long with the 180-degree-rotated kernel; to land exactly on n rows it is padded by

    lo' = K - 1 - lo,        hi' = K - 1 - hi + r                                  (transpose_padding)

(negative values crop). This is the arithmetic of JAX's own ``_conv_general_vjp_lhs_padding``.
"""

from __future__ import annotations

from typing import Any, Sequence

from jaxcnn.ops._checks import as_int

Pad = tuple[int, int]
Padding2D = tuple[Pad, Pad]


def effective_size(k: int, dilation: int) -> int:
    """K = (k - 1) * dilation + 1: the span of a dilated (atrous) kernel."""
    return (k - 1) * dilation + 1


def same_padding(n: int, k_eff: int, stride: int) -> Pad:
    """lax's "SAME": output ceil(n / s); the extra row goes to the bottom/right."""
    out = -(-n // stride)
    total = max((out - 1) * stride + k_eff - n, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: Any, in_hw: Sequence[int], k_eff_hw: Sequence[int], stride_hw: Sequence[int], *, name: str = "padding"
) -> Padding2D:
    """Normalise "VALID" | "SAME" | p | (ph, pw) | ((top, bottom), (left, right)) to explicit pairs."""
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return (0, 0), (0, 0)
        if mode == "SAME":
            return tuple(same_padding(n, k, s) for n, k, s in zip(in_hw, k_eff_hw, stride_hw))  # type: ignore[return-value]
        raise ValueError(f'{name} must be "VALID", "SAME", an int or ((top, bottom), (left, right)); got {padding!r}')
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ValueError(f"{name} must have two entries (one per spatial axis), got {padding!r}")
        pairs = []
        for axis, entry in zip("hw", padding):
            if isinstance(entry, (tuple, list)):
                if len(entry) != 2:
                    raise ValueError(f"{name} for axis {axis} must be (before, after), got {entry!r}")
                pairs.append((as_int(f"{name}[{axis}][0]", entry[0], minimum=0), as_int(f"{name}[{axis}][1]", entry[1], minimum=0)))
            else:
                p = as_int(f"{name}[{axis}]", entry, minimum=0)
                pairs.append((p, p))
        return pairs[0], pairs[1]
    p = as_int(name, padding, minimum=0)
    return (p, p), (p, p)


def output_size(n: int, k_eff: int, stride: int, pad: Pad) -> int:
    """m = floor((n + lo + hi - K) / s) + 1 (may be < 1: callers reject that)."""
    return (n + pad[0] + pad[1] - k_eff) // stride + 1


def transpose_padding(n: int, k_eff: int, stride: int, pad: Pad) -> Pad:
    """Padding of the stride-dilated residual so that its full correlation with rot180(k) has n rows."""
    unread = (n + pad[0] + pad[1] - k_eff) % stride
    return k_eff - 1 - pad[0], k_eff - 1 - pad[1] + unread


def check_window_fits(
    op: str, in_hw: Sequence[int], k_eff_hw: Sequence[int], pads: Padding2D, *, what: str = "kernel"
) -> None:
    """Raise ValueError when the (dilated) window is larger than the padded input on some axis."""
    for axis, n, k, (lo, hi) in zip(("height", "width"), in_hw, k_eff_hw, pads):
        if n + lo + hi < k:
            raise ValueError(
                f"{op}: the {what} spans {k} along {axis} but the padded input has only {n + lo + hi} "
                f"(input {n}, padding ({lo}, {hi})); use a smaller {what} or more padding"
            )
