"""Both directions for the hand-derived rules: an op as a JAX primitive, as JAX wires its own lax ops.

A ``custom_vjp`` op (impl="manual") gives JAX one hand-derived rule, the backward, and no forward mode:
``jax.jvp``, ``jax.jacfwd`` and ``jax.hessian`` of it raise a TypeError. impl="primitive" attaches both
directions the way ``jax/_src/lax`` attaches them to ``conv_general_dilated`` or ``dot_general``:

* the op is a :class:`jax.extend.core.Primitive`, evaluated, shape-inferred and lowered (``mlir.lower_fun``)
  from its forward formula;
* its JVP (forward mode) is the op module's hand-derived tangent formula; for a nonlinear op the tangent
  map is itself a primitive, linear in the tangents;
* reverse mode is JAX's linearise-then-transpose: every primitive *linear* in some arguments (a linear op,
  a bilinear op such as conv in (x, w), the tangent map of a nonlinear op) has the hand-derived delta function
  of its op registered as its transpose rule, the very function the ``custom_vjp`` backward calls;
* a batching rule folds a vmapped axis into the op's own example axis when every batched argument has one,
  and otherwise maps the primitive over the vmapped axis (``lax.map``), so that derivatives taken outside a
  ``vmap`` still run the hand-derived rules.

The three constructors below are that wiring, written once: :func:`linear` (linear in its last arguments
given the first ones, the "residuals"), :func:`bilinear` and :func:`nonlinear`. Every rule is looked up on
the :class:`Rules` object of its primitive when JAX calls it, so a test can swap one formula and watch
``jax.grad`` or ``jax.jvp`` change.

Second order. Where a tangent map reads primal residuals (a sigmoid's y, batch norm's x^ and 1/sigma), the
derivative of the tangent map with respect to those residuals (what a Hessian needs beyond the first
derivatives) is JAX's derivative of the tangent formula's code; the first derivatives in either direction,
and every derivative of the linear and bilinear ops, run the hand-derived rules.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

# How a vmapped axis is folded into an op's example axis (see _batch):
#   "reshape": the op takes one example axis in front (NHWC ops): (B, N, ...) becomes (B N, ...);
#   "leading": the op takes any number of leading axes (elementwise ops, dense, ops along a negative axis).
FOLD_MODES = ("reshape", "leading")


@dataclasses.dataclass(eq=False)
class Rules:
    """The formulas of one primitive, looked up at each use (mutable on purpose: tests swap a formula).

    ``apply(*arrays, **static)`` evaluates the primitive; ``jvp(primals, tangents, **static)`` returns
    (output, tangent) for a nonlinear primitive; ``transposes`` are the delta rules of the linear arguments.
    """

    apply: Callable[..., Any]
    jvp: Callable[..., Any] | None = None
    transposes: tuple[Callable[..., Any], ...] = ()

    def __post_init__(self):
        if not isinstance(self.transposes, tuple) or not all(callable(t) for t in self.transposes):
            raise TypeError(f"Rules.transposes must be a tuple of functions, got {self.transposes!r}")


@dataclasses.dataclass(frozen=True)
class Batching:
    """Which arguments carry the op's example axis (``fold``) and how a vmapped axis joins it (``mode``).

    An argument with ``fold`` False (a kernel, a per-channel vector) must be unbatched for the fold; when it
    is batched the primitive is mapped over the vmapped axis instead.
    """

    fold: tuple[bool, ...]
    mode: str = "reshape"
    variadic: bool = False  # a primitive of any number of arguments (concat): fold[0] holds for each

    def __post_init__(self):
        if self.mode not in FOLD_MODES:
            raise ValueError(f"Batching mode must be one of {FOLD_MODES}, got {self.mode!r}")

    def folds(self, count: int) -> tuple[bool, ...]:
        return self.fold * count if self.variadic else self.fold


def _abstract_eval(rules: Rules, *avals, **static):
    out = jax.eval_shape(
        functools.partial(rules.apply, **static), *(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals)
    )
    return jax.core.ShapedArray(out.shape, out.dtype)


def _define(name: str, rules: Rules, batch: Batching) -> Primitive:
    """A primitive evaluated eagerly, abstractly and in compiled programs by ``rules.apply``."""
    prim = Primitive(name)

    def evaluate(*args, **static):
        return rules.apply(*args, **static)

    prim.def_impl(evaluate)
    prim.def_abstract_eval(functools.partial(_abstract_eval, rules))
    mlir.register_lowering(prim, mlir.lower_fun(evaluate, multiple_results=False))
    batching.primitive_batchers[prim] = functools.partial(_batch, prim, batch)
    prim.rules = rules
    return prim


def _batch(prim: Primitive, batch: Batching, args: Sequence[Any], dims: Sequence[Any], **static):
    """Fold the vmapped axis into the example axis when only example-carrying arguments are batched (one
    call of the primitive on a bigger batch); otherwise map the primitive over it."""
    fold = batch.folds(len(args))
    if len(fold) != len(args):
        raise ValueError(f"{prim.name}: Batching.fold has {len(fold)} entries for {len(args)} arguments")
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    mapped = [d is not None for d in dims]
    moved = [jnp.moveaxis(a, d, 0) if m else a for a, d, m in zip(args, dims, mapped)]
    if all(f or not m for f, m in zip(fold, mapped)):
        folded = [(a if m else jnp.broadcast_to(a, (size, *a.shape))) if f else a for a, f, m in zip(moved, fold, mapped)]
        if batch.mode == "leading":
            return prim.bind(*folded, **static), 0
        folded = [a.reshape(size * a.shape[1], *a.shape[2:]) if f else a for a, f in zip(folded, fold)]
        out = prim.bind(*folded, **static)
        return out.reshape(size, out.shape[0] // size, *out.shape[1:]), 0

    def one(batched):
        it = iter(batched)
        return prim.bind(*(next(it) if m else a for a, m in zip(moved, mapped)), **static)

    return lax.map(one, [a for a, m in zip(moved, mapped) if m]), 0


def _zero_cotangents(args: Sequence[Any]) -> list[Any]:
    return [ad.Zero(a.aval.to_ct_aval()) if ad.is_undefined_primal(a) else None for a in args]


def linear(name: str, rules: Rules, batch: Batching, *, residuals: int = 0) -> Primitive:
    """A primitive f(r_1..r_k, t_1..t_m) linear in (t_1..t_m) jointly, for fixed residuals r (k = ``residuals``).

    ``rules.transposes`` holds ONE function ``delta_rule(ct, *args, **static)`` returning the cotangents of the
    m linear arguments (a linear argument arrives as an ``ad.UndefinedPrimal`` carrying its shape in ``.aval``):
    the hand-derived delta formula. JVP: f(r, t_dot) for the linear part; for nonzero residual tangents,
    JAX's derivative of ``rules.apply`` in r (a second-order term, see the module docstring).
    """
    prim = _define(name, rules, batch)

    def jvp(primals, tangents, **static):
        out = prim.bind(*primals, **static)
        res, lin = primals[:residuals], primals[residuals:]
        res_dot, lin_dot = tangents[:residuals], tangents[residuals:]
        parts = []
        if any(type(t) is not ad.Zero for t in lin_dot):
            parts.append(prim.bind(*res, *map(ad.instantiate_zeros, lin_dot), **static))
        moving = [i for i, t in enumerate(res_dot) if type(t) is not ad.Zero]
        if moving:

            def in_residuals(*changing):
                full = list(res)
                for i, r in zip(moving, changing):
                    full[i] = r
                return rules.apply(*full, *lin, **static)

            parts.append(
                jax.jvp(in_residuals, tuple(res[i] for i in moving), tuple(res_dot[i] for i in moving))[1]
            )
        if not parts:
            return out, ad.Zero.from_primal_value(out)
        return out, functools.reduce(lambda a, b: a + b, parts)

    def transpose(ct, *args, **static):
        if type(ct) is ad.Zero:
            return _zero_cotangents(args)
        cts = rules.transposes[0](ct, *args, **static)
        lin = args[residuals:]
        return [None] * residuals + [c if ad.is_undefined_primal(a) else None for a, c in zip(lin, cts)]

    ad.primitive_jvps[prim] = jvp
    ad.primitive_transposes[prim] = transpose
    return prim


def bilinear(name: str, rules: Rules, batch: Batching) -> Primitive:
    """A primitive f(x, y) linear in each argument: JVP f(x_dot, y) + f(x, y_dot) (``ad.defbilinear``), and
    ``rules.transposes`` = (delta rule for x, delta rule for y), each called as ``rule(ct, x, y, **static)``."""
    prim = _define(name, rules, batch)
    ad.defbilinear(
        prim,
        lambda ct, x, y, **static: rules.transposes[0](ct, x, y, **static),
        lambda ct, x, y, **static: rules.transposes[1](ct, x, y, **static),
    )
    return prim


def nonlinear(name: str, rules: Rules, batch: Batching) -> Primitive:
    """A primitive whose hand-derived JVP ``rules.jvp(primals, tangents, **static) -> (out, tangent)`` builds
    the tangent from a :func:`linear` tangent primitive. Symbolic-zero tangents are made explicit zeros first;
    when every tangent is zero the JVP is skipped."""
    prim = _define(name, rules, batch)

    def jvp(primals, tangents, **static):
        if all(type(t) is ad.Zero for t in tangents):
            out = prim.bind(*primals, **static)
            return out, ad.Zero.from_primal_value(out)
        return rules.jvp(primals, tuple(map(ad.instantiate_zeros, tangents)), **static)

    ad.primitive_jvps[prim] = jvp
    return prim


def undefined_shape(x: Any) -> tuple[int, ...]:
    """The shape of a transpose rule's argument: a value, or the stand-in JAX passes for the argument being
    transposed (an ``ad.UndefinedPrimal`` or a gradient accumulator), which carries its shape in ``.aval``."""
    return tuple(x.aval.shape) if hasattr(x, "aval") else tuple(jnp.shape(x))
