"""XLA:CPU settings that jaxcnn's commands and experiment scripts apply before JAX starts its backend.

On jaxlib 0.10 XLA:CPU runs every convolution it can in its YNNPACK fusions, where the kernel gradients (the
correlation of the input with the residual delta) are much slower than in Eigen, and they dominate training;
the flag below sends convolutions to Eigen (``python -m jaxcnn bench``'s step and epoch tables measure it, with
``XLA_FLAGS`` set either way). Only jaxlib 0.10 is known to have the flag (XLA aborts on an unknown one); a
user's own setting of it in XLA_FLAGS is left alone.
"""

from __future__ import annotations

import os

EIGEN_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def prefer_eigen_convolutions() -> None:
    """Add EIGEN_CONVOLUTIONS to XLA_FLAGS on jaxlib 0.10, unless XLA_FLAGS already sets ynn_fusion_type.

    XLA reads XLA_FLAGS once, when JAX starts its backend (the first computation, not ``import jax``): call
    this before that. Every program does, through ``jaxcnn.launch.set_up``.
    """
    from jaxlib import version

    flags = os.environ.get("XLA_FLAGS", "")
    if version.__version__.startswith("0.10.") and "ynn_fusion_type" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {EIGEN_CONVOLUTIONS}".strip()
