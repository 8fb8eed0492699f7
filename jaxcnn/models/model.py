"""Model: a ``serial`` network, its input shape and its loss, switchable between impl="manual" and "autodiff"."""

from __future__ import annotations

import dataclasses

import jax

from jaxcnn import ops
from jaxcnn.layers import Serial


@dataclasses.dataclass(frozen=True)
class Model:
    """A network plus the loss it is trained with ("softmax_cross_entropy" on ids, or "mse" on one-hot targets)."""

    name: str
    net: Serial
    loss_name: str
    input_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10

    def init(self, key: jax.Array) -> dict:
        out_shape, params = self.net.init(key, (-1, *self.input_shape))
        if out_shape[-1] != self.num_classes:
            raise ValueError(f"{self.name}: the network ends in {out_shape[-1]} units, expected {self.num_classes}")
        return params

    def check_input(self, x: jax.Array) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"model {self.name!r} expects images of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )

    def init_state(self) -> dict:
        """Batch-norm running statistics and the like, keyed like params; {} for models without state."""
        return self.net.init_state((-1, *self.input_shape))

    def apply(self, params: dict, x: jax.Array, *, impl: str = "manual", taps=None, state: dict | None = None) -> jax.Array:
        """Inference (dropout off, batch norm on running statistics): ``(N, *input_shape) -> (N, num_classes)``."""
        self.check_input(x)
        return self.net.apply(params, x, impl=impl, taps=taps, state=state)

    def forward(
        self,
        params: dict,
        state: dict,
        x: jax.Array,
        *,
        impl: str = "manual",
        train: bool = False,
        key: jax.Array | None = None,
        taps=None,
    ) -> tuple[jax.Array, dict]:
        """(outputs, new_state); ``train=True`` uses batch statistics and draws dropout masks from ``key``."""
        self.check_input(x)
        return self.net.forward(params, state, x, impl=impl, train=train, key=key, taps=taps)

    def loss_from_outputs(self, outputs: jax.Array, labels: jax.Array, *, impl: str = "manual") -> jax.Array:
        if self.loss_name == "mse":
            return ops.mse(outputs, jax.nn.one_hot(labels, self.num_classes, dtype=outputs.dtype), impl=impl)
        return ops.softmax_cross_entropy(outputs, labels, impl=impl)

    def loss(
        self, params: dict, x: jax.Array, labels: jax.Array, *, impl: str = "manual", taps=None, state: dict | None = None
    ) -> jax.Array:
        """The loss of the inference-mode outputs (see ``apply``)."""
        return self.loss_from_outputs(self.apply(params, x, impl=impl, taps=taps, state=state), labels, impl=impl)

    def tap_shapes(self, batch: int) -> list[tuple[int, ...]]:
        """The output shape of every layer for a batch of ``batch`` (the shapes of the residual-map taps)."""
        return self.net.shapes((batch, *self.input_shape))
