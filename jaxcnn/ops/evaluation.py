"""One selection point per derived formula: its textbook evaluation, and faster evaluations per platform.

A derivation module (``conv.py``, ``pooling.py``...) writes each formula of its backward rule once, as plain
textbook code, and wraps it in a :class:`Rule`. Another evaluation of the *same* formula, tuned for one
platform's compiler (for example a col2im input gradient for XLA:CPU), lives in a module of its own
(``jaxcnn/ops/xla_cpu/``) and is registered on the rule for that platform, as JAX registers a primitive's
lowerings per platform beside the one transpose rule (``jax/_src/lax/convolution.py``).

Calling a rule picks the evaluation when the program is *lowered*, with :func:`jax.lax.platform_dependent`,
not from the Python process's default backend when it is traced: a function jitted for a GPU, or exported with
``jax.export(..., platforms=["cuda"])`` on a CPU-only machine, runs the GPU's choice. When a program is lowered
for one platform only the chosen evaluation is emitted; for several (a multi-platform export) the module holds a
``case`` over the platform index.

Every registered evaluation must compute the textbook formula's value (to round-off): the tests in
``tests/ops/test_conv.py`` and ``tests/ops/test_pooling.py`` check each one against ``Rule.textbook`` in float64.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from jax import lax


class Rule:
    """A formula of a derivation with its textbook evaluation and its evaluations registered per platform.

    ``rule(*arrays, **static)`` evaluates it: ``arrays`` are the traced operands, ``static`` the Python
    hyper-parameters (geometry, shapes) that every evaluation takes as keyword arguments.
    """

    def __init__(self, name: str, textbook: Callable[..., Any]):
        self.name = name
        self.textbook = textbook
        self._by_platform: dict[str, Callable[..., Any]] = {}

    def __repr__(self) -> str:
        return f"Rule({self.name!r}, platforms={sorted(self._by_platform)})"

    def register(self, platform: str, evaluation: Callable[..., Any]) -> Callable[..., Any]:
        """Make ``evaluation`` this rule's evaluation on ``platform`` ("cpu", "cuda", "rocm", "tpu")."""
        if platform in self._by_platform:
            raise ValueError(f"{self.name}: an evaluation for platform {platform!r} is already registered")
        self._by_platform[platform] = evaluation
        return evaluation

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms with an evaluation of their own; every other platform runs the textbook form."""
        return tuple(sorted(self._by_platform))

    def evaluation(self, platform: str) -> Callable[..., Any]:
        """The evaluation this rule runs on ``platform``."""
        return self._by_platform.get(platform, self.textbook)

    def __call__(self, *arrays: Any, **static: Any) -> Any:
        if not self._by_platform:
            return self.textbook(*arrays, **static)
        branches = {p: functools.partial(f, **static) for p, f in self._by_platform.items()}
        return lax.platform_dependent(*arrays, default=functools.partial(self.textbook, **static), **branches)
