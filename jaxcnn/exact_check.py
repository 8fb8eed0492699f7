"""Zero tolerance: the hand-derived rules of the linear ops and of max-pool routing, checked bit for bit.

For an op linear in an argument (conv, transposed conv and dense in each of theirs, average pooling,
sub-sampling's beta * down(x), up()) the Jacobian is a fixed matrix, and on small integer inputs, kernels and
cotangents every float64 product and sum of the op, of its JVP and of its delta rule is an integer far below
2^53: exact. The Jacobian is built by brute force from the definition, the autodiff forward evaluated at every
unit perturbation, J[:, i] = f(x + e_i) - f(x), and the hand-derived rules of impl="primitive" must reproduce it
with no tolerance at all:

* ``jax.jacfwd``: the JVP rules, one unit tangent at a time;
* ``jax.jacrev``: the delta rules (transpose rules), one unit cotangent at a time;
* ``jax.vjp`` with an integer cotangent delta: J^T delta.

Max pooling is piecewise linear: on distinct integers (no ties) a bump of 1/4 moves no window's maximum, so the
brute-force Jacobian with that step routes each window's tangent to its maximum, and the rules must route
exactly there.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Collection

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import ops

# impl -> the op as a function of one argument (the others fixed).
OpFactory = Callable[[str], Callable[[jax.Array], jax.Array]]


def integers(seed: int, shape: tuple[int, ...], low: int = -3, high: int = 4) -> jax.Array:
    """float64 integers in [low, high): small enough that the ops' sums of products stay exact."""
    return jnp.asarray(np.random.default_rng(seed).integers(low, high, size=shape), jnp.float64)


def distinct_integers(seed: int, shape: tuple[int, ...]) -> jax.Array:
    """A permutation of 0 .. size-1 (float64): no two equal, so no max-pool window has a tie."""
    return jnp.asarray(np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape), jnp.float64)


def brute_force_jacobian(f: Callable[[jax.Array], jax.Array], x: jax.Array, step: float = 1.0) -> np.ndarray:
    """J[:, i] = (f(x + step e_i) - f(x)) / step, of shape (f(x).size, x.size): exact for a map linear in x, and
    for a piecewise linear one when the step crosses no kink; ``step`` a power of two, so the division is exact."""
    if not float(step) > 0 or np.frexp(float(step))[0] != 0.5:
        raise ValueError(f"step must be a positive power of two, got {step!r}")
    f = jax.jit(f)
    base = np.asarray(f(x)).ravel()
    flat = np.asarray(x).ravel()
    columns = []
    for i in range(flat.size):
        bumped = flat.copy()
        bumped[i] += step
        columns.append((np.asarray(f(jnp.asarray(bumped.reshape(x.shape)))).ravel() - base) / step)
    return np.stack(columns, axis=1)


@dataclasses.dataclass(frozen=True)
class ExactCase:
    """One op in one argument: ``op(impl)`` the function, ``arg`` its integer point, ``step`` the bump."""

    name: str
    op: OpFactory
    arg: jax.Array
    step: float = 1.0

    @property
    def op_name(self) -> str:
        """The op this case checks: ``ops.<op_name>``."""
        return self.name.split()[0]


