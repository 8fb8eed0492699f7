"""The shared harness of the op tests (tests/ops/test_*.py): arrays, the two gradient checks, the hypothesis
strategies, the argument-contract runner and the half-precision check.

Gradient checks: the forwards of both impls agree to round-off (the manual conv may sum a thin correlation in
another order, see jaxcnn/ops/xla_cpu/conv.py) and the gradients w.r.t. every array argument to 1e-10 (float64) /
1e-5 (float32) (``assert_twins_agree``); both agree with central finite differences (``assert_matches_finite_
differences``).

Strategies draw the hyper-parameters (stride 1-3, every padding form including asymmetric pairs, dilation 1-3,
groups, odd and non-square sizes, overlapping pool windows, output_padding). The conv strategies take the XLA:CPU
input-gradient path to reach (``INPUT_PATHS``, named by ``conv_paths``) and draw channel counts and strides
suited to it, so that every evaluation of every rule gets its own examples; the pool strategy likewise takes the
pooling path (``POOL_PATHS``).

Argument contract: each op module lists its bad calls as ``Case`` rows; ``check_error_case`` runs one row for
one impl, eagerly or traced under ``jax.jit`` (the error must come from the Python checks on static shapes,
dtypes and hyper-parameters, never from XLA lowering or compilation).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, settings
from hypothesis import strategies as st
from _compare import max_abs, relative_error

from jaxcnn import gradcheck, ops
from jaxcnn.ops import _checks, conv
from jaxcnn.ops.padding import effective_size, resolve_padding, same_padding
from jaxcnn.ops.xla_cpu import conv as conv_cpu

F64_TOL = 1e-10
F32_TOL = 1e-5
# Forwards: relative to max|out|; a different summation order, never a different sum.
FORWARD_TOL = {"float64": 1e-13, "float32": 1e-6}
DTYPES = [jnp.float64, jnp.float32]
IMPLS = ("manual", "autodiff")
# Hypothesis budgets of the small op families: each example compiles its own programs.
few = settings(max_examples=8)
fd_few = settings(max_examples=3)


# ---------------------------------------------------------------- arrays and the gradient checks


def arrays(seed: int, shapes, dtype, quantize: bool = False):
    """Normal random arrays of the given shapes; ``quantize`` rounds to halves (many exact ties, the hard case
    for max-pool routing)."""
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        a = rng.normal(size=shape)
        if quantize:
            a = np.round(a * 2) / 2
        out.append(jnp.asarray(a, dtype))
    return tuple(out)


def relative(a, b) -> float:
    """max |a - b| / max |b|."""
    return relative_error(a, b, 1e-300)


def assert_twins_agree(call, args, dtype=jnp.float64, seed=0):
    """Forwards equal up to FORWARD_TOL; grads of sum(out * c) w.r.t. every argument agree within the dtype's
    tolerance."""
    out_shape = jax.eval_shape(lambda *a: call("autodiff", *a), *args).shape
    c = jnp.asarray(np.random.default_rng(seed + 1).normal(size=out_shape), dtype)

    @jax.jit  # one program for both impls: op-by-op dispatch, or a program each, would compile far more
    def forwards_and_grads(args, c):
        results = []
        for impl in IMPLS:
            out, vjp = jax.vjp(lambda *a: call(impl, *a), *args)
            results.append((out, vjp(c)))
        return results

    (out_m, g_m), (out_a, g_a) = forwards_and_grads(args, c)
    scale = max(max_abs(out_a), 1.0)
    np.testing.assert_allclose(np.asarray(out_m), np.asarray(out_a), rtol=0, atol=FORWARD_TOL[jnp.dtype(dtype).name] * scale)
    tol = F64_TOL if dtype == jnp.float64 else F32_TOL
    # Errors are relative to max|grad|, floored at max|c|: where an activation saturates (tanh(30 x))
    # every gradient entry is round-off of a number ~1e-20 and a plain relative error means nothing.
    floor = max_abs(c)
    for i, (gm, ga) in enumerate(zip(g_m, g_a)):
        assert gm.shape == args[i].shape and gm.dtype == args[i].dtype
        rel = relative_error(gm, ga, floor)
        assert rel < tol, f"argument {i}: relative error {rel:.2e}"


def assert_matches_finite_differences(call, args, seed=0):
    """Each impl's gradients of sum(out * c) against central differences of its own forward."""
    out_shape = jax.eval_shape(lambda *a: call("autodiff", *a), *args).shape
    c = jnp.asarray(np.random.default_rng(seed + 1).normal(size=out_shape))
    losses = [lambda *a, impl=impl: jnp.sum(call(impl, *a) * c) for impl in IMPLS]
    argnums = tuple(range(len(args)))
    grads = jax.jit(lambda *a: [jax.grad(loss, argnums)(*a) for loss in losses])(*args)  # one program for both
    for impl, loss, impl_grads in zip(IMPLS, losses, grads):
        errors = gradcheck.finite_difference_errors(loss, args, impl_grads, seed=seed, eps=1e-6, directions=2)
        assert max(errors) < 1e-6, (impl, errors)


