"""Compare hand-derived gradients with jax.grad and with finite differences.

For a scalar function f(impl)(*args) built once with impl="manual" and once with impl="autodiff":

    manual vs autodiff   max |g_m - g_a| / max |g_a|                         per array argument (pytree leaf)
    each vs finite diff  |<g, v> - (f(x + eps v) - f(x - eps v)) / (2 eps)| / max(|<g, v>|, |fd|)
                         over a few random unit directions v per leaf (float64), the smallest error over the
                         steps eps in FINITE_DIFFERENCE_STEPS and over the central and one-sided quotients
                         (``difference_quotients``). No one step suits every model: the truncation error
                         wants it small, the round-off ~1e-16 |f| / eps (large next to the small <g, v> of a
                         random direction over many parameters) wants it large, and a step that carries x
                         across a ReLU kink or a max-pool argmax change is meaningless on that side. A wrong
                         gradient disagrees at every step, on both sides.

plus the compiled forward+backward time (jit(grad)) of each impl. ``python -m jaxcnn gradcheck`` prints one table row
per parameter and exits non-zero when any error is above tolerance.

In a low precision (``--precision bfloat16`` or ``float16``, the dtypes of mixed-precision training) finite
differences mean nothing; both impls then run on the same data rounded to that dtype, and the reference is
the float64 gradient (autodiff) of the rounded data: the columns "vs fd" compare with it instead.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import ops

# f(impl) -> scalar function of the arguments.
LossFactory = Callable[[str], Callable[..., jax.Array]]


# The steps of the finite differences: 1e-7 for the deep models at full size (resnet20 on 28x28), where ReLU
# kinks lie within 1e-6 of the point on both sides along some directions; 1e-4 where no kink is near and
# round-off is the larger error.
FINITE_DIFFERENCE_STEPS = (1e-4, 1e-5, 1e-6, 1e-7)


@dataclasses.dataclass(frozen=True)
class Tolerances:
    manual_vs_autodiff: float = 1e-10
    finite_difference: float = 1e-6


@dataclasses.dataclass(frozen=True)
class GradRow:
    """One parameter's comparison."""

    case: str
    param: str
    shape: tuple[int, ...]
    abs_manual_autodiff: float
    rel_manual_autodiff: float
    rel_manual_fd: float
    rel_autodiff_fd: float
    ms_manual: float
    ms_autodiff: float

    def ok(self, tol: Tolerances) -> bool:
        return (
            self.rel_manual_autodiff <= tol.manual_vs_autodiff
            and self.rel_manual_fd <= tol.finite_difference
            and self.rel_autodiff_fd <= tol.finite_difference
        )


def leaf_names(tree: Any, prefix: str = "") -> list[str]:
    """Readable names of the leaves of a pytree of arguments ('w', 'params/conv1/w', ...)."""
    paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    names = []
    for path, _ in paths:
        parts = [str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path]
        names.append("/".join([prefix, *parts] if prefix else parts) or prefix)
    return names


def relative_error(a: jax.Array, b: jax.Array, *, floor: float = 0.0) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max |b|) in float64, on the host, with the scale floored at ``floor`` and at the
    smallest normal number (a larger floor where b is round-off of larger terms that cancel)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    abs_err = float(np.max(np.abs(a64 - b64))) if a64.size else 0.0
    scale = max(float(np.max(np.abs(b64))) if b64.size else 0.0, floor, np.finfo(np.float64).tiny)
    return abs_err, abs_err / scale


def finite_difference_errors(
    f: Callable[..., jax.Array],
    args: tuple,
    grads: tuple,
    *,
    seed: int = 0,
    eps: float | Sequence[float],
    directions: int,
) -> list[float]:
    """Worst relative error of <g, v> against the central difference of f along random unit v, per leaf
    (``finite_difference_errors_of`` for one gradient)."""
    return finite_difference_errors_of(f, args, [grads], seed=seed, eps=eps, directions=directions)[0]