def cases(op_names: Collection[str] | None = None) -> list[ExactCase]:
    """Every linear op in each linear argument, and max-pool routing in three windowings; only the cases of the
    ops named in ``op_names`` when it is given."""
    i = integers
    linear = [
        ExactCase("conv2d x", lambda impl: lambda x: ops.conv2d(x, i(1, (3, 2, 2, 4)), stride=2, padding=1, dilation=(1, 2), groups=2, impl=impl), i(0, (1, 5, 6, 4))),
        ExactCase("conv2d w", lambda impl: lambda w: ops.conv2d(i(0, (1, 5, 6, 4)), w, stride=2, padding=1, groups=2, impl=impl), i(1, (3, 2, 2, 4))),
        ExactCase("conv2d_transpose y", lambda impl: lambda y: ops.conv2d_transpose(y, i(3, (3, 3, 2, 3)), stride=2, padding=1, output_padding=1, impl=impl), i(2, (1, 3, 2, 3))),
        ExactCase("conv2d_transpose w", lambda impl: lambda w: ops.conv2d_transpose(i(2, (1, 3, 2, 3)), w, stride=2, padding=1, output_padding=1, impl=impl), i(3, (3, 3, 2, 3))),
        ExactCase("dense x", lambda impl: lambda x: ops.dense(x, i(5, (4, 3)), impl=impl), i(4, (2, 4))),
        ExactCase("dense w", lambda impl: lambda w: ops.dense(i(4, (2, 4)), w, impl=impl), i(5, (4, 3))),
        ExactCase("avg_pool", lambda impl: lambda x: ops.avg_pool(x, window=2, stride=1, padding=1, impl=impl), i(6, (1, 4, 3, 2))),
        ExactCase("subsample x", lambda impl: lambda x: ops.subsample(x, i(8, (2,)), jnp.zeros(2, jnp.float64), impl=impl), i(7, (1, 4, 4, 2))),
        ExactCase("subsample beta", lambda impl: lambda beta: ops.subsample(i(7, (1, 4, 4, 2)), beta, jnp.zeros(2, jnp.float64), impl=impl), i(8, (2,))),
        ExactCase("upsample", lambda impl: lambda x: ops.upsample(x, factor=(2, 3), impl=impl), i(9, (1, 2, 2, 2))),
    ]  # fmt: skip
    routing = [
        ExactCase(f"max_pool {label}", _max_pool(window, stride, padding), distinct_integers(0, (2, 5, 6, 2)), step=0.25)
        for label, window, stride, padding in (("2x2", 2, None, "VALID"), ("3x3/2 SAME", 3, 2, "SAME"), ("2x2/1 pad 1", 2, 1, 1))
    ]  # fmt: skip
    return [case for case in linear + routing if op_names is None or case.op_name in op_names]


def _max_pool(window: int, stride: int | None, padding) -> OpFactory:
    return lambda impl: lambda x: ops.max_pool(x, window=window, stride=stride, padding=padding, impl=impl)


@dataclasses.dataclass(frozen=True)
class ExactRow:
    """How many entries of jacfwd, jacrev and J^T delta differ from the brute-force Jacobian (0: bit for bit)."""

    case: str
    jacobian_shape: tuple[int, int]
    forward_mismatches: int
    reverse_mismatches: int
    vjp_mismatches: int

    def ok(self) -> bool:
        return self.forward_mismatches == self.reverse_mismatches == self.vjp_mismatches == 0


def check(case: ExactCase, impl: str = "primitive", delta_seed: int = 99) -> ExactRow:
    """The rules of ``impl`` against the brute-force Jacobian of the autodiff forward: exact equality counts."""
    jacobian = brute_force_jacobian(case.op("autodiff"), case.arg, case.step)
    f = case.op(impl)
    # each a jitted program: eagerly, every step of the rules would be compiled on its own
    forward = np.asarray(jax.jit(jax.jacfwd(f))(case.arg)).reshape(jacobian.shape)
    reverse = np.asarray(jax.jit(jax.jacrev(f))(case.arg)).reshape(jacobian.shape)
    out_shape = jax.eval_shape(f, case.arg).shape
    delta = np.asarray(integers(delta_seed, out_shape)).ravel()
    transpose = jax.jit(lambda x, d: jax.vjp(f, x)[1](d)[0])
    transposed = np.asarray(transpose(case.arg, jnp.asarray(delta.reshape(out_shape)))).ravel()
    return ExactRow(
        case.name,
        jacobian.shape,
        int(np.sum(forward != jacobian)),
        int(np.sum(reverse != jacobian)),
        int(np.sum(transposed != jacobian.T @ delta)),
    )


def format_table(rows: list[ExactRow]) -> str:
    header = f"{'case':<24} {'Jacobian':<12} {'jacfwd != J':>12} {'jacrev != J':>12} {'vjp != J^T d':>13}  ok"
    lines = [header, "-" * len(header)]
    for r in rows:
        shape = "x".join(map(str, r.jacobian_shape))
        lines.append(
            f"{r.case:<24} {shape:<12} {r.forward_mismatches:>12} {r.reverse_mismatches:>12} {r.vjp_mismatches:>13}  "
            f"{'yes' if r.ok() else 'NO'}"
        )
    return "\n".join(lines)