def check_op_case(name: str):
    """gradcheck's representative case ``name`` (``gradcheck.op_cases``): both gradients against finite differences."""
    loss, args, names = gradcheck.op_cases()[name]
    rows = gradcheck.compare(name, loss, args, names, timing=False)
    assert len(rows) == len(jax.tree_util.tree_leaves(args))
    assert all(r.ok(gradcheck.Tolerances()) for r in rows), gradcheck.format_table(rows)


def check_autodiff_twin_is_plain_lax(name: str, fn: Callable, *shapes):
    """jax.grad of an autodiff twin contains no custom_vjp: JAX derives it all. Only conv2d_transpose's forward
    is selected per platform (see its ``_forward``: XLA:CPU cannot compile JAX's derivative of the textbook form)."""
    args = [jnp.ones(s, jnp.float32) for s in shapes]
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda *a: fn(*a).sum(), argnums=tuple(range(len(args)))))(*args))
    assert "custom_vjp" not in jaxpr
    assert ("platform_index" in jaxpr) == (name == "conv2d_transpose")


# ---------------------------------------------------------------- conv geometry and paths


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv_geometry(x_shape, w_shape, stride, padding, dilation=1, groups=1) -> conv.ConvGeometry:
    stride, dilation = pair(stride), pair(dilation)
    span = tuple(effective_size(k, d) for k, d in zip(w_shape[:2], dilation))
    return conv.ConvGeometry(stride, resolve_padding(padding, x_shape[1:3], span, stride), dilation, groups)


# The XLA:CPU input-gradient evaluations (``conv_cpu.input_grad_path``), the polyphase one in both of its forms
# (``conv_cpu.stack_phases``).
INPUT_PATHS = ("split_groups", "blocked", "col2im", "polyphase-stacked", "polyphase-separate", "dilated")
FORWARD_PATHS = ("width_blocked", "convolution")
KERNEL_PATHS = ("width_blocked", "correlation")


def conv_paths(w_shape, geom: conv.ConvGeometry) -> dict[str, str]:
    """Which XLA:CPU evaluation each of conv2d's three rules takes for this kernel shape and geometry."""
    path = conv_cpu.input_grad_path(w_shape, geom)
    if path == "polyphase":
        path += "-stacked" if conv_cpu.stack_phases(w_shape[:2], geom.stride) else "-separate"
    return {
        "forward": conv_cpu.forward_path(w_shape, geom),
        "input": path,
        "kernel": conv_cpu.kernel_grad_path(w_shape, geom),
    }


# ---------------------------------------------------------------- strategies

pairs = lambda lo, hi: st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi)))  # noqa: E731
paddings = st.one_of(
    st.sampled_from(["VALID", "SAME"]),
    st.integers(0, 3),
    st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)), st.tuples(st.integers(0, 3), st.integers(0, 3))),
)
seeds = st.integers(0, 2**16)
MANY = conv_cpu.COL2IM_MAX_CHANNELS + 1  # the fewest input channels col2im leaves to the polyphase and dilated paths


