"""How far apart two results are, measured in NumPy on the host.

An eager ``jnp`` reduction compiles a program for every new shape it meets; over a suite of randomly drawn shapes
those compilations cost more than the checks themselves.
"""

import numpy as np


def max_abs(a) -> float:
    """max |a| in float64 (0 for an empty array)."""
    a = np.asarray(a, np.float64)
    return float(np.max(np.abs(a))) if a.size else 0.0


def relative_error(got, want, floor: float = float(np.finfo(np.float64).tiny)) -> float:
    """max |got - want| / max(max |want|, floor), in float64 (0 for empty arrays); a zero scale gives the
    absolute error."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(max_abs(want), floor)
    error = max_abs(got - want)
    return error / scale if scale else error
