"""GoogLeNet (Szegedy et al. 2015), scaled for 28x28 and 32x32 images: Inception blocks and global pooling.

An Inception block runs four branches on the same input and concatenates their channels: 1x1; 1x1 -> 3x3;
1x1 -> 5x5; 3x3/1 max pool -> 1x1 (each convolution followed by BN and ReLU, as in Inception v2). In the
backward pass the concatenation splits the residual delta along the channels and each branch's share
flows back into it; the four input deltas are then summed, since all branches read the same x.
"""

from __future__ import annotations

from jaxcnn.layers import BatchNorm, Concat, Conv, Dense, Dropout, GlobalAvgPool, Layer, MaxPool, Relu, serial
from jaxcnn.models.model import Model


def conv_bn_relu(width: int, kernel: int) -> tuple[Layer, ...]:
    return Conv(width, kernel, padding="SAME", bias=False), BatchNorm(), Relu


def inception(c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int, pool_proj: int) -> Layer:
    """Concat of [1x1 c1], [1x1 c3_reduce, 3x3 c3], [1x1 c5_reduce, 5x5 c5], [maxpool 3x3/1, 1x1 pool_proj]."""
    return Concat(
        conv_bn_relu(c1, 1),
        (*conv_bn_relu(c3_reduce, 1), *conv_bn_relu(c3, 3)),
        (*conv_bn_relu(c5_reduce, 1), *conv_bn_relu(c5, 5)),
        (MaxPool(3, stride=1, padding="SAME"), *conv_bn_relu(pool_proj, 1)),
    )


def googlenet(num_classes: int = 10, input_shape: tuple[int, int, int] = (28, 28, 1)) -> Model:
    """stem conv3x3 48 | inception 64, 96 | pool | inception 128, 128 | pool | inception 160 | global avg | C."""
    pool = MaxPool(3, stride=2, padding="SAME")
    net = serial(
        *conv_bn_relu(48, 3),
        inception(16, 24, 32, 4, 8, 8), inception(32, 32, 48, 8, 8, 8), pool,
        inception(48, 48, 56, 8, 12, 12), inception(40, 48, 64, 8, 12, 12), pool,
        inception(48, 48, 64, 12, 24, 24),
        GlobalAvgPool, Dropout(0.2), Dense(num_classes),
    )  # fmt: skip
    return Model("googlenet", net, "softmax_cross_entropy", input_shape, num_classes)
