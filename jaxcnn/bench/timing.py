"""The timing harness: A/B-interleaved repetitions, median and spread, compile time apart.

Every variant of a comparison (impl="manual" vs "autodiff", JAX vs PyTorch, scan vs loop) is first compiled
ahead of time (``Variant.compile``, timed on its own: the compile time column), then called once to warm up;
that call also calibrates the number of calls ``n`` one repetition makes, so that a repetition lasts at least
``min_time`` seconds. Then the repetitions of all variants alternate, the order reversed every other round
(A B, B A, A B, ...), so that a burst of load from another job hits every variant alike; the per-call time of a
repetition is its wall time divided by ``n``. The result is the median over repetitions, with the min and max
beside it as the noise band.

A variant so slow that its repetitions would exceed ``max_time`` seconds gets fewer of them (at least one; if
its warm-up call alone exceeds ``max_time``, that call is its only sample); ``Timing.samples`` says how many.

A call is asynchronous in JAX, so a repetition dispatches its ``n`` calls and then waits for the last result:
this measures throughput (what a training loop sees), not the latency of one call.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from typing import Any, Callable, Mapping, Sequence

import jax


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call of one variant: one sample per repetition, plus the first (compiling) call apart."""

    samples: tuple[float, ...]
    calls_per_repeat: int
    compile_s: float | None  # ahead-of-time compilation; None when nothing is compiled (eager)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One contestant: ``call()`` does one unit of work (e.g. a training step) and returns something to wait on.

    ``sync`` waits for that result (``jax.block_until_ready``; a no-op for eager PyTorch on the CPU).
    ``compile``, when given, compiles ahead of time what ``call`` runs (e.g. ``jitted.lower(*args).compile()``,
    which fills the cache the jitted call then hits); None for eager code with nothing to compile.
    """

    call: Callable[[], Any]
    sync: Callable[[Any], Any] = jax.block_until_ready
    compile: Callable[[], Any] | None = None


def _timed(variant: Variant, calls: int) -> float:
    tic = time.perf_counter()
    out = None
    for _ in range(calls):
        out = variant.call()
    variant.sync(out)
    return time.perf_counter() - tic


def compare(
    variants: Mapping[str, Variant],
    *,
    repeats: int = 5,
    min_time: float = 1.0,
    warmup: int = 1,
    max_time: float | None = None,
) -> dict[str, Timing]:
    """Time every variant A/B-interleaved; see the module docstring. Returns a Timing per variant name."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not min_time > 0:
        raise ValueError(f"min_time must be > 0 seconds, got {min_time}")
    compile_s: dict[str, float | None] = {}
    calls: dict[str, int] = {}
    todo: dict[str, int] = {}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for name, variant in variants.items():
        compile_s[name] = None
        if variant.compile is not None:
            tic = time.perf_counter()
            variant.compile()
            compile_s[name] = time.perf_counter() - tic
        steady = min(_timed(variant, 1) for _ in range(max(warmup, 1)))
        calls[name] = max(1, math.ceil(min_time / max(steady, 1e-9)))
        todo[name] = repeats
        if max_time is not None:
            todo[name] = max(0, min(repeats, math.floor(max_time / (steady * calls[name]))))
            if todo[name] == 0:  # one call is already over budget: the warm-up call is the only sample
                samples[name].append(steady)
    order: Sequence[str] = list(variants)
    for r in range(repeats):
        for name in order if r % 2 == 0 else reversed(order):
            if r < todo[name]:
                samples[name].append(_timed(variants[name], calls[name]) / calls[name])
    return {name: Timing(tuple(samples[name]), calls[name], compile_s[name]) for name in variants}
