"""Models: a ``serial`` network, its input shape and its loss, switchable between impl="manual" and "autodiff".

Every model takes NHWC batches of 28x28x1 images (Fashion-MNIST, MNIST, KMNIST) unless its ``input_shape``
says otherwise; the seed toys first mean-pool the image down to the seed's own size.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from jaxcnn import ops
from jaxcnn.layers import AvgPool, Conv, Dense, Flatten, MaxPool, Relu, Serial, Sigmoid, Subsample, Tanh, serial


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
        """Inference (dropout off, batch norm on running statistics): (N, *input_shape) -> (N, num_classes)."""
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


def lenet5_classic(num_classes: int = 10) -> Model:
    """LeCun 1998 / Bouvrie (seed 000): conv -> tanh -> sub-sampling (beta, b) -> tanh -> conv -> ... -> FC, MSE.

    28x28x1 -> conv 5x5x6 (SAME) 28x28 -> subsample 14x14 -> conv 5x5x16 10x10 -> subsample 5x5 -> 120 -> 84 -> C,
    sigmoid outputs trained with MSE on one-hot targets (seed 003's output delta (y - t) y (1 - y)).
    """
    net = serial(
        Conv(6, 5, padding="SAME", w_init=jax.nn.initializers.lecun_normal()), Tanh, Subsample(2), Tanh,
        Conv(16, 5, w_init=jax.nn.initializers.lecun_normal()), Tanh, Subsample(2), Tanh,
        Flatten, Dense(120), Tanh, Dense(84), Tanh, Dense(num_classes), Sigmoid,
    )  # fmt: skip
    return Model("lenet5_classic", net, "mse", num_classes=num_classes)


def lenet5(num_classes: int = 10) -> Model:
    """Modern LeNet-5: conv(5x5, 6, SAME) relu maxpool conv(5x5, 16) relu maxpool 120 84 C, softmax cross-entropy."""
    net = serial(
        Conv(6, 5, padding="SAME"), Relu, MaxPool(2),
        Conv(16, 5), Relu, MaxPool(2),
        Flatten, Dense(120), Relu, Dense(84), Relu, Dense(num_classes),
    )  # fmt: skip
    return Model("lenet5", net, "softmax_cross_entropy", num_classes=num_classes)


def seed003(num_classes: int = 10) -> Model:
    """Seed 003: 14x14 image -> one 5x5 kernel -> 10x10 -> 2x2 max pool -> 5x5 -> sigmoid -> 80 -> C, MSE.

    The 28x28 input is first mean-pooled 2x2 to the seed's 14x14.
    """
    net = serial(
        AvgPool(2), Conv(1, 5, w_init=jax.nn.initializers.lecun_normal()), MaxPool(2), Sigmoid,
        Flatten, Dense(80), Sigmoid, Dense(num_classes), Sigmoid,
    )  # fmt: skip
    return Model("seed003", net, "mse", num_classes=num_classes)


def seed004(num_classes: int = 10) -> Model:
    """Seed 004: 4x4 image -> two 2x2 filters -> 3x3 maps -> ReLU -> 2x2 max pool (stride 1) -> FC -> softmax.

    The 28x28 input is first mean-pooled 7x7 to the seed's 4x4.
    """
    net = serial(AvgPool(7), Conv(2, 2), Relu, MaxPool(2, stride=1), Flatten, Dense(num_classes))
    return Model("seed004", net, "softmax_cross_entropy", num_classes=num_classes)


def cnn_small(num_classes: int = 10) -> Model:
    """VGG-style: [conv3x3 32 x2, maxpool] [conv3x3 64 x2, maxpool] [conv3x3 128 dilation 2] -> 256 -> C."""
    net = serial(
        Conv(32, 3, padding="SAME"), Relu, Conv(32, 3, padding="SAME"), Relu, MaxPool(2),
        Conv(64, 3, padding="SAME"), Relu, Conv(64, 3, padding="SAME"), Relu, MaxPool(2),
        Conv(128, 3, padding="SAME", dilation=2), Relu, MaxPool(2, padding="SAME"),
        Flatten, Dense(256), Relu, Dense(num_classes),
    )  # fmt: skip
    return Model("cnn_small", net, "softmax_cross_entropy", num_classes=num_classes)


MODELS: dict[str, Callable[..., Model]] = {
    "lenet5": lenet5,
    "lenet5_classic": lenet5_classic,
    "seed003": seed003,
    "seed004": seed004,
    "cnn_small": cnn_small,
}


def get_model(name: str, num_classes: int = 10) -> Model:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name](num_classes)


def gradcheck_case(name: str, batch: int = 2):
    """(loss factory, (params, x), names) for jaxcnn.gradcheck: the whole model in float64 on a small batch.

    The loss is the training-mode one (batch statistics, a fixed dropout key), the mode whose backward trains.
    """
    model = get_model(name)
    key = jax.random.PRNGKey(0)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), model.init(key))
    state = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), model.init_state())
    x = jax.random.uniform(jax.random.fold_in(key, 1), (batch, *model.input_shape), jnp.float64)
    labels = jnp.arange(batch) % model.num_classes
    dropout_key = jax.random.fold_in(key, 2)

    def loss_factory(impl):
        def loss(p, x):
            outputs, _ = model.forward(p, state, x, impl=impl, train=True, key=dropout_key)
            return model.loss_from_outputs(outputs, labels, impl=impl)

        return loss

    return loss_factory, (params, x), ("params", "x")
