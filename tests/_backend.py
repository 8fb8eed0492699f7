"""Facts about the backend the tests run on."""

import jax

ON_GPU = jax.default_backend() == "gpu"

# JAX's own second derivative of reduce_window max (the autodiff twin of max_pool) runs in reduced precision
# on GPUs ("missing XLA support for pair-reductions", it warns), so it cannot be the reference there.
NO_EXACT_MAX_POOL_SECOND_ORDER = "JAX's second derivative of reduce_window max is reduced-precision on GPU"

# jax.jit's compiler_options that turn LLVM's optimisation back on for one program, where conftest.py turns it off
# for the suite: for the few programs that run many times (a whole model's finite differences, a training step
# run for many steps), where unoptimised code costs more run time than optimisation costs compile time.
OPTIMISED_COMPILE = {"xla_backend_optimization_level": 2, "xla_llvm_disable_expensive_passes": False}