def finite_difference_errors_of(
    f: Callable[..., jax.Array],
    args: tuple,
    gradients: Sequence[tuple],
    *,
    seed: int = 0,
    eps: float | Sequence[float],
    directions: int,
    compiler_options: Mapping[str, Any] | None = None,
) -> list[list[float]]:
    """For each gradient of ``gradients`` (pytrees like ``args``): the worst relative error of <g, v> against the
    differences of f along random unit v, per leaf.

    For each direction the best of the quotients of ``difference_quotients`` counts (central, one-sided and
    extrapolated one-sided, for each step of ``eps``): a kink of ReLU or max-pool within a step of the point
    spoils the central quotient and the one-sided ones on its side, round-off spoils the smallest step, but not
    all of them at once. One compiled program evaluates f at all 2 * len(eps) + 1 points of a direction (vmap over
    the perturbation), whichever leaf is perturbed, and every gradient is checked against the same values. The
    error is relative to max(|<g, v>|, |fd|, 0.01 |g|): a direction almost orthogonal to g has a tiny <g, v> that
    round-off alone would swamp. ``compiler_options``: see ``difference_quotients``.
    """
    grad_leaves = [jax.tree_util.tree_leaves(g) for g in gradients]
    errors = [[0.0] * len(grad_leaves[0]) if grad_leaves else [] for _ in gradients]
    quotients = difference_quotients(
        f, args, seed=seed, eps=eps, directions=directions, compiler_options=compiler_options
    )
    for i, v, fds in quotients:
        for which, g_leaves in enumerate(grad_leaves):
            g = np.asarray(g_leaves[i], np.float64)
            errors[which][i] = max(errors[which][i], directional_error(float(np.vdot(g, v)), fds, g))
    return errors


def directional_error(analytic: float, fds: np.ndarray, g: np.ndarray) -> float:
    """The best of the differences ``fds`` against a directional derivative, relative to
    max(|analytic|, |fd|, 0.01 |g|) (see ``finite_difference_errors_of``)."""
    floor = max(0.01 * float(np.linalg.norm(g)), 1e-12)
    scale = np.maximum(np.maximum(abs(analytic), np.abs(fds)), floor)
    return float(np.min(np.abs(fds - analytic) / scale))


