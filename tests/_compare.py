"""How far apart two results are, measured in NumPy on the host.

An eager ``jnp`` reduction compiles a program for every new shape it meets; over a suite of randomly drawn shapes
those compilations cost more than the checks themselves.
"""

import numpy as np

from jaxcnn import gradcheck


def max_abs(a) -> float:
    """max |a| in float64 (0 for an empty array)."""
    a = np.asarray(a, np.float64)
    return float(np.max(np.abs(a))) if a.size else 0.0


def relative_error(got, want, floor: float = 0.0) -> float:
    """max |got - want| / max(max |want|, floor): the relative column of ``jaxcnn.gradcheck.relative_error``."""
    return gradcheck.relative_error(got, want, floor=floor)[1]
