"""The seed documents' small worked networks, on 28x28 images mean-pooled down to the seed's own size."""

from __future__ import annotations

import jax

from jaxcnn.layers import AvgPool, Conv, Dense, Flatten, MaxPool, Relu, Sigmoid, serial
from jaxcnn.models.model import Model


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
