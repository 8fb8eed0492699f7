"""XLA:CPU settings that jaxcnn's commands and experiment scripts apply before JAX starts its backend.

On jaxlib 0.10 XLA:CPU runs every convolution it can in its YNNPACK fusions, where the kernel gradients (the
correlation of the input with the residual delta) are much slower than in Eigen, and they dominate training;
the flag below sends convolutions to Eigen (``python -m jaxcnn bench``'s step and epoch tables measure it, with
``XLA_FLAGS`` set either way). Only jaxlib 0.10 is known to have the flag (XLA aborts on an unknown one); a
user's own setting of it in XLA_FLAGS is left alone.
"""

from __future__ import annotations

import os

YNN_FUSION_TYPE = "--xla_cpu_experimental_ynn_fusion_type"
EIGEN_CONVOLUTIONS = f"{YNN_FUSION_TYPE}=-individual_convolution"


def has_convolution_flag() -> bool:
    """Whether this jaxlib's XLA knows YNN_FUSION_TYPE (jaxlib 0.10; XLA aborts on an unknown flag)."""
    from jaxlib import version

    return version.__version__.startswith("0.10.")


def prefer_eigen_convolutions() -> None:
    """Add EIGEN_CONVOLUTIONS to XLA_FLAGS where ``has_convolution_flag``, unless XLA_FLAGS already sets
    YNN_FUSION_TYPE.

    XLA reads XLA_FLAGS once, when JAX starts its backend (the first computation, not ``import jax``): call
    this before that. Every program does, through ``jaxcnn.launch.set_up``.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if has_convolution_flag() and YNN_FUSION_TYPE not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {EIGEN_CONVOLUTIONS}".strip()