def difference_quotients(
    f: Callable[..., jax.Array],
    args: tuple,
    *,
    seed: int = 0,
    eps: float | Sequence[float],
    directions: int,
    compiler_options: Mapping[str, Any] | None = None,
):
    """For each leaf i of ``args`` and ``directions`` random unit directions v in it: (i, v, the difference
    quotients of f along v), in the order of ``finite_difference_errors_of`` (the same v for the same seed, so the
    reverse and forward checks look along the same directions).

    With d(t) = f(x + t v) - f(x), the quotients estimate <grad f, v> = d'(0) from points on one or both sides:

        central             (d(h) - d(-h)) / 2h                            each step h       error O(h^2)
        one-sided           d(h) / h  and  -d(-h) / h                      each step h       error O(h)
        one-sided, extrap.  (a^2 d(h) - d(a h)) / ((a^2 - a) h), mirrored  each two steps    error O(a h^2)
                            h < a h of ``eps`` (Richardson's extrapolation of the one-sided quotient)

    The extrapolated one-sided quotients matter for whole models at full size: there a kink of some ReLU lies
    within 1e-6 of x along most directions, on one side or the other, and the first-order error h d''/2 is above
    the tolerance at every step that round-off allows. They reuse the points of the other quotients.

    ``compiler_options``: XLA's options for the one program that evaluates f at the points (``jax.jit``'s
    ``compiler_options``). It runs once per direction, so for a whole model its run time counts, not its
    compile time: a process that compiles without optimisation to save time on many small programs (this
    project's test suite) turns optimisation back on here.
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    steps = jnp.asarray([eps] if isinstance(eps, float) else list(eps))
    signs = jnp.concatenate([steps, -steps, jnp.zeros(1, steps.dtype)])

    @functools.partial(jax.jit, compiler_options=compiler_options)
    def at_points(flat, i_onehot, v_flat):
        """f(args + t * v) for every t in signs, v living in leaf i (i_onehot selects it among the leaves)."""

        def one(t):
            return f(*jax.tree_util.tree_unflatten(treedef, _moved(flat, i_onehot, t * v_flat)))

        return jax.vmap(one)(signs)

    k = steps.shape[0]
    # The direction bookkeeping is in NumPy: each eager jnp call on a new shape would compile a program.
    step_sizes = np.asarray(steps, np.float64)
    order = np.argsort(step_sizes)
    small, large = order[:-1], order[1:]
    distinct = step_sizes[large] > step_sizes[small]
    small, large = small[distinct], large[distinct]
    a = step_sizes[large] / step_sizes[small]
    for i, onehot, v, v_flat in unit_directions(leaves, seed=seed, directions=directions):
        values = np.asarray(at_points(leaves, onehot, v_flat), np.float64)
        centre = values[2 * k]
        ahead, behind = values[:k] - centre, centre - values[k : 2 * k]
        yield i, v, np.concatenate([
            (ahead + behind) / (2 * step_sizes),
            ahead / step_sizes,
            behind / step_sizes,
            (a**2 * ahead[small] - ahead[large]) / ((a**2 - a) * step_sizes[small]),
            (a**2 * behind[small] - behind[large]) / ((a**2 - a) * step_sizes[small]),
        ])


def _tangents(flat: Sequence[jax.Array], i_onehot: jax.Array, v_flat: jax.Array) -> list[jax.Array]:
    """The flat vector ``v_flat`` cut into the shapes of the leaves ``flat``, zero outside the leaf i_onehot selects."""
    pieces, offset = [], 0
    for j, x in enumerate(flat):
        pieces.append(i_onehot[j] * v_flat[offset : offset + x.size].reshape(x.shape).astype(x.dtype))
        offset += x.size
    return pieces


def _moved(flat: Sequence[jax.Array], i_onehot: jax.Array, v_flat: jax.Array) -> list[jax.Array]:
    """The leaves ``flat`` moved by ``_tangents(flat, i_onehot, v_flat)``."""
    return [x + t for x, t in zip(flat, _tangents(flat, i_onehot, v_flat))]


def unit_directions(leaves: Sequence[jax.Array], *, seed: int, directions: int):
    """(i, one-hot of leaf i, random unit v of leaf i's shape, v laid into a flat vector of all the leaves)."""
    total = sum(x.size for x in leaves)
    offsets = np.cumsum([0] + [x.size for x in leaves])
    for i, leaf in enumerate(leaves):
        onehot = np.zeros(len(leaves), leaf.dtype)
        onehot[i] = 1
        rng = np.random.default_rng([seed, i])
        for _ in range(directions):
            v = rng.normal(size=leaf.shape)
            v = (v / max(np.linalg.norm(v), np.finfo(np.float64).tiny)).astype(leaf.dtype)
            v_flat = np.zeros(total, leaf.dtype)
            v_flat[offsets[i] : offsets[i + 1]] = v.ravel()
            yield i, onehot, v, v_flat


def time_compiled(step: Callable[..., Any], args: tuple, *, repeats: int = 5, min_seconds: float = 0.05) -> float:
    """Median milliseconds of one call of the jitted ``step`` (for the table: jit(grad), forward and backward),
    after a warm-up; calls are batched until a sample lasts ``min_seconds``."""
    jax.block_until_ready(step(*args))
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            out = step(*args)
        jax.block_until_ready(out)
        if time.perf_counter() - start >= min_seconds or calls >= 1 << 14:
            break
        calls *= 2
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            out = step(*args)
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - start) / calls)
    return 1e3 * statistics.median(samples)


