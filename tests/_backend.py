"""Facts about the backend the tests run on."""

import jax

ON_GPU = jax.default_backend() == "gpu"

# JAX's own second derivative of reduce_window max (the autodiff twin of max_pool) runs in reduced precision
# on GPUs ("missing XLA support for pair-reductions", it warns), so it cannot be the reference there.
NO_EXACT_MAX_POOL_SECOND_ORDER = "JAX's second derivative of reduce_window max is reduced-precision on GPU"
