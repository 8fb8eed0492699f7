"""Two small networks worked by hand in tutorials on backpropagation, on 28x28 images mean-pooled to their size.

``single_kernel_14x14`` is the network whose kernel gradient is written out index by index: one 5x5 kernel slid
over a 14x14 image, each weight shared by the 100 positions it visits. ``two_filters_4x4`` is the smallest
complete CNN (conv, ReLU, max pool, fully connected, softmax) whose forward and backward fit on a page; its
numbers are reproduced in ``tests/test_worked_example_4x4.py`` and ``experiments/worked_examples.py``.
"""

from __future__ import annotations

import jax

from jaxcnn.layers import AvgPool, Conv, Dense, Flatten, MaxPool, Relu, Sigmoid, serial
from jaxcnn.models.model import Model


def single_kernel_14x14(num_classes: int = 10) -> Model:
    """14x14 image -> one 5x5 kernel -> 10x10 -> 2x2 max pool -> 5x5 -> sigmoid -> 80 -> C sigmoid outputs, MSE.

    The 28x28 input is first mean-pooled 2x2 to 14x14.
    """
    net = serial(
        AvgPool(2), Conv(1, 5, w_init=jax.nn.initializers.lecun_normal()), MaxPool(2), Sigmoid,
        Flatten, Dense(80), Sigmoid, Dense(num_classes), Sigmoid,
    )  # fmt: skip
    return Model("single_kernel_14x14", net, "mse", num_classes=num_classes)


def two_filters_4x4(num_classes: int = 10) -> Model:
    """4x4 image -> two 2x2 filters -> 3x3 maps -> ReLU -> 2x2 max pool (stride 1) -> FC -> softmax.

    The 28x28 input is first mean-pooled 7x7 to 4x4.
    """
    net = serial(AvgPool(7), Conv(2, 2), Relu, MaxPool(2, stride=1), Flatten, Dense(num_classes))
    return Model("two_filters_4x4", net, "softmax_cross_entropy", num_classes=num_classes)