def compare(
    case: str,
    loss: LossFactory,
    args: tuple,
    names: Sequence[str],
    *,
    seed: int = 0,
    eps: float | Sequence[float] = FINITE_DIFFERENCE_STEPS,
    directions: int = 3,
    timing: bool = True,
    compiler_options: Mapping[str, Any] | None = None,
) -> list[GradRow]:
    """Rows for every array leaf of ``args``; ``names`` names the top-level arguments.

    Both gradients are checked against the same finite differences of the manual forward (the two forwards
    compute one function), and the timed program is the one whose gradient was checked. ``compiler_options``:
    for the program of the finite differences (``difference_quotients``)."""
    argnums = tuple(range(len(args)))
    f_manual, f_autodiff = loss("manual"), loss("autodiff")
    grad_manual = jax.jit(jax.grad(f_manual, argnums=argnums))
    grad_autodiff = jax.jit(jax.grad(f_autodiff, argnums=argnums))
    g_manual, g_autodiff = grad_manual(*args), grad_autodiff(*args)
    fd_manual, fd_autodiff = finite_difference_errors_of(
        f_manual, args, [g_manual, g_autodiff], seed=seed, eps=eps, directions=directions,
        compiler_options=compiler_options,
    )
    ms_manual = time_compiled(grad_manual, args) if timing else float("nan")
    ms_autodiff = time_compiled(grad_autodiff, args) if timing else float("nan")
    labels = [n for name, arg in zip(names, args) for n in leaf_names(arg, name)]
    rows = []
    for i, (label, gm, ga) in enumerate(
        zip(labels, jax.tree_util.tree_leaves(g_manual), jax.tree_util.tree_leaves(g_autodiff))
    ):
        abs_err, rel_err = relative_error(gm, ga)
        rows.append(
            GradRow(case, label, tuple(gm.shape), abs_err, rel_err, fd_manual[i], fd_autodiff[i], ms_manual, ms_autodiff)
        )
    return rows


def format_table(rows: Sequence[GradRow], tol: Tolerances = Tolerances()) -> str:
    header = (
        f"{'case':<22} {'param':<24} {'shape':<18} {'|m-a| max':>10} {'rel m-a':>9} {'rel m-fd':>9} "
        f"{'rel a-fd':>9} {'ms manual':>10} {'ms autodiff':>11}  ok"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.case:<22} {r.param:<24} {str(r.shape):<18} {r.abs_manual_autodiff:>10.1e} {r.rel_manual_autodiff:>9.1e} "
            f"{r.rel_manual_fd:>9.1e} {r.rel_autodiff_fd:>9.1e} {r.ms_manual:>10.3f} {r.ms_autodiff:>11.3f}  "
            f"{'yes' if r.ok(tol) else 'NO'}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- the forward direction (impl="primitive")


@dataclasses.dataclass(frozen=True)
class ForwardRow:
    """One parameter's forward-mode comparison: along random unit tangents t in that parameter, the JVP of
    impl="primitive" (the hand-derived tangent rules) against the JVP of impl="autodiff" and against finite
    differences, and the adjoint identity <delta, J t> = <J^T delta, t> between the hand-derived JVP and the
    hand-derived VJP (delta = 1 for the scalar loss: the projection on the case's random cotangent is in J)."""

    case: str
    param: str
    shape: tuple[int, ...]
    rel_primitive_autodiff: float
    rel_primitive_fd: float
    rel_autodiff_fd: float
    rel_adjoint: float

    def ok(self, tol: Tolerances) -> bool:
        return (
            self.rel_primitive_autodiff <= tol.manual_vs_autodiff
            and self.rel_adjoint <= tol.manual_vs_autodiff
            and self.rel_primitive_fd <= tol.finite_difference
            and self.rel_autodiff_fd <= tol.finite_difference
        )


def _jvp_along(f: Callable[..., jax.Array], treedef: Any) -> Callable[..., jax.Array]:
    """jit((leaves, i_onehot, v_flat) -> the JVP of f at the leaves along the tangent ``_tangents`` builds):
    one compiled program for every leaf and direction."""

    @jax.jit
    def along(flat, i_onehot, v_flat):
        unflat = lambda *leaves: f(*jax.tree_util.tree_unflatten(treedef, leaves))  # noqa: E731
        return jax.jvp(unflat, tuple(flat), tuple(_tangents(flat, i_onehot, v_flat)))[1]

    return along


def _scalar_error(a: float, b: float, g: np.ndarray) -> float:
    """|a - b| relative to max(|a|, |b|, 0.01 |g|): the floor of ``directional_error`` for a tangent almost
    orthogonal to the gradient g."""
    return abs(a - b) / max(abs(a), abs(b), 0.01 * float(np.linalg.norm(g)), np.finfo(np.float64).tiny)


