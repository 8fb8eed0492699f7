"""jaxcnn: convolutional networks in JAX with hand-derived backward passes.

ops (custom_vjp forward/backward pairs) -> layers and models -> train -> experiments.
"""

__version__ = "0.1.0"
