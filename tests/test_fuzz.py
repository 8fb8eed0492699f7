"""Fuzzing every op of ``jaxcnn.ops.__all__`` with hypothesis: random valid and invalid arguments.

For each op, hypothesis draws one of three kinds of call:

  * valid: hyper-parameters and shapes from ranges where every combination is legal. Both impls must
    accept it, give identical forwards (within 1e-10 for the ops in ``ROUND_OFF_FORWARDS``, whose manual
    forward a platform may evaluate in another order) and gradients within 1e-10 (float64) of each other;
  * corrupt: a valid call with one argument made illegal (zero or negative stride, kernel larger than the
    input, wrong rank, integer or bool dtype, mismatched channels, bad padding, a float where an int
    belongs, ...). Both impls must raise exactly the ValueError or TypeError the corruption calls for;
  * wild: hyper-parameters and shapes from wider ranges (zero and negative sizes, strides, windows,
    paddings) that may or may not be legal. Both impls must either raise the same ValueError/TypeError or
    accept the call and agree as for a valid one.

Errors are checked by tracing (``jax.eval_shape``), so they must come from the ops' own checks; an
exception of any other type, or a subclass from inside JAX, fails the test, as does an accepted call that
XLA then rejects. Every op needs an entry in ``FUZZ``: a new op without one fails
``test_every_op_has_a_fuzz_strategy``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from _compare import max_abs, relative_error

from jaxcnn import ops
from jaxcnn.ops.padding import effective_size, resolve_padding

IMPLS = ("manual", "autodiff")
F = jnp.float64
TOL = 1e-10
seeds = st.integers(0, 2**16)


# ---------------------------------------------------------------- a call: its arrays, keywords, expectation


@dataclasses.dataclass(frozen=True)
class Arg:
    """A positional array argument: its shape and dtype; ``diff`` ones are differentiated."""

    shape: tuple[int, ...]
    dtype: Any = F
    diff: bool = True


@dataclasses.dataclass
class Spec:
    """One call of an op: positional arrays (or constants), keyword arguments and how the op takes them."""

    args: list[Any]  # Arg or a constant passed as it is
    kw: dict[str, Any]
    seed: int
    pack: str = "flat"  # "flat": op(*args); "list": op(list(args)); "bare": op(args[0]) for a sequence argument
    first_output: bool = False  # the op returns a tuple (batch_norm): compare its first element


def make_array(seed: int, arg: Arg) -> jax.Array:
    values = np.random.default_rng(seed).normal(size=arg.shape)
    if arg.dtype == jnp.bool_:
        return jnp.asarray(values > 0)
    return jnp.asarray(values, arg.dtype)


@dataclasses.dataclass
class Call:
    op: str
    kind: str  # "valid", "corrupt" or "wild"
    spec: Spec
    expected_error: type[Exception] | None = None  # for a corrupt call
    corruption: str = ""

    def __post_init__(self):
        values = [make_array(self.spec.seed + i, a) if isinstance(a, Arg) else a for i, a in enumerate(self.spec.args)]
        self.diff_index = [i for i, a in enumerate(self.spec.args) if isinstance(a, Arg) and a.diff]
        self.arrays = tuple(values[i] for i in self.diff_index)
        self.fixed = values

    def fn(self, impl: str, *arrays):
        values = list(self.fixed)
        for i, a in zip(self.diff_index, arrays):
            values[i] = a
        op = getattr(ops, self.op)
        if self.spec.pack == "list":
            out = op(values, impl=impl, **self.spec.kw)
        elif self.spec.pack == "bare":
            out = op(values[0], impl=impl, **self.spec.kw)
        else:
            out = op(*values, impl=impl, **self.spec.kw)
        return out[0] if self.spec.first_output else out

    def __repr__(self) -> str:
        args = [f"{np.dtype(a.dtype).name}{list(a.shape)}" if isinstance(a, Arg) else type(a).__name__ for a in self.spec.args]
        what = f" ({self.corruption})" if self.corruption else ""
        return f"{self.kind}{what}: {self.op}({', '.join(args)}, {self.spec.kw})"


@dataclasses.dataclass(frozen=True)
class Corruption:
    """Makes a valid spec illegal; the op must raise ``error``."""

    name: str
    apply: Callable[[Spec], Spec]
    error: type[Exception]


@dataclasses.dataclass(frozen=True)
class Fuzz:
    strategy: Callable[[bool], st.SearchStrategy]  # wide=False: always legal; wide=True: maybe not
    corruptions: tuple[Corruption, ...]


def kw(spec: Spec, **changes) -> Spec:
    return dataclasses.replace(spec, kw={**spec.kw, **changes})


def with_arg(spec: Spec, index: int, **changes) -> Spec:
    args = list(spec.args)
    args[index] = dataclasses.replace(args[index], **changes)
    return dataclasses.replace(spec, args=args)


def reshape(spec: Spec, index: int, edit: Callable[[tuple[int, ...]], tuple[int, ...]]) -> Spec:
    return with_arg(spec, index, shape=tuple(edit(spec.args[index].shape)))


def retype(index: int, dtype) -> Callable[[Spec], Spec]:
    return lambda s: with_arg(s, index, dtype=dtype)


def at(shape: tuple[int, ...], axis: int, value: int) -> tuple[int, ...]:
    out = list(shape)
    out[axis] = value
    return tuple(out)


def dtype_corruptions(*names_and_indices: tuple[str, int]) -> tuple[Corruption, ...]:
    return tuple(
        Corruption(f"{name} {np.dtype(dt).name}", retype(i, dt), TypeError)
        for name, i in names_and_indices
        for dt in (jnp.int32, jnp.bool_, jnp.complex64)
    )


def hyper_corruptions(name: str, minimum: int = 1) -> tuple[Corruption, ...]:
    """An int-or-pair hyper-parameter below its minimum, a float, a bool, three entries."""
    return (
        Corruption(f"{name}={minimum - 1}", lambda s: kw(s, **{name: minimum - 1}), ValueError),
        Corruption(f"{name}=-2", lambda s: kw(s, **{name: -2}), ValueError),
        Corruption(f"{name}=(1, {minimum - 1})", lambda s: kw(s, **{name: (1, minimum - 1)}), ValueError),
        Corruption(f"{name}=1.5", lambda s: kw(s, **{name: 1.5}), TypeError),
        Corruption(f"{name}=True", lambda s: kw(s, **{name: True}), TypeError),
        Corruption(f"{name}=(1, 2, 1)", lambda s: kw(s, **{name: (1, 2, 1)}), ValueError),
    )


PADDING_CORRUPTIONS = (
    Corruption("padding=-1", lambda s: kw(s, padding=-1), ValueError),
    Corruption("padding=((0, -1), (0, 0))", lambda s: kw(s, padding=((0, -1), (0, 0))), ValueError),
    Corruption("padding='FULL'", lambda s: kw(s, padding="FULL"), ValueError),
    Corruption("padding=(1, 1, 1)", lambda s: kw(s, padding=(1, 1, 1)), ValueError),
    Corruption("padding=1.5", lambda s: kw(s, padding=1.5), TypeError),
)


def n(draw, lo: int, hi: int, wide: bool, wide_lo: int | None = None, wide_hi: int | None = None) -> int:
    """An int in [lo, hi], or in the wider [wide_lo, wide_hi] (default lo - 2, hi + 2) when ``wide``."""
    if wide:
        return draw(st.integers(lo - 2 if wide_lo is None else wide_lo, hi + 2 if wide_hi is None else wide_hi))
    return draw(st.integers(lo, hi))


def int_or_pair(draw, lo: int, hi: int, wide: bool):
    if draw(st.booleans()):
        return n(draw, lo, hi, wide)
    return n(draw, lo, hi, wide), n(draw, lo, hi, wide)


def padding_of(draw, wide: bool, max_pad: tuple[int, int] = (2, 2)):
    """"VALID", "SAME", p, (ph, pw) or ((top, bottom), (left, right)), each pad <= max_pad of its axis."""
    form = draw(st.sampled_from(["VALID", "SAME", "same", "int", "pair", "pairs"]))
    if form in ("VALID", "SAME", "same"):
        return form
    if form == "int":
        return n(draw, 0, min(max_pad), wide)
    if form == "pair":
        return n(draw, 0, max_pad[0], wide), n(draw, 0, max_pad[1], wide)
    return tuple((n(draw, 0, m, wide), n(draw, 0, m, wide)) for m in max_pad)


def is_same(padding) -> bool:
    return isinstance(padding, str) and padding.upper() == "SAME"


def pairs_of(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def fitting_size(draw, span: int, lo: int, hi: int, wide: bool) -> int:
    """A spatial size the (padded) window fits in: at least max(1, span - lo - hi)."""
    least = max(1, span - lo - hi)
    return n(draw, least, least + 3, wide, 0, least + 5)


# ---------------------------------------------------------------- conv2d and conv2d_transpose


@st.composite
def conv2d_specs(draw, wide: bool) -> Spec:
    groups = n(draw, 1, 2, wide, 0, 3)
    g = max(groups, 1)
    cin, cout = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    if wide:
        cin, cout = n(draw, cin, cin, wide, 0, 4), n(draw, cout, cout, wide, 0, 4)
    k = (n(draw, 1, 3, wide, 0, 4), n(draw, 1, 3, wide, 0, 4))
    stride, dilation = int_or_pair(draw, 1, 3, wide), int_or_pair(draw, 1, 2, wide)
    padding = padding_of(draw, wide)
    if wide:
        hw = (n(draw, 1, 6, wide, 0, 7), n(draw, 1, 6, wide, 0, 7))
    else:
        span = [effective_size(kk, d) for kk, d in zip(k, pairs_of(dilation))]
        pads = ((0, 0),) * 2 if is_same(padding) else resolve_padding(padding, (1, 1), span, pairs_of(stride))
        hw = tuple(fitting_size(draw, s, lo, hi, wide) for s, (lo, hi) in zip(span, pads))
    args = [Arg((n(draw, 1, 2, wide, 0, 2), *hw, cin)), Arg((*k, cin // g if not wide else max(cin // g, 0), cout))]
    if draw(st.booleans()):
        args.append(Arg((n(draw, cout, cout, wide, 0, 4),)))
    return Spec(args, dict(stride=stride, padding=padding, dilation=dilation, groups=groups), draw(seeds))


CONV_CORRUPTIONS = (
    *hyper_corruptions("stride"),
    *hyper_corruptions("dilation"),
    *PADDING_CORRUPTIONS,
    Corruption("groups=0", lambda s: kw(s, groups=0), ValueError),
    Corruption("groups=1.0", lambda s: kw(s, groups=1.0), TypeError),
    Corruption("w rank 3", lambda s: reshape(s, 1, lambda sh: sh[1:]), ValueError),
    Corruption("w rank 5", lambda s: reshape(s, 1, lambda sh: (1, *sh)), ValueError),
    Corruption("w with an empty axis", lambda s: reshape(s, 1, lambda sh: at(sh, 0, 0)), ValueError),
    *dtype_corruptions(("x", 0), ("w", 1)),
)


def _conv2d_kernel_too_big(s: Spec) -> Spec:
    """VALID padding, dilation 1, a kernel one taller than the input."""
    s = kw(s, padding="VALID", dilation=1)
    return reshape(s, 1, lambda sh: at(sh, 0, s.args[0].shape[1] + 1))


FUZZ: dict[str, Fuzz] = {
    "conv2d": Fuzz(
        lambda wide: conv2d_specs(wide),
        (
            *CONV_CORRUPTIONS,
            Corruption("kernel taller than the input", _conv2d_kernel_too_big, ValueError),
            Corruption("x rank 3", lambda s: reshape(s, 0, lambda sh: sh[1:]), ValueError),
            Corruption("x channels + 1", lambda s: reshape(s, 0, lambda sh: at(sh, 3, sh[3] + 1)), ValueError),
            Corruption("b of length out + 1", lambda s: dataclasses.replace(
                s, args=[*s.args[:2], Arg((s.args[1].shape[3] + 1,))]), ValueError),  # fmt: skip
            Corruption("b of rank 2", lambda s: dataclasses.replace(
                s, args=[*s.args[:2], Arg((1, s.args[1].shape[3]))]), ValueError),  # fmt: skip
        ),
    ),
}


@st.composite
def conv2d_transpose_specs(draw, wide: bool) -> Spec:
    groups = n(draw, 1, 2, wide, 0, 3)
    g = max(groups, 1)
    c_out, c_y = draw(st.integers(1, 2)), g * draw(st.integers(1, 2))  # w: (kh, kw, c_out, c_y)
    if wide:
        c_out, c_y = n(draw, c_out, c_out, wide, 0, 3), n(draw, c_y, c_y, wide, 0, 4)
    k = (n(draw, 1, 3, wide, 0, 4), n(draw, 1, 3, wide, 0, 4))
    stride, dilation = pairs_of(int_or_pair(draw, 1, 3, wide)), pairs_of(int_or_pair(draw, 1, 2, wide))
    padding = padding_of(draw, wide)
    if wide:
        output_padding = (n(draw, 0, 1, wide), n(draw, 0, 1, wide))
        m = (n(draw, 1, 4, wide, 0, 5), n(draw, 1, 4, wide, 0, 5))
    elif is_same(padding):
        output_padding = (0, 0)
        m = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    else:
        output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
        span = [effective_size(kk, d) for kk, d in zip(k, dilation)]
        pads = resolve_padding(padding, (1, 1), span, stride)
        # output (m - 1) s + span - lo - hi + op >= 1
        least = [1 + max(0, -(-(lo + hi + 1 - sp - op) // s)) for sp, (lo, hi), s, op in zip(span, pads, stride, output_padding)]
        m = tuple(lst + draw(st.integers(0, 2)) for lst in least)
    args = [Arg((n(draw, 1, 2, wide, 0, 2), *m, c_y)), Arg((*k, c_out, c_y))]
    if draw(st.booleans()):
        args.append(Arg((n(draw, c_out * g, c_out * g, wide, 0, 4),)))
    kws = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)
    return Spec(args, kws, draw(seeds))


FUZZ["conv2d_transpose"] = Fuzz(
    lambda wide: conv2d_transpose_specs(wide),
    (
        *CONV_CORRUPTIONS,
        Corruption("y rank 3", lambda s: reshape(s, 0, lambda sh: sh[1:]), ValueError),
        Corruption("y channels + 1", lambda s: reshape(s, 0, lambda sh: at(sh, 3, sh[3] + 1)), ValueError),
        Corruption("output_padding=max(stride, dilation)", lambda s: kw(
            s, padding="VALID", output_padding=max(*s.kw["stride"], *s.kw["dilation"])), ValueError),  # fmt: skip
        Corruption("output_padding=1 with SAME", lambda s: kw(s, padding="SAME", stride=2, output_padding=1), ValueError),
        Corruption("output_padding=-1", lambda s: kw(s, output_padding=-1), ValueError),
        Corruption("padding that empties the output", lambda s: kw(
            reshape(s, 0, lambda sh: (sh[0], 1, 1, sh[3])), stride=1, dilation=1, output_padding=0,
            padding=s.args[1].shape[0] + s.args[1].shape[1]), ValueError),  # fmt: skip
        Corruption("b of length C + 1", lambda s: dataclasses.replace(
            s, args=[*s.args[:2], Arg((s.args[1].shape[2] * s.kw["groups"] + 1,))]), ValueError),  # fmt: skip
    ),
)


# ---------------------------------------------------------------- pooling, sub-sampling, up-sampling


@st.composite
def pool_specs(draw, wide: bool, average: bool) -> Spec:
    window = int_or_pair(draw, 1, 3, wide)
    stride = None if draw(st.booleans()) else int_or_pair(draw, 1, 3, wide)
    win = pairs_of(window)
    if wide:
        padding = padding_of(draw, wide)
        hw = (n(draw, 1, 6, wide, 0, 7), n(draw, 1, 6, wide, 0, 7))
    else:
        padding = padding_of(draw, wide, max_pad=(win[0] - 1, win[1] - 1))  # padding < window
        pads = ((0, 0),) * 2 if is_same(padding) else resolve_padding(padding, (1, 1), win, win)
        hw = tuple(fitting_size(draw, w, lo, hi, wide) for w, (lo, hi) in zip(win, pads))
    kws = dict(window=window, stride=stride, padding=padding)
    if average:
        kws["count_include_pad"] = draw(st.booleans())
    return Spec([Arg((n(draw, 1, 2, wide, 0, 2), *hw, n(draw, 1, 3, wide, 0, 3)))], kws, draw(seeds))


def _window_too_big(s: Spec) -> Spec:
    return kw(s, padding="VALID", window=(s.args[0].shape[1] + 1, 1))


POOL_CORRUPTIONS = (
    *hyper_corruptions("window"),
    *hyper_corruptions("stride"),
    *PADDING_CORRUPTIONS,
    Corruption("window taller than the input", _window_too_big, ValueError),
    Corruption("a window wholly in the padding", lambda s: kw(s, window=2, stride=None, padding=2), ValueError),
    Corruption("x rank 3", lambda s: reshape(s, 0, lambda sh: sh[1:]), ValueError),
    Corruption("x rank 5", lambda s: reshape(s, 0, lambda sh: (1, *sh)), ValueError),
    *dtype_corruptions(("x", 0)),
)
FUZZ["max_pool"] = Fuzz(lambda wide: pool_specs(wide, average=False), POOL_CORRUPTIONS)
FUZZ["avg_pool"] = Fuzz(
    lambda wide: pool_specs(wide, average=True),
    (*POOL_CORRUPTIONS, Corruption("count_include_pad=1", lambda s: kw(s, count_include_pad=1), TypeError)),
)


@st.composite
def subsample_specs(draw, wide: bool) -> Spec:
    window = int_or_pair(draw, 1, 3, wide)
    win = pairs_of(window)
    blocks = (n(draw, 1, 3, wide, 0, 3), n(draw, 1, 3, wide, 0, 3))
    hw = tuple(max(b * w, 0) for b, w in zip(blocks, win))
    if wide and draw(st.booleans()):
        hw = (n(draw, 1, 6, wide, 0, 7), n(draw, 1, 6, wide, 0, 7))
    c = n(draw, 1, 3, wide, 0, 3)
    args = [Arg((n(draw, 1, 2, wide, 0, 2), *hw, c)), Arg((n(draw, c, c, wide, 0, 4),)), Arg((n(draw, c, c, wide, 0, 4),))]
    return Spec(args, dict(window=window), draw(seeds))


FUZZ["subsample"] = Fuzz(
    lambda wide: subsample_specs(wide),
    (
        *hyper_corruptions("window")[:2],
        Corruption("window=2.0", lambda s: kw(s, window=2.0), TypeError),
        Corruption("window=True", lambda s: kw(s, window=True), TypeError),
        Corruption("height not a multiple of the window", lambda s: kw(
            reshape(s, 0, lambda sh: at(sh, 1, 2 * sh[1] + 1)), window=2), ValueError),  # fmt: skip
        Corruption("beta of length C + 1", lambda s: reshape(s, 1, lambda sh: (sh[0] + 1,)), ValueError),
        Corruption("b of rank 2", lambda s: reshape(s, 2, lambda sh: (sh[0], 1)), ValueError),
        Corruption("x rank 3", lambda s: reshape(s, 0, lambda sh: sh[1:]), ValueError),
        *dtype_corruptions(("x", 0), ("beta", 1), ("b", 2)),
    ),
)


@st.composite
def upsample_specs(draw, wide: bool) -> Spec:
    shape = (n(draw, 1, 2, wide, 0, 2), n(draw, 1, 3, wide, 0, 3), n(draw, 1, 3, wide, 0, 3), n(draw, 1, 2, wide, 0, 2))
    return Spec([Arg(shape)], dict(factor=int_or_pair(draw, 1, 3, wide)), draw(seeds))


FUZZ["upsample"] = Fuzz(
    lambda wide: upsample_specs(wide),
    (
        *hyper_corruptions("factor"),
        Corruption("x rank 2", lambda s: reshape(s, 0, lambda sh: sh[1:3]), ValueError),
        *dtype_corruptions(("x", 0)),
    ),
)


@st.composite
def global_avg_pool_specs(draw, wide: bool) -> Spec:
    shape = (n(draw, 1, 2, wide, 0, 2), n(draw, 1, 4, wide, 0, 4), n(draw, 1, 4, wide, 0, 4), n(draw, 1, 3, wide, 0, 3))
    return Spec([Arg(shape)], {}, draw(seeds))


FUZZ["global_avg_pool"] = Fuzz(
    lambda wide: global_avg_pool_specs(wide),
    (
        Corruption("x rank 3", lambda s: reshape(s, 0, lambda sh: sh[1:]), ValueError),
        Corruption("x rank 5", lambda s: reshape(s, 0, lambda sh: (1, *sh)), ValueError),
        Corruption("an empty spatial map", lambda s: reshape(s, 0, lambda sh: at(sh, 1, 0)), ValueError),
        *dtype_corruptions(("x", 0)),
    ),
)


# ---------------------------------------------------------------- dense, merge


@st.composite
def dense_specs(draw, wide: bool) -> Spec:
    lead = draw(st.lists(st.integers(0 if wide else 1, 3), min_size=0 if wide else 1, max_size=3))
    fin, fout = n(draw, 1, 4, wide, 0, 5), n(draw, 1, 4, wide, 0, 5)
    args = [Arg((*lead, n(draw, fin, fin, wide, 0, 5))), Arg((fin, fout))]
    if draw(st.booleans()):
        args.append(Arg((n(draw, fout, fout, wide, 0, 5),)))
    return Spec(args, {}, draw(seeds))


FUZZ["dense"] = Fuzz(
    lambda wide: dense_specs(wide),
    (
        Corruption("x features + 1", lambda s: reshape(s, 0, lambda sh: (*sh[:-1], sh[-1] + 1)), ValueError),
        Corruption("x scalar", lambda s: reshape(s, 0, lambda sh: ()), ValueError),
        Corruption("w rank 1", lambda s: reshape(s, 1, lambda sh: sh[:1]), ValueError),
        Corruption("w rank 3", lambda s: reshape(s, 1, lambda sh: (*sh, 1)), ValueError),
        Corruption("b of length out + 1", lambda s: dataclasses.replace(
            s, args=[*s.args[:2], Arg((s.args[1].shape[1] + 1,))]), ValueError),  # fmt: skip
        *dtype_corruptions(("x", 0), ("w", 1)),
    ),
)


@st.composite
def concat_specs(draw, wide: bool) -> Spec:
    rank = n(draw, 1, 4, wide, 0, 4)
    base = [draw(st.integers(0 if wide else 1, 3)) for _ in range(rank)]
    axis = n(draw, -rank, rank - 1, wide, -rank - 1, rank) if rank else 0
    pieces = []
    for _ in range(n(draw, 1, 3, wide, 0, 3)):
        shape = list(base)
        if rank:
            shape[axis % rank] = draw(st.integers(0 if wide else 1, 3))
        if wide and rank and draw(st.integers(0, 4)) == 0:
            shape[0] += 1
        pieces.append(Arg(tuple(shape)))
    return Spec(pieces, dict(axis=axis), draw(seeds), pack="list")


def _mismatched_piece(s: Spec) -> Spec:
    """One more piece, one longer than the others on every axis but the concatenation axis (pieces of rank 1,
    which have no other axis, first become (1, C) rows joined along axis 1)."""
    if len(s.args[0].shape) == 1:
        s = dataclasses.replace(s, args=[Arg((1, *a.shape)) for a in s.args], kw={**s.kw, "axis": 1})
    shape, axis = s.args[0].shape, s.kw["axis"] % len(s.args[0].shape)
    grown = tuple(d if i == axis else d + 1 for i, d in enumerate(shape))
    return dataclasses.replace(s, args=[*s.args, Arg(grown)])


FUZZ["concat"] = Fuzz(
    lambda wide: concat_specs(wide),
    (
        Corruption("no arrays", lambda s: dataclasses.replace(s, args=[]), ValueError),
        Corruption("a piece of another rank", lambda s: dataclasses.replace(
            s, args=[*s.args, Arg((*s.args[0].shape, 1))]), ValueError),  # fmt: skip
        Corruption("a piece differing off the axis", _mismatched_piece, ValueError),
        Corruption("axis = rank", lambda s: kw(s, axis=len(s.args[0].shape)), ValueError),
        Corruption("axis = -rank - 1", lambda s: kw(s, axis=-len(s.args[0].shape) - 1), ValueError),
        Corruption("axis=1.0", lambda s: kw(s, axis=1.0), TypeError),
        Corruption("an array, not a list", lambda s: dataclasses.replace(s, pack="bare"), TypeError),
        *dtype_corruptions(("xs[0]", 0)),
    ),
)


@st.composite
def add_specs(draw, wide: bool) -> Spec:
    shape = tuple(draw(st.lists(st.integers(0 if wide else 1, 3), max_size=4)))
    other = shape if not wide or draw(st.booleans()) else tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    return Spec([Arg(shape), Arg(other)], {}, draw(seeds))


FUZZ["add"] = Fuzz(
    lambda wide: add_specs(wide),
    (
        Corruption("b one longer", lambda s: reshape(s, 1, lambda sh: (*sh, 2)), ValueError),
        Corruption("b broadcastable", lambda s: reshape(s, 1, lambda sh: (1, *sh)), ValueError),
        *dtype_corruptions(("a", 0), ("b", 1)),
    ),
)


# ---------------------------------------------------------------- activations and losses


@st.composite
def elementwise_specs(draw, wide: bool) -> Spec:
    shape = tuple(draw(st.lists(st.integers(0 if wide else 1, 4), max_size=4)))
    return Spec([Arg(shape)], {}, draw(seeds))


for _name in ("sigmoid", "tanh", "relu"):
    FUZZ[_name] = Fuzz(lambda wide: elementwise_specs(wide), dtype_corruptions(("x", 0)))


@st.composite
def softmax_specs(draw, wide: bool) -> Spec:
    shape = tuple(draw(st.lists(st.integers(0 if wide else 1, 4), min_size=0 if wide else 1, max_size=3)))
    rank = len(shape)
    axis = n(draw, -rank, rank - 1, wide, -rank - 2, rank + 1) if rank else n(draw, 0, 0, wide)
    return Spec([Arg(shape)], dict(axis=axis), draw(seeds))


SOFTMAX_CORRUPTIONS = (
    Corruption("axis = rank", lambda s: kw(s, axis=len(s.args[0].shape)), ValueError),
    Corruption("axis = -rank - 1", lambda s: kw(s, axis=-len(s.args[0].shape) - 1), ValueError),
    Corruption("axis=1.0", lambda s: kw(s, axis=1.0), TypeError),
    Corruption("axis=True", lambda s: kw(s, axis=True), TypeError),
    Corruption("scalar x", lambda s: kw(reshape(s, 0, lambda sh: ()), axis=0), ValueError),
    *dtype_corruptions(("x", 0)),
)
FUZZ["softmax"] = Fuzz(lambda wide: softmax_specs(wide), SOFTMAX_CORRUPTIONS)
FUZZ["log_softmax"] = Fuzz(lambda wide: softmax_specs(wide), SOFTMAX_CORRUPTIONS)


@st.composite
def mse_specs(draw, wide: bool) -> Spec:
    shape = tuple(draw(st.lists(st.integers(0 if wide else 1, 3), min_size=0 if wide else 1, max_size=3)))
    other = shape if not wide or draw(st.booleans()) else tuple(draw(st.lists(st.integers(1, 3), max_size=3)))
    return Spec([Arg(shape), Arg(other)], {}, draw(seeds))


FUZZ["mse"] = Fuzz(
    lambda wide: mse_specs(wide),
    (
        Corruption("target one longer", lambda s: reshape(s, 1, lambda sh: (*sh[:-1], sh[-1] + 1)), ValueError),
        Corruption("target without the batch axis", lambda s: reshape(s, 1, lambda sh: sh[1:]), ValueError),
        Corruption("scalars", lambda s: reshape(reshape(s, 0, lambda sh: ()), 1, lambda sh: ()), ValueError),
        *dtype_corruptions(("pred", 0), ("target", 1)),
    ),
)


@st.composite
def xent_specs(draw, wide: bool) -> Spec:
    lead = tuple(draw(st.lists(st.integers(0 if wide else 1, 3), min_size=0 if wide else 1, max_size=2)))
    classes = n(draw, 1, 5, wide, 0, 5)
    seed = draw(seeds)
    if draw(st.booleans()):  # integer class ids, not differentiated
        hi = classes + 1 if wide else classes
        ids = np.random.default_rng(seed).integers(-1 if wide else 0, max(hi, 1), size=lead)
        labels: Any = jnp.asarray(ids)
    else:  # a distribution over the classes, differentiated
        labels = Arg((*lead, classes) if not wide or draw(st.booleans()) else (*lead, classes + 1))
    return Spec([Arg((*lead, classes)), labels], {}, seed)


def _ids(edit) -> Callable[[Spec], Spec]:
    """Replace the labels by integer ids of shape edit(lead shape), values in range."""

    def corrupt(s: Spec) -> Spec:
        lead = s.args[0].shape[:-1]
        return dataclasses.replace(s, args=[s.args[0], jnp.zeros(edit(lead), jnp.int32)])

    return corrupt


def _one_id(value: Callable[[int], int]) -> Callable[[Spec], Spec]:
    """Integer ids, all 0 but the first, which is value(num_classes)."""

    def corrupt(s: Spec) -> Spec:
        lead, classes = s.args[0].shape[:-1], s.args[0].shape[-1]
        ids = np.zeros(lead, np.int32)
        ids[(0,) * len(lead)] = value(classes)
        return dataclasses.replace(s, args=[s.args[0], jnp.asarray(ids)])

    return corrupt


FUZZ["softmax_cross_entropy"] = Fuzz(
    lambda wide: xent_specs(wide),
    (
        Corruption("ids one too many", _ids(lambda lead: (lead[0] + 1, *lead[1:])), ValueError),
        Corruption("ids with an extra axis", _ids(lambda lead: (*lead, 1)), ValueError),
        Corruption("float labels of C + 1 classes", lambda s: dataclasses.replace(
            s, args=[s.args[0], Arg((*s.args[0].shape[:-1], s.args[0].shape[-1] + 1))]), ValueError),  # fmt: skip
        Corruption("an id = num_classes", _one_id(lambda c: c), ValueError),
        Corruption("an id = -1", _one_id(lambda c: -1), ValueError),
        Corruption("bool labels", lambda s: dataclasses.replace(
            s, args=[s.args[0], Arg(s.args[0].shape, jnp.bool_, diff=False)]), TypeError),  # fmt: skip
        Corruption("scalar logits", lambda s: dataclasses.replace(s, args=[Arg(()), jnp.zeros((), jnp.int32)]), ValueError),
        *dtype_corruptions(("logits", 0)),
    ),
)


# ---------------------------------------------------------------- batch_norm, dropout, local_response_norm


@st.composite
def batch_norm_specs(draw, wide: bool) -> Spec:
    shape = tuple(draw(st.lists(st.integers(0 if wide else 1, 3), min_size=1 if wide else 2, max_size=4)))
    rank = len(shape)
    axis = n(draw, -rank, rank - 1, wide, -rank - 1, rank)
    channels = shape[axis % rank]
    training = draw(st.booleans())
    if training and not wide and np.prod(shape) // channels < 2:  # more than one value per channel
        shape = at(shape, (axis + 1) % rank, 2)
    c = n(draw, channels, channels, wide, 0, 3)
    state_channels = n(draw, channels, channels, wide, 0, 3)
    state = {"mean": jnp.zeros(state_channels, F), "var": jnp.ones(state_channels, F)}
    kws = dict(
        training=training,
        momentum=draw(st.sampled_from([0.0, 0.5, 0.9, 1.0] + ([-0.1, 1.5] if wide else []))),
        eps=draw(st.sampled_from([1e-5, 1e-3] + ([0.0, -1.0] if wide else []))),
        axis=axis,
    )
    return Spec([Arg(shape), Arg((c,)), Arg((channels,)), state], kws, draw(seeds), first_output=True)


def _state(value) -> Callable[[Spec], Spec]:
    return lambda s: dataclasses.replace(s, args=[*s.args[:3], value(s.args[2].shape[0])])


FUZZ["batch_norm"] = Fuzz(
    lambda wide: batch_norm_specs(wide),
    (
        Corruption("gamma of length C + 1", lambda s: reshape(s, 1, lambda sh: (sh[0] + 1,)), ValueError),
        Corruption("beta of rank 2", lambda s: reshape(s, 2, lambda sh: (sh[0], 1)), ValueError),
        Corruption("state without 'var'", _state(lambda c: {"mean": jnp.zeros(c)}), ValueError),
        Corruption("state a list", _state(lambda c: [jnp.zeros(c), jnp.ones(c)]), TypeError),
        Corruption("state of C + 1", _state(lambda c: ops.batch_norm_state(c + 1, F)), ValueError),
        Corruption("momentum=1.5", lambda s: kw(s, momentum=1.5), ValueError),
        Corruption("eps=0", lambda s: kw(s, eps=0.0), ValueError),
        Corruption("eps=nan", lambda s: kw(s, eps=float("nan")), ValueError),
        Corruption("axis = rank", lambda s: kw(s, axis=len(s.args[0].shape)), ValueError),
        Corruption("axis=0.0", lambda s: kw(s, axis=0.0), TypeError),
        Corruption("training=1", lambda s: kw(s, training=1), TypeError),
        Corruption("one value per channel in training", lambda s: kw(dataclasses.replace(
            s, args=[Arg((1, 2)), Arg((2,)), Arg((2,)), ops.batch_norm_state(2, F)]), training=True, axis=-1),
            ValueError),  # fmt: skip
        *dtype_corruptions(("x", 0), ("gamma", 1)),
    ),
)


@st.composite
def dropout_specs(draw, wide: bool) -> Spec:
    shape = tuple(draw(st.lists(st.integers(0 if wide else 1, 4), max_size=3)))
    rate = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9] + ([1.0, -0.5] if wide else [])))
    deterministic = draw(st.booleans())
    seed = draw(seeds)
    key = draw(st.sampled_from(["raw", "typed"] + (["none"] if wide or deterministic or rate == 0.0 else [])))
    key_value = {"raw": jax.random.PRNGKey(seed), "typed": jax.random.key(seed), "none": None}[key]
    return Spec([Arg(shape), key_value], dict(rate=rate, deterministic=deterministic), seed)


FUZZ["dropout"] = Fuzz(
    lambda wide: dropout_specs(wide),
    (
        Corruption("rate=1.0", lambda s: kw(s, rate=1.0), ValueError),
        Corruption("rate=-0.1", lambda s: kw(s, rate=-0.1), ValueError),
        Corruption("rate='0.5'", lambda s: kw(s, rate="0.5"), TypeError),
        Corruption("rate=True", lambda s: kw(s, rate=True), TypeError),
        Corruption("deterministic=1", lambda s: kw(s, deterministic=1), TypeError),
        Corruption("no key when dropping", lambda s: kw(
            dataclasses.replace(s, args=[s.args[0], None]), rate=0.5, deterministic=False), TypeError),  # fmt: skip
        Corruption("three keys", lambda s: dataclasses.replace(
            s, args=[s.args[0], jax.random.split(jax.random.PRNGKey(0), 3)]), ValueError),  # fmt: skip
        Corruption("a float key", lambda s: dataclasses.replace(s, args=[s.args[0], jnp.zeros(2)]), TypeError),
        *dtype_corruptions(("x", 0)),
    ),
)


@st.composite
def lrn_specs(draw, wide: bool) -> Spec:
    shape = (n(draw, 1, 2, wide, 0, 2), n(draw, 1, 3, wide, 0, 3), n(draw, 1, 3, wide, 0, 3), n(draw, 1, 6, wide, 0, 6))
    kws = dict(
        size=n(draw, 1, 5, wide, -1, 7),
        alpha=draw(st.sampled_from([0.0, 1e-4, 0.01, 0.5] + ([-1.0] if wide else []))),
        beta=draw(st.sampled_from([0.0, 0.5, 0.75, 1.0] + ([-0.5] if wide else []))),
        k=draw(st.sampled_from([0.5, 1.0, 2.0] + ([0.0, -1.0] if wide else []))),
    )
    return Spec([Arg(shape)], kws, draw(seeds))


FUZZ["local_response_norm"] = Fuzz(
    lambda wide: lrn_specs(wide),
    (
        Corruption("size=0", lambda s: kw(s, size=0), ValueError),
        Corruption("size=2.0", lambda s: kw(s, size=2.0), TypeError),
        Corruption("alpha=-1", lambda s: kw(s, alpha=-1.0), ValueError),
        Corruption("alpha=nan", lambda s: kw(s, alpha=float("nan")), ValueError),
        Corruption("alpha='0.1'", lambda s: kw(s, alpha="0.1"), TypeError),
        Corruption("beta=-0.5", lambda s: kw(s, beta=-0.5), ValueError),
        Corruption("k=0", lambda s: kw(s, k=0.0), ValueError),
        Corruption("k=inf", lambda s: kw(s, k=float("inf")), ValueError),
        Corruption("x rank 3", lambda s: reshape(s, 0, lambda sh: sh[1:]), ValueError),
        *dtype_corruptions(("x", 0)),
    ),
)


# ---------------------------------------------------------------- the property


@st.composite
def calls(draw, name: str) -> Call:
    fuzz = FUZZ[name]
    kind = draw(st.sampled_from(["valid", "corrupt", "wild"]))
    if kind == "wild":
        return Call(name, kind, draw(fuzz.strategy(True)))
    spec = draw(fuzz.strategy(False))
    if kind == "valid":
        return Call(name, kind, spec)
    corruption = draw(st.sampled_from(fuzz.corruptions))
    return Call(name, kind, corruption.apply(spec), corruption.error, corruption.name)


def trace_error(call: Call, impl: str) -> Exception | None:
    """The ValueError/TypeError the op raises while tracing, or None; anything else propagates."""
    try:
        jax.eval_shape(lambda *a: call.fn(impl, *a), *call.arrays)
    except (ValueError, TypeError) as err:
        if type(err) not in (ValueError, TypeError):
            raise AssertionError(f"{call!r}: {type(err).__module__}.{type(err).__name__} from inside JAX") from err
        return err
    return None


# The manual forward of these ops is a Rule that XLA:CPU evaluates in its own order (conv2d's width-blocked
# correlation), while the autodiff twin is XLA's convolution: equal to round-off.
ROUND_OFF_FORWARDS = ("conv2d",)


def assert_twins_agree(call: Call) -> None:
    out = jax.eval_shape(lambda *a: call.fn("autodiff", *a), *call.arrays)
    c = jnp.asarray(np.random.default_rng(call.spec.seed + 99).normal(size=out.shape), out.dtype)

    @jax.jit  # both impls in one program: compiling is what a fuzz example costs
    def forwards_and_grads(arrays, c):
        results = []
        for impl in IMPLS:
            y, vjp = jax.vjp(lambda *a: call.fn(impl, *a), *arrays)
            results.append((y, vjp(c)))
        return results

    (out_m, g_m), (out_a, g_a) = forwards_and_grads(call.arrays, c)
    floor = max_abs(c)
    if call.op in ROUND_OFF_FORWARDS:
        assert out_m.shape == out_a.shape and relative_error(out_m, out_a, 1.0) < TOL, repr(call)
    else:
        np.testing.assert_array_equal(np.asarray(out_m), np.asarray(out_a), err_msg=repr(call))
    assert np.isfinite(np.asarray(out_m, np.float64)).all(), f"{call!r}: non-finite output"
    for i, (gm, ga) in enumerate(zip(g_m, g_a)):
        assert gm.shape == ga.shape == call.arrays[i].shape and gm.dtype == call.arrays[i].dtype, repr(call)
        error = relative_error(gm, ga, floor)
        assert error < TOL, f"{call!r}: gradient {i} differs by {error:.1e}"


def test_every_op_has_a_fuzz_strategy():
    missing = sorted(set(ops.__all__) - set(FUZZ))
    assert not missing, f"ops without a fuzz strategy in tests/test_fuzz.py FUZZ: {missing}"
    assert not sorted(set(FUZZ) - set(ops.__all__)), "strategies for ops that are not exported"


@pytest.mark.parametrize("name", sorted(ops.__all__))
@settings(max_examples=12)
@given(data=st.data())
def test_fuzz_op(name, data):
    if name not in FUZZ:
        pytest.fail(f"no fuzz strategy for ops.{name}; add one to FUZZ")
    call = data.draw(calls(name), label="call")
    errors = {impl: trace_error(call, impl) for impl in IMPLS}
    manual, autodiff = errors["manual"], errors["autodiff"]
    assert (manual is None) == (autodiff is None), f"{call!r}: impls disagree: {errors}"
    if manual is not None:
        assert type(manual) is type(autodiff) and str(manual) == str(autodiff), f"{call!r}: {errors}"
        assert call.kind != "valid", f"{call!r} raised {manual!r}"
        if call.kind == "corrupt":
            assert type(manual) is call.expected_error, f"{call!r} raised {manual!r}, not a {call.expected_error.__name__}"
        return
    assert call.kind != "corrupt", f"{call!r} was accepted"
    assert_twins_agree(call)


# ---------------------------------------------------------------- what the fuzzing found, pinned


@pytest.mark.parametrize("impl", IMPLS)
def test_dense_with_no_input_features_has_a_gradient(impl):
    """Found by fuzzing: the manual backward flattened x with reshape(-1, 0), a division by zero in JAX."""
    x, w = jnp.zeros((3, 0), F), jnp.zeros((0, 2), F)
    grads = jax.grad(lambda x, w: jnp.sum(ops.dense(x, w, impl=impl)), argnums=(0, 1))(x, w)
    assert [g.shape for g in grads] == [(3, 0), (0, 2)]


@pytest.mark.parametrize("op", [ops.max_pool, ops.avg_pool])
@pytest.mark.parametrize("impl", IMPLS)
def test_pooling_an_empty_map_with_padding_is_an_error(op, impl):
    """Found by fuzzing: a window over padding only gave -inf (max) or 0/0 (mean without padding) silently."""
    with pytest.raises(ValueError, match=r"x is empty along height \(shape \(1, 0, 3, 1\)\)"):
        op(jnp.zeros((1, 0, 3, 1), F), window=2, padding=1, impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_losses_of_an_empty_batch_are_errors(impl):
    """Found by fuzzing: the mean over zero samples was 0/0, a NaN loss with no error."""
    with pytest.raises(ValueError, match=r"pred must hold at least one sample .* got shape \(0, 3\)"):
        ops.mse(jnp.zeros((0, 3), F), jnp.zeros((0, 3), F), impl=impl)
    with pytest.raises(ValueError, match=r"logits must hold at least one sample .* got shape \(0, 4\)"):
        ops.softmax_cross_entropy(jnp.zeros((0, 4), F), jnp.zeros((0,), jnp.int32), impl=impl)