def compare_forward(
    case: str,
    loss: LossFactory,
    args: tuple,
    names: Sequence[str],
    *,
    seed: int = 0,
    eps: float | Sequence[float] = FINITE_DIFFERENCE_STEPS,
    directions: int = 3,
) -> list[ForwardRow]:
    """Rows for every array leaf of ``args``: the worst errors over ``directions`` random unit tangents in it
    (the directions of ``compare`` for the same seed), the finite differences taken on the autodiff forward."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    f_primitive, f_autodiff = loss("primitive"), loss("autodiff")
    jvp_primitive, jvp_autodiff = _jvp_along(f_primitive, treedef), _jvp_along(f_autodiff, treedef)
    grad_leaves = jax.tree_util.tree_leaves(jax.jit(jax.grad(f_primitive, argnums=tuple(range(len(args)))))(*args))
    grads = [np.asarray(g, np.float64) for g in grad_leaves]
    worst = np.zeros((len(leaves), 4))
    tangents = unit_directions(leaves, seed=seed, directions=directions)
    differences = difference_quotients(f_autodiff, args, seed=seed, eps=eps, directions=directions)
    for (i, onehot, v, v_flat), (_, _, fds) in zip(tangents, differences):
        jp = float(jvp_primitive(leaves, onehot, v_flat))
        ja = float(jvp_autodiff(leaves, onehot, v_flat))
        adjoint = float(np.vdot(grads[i], v))
        errors = (_scalar_error(jp, ja, grads[i]), directional_error(jp, fds, grads[i]),
                  directional_error(ja, fds, grads[i]), _scalar_error(jp, adjoint, grads[i]))  # fmt: skip
        worst[i] = np.maximum(worst[i], errors)
    labels = [n for name, arg in zip(names, args) for n in leaf_names(arg, name)]
    return [ForwardRow(case, label, tuple(x.shape), *map(float, w)) for label, x, w in zip(labels, leaves, worst)]


def format_forward_table(rows: Sequence[ForwardRow], tol: Tolerances = Tolerances()) -> str:
    header = (
        f"{'case':<22} {'param':<24} {'shape':<18} {'jvp p-a':>9} {'jvp p-fd':>9} {'jvp a-fd':>9} "
        f"{'<d,Jt>-<JTd,t>':>15}  ok"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.case:<22} {r.param:<24} {str(r.shape):<18} {r.rel_primitive_autodiff:>9.1e} {r.rel_primitive_fd:>9.1e} "
            f"{r.rel_autodiff_fd:>9.1e} {r.rel_adjoint:>15.1e}  {'yes' if r.ok(tol) else 'NO'}"
        )
    return "\n".join(lines)


def forward_summary_line(case: str, rows: Sequence[ForwardRow], tol: Tolerances, seconds: float) -> str:
    """``summary_line`` of the forward check."""
    worst = lambda field: max((getattr(r, field) for r in rows), default=0.0)  # noqa: E731
    verdict = "ok  " if all(r.ok(tol) for r in rows) else "FAIL"
    return (
        f"{verdict} jvp {case:<24} {len(rows):>3} params  rel p-a {worst('rel_primitive_autodiff'):.1e}  "
        f"p-fd {worst('rel_primitive_fd'):.1e}  a-fd {worst('rel_autodiff_fd'):.1e}  "
        f"adjoint {worst('rel_adjoint'):.1e}  {seconds:5.1f} s"
    )


# ---------------------------------------------------------------- the op cases of the command


def _normal(seed: int, i: int, shape: tuple[int, ...], dtype) -> jax.Array:
    """Standard normal test data from NumPy (jax.random would compile a sampler for every shape)."""
    return jnp.asarray(np.random.default_rng([seed, i]).normal(size=shape), dtype)


def _projected(op_call: Callable[[str, tuple], jax.Array], seed: int, out_shape_args: tuple) -> LossFactory:
    """Reduce an op's output to a scalar with a fixed random cotangent c: L = sum(op(...) * c)."""
    out_shape = jax.eval_shape(lambda *a: op_call("autodiff", a), *out_shape_args).shape
    c = _normal(seed, 999, out_shape, out_shape_args[0].dtype)
    return lambda impl: (lambda *a: jnp.sum(op_call(impl, a) * c))


