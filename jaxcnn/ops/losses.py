"""Loss functions at the output layer and their hand-derived gradients (Bouvrie 2006, section 2).

Both are batch means over the leading axis (N samples), matching Bouvrie's E = 1/N sum_n E^n:

    mse:                    E = 1/(2N) sum_n sum_k (y_k^n - t_k^n)^2
                            dE/dy = (y - t) / N,   dE/dt = -(y - t) / N
                            (behind a sigmoid output this gives (y - t) y (1 - y))
    softmax_cross_entropy:  E = -1/N sum_n sum_k t_k^n log softmax(u^n)_k      t one-hot (or any distribution)
                            dE/du = (softmax(u) sum_k t_k - t) / N  = (softmax(u) - onehot) / N for one-hot t
                            dE/dt = -log softmax(u) / N
Integer labels are turned into one-hot rows first (they carry no gradient).

Both directions (impl="primitive"). The JVPs, linear in the tangents of both arguments:
    mse:                    E_dot = <y - t, y_dot - t_dot> / N
    softmax_cross_entropy:  E_dot = (<softmax(u) sum_k t_k - t, u_dot> - <log softmax(u), t_dot>) / N
Each loss is a primitive whose JVP emits a tangent primitive with the transpose rule above (``_mse_bwd``,
``_xent_bwd``, the custom_vjp backward's functions): a scalar cotangent g gives g times those gradients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.ops import _checks, primitive
from jaxcnn.ops.activations import _log_softmax_forward


def _mse_forward(pred, target):
    diff = pred - target
    return 0.5 * jnp.sum(diff * diff) / pred.shape[0]


@jax.custom_vjp
def _manual_mse(pred, target):
    return _mse_forward(pred, target)


def _mse_fwd(pred, target):
    return _mse_forward(pred, target), (pred, target)


def _mse_bwd(res, g):
    pred, target = res
    d = (pred - target) * (g / pred.shape[0])
    return d, -d


_manual_mse.defvjp(_mse_fwd, _mse_bwd)


def mse_jvp(pred, target, pred_dot, target_dot):
    """E_dot = <pred - target, pred_dot - target_dot> / N."""
    return jnp.sum((pred - target) * (pred_dot - target_dot)) / pred.shape[0]


def _loss_primitive(name: str, forward, jvp_formula, vjp):
    """The loss E(a, b) as a primitive; its JVP is the tangent primitive jvp_formula(a, b, a_dot, b_dot),
    linear in (a_dot, b_dot), whose transpose rule is the custom_vjp backward vjp((a, b), g)."""

    def jvp(primals, tangents):
        return loss.bind(*primals), tangent.bind(*primals, *tangents)

    loss = primitive.nonlinear(name, primitive.Rules(forward, jvp=jvp), primitive.Batching((False, False)))
    tangent = primitive.linear(
        f"{name}_tangent",
        primitive.Rules(jvp_formula, transposes=(lambda g, a, b, a_dot, b_dot: vjp((a, b), g),)),
        primitive.Batching((False, False, False, False)),
        residuals=2,
    )
    return loss, tangent


MSE_P, MSE_TANGENT_P = _loss_primitive("mse", _mse_forward, mse_jvp, _mse_bwd)


def mse(pred: jax.Array, target: jax.Array, *, impl: str = "manual") -> jax.Array:
    """1/(2N) sum (pred - target)^2 for pred, target of the same shape (N, ...); returns a scalar."""
    impl = _checks.check_impl(impl)
    pred = _checks.floating_array("pred", pred)
    target = _checks.floating_array("target", target)
    if pred.ndim < 1:
        raise ValueError(f"pred must have a batch axis (N, ...), got shape {tuple(pred.shape)}")
    if pred.shape[0] < 1:
        raise ValueError(f"pred must hold at least one sample to average over, got shape {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"mse: pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    pred, target = _checks.promote(pred, target)
    if impl == "primitive":
        return MSE_P.bind(pred, target)
    return _mse_forward(pred, target) if impl == "autodiff" else _manual_mse(pred, target)


def _xent_forward(logits, targets):
    n = logits.size // logits.shape[-1]
    return -jnp.sum(targets * _log_softmax_forward(logits, logits.ndim - 1)) / n


@jax.custom_vjp
def _manual_xent(logits, targets):
    return _xent_forward(logits, targets)


def _xent_fwd(logits, targets):
    return _xent_forward(logits, targets), (logits, targets)


def _xent_bwd(res, g):
    logits, targets = res
    scale = g / (logits.size // logits.shape[-1])
    log_p = _log_softmax_forward(logits, logits.ndim - 1)
    mass = jnp.sum(targets, axis=-1, keepdims=True)
    return (jnp.exp(log_p) * mass - targets) * scale, -log_p * scale


_manual_xent.defvjp(_xent_fwd, _xent_bwd)


def xent_jvp(logits, targets, logits_dot, targets_dot):
    """E_dot = (<softmax(u) sum_k t_k - t, u_dot> - <log softmax(u), t_dot>) / N."""
    log_p = _log_softmax_forward(logits, logits.ndim - 1)
    mass = jnp.sum(targets, axis=-1, keepdims=True)
    n = logits.size // logits.shape[-1]
    return (jnp.sum((jnp.exp(log_p) * mass - targets) * logits_dot) - jnp.sum(log_p * targets_dot)) / n


XENT_P, XENT_TANGENT_P = _loss_primitive("softmax_cross_entropy", _xent_forward, xent_jvp, _xent_bwd)


def _check_label_range(labels, num_classes: int) -> None:
    """Reject out-of-range integer labels when their values are known (outside jit)."""
    if isinstance(labels, jax.core.Tracer):
        return
    values = np.asarray(labels)
    if values.size and (int(values.min()) < 0 or int(values.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) for logits with {num_classes} classes, "
            f"got values in [{int(values.min())}, {int(values.max())}]"
        )


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, *, impl: str = "manual") -> jax.Array:
    """Mean over samples of -log softmax(logits)[label].

    Args:
      logits: (..., C) floating.
      labels: integer class ids of shape logits.shape[:-1], or float targets (e.g. one-hot) of logits' shape.
    """
    impl = _checks.check_impl(impl)
    logits = _checks.floating_array("logits", logits)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have shape (..., num_classes), got {tuple(logits.shape)}")
    if logits.size == 0:
        raise ValueError(f"logits must hold at least one sample to average over, got shape {tuple(logits.shape)}")
    dtype = jnp.result_type(labels)
    if jnp.issubdtype(dtype, jnp.integer):
        if tuple(jnp.shape(labels)) != tuple(logits.shape[:-1]):
            raise ValueError(
                f"integer labels must have shape logits.shape[:-1]={tuple(logits.shape[:-1])}, got {tuple(jnp.shape(labels))}"
            )
        _check_label_range(labels, logits.shape[-1])
        targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    else:
        targets = _checks.floating_array("labels", labels)
        if targets.shape != logits.shape:
            raise ValueError(
                f"float labels must have the logits' shape {tuple(logits.shape)} (one-hot rows), got {tuple(targets.shape)}"
            )
        logits, targets = _checks.promote(logits, targets)
    if impl == "primitive":
        return XENT_P.bind(logits, targets)
    return _xent_forward(logits, targets) if impl == "autodiff" else _manual_xent(logits, targets)