@st.composite
def conv_shapes(draw, input_path: str | None = None):
    """groups, channels per group (the conv's in and out), kernel, stride and dilation suited to ``input_path``
    (None: the general draw of few channels). The caller filters on ``conv_paths`` once the padding is known."""
    groups, c_in, c_out = 1, draw(st.integers(1, 2)), draw(st.integers(1, 2))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride, dilation = pair(draw(pairs(1, 3))), pair(draw(pairs(1, 3)))
    if input_path in (None, "split_groups"):
        groups = draw(st.integers(1 if input_path is None else 2, 3))
    elif input_path == "blocked":  # stride 1, width-blockable rotated kernel
        stride, dilation = (1, 1), (draw(st.integers(1, 3)), 1)
        k = (k[0], draw(st.integers(2, 4)))
        c_in, c_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    elif input_path == "col2im":
        c_in = draw(st.integers(1, 4))
    elif input_path.startswith("polyphase"):  # undilated, strided, kernel >= stride
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        assume(stride != (1, 1))
        dilation = (1, 1)
        if input_path == "polyphase-stacked":  # kernel a multiple of the stride
            k = tuple(s * draw(st.integers(1, 2)) for s in stride)
        else:
            k = tuple(s + draw(st.integers(0, 2)) for s in stride)
        c_in = draw(st.integers(MANY, MANY + 1))
    elif input_path == "dilated":
        c_in = draw(st.integers(MANY, MANY + 1))
    else:
        raise ValueError(f"input_path must be None or one of {INPUT_PATHS}, got {input_path!r}")
    return groups, c_in, c_out, k, stride, dilation


@st.composite
def conv_configs(draw, input_path: str | None = None):
    groups, c_in, c_out, k, stride, dilation = draw(conv_shapes(input_path))
    cfg = dict(
        n=draw(st.integers(1, 2)),
        hw=(draw(st.integers(1, 9)), draw(st.integers(1, 9))),
        k=k,
        cin=groups * c_in,
        cout=groups * c_out,
        stride=stride if draw(st.booleans()) or stride[0] != stride[1] else stride[0],  # an int or a pair
        dilation=dilation if draw(st.booleans()) or dilation[0] != dilation[1] else dilation[0],
        padding=draw(paddings),
        groups=groups,
        bias=draw(st.booleans()),
        seed=draw(seeds),
    )
    span = tuple((kk - 1) * d + 1 for kk, d in zip(k, dilation))
    pads = resolve_padding(cfg["padding"], cfg["hw"], span, stride)
    assume(all(n + lo + hi >= s for n, s, (lo, hi) in zip(cfg["hw"], span, pads)))
    if input_path is not None:
        geom = conv.ConvGeometry(stride, pads, dilation, groups)
        assume(conv_paths((*k, c_in, groups * c_out), geom)["input"] == input_path)
    return cfg