def op_cases(dtype=jnp.float64, seed: int = 0) -> dict[str, tuple[LossFactory, tuple, tuple[str, ...]]]:
    """A representative, awkward configuration of every op: name -> (loss factory, args, arg names)."""
    n = lambda i, *shape: _normal(seed, i, shape, dtype)  # noqa: E731
    # Non-differentiable inputs are closed over: batch_norm's running statistics, dropout's key.
    running = {"mean": n(100, 3), "var": jnp.exp(n(101, 3))}
    drop_key = jax.random.PRNGKey(seed + 102)
    specs: dict[str, tuple[Callable[[str, tuple], jax.Array], tuple, tuple[str, ...]]] = {
        "conv2d": (
            lambda impl, a: ops.conv2d(*a, stride=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2, impl=impl),
            (n(0, 2, 9, 8, 4), n(1, 3, 2, 2, 6), n(2, 6)),
            ("x", "w", "b"),
        ),
        "conv2d_transpose": (
            lambda impl, a: ops.conv2d_transpose(*a, stride=2, padding=1, output_padding=1, impl=impl),
            (n(3, 2, 5, 4, 3), n(4, 3, 3, 2, 3), n(5, 2)),
            ("y", "w", "b"),
        ),
        "max_pool 3x3/2": (
            lambda impl, a: ops.max_pool(*a, window=3, stride=2, padding="SAME", impl=impl),
            (n(6, 2, 9, 7, 3),),
            ("x",),
        ),
        "avg_pool 2x2": (lambda impl, a: ops.avg_pool(*a, window=2, impl=impl), (n(7, 2, 8, 6, 3),), ("x",)),
        "subsample": (
            lambda impl, a: ops.subsample(*a, window=2, impl=impl),
            (n(8, 2, 6, 4, 3), n(9, 3), n(10, 3)),
            ("x", "beta", "b"),
        ),
        "upsample": (lambda impl, a: ops.upsample(*a, factor=(2, 3), impl=impl), (n(11, 2, 3, 2, 2),), ("x",)),
        "dense": (lambda impl, a: ops.dense(*a, impl=impl), (n(12, 5, 7), n(13, 7, 4), n(14, 4)), ("x", "w", "b")),
        "sigmoid": (lambda impl, a: ops.sigmoid(*a, impl=impl), (n(15, 4, 5),), ("x",)),
        "tanh": (lambda impl, a: ops.tanh(*a, impl=impl), (n(16, 4, 5),), ("x",)),
        "relu": (lambda impl, a: ops.relu(*a, impl=impl), (n(17, 4, 5),), ("x",)),
        "softmax": (lambda impl, a: ops.softmax(*a, impl=impl), (n(18, 4, 5),), ("x",)),
        "log_softmax": (lambda impl, a: ops.log_softmax(*a, impl=impl), (n(19, 4, 5),), ("x",)),
        "mse": (lambda impl, a: ops.mse(*a, impl=impl), (n(20, 4, 5), n(21, 4, 5)), ("pred", "target")),
        "softmax_cross_entropy": (
            lambda impl, a: ops.softmax_cross_entropy(*a, impl=impl),
            (n(22, 4, 5), jax.nn.softmax(n(23, 4, 5))),
            ("logits", "labels"),
        ),
        # batch 1 with a 3x2 map: 6 values per channel, normalised over batch and space.
        "batch_norm train": (
            lambda impl, a: ops.batch_norm(*a, ops.batch_norm_state(4, dtype), training=True, impl=impl)[0],
            (n(24, 1, 3, 2, 4), n(25, 4), n(26, 4)),
            ("x", "gamma", "beta"),
        ),
        "batch_norm eval axis=1": (
            lambda impl, a: ops.batch_norm(*a, running, training=False, axis=1, eps=1e-3, impl=impl)[0],
            (n(27, 2, 3, 5), n(28, 3), n(29, 3)),
            ("x", "gamma", "beta"),
        ),
        "dropout 0.3": (lambda impl, a: ops.dropout(*a, drop_key, rate=0.3, impl=impl), (n(30, 4, 6),), ("x",)),
        "lrn size 4": (
            lambda impl, a: ops.local_response_norm(*a, size=4, alpha=0.5, beta=0.75, k=1.0, impl=impl),
            (n(31, 2, 3, 2, 7),),
            ("x",),
        ),
        "global_avg_pool": (lambda impl, a: ops.global_avg_pool(*a, impl=impl), (n(32, 2, 3, 5, 4),), ("x",)),
        "concat": (
            lambda impl, a: ops.concat(list(a), axis=-1, impl=impl),
            (n(33, 2, 3, 3, 2), n(34, 2, 3, 3, 1), n(35, 2, 3, 3, 3)),
            ("x0", "x1", "x2"),
        ),
        "add": (lambda impl, a: ops.add(*a, impl=impl), (n(36, 2, 4, 4, 3), n(37, 2, 4, 4, 3)), ("a", "b")),
    }
    return {name: (_projected(call, seed, args), args, names) for name, (call, args, names) in specs.items()}


