"""DenseNet-BC (Huang et al. 2017), scaled for 28x28 and 32x32 images.

Inside a dense block every layer sees the concatenation of all earlier feature maps: x_l = [x_{l-1}, H(x_{l-1})]
with H = BN relu conv1x1 (4k) BN relu conv3x3 (k), k the growth rate. The backward of the concatenation
splits delta: the first channels go straight back to x_{l-1} (the identity branch), the last k into H, so
each layer's input delta is the sum of its share from every later layer. Transition layers between blocks:
BN relu conv1x1 (compression 1/2) avgpool 2.
"""

from __future__ import annotations

from jaxcnn.layers import AvgPool, BatchNorm, Concat, Conv, Dense, GlobalAvgPool, Layer, Relu, serial
from jaxcnn.models.model import Model


def dense_layer(growth: int) -> Layer:
    """x -> [x, H(x)], H = BN relu conv1x1 4k BN relu conv3x3 k."""
    return Concat(
        (),
        (BatchNorm(), Relu, Conv(4 * growth, 1, bias=False), BatchNorm(), Relu, Conv(growth, 3, padding="SAME", bias=False)),
    )


def densenet(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (28, 28, 1),
    growth: int = 12,
    blocks: tuple[int, ...] = (4, 4, 4),
) -> Model:
    """conv3x3 2k | dense block, transition | ... | dense block | BN relu global avg pool | C."""
    channels = 2 * growth
    layers: list[Layer] = [Conv(channels, 3, padding="SAME", bias=False)]
    for i, count in enumerate(blocks):
        layers += [dense_layer(growth) for _ in range(count)]
        channels += count * growth
        if i < len(blocks) - 1:
            channels //= 2
            layers += [BatchNorm(), Relu, Conv(channels, 1, bias=False), AvgPool(2, padding="SAME")]
    net = serial(*layers, BatchNorm(), Relu, GlobalAvgPool, Dense(num_classes))
    return Model("densenet", net, "softmax_cross_entropy", input_shape, num_classes)
