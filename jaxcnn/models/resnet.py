"""ResNet (He et al. 2016), the CIFAR variant: depth 6n + 2 with three stages of n basic blocks.

A basic block is relu(x + F(x)), F = conv3x3 BN relu conv3x3 BN. The first block of stages 2 and 3 halves
the map with a stride-2 convolution and its shortcut becomes conv1x1/2 + BN (option B). Backpropagation
through the add (ops.add) hands the residual delta unchanged to both F and the shortcut, which is why
deep residual nets train: dE/dx = dE/dy + F^T(dE/dy) never vanishes through the identity path.
"""

from __future__ import annotations

from jaxcnn.layers import BatchNorm, Conv, Dense, GlobalAvgPool, Layer, Relu, Residual, serial
from jaxcnn.models.model import Model

RESNET_WIDTHS = (16, 32, 64)


def basic_block(width: int, stride: int, project: bool) -> list[Layer]:
    """relu(F(x) + shortcut(x)) with F = conv3x3/stride BN relu conv3x3 BN."""
    body = (
        Conv(width, 3, stride=stride, padding="SAME", bias=False), BatchNorm(), Relu,
        Conv(width, 3, padding="SAME", bias=False), BatchNorm(),
    )  # fmt: skip
    shortcut = (Conv(width, 1, stride=stride, bias=False), BatchNorm()) if project else ()
    return [Residual(*body, shortcut=shortcut), Relu]


def resnet(num_classes: int = 10, input_shape: tuple[int, int, int] = (28, 28, 1), depth: int = 20) -> Model:
    """conv3x3 16 BN relu | n blocks of 16 | n blocks of 32 (/2) | n blocks of 64 (/2) | global avg pool | C."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {depth}")
    n = (depth - 2) // 6
    layers: list[Layer] = [Conv(RESNET_WIDTHS[0], 3, padding="SAME", bias=False), BatchNorm(), Relu]
    channels = RESNET_WIDTHS[0]
    for stage, width in enumerate(RESNET_WIDTHS):
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            layers += basic_block(width, stride, project=stride != 1 or channels != width)
            channels = width
    net = serial(*layers, GlobalAvgPool, Dense(num_classes))
    return Model(f"resnet{depth}", net, "softmax_cross_entropy", input_shape, num_classes)