def conv_config_paths(cfg) -> dict[str, str]:
    """conv_paths of a drawn ``conv_configs`` example."""
    w_shape = (*cfg["k"], cfg["cin"] // cfg["groups"], cfg["cout"])
    x_shape = (cfg["n"], *cfg["hw"], cfg["cin"])
    geom = conv_geometry(x_shape, w_shape, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    return conv_paths(w_shape, geom)


def conv_case(cfg, dtype):
    shapes = [(cfg["n"], *cfg["hw"], cfg["cin"]), (*cfg["k"], cfg["cin"] // cfg["groups"], cfg["cout"])]
    if cfg["bias"]:
        shapes.append((cfg["cout"],))
    args = arrays(cfg["seed"], shapes, dtype)
    kw = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])
    return (lambda impl, *a: ops.conv2d(*a, impl=impl, **kw)), args


def conv_transpose_geometry(cfg) -> tuple[conv.ConvGeometry, list[int]]:
    """The geometry conv2d_transpose hands to conv2d's INPUT_GRAD rule (its forward), and its output size."""
    stride, dilation = pair(cfg["stride"]), pair(cfg["dilation"])
    span = tuple((k - 1) * d + 1 for k, d in zip(cfg["k"], dilation))
    if cfg["padding"] == "SAME":
        out = [m * s for m, s in zip(cfg["hw"], stride)]
        pads = tuple(same_padding(n, k, s) for n, k, s in zip(out, span, stride))
    else:
        pads = resolve_padding(cfg["padding"], cfg["hw"], span, stride)
        out = [
            (m - 1) * s + k - lo - hi + op
            for m, s, k, (lo, hi), op in zip(cfg["hw"], stride, span, pads, cfg["output_padding"])
        ]
    return conv.ConvGeometry(stride, pads, dilation, cfg["groups"]), out


@st.composite
def conv_transpose_configs(draw, input_path: str | None = None):
    """``input_path``: the path of conv2d_transpose's forward, which is conv2d's input gradient."""
    groups, c, cy, k, stride, dilation = draw(conv_shapes(input_path))
    if input_path is None:
        groups = draw(st.integers(1, 2))
    padding = draw(paddings)
    if padding == "SAME":
        output_padding = (0, 0)
    else:
        output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    cfg = dict(
        n=draw(st.integers(1, 2)),
        hw=(draw(st.integers(1, 6)), draw(st.integers(1, 6))),
        k=k,
        c=groups * c,
        cy=groups * cy,
        stride=stride,
        dilation=dilation,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        bias=draw(st.booleans()),
        seed=draw(seeds),
    )
    geom, out = conv_transpose_geometry(cfg)
    assume(min(out) >= 1)
    path = conv_paths((*k, c, groups * cy), geom)["input"]
    if input_path is not None:
        assume(path == input_path)
    return cfg


def conv_transpose_case(cfg, dtype):
    shapes = [(cfg["n"], *cfg["hw"], cfg["cy"]), (*cfg["k"], cfg["c"] // cfg["groups"], cfg["cy"])]
    if cfg["bias"]:
        shapes.append((cfg["c"],))
    args = arrays(cfg["seed"], shapes, dtype)
    kw = dict(
        stride=cfg["stride"],
        padding=cfg["padding"],
        output_padding=cfg["output_padding"],
        dilation=cfg["dilation"],
        groups=cfg["groups"],
    )
    return (lambda impl, *a: ops.conv2d_transpose(*a, impl=impl, **kw)), args


# The pooling evaluations: non-overlapping windows that tile the input take the reshape path (``geom.tiles``),
# every other window the general one.
POOL_PATHS = ("tiles", "windows")


@st.composite
def pool_configs(draw, path: str | None = None):
    window = pair(draw(pairs(1, 4)))
    if path == "tiles":
        stride = draw(st.sampled_from([None, window, window[0] if window[0] == window[1] else window]))
    else:
        stride = draw(st.one_of(st.none(), pairs(1, 3)))
    padding = draw(paddings)
    cfg = dict(
        n=draw(st.integers(1, 2)),
        hw=(draw(st.integers(1, 9)), draw(st.integers(1, 9))),
        c=draw(st.integers(1, 3)),
        window=window,
        stride=stride,
        padding=padding,
        count_include_pad=draw(st.booleans()),
        ties=draw(st.booleans()),
        seed=draw(seeds),
    )
    pads = resolve_padding(padding, cfg["hw"], window, window if stride is None else pair(stride))
    assume(all(n + lo + hi >= k for n, k, (lo, hi) in zip(cfg["hw"], window, pads)))
    # A window made only of padding has no maximum to route to; lax and PyTorch reject such paddings too.
    assume(all(lo < k and hi < k for k, (lo, hi) in zip(window, pads)))
    if path is not None:
        assume(pool_path(cfg) == path)
    return cfg


def pool_path(cfg) -> str:
    """``PoolGeometry.tiles`` of a drawn ``pool_configs`` example: stride (default: the window) == window."""
    stride = cfg["window"] if cfg["stride"] is None else pair(cfg["stride"])
    return "tiles" if stride == cfg["window"] else "windows"


# ---------------------------------------------------------------- the argument contract

MODES = ("eager", "jit")
BAD_IMPLS = ["fast", "Manual", "", None, 0]
F = jnp.float64


def z(*shape, dtype=F):
    """An array of the given shape (values never matter for these checks)."""
    return jnp.zeros(shape, dtype)


def e(text: str) -> str:
    """Escape a literal message fragment (shapes contain parentheses, brackets, dots)."""
    return re.escape(text)


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad call: the op, its array arguments, its static keyword arguments, the exception type (ValueError
    for a bad value or shape, TypeError for a bad type or dtype) and a regex the message must match, naming the
    argument and the shapes/values passed. ``eager_only``: the check depends on concrete values (integer label
    ranges) or on non-array arguments that jit cannot take. ``xfail``: a known library bug (with the reason)."""

    id: str
    op: Callable[..., Any]
    args: tuple
    kwargs: dict
    exc: type[Exception]
    match: str
    eager_only: bool = False
    xfail: str | None = None


def case(id, op, args, kwargs, exc, match, **extra) -> Case:
    return Case(id, op, tuple(args), dict(kwargs), exc, match, **extra)


def error_params(cases: list[Case]):
    """pytest params (case, impl, mode) for every row, both impls, eagerly and under jit."""
    for c in cases:
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        for impl in IMPLS:
            for mode in MODES:
                if mode == "jit" and c.eager_only:
                    continue
                yield pytest.param(c, impl, mode, id=f"{c.id}-{impl}-{mode}", marks=marks)


def invoke(c: Case, impl, mode: str):
    if mode == "eager":
        return c.op(*c.args, impl=impl, **c.kwargs)
    # Trace only: the error must come from the Python checks, before any lowering or compilation.
    return jax.jit(lambda *a: c.op(*a, impl=impl, **c.kwargs)).trace(*c.args)


def check_error_case(c: Case, impl: str, mode: str):
    with pytest.raises(c.exc, match=c.match) as info:
        invoke(c, impl, mode)
    # Exactly the documented type: not a subclass such as jax's own errors from deeper down.
    assert type(info.value) is c.exc


def well_formed_params(calls):
    """pytest params for a module's WELL_FORMED calls (name, op, args, kwargs), one well-formed call per op."""
    return [pytest.param(*call, id=call[0]) for call in calls]


def check_unknown_impl(name, op, args, kwargs, mode, bad_impl):
    with pytest.raises(ValueError, match=e(f"impl must be one of {_checks.IMPLS}, got ") + e(repr(bad_impl))):
        invoke(Case(name, op, args, kwargs, ValueError, ""), bad_impl, mode)


def check_well_formed(op, args, kwargs, impl):
    """The baselines the error rows perturb are themselves valid, eagerly and under jit."""
    eager = op(*args, impl=impl, **kwargs)
    jitted = jax.jit(lambda *a: op(*a, impl=impl, **kwargs))(*args)
    assert jax.tree_util.tree_structure(eager) == jax.tree_util.tree_structure(jitted)
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---------------------------------------------------------------- float16 and bfloat16 inputs

HALF_DTYPES = [pytest.param(jnp.float16, id="float16"), pytest.param(jnp.bfloat16, id="bfloat16")]
HALF_TOL = {jnp.float16: 5e-3, jnp.bfloat16: 4e-2}


def check_half_precision(name: str, call: Callable, shapes: list[tuple[int, ...]], dtype):
    """For both impls, output and gradients come back in the input dtype and agree with float32 on the same
    (rounded) inputs to the dtype's precision; errors relative to max(|float32 value|, |cotangent|).
    ``call(impl, *arrays)`` is one well-formed call of op ``name`` with hyper-parameters that exercise padding,
    strides and overlapping windows."""
    rng = np.random.default_rng(sorted(ops.__all__).index(name))
    args = [jnp.asarray(rng.normal(size=s), dtype) for s in shapes]
    c = jnp.asarray(rng.normal(size=jax.eval_shape(lambda *a: call("manual", *a), *args).shape), jnp.float32)

    @jax.jit  # one program for the three: op-by-op dispatch would compile every small step on its own
    def forward_and_grads(args, c):
        results = {}
        for impl, a in (("manual", args), ("autodiff", args), ("float32", [x.astype(jnp.float32) for x in args])):
            out, vjp = jax.vjp(lambda *a: call("autodiff" if impl == "float32" else impl, *a), *a)
            results[impl] = out, vjp(c.astype(out.dtype))
        return results

    results = forward_and_grads(args, c)
    ref_out, ref_grads = results.pop("float32")
    floor = max_abs(c)
    for impl, (out, grads) in results.items():
        assert out.dtype == dtype and [g.dtype for g in grads] == [dtype] * len(args), impl
        compared = [("output", out, ref_out), *((f"grad {k}", g, r) for k, (g, r) in enumerate(zip(grads, ref_grads)))]
        for what, got, want in compared:
            got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
            assert np.isfinite(got).all(), (impl, what)
            error = relative_error(got, want, max(floor if what != "output" else 0.0, 1e-30))
            assert error < HALF_TOL[dtype], f"{impl} {what}: relative error {error:.1e}"


# ---------------------------------------------------------------- well-formed arguments the error rows perturb

X = z(1, 5, 5, 2)  # conv2d input NHWC
W = z(2, 2, 2, 3)  # HWIO kernel: 2 in, 3 out
Y = z(1, 3, 3, 3)  # conv2d_transpose input (3 channels = W.shape[3])
P = z(1, 4, 4, 2)  # pooling / sub-sampling input
KEY = jax.random.PRNGKey(0)  # dropout


# ---------------------------------------------------------------- exact references for the numerics tests
# Computed by hand in float64 with Python's math module from the values the op actually receives (the inputs
# rounded to the dtype under test).

ALL_FLOAT_DTYPES = [pytest.param(d, id=jnp.dtype(d).name) for d in (jnp.float64, jnp.float32, jnp.float16, jnp.bfloat16)]


def eps(dtype) -> float:
    return float(jnp.finfo(dtype).eps)


def exact_log_softmax(u: list[float]) -> list[float]:
    """u - max - log(sum exp(u - max)), each term in float64 (math.fsum: one rounding)."""
    top = max(u)
    lse = math.log(math.fsum(math.exp(v - top) for v in u))
    return [v - top - lse for v in u]


def rounded(values, dtype) -> list[float]:
    """The values an op of ``dtype`` receives, as Python floats."""
    return [float(v) for v in np.asarray(jnp.asarray(values, dtype).astype(jnp.float64))]


# ---------------------------------------------------------------- the contract every op module checks


def op_contract(error_cases: list[Case], well_formed: list, half_cases: dict, gradcheck_cases: list[str]) -> type:
    """A test class running an op module's tables through the shared checks: every error row raises its
    documented error (both impls, eagerly and under jit), an unknown impl is refused, the well-formed calls trace
    and run, float16/bfloat16 inputs work, and gradcheck's representative cases match finite differences.
    Each module binds it once: ``TestContract = op_contract(ERROR_CASES, WELL_FORMED, HALF_CASES, GRADCHECK_CASES)``.
    """

    class Contract:
        @pytest.mark.parametrize("c, impl, mode", list(error_params(error_cases)))
        def test_bad_argument_raises(self, c, impl, mode):
            check_error_case(c, impl, mode)

        @pytest.mark.parametrize("bad_impl", BAD_IMPLS)
        @pytest.mark.parametrize("mode", MODES)
        @pytest.mark.parametrize("name, op, args, kwargs", well_formed_params(well_formed))
        def test_unknown_impl_raises(self, name, op, args, kwargs, mode, bad_impl):
            check_unknown_impl(name, op, args, kwargs, mode, bad_impl)

        @pytest.mark.parametrize("impl", IMPLS)
        @pytest.mark.parametrize("name, op, args, kwargs", well_formed_params(well_formed))
        def test_well_formed_calls_trace_and_run(self, name, op, args, kwargs, impl):
            check_well_formed(op, args, kwargs, impl)

        @pytest.mark.parametrize("dtype", HALF_DTYPES)
        @pytest.mark.parametrize("name", sorted(half_cases))
        def test_half_precision_inputs_work(self, name, dtype):
            check_half_precision(name, *half_cases[name], dtype)

        @pytest.mark.parametrize("name", gradcheck_cases)
        def test_gradcheck_case_matches_finite_differences(self, name):
            check_op_case(name)

    return Contract