# Low precision: manual vs autodiff, and each vs the float64 gradient, relative to the largest entry. Each dtype
# rounds every intermediate to 8 (bfloat16) or 11 (float16) significant bits.
LOW_PRECISION_TOLERANCES = {
    "bfloat16": Tolerances(manual_vs_autodiff=5e-2, finite_difference=5e-2),
    "float16": Tolerances(manual_vs_autodiff=1e-2, finite_difference=1e-2),
}


def tolerances(precision: str = "float64") -> Tolerances:
    if precision == "float64":
        return Tolerances()
    if precision not in LOW_PRECISION_TOLERANCES:
        raise ValueError(f"precision must be float64 or one of {sorted(LOW_PRECISION_TOLERANCES)}, got {precision!r}")
    return LOW_PRECISION_TOLERANCES[precision]


def compare_in_precision(case: str, loss: LossFactory, args: tuple, names: Sequence[str], dtype) -> list[GradRow]:
    """Rows for ``args`` rounded to ``dtype``: manual vs autodiff there, and each against the float64 gradient of
    the rounded data (in the finite-difference columns)."""
    argnums = tuple(range(len(args)))

    def cast(tree, to):
        return jax.tree_util.tree_map(lambda a: a.astype(to) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)

    @jax.jit  # one program for the rounding and the three gradients
    def gradients(args):
        low = cast(args, dtype)
        exact = cast(low, jnp.float64)
        runs = (("manual", low), ("autodiff", low), ("autodiff", exact))
        return [jax.grad(loss(impl), argnums=argnums)(*a) for impl, a in runs]

    g_manual, g_autodiff, g_exact = gradients(args)
    labels = [n for name, arg in zip(names, args) for n in leaf_names(arg, name)]
    rows = []
    for label, gm, ga, ge in zip(labels, *(jax.tree_util.tree_leaves(g) for g in (g_manual, g_autodiff, g_exact))):
        abs_err, rel_err = relative_error(gm, ga)
        rows.append(GradRow(case, label, tuple(gm.shape), abs_err, rel_err, relative_error(gm, ge)[1],
                            relative_error(ga, ge)[1], float("nan"), float("nan")))  # fmt: skip
    return rows


# The models of the default check: every layer kind of the LeNet family and the worked examples, at full size,
# in about a minute. The deep models repeat these layers in depth; ``run(models=MODELS)`` (``--full``) checks them.
SMALL_MODELS = ("lenet5", "lenet5_classic", "cnn_small", "single_kernel_14x14", "two_filters_4x4")


def case_count(case_names: Sequence[str] | None, models: Sequence[str]) -> int:
    """How many cases ``run`` checks (for a progress bar)."""
    return (len(op_cases()) if case_names is None else len(case_names)) + len(models)


