"""The LeNet family: LeCun et al. 1998 as Bouvrie 2006 writes it, and the modern max-pool/ReLU variant."""

from __future__ import annotations

import jax

from jaxcnn.layers import Conv, Dense, Flatten, MaxPool, Relu, Sigmoid, Subsample, Tanh, serial
from jaxcnn.models.model import Model


def lenet5_classic(num_classes: int = 10) -> Model:
    """LeCun et al. 1998, in the notation of Bouvrie 2006: conv -> tanh -> sub-sampling (beta, b) -> tanh -> conv -> ... -> FC, MSE.

    28x28x1 -> conv 5x5x6 (SAME) 28x28 -> subsample 14x14 -> conv 5x5x16 10x10 -> subsample 5x5 -> 120 -> 84 -> C,
    sigmoid outputs trained with MSE on one-hot targets (output delta (y - t) y (1 - y)).
    """
    net = serial(
        Conv(6, 5, padding="SAME", w_init=jax.nn.initializers.lecun_normal()), Tanh, Subsample(2), Tanh,
        Conv(16, 5, w_init=jax.nn.initializers.lecun_normal()), Tanh, Subsample(2), Tanh,
        Flatten, Dense(120), Tanh, Dense(84), Tanh, Dense(num_classes), Sigmoid,
    )  # fmt: skip
    return Model("lenet5_classic", net, "mse", num_classes=num_classes)


def lenet5(num_classes: int = 10, input_shape: tuple[int, int, int] = (28, 28, 1)) -> Model:
    """Modern LeNet-5: conv(5x5, 6, SAME) relu maxpool conv(5x5, 16) relu maxpool 120 84 C, softmax cross-entropy."""
    net = serial(
        Conv(6, 5, padding="SAME"), Relu, MaxPool(2),
        Conv(16, 5), Relu, MaxPool(2),
        Flatten, Dense(120), Relu, Dense(84), Relu, Dense(num_classes),
    )  # fmt: skip
    return Model("lenet5", net, "softmax_cross_entropy", input_shape, num_classes)