def run(
    case_names: Sequence[str] | None = None,
    *,
    models: Sequence[str] = (),
    timing: bool = True,
    precision: str = "float64",
    progress: Callable[[str, list[GradRow]], None] | None = None,
) -> list[GradRow]:
    """Rows for the named op cases (all by default) and for whole models (see jaxcnn.models); ``precision``
    "bfloat16" or "float16" compares the impls in that dtype (see the module docstring). ``progress`` is called
    with each case's name and rows as it finishes."""
    tolerances(precision)
    if precision != "float64" and models:
        raise ValueError(
            f"the {precision} check covers the ops; whole models in {precision} differ from float64 by their rounding "
            f"(tests/test_precision.py checks mixed-precision training); drop --models or the precision"
        )
    cases = op_cases() if case_names is None or case_names else {}
    unknown = sorted(set(case_names or ()) - set(cases))
    if unknown:
        raise ValueError(f"unknown op case(s) {unknown}; choose from {sorted(cases)}")

    def check(name: str, loss: LossFactory, args: tuple, names: Sequence[str]) -> list[GradRow]:
        if precision == "float64":
            found = compare(name, loss, args, names, timing=timing)
        else:
            found = compare_in_precision(name, loss, args, names, jnp.dtype(precision))
        if progress is not None:
            progress(name, found)
        return found

    rows = []
    for name in cases if case_names is None else case_names:
        rows += check(name, *cases[name])
    for model_name in models:
        rows += check(f"model {model_name}", *model_case(model_name))
    return rows


def run_forward(
    case_names: Sequence[str] | None = None,
    *,
    models: Sequence[str] = (),
    directions: int = 3,
    progress: Callable[[str, list[ForwardRow]], None] | None = None,
) -> list[ForwardRow]:
    """``compare_forward`` rows for the named op cases (all by default) and whole models, in float64."""
    cases = op_cases() if case_names is None or case_names else {}
    unknown = sorted(set(case_names or ()) - set(cases))
    if unknown:
        raise ValueError(f"unknown op case(s) {unknown}; choose from {sorted(cases)}")
    checks = [(name, lambda name=name: cases[name]) for name in (cases if case_names is None else case_names)]
    checks += [(f"model {name}", lambda name=name: model_case(name)) for name in models]
    rows = []
    for name, build in checks:
        found = compare_forward(name, *build(), directions=directions)
        if progress is not None:
            progress(name, found)
        rows += found
    return rows


def summary_line(case: str, rows: Sequence[GradRow], tol: Tolerances, seconds: float) -> str:
    """One line per checked case: the worst errors of its parameters and whether all are within tolerance."""
    worst = lambda field: max((getattr(r, field) for r in rows), default=0.0)  # noqa: E731
    verdict = "ok  " if all(r.ok(tol) for r in rows) else "FAIL"
    return (
        f"{verdict} {case:<28} {len(rows):>3} params  rel m-a {worst('rel_manual_autodiff'):.1e}  "
        f"m-fd {worst('rel_manual_fd'):.1e}  a-fd {worst('rel_autodiff_fd'):.1e}  {seconds:5.1f} s"
    )


def model_case(
    name: str, batch: int = 2, input_shape: tuple[int, int, int] | None = None
) -> tuple[LossFactory, tuple, tuple[str, str]]:
    """(loss factory, (params, x), names) for :func:`compare`: the whole model ``jaxcnn.models.get_model(name)``
    in float64 on a small batch (and, for the models that take any image size, optionally small images).

    The loss is the training-mode one (batch statistics, a fixed dropout key), the mode whose backward trains.
    """
    from jaxcnn.models import get_model  # models build on ops; imported only when asked for

    model = get_model(name, input_shape=input_shape)
    # Any random data will do here; the RBG generator's programs compile in a fraction of threefry's time.
    key = jax.random.key(0, impl="rbg")
    to_float64 = functools.partial(jax.tree_util.tree_map, lambda a: a.astype(jnp.float64))

    @jax.jit  # one program: drawn eagerly, every layer's initialiser would compile its own
    def draw(key):
        x = jax.random.uniform(jax.random.fold_in(key, 1), (batch, *model.input_shape), jnp.float64)
        return to_float64(model.init(key)), to_float64(model.init_state()), x

    params, state, x = draw(key)
    labels = jnp.arange(batch) % model.num_classes
    dropout_key = jax.random.fold_in(key, 2)

    def loss_factory(impl):
        def loss(p, x):
            outputs, _ = model.forward(p, state, x, impl=impl, train=True, key=dropout_key)
            return model.loss_from_outputs(outputs, labels, impl=impl)

        return loss

    return loss_factory, (params, x), ("params", "x")
