"""VGG (Simonyan & Zisserman 2014): stacks of 3x3 convolutions between 2x2 max pools, then fully connected.

Three stages of widths 32, 64, 128 for 28x28 / 32x32 images (VGG's five stages of 64-512 are for 224x224);
each convolution is followed by batch norm and ReLU (the "VGG-BN" variant) unless ``batch_norm=False``.
"""

from __future__ import annotations

from jaxcnn.layers import BatchNorm, Conv, Dense, Dropout, Flatten, Layer, MaxPool, Relu, serial
from jaxcnn.models.model import Model

# depth (weight layers: convolutions + 2 dense) -> convolutions per stage
VGG_STAGES = {8: (2, 2, 2), 11: (2, 3, 4), 16: (3, 5, 6)}
VGG_WIDTHS = (32, 64, 128)


def vgg(
    num_classes: int = 10, input_shape: tuple[int, int, int] = (28, 28, 1), depth: int = 8, batch_norm: bool = True
) -> Model:
    """[conv3x3 (BN) relu] x n_s, maxpool 2 per stage s -> 256 relu dropout 0.5 -> C."""
    if depth not in VGG_STAGES:
        raise ValueError(f"vgg depth must be one of {sorted(VGG_STAGES)}, got {depth}")
    layers: list[Layer] = []
    for width, convs in zip(VGG_WIDTHS, VGG_STAGES[depth]):
        for _ in range(convs):
            layers += [Conv(width, 3, padding="SAME", bias=not batch_norm), *([BatchNorm()] if batch_norm else []), Relu]
        layers.append(MaxPool(2, padding="SAME"))
    net = serial(*layers, Flatten, Dense(256), Relu, Dropout(0.5), Dense(num_classes))
    return Model(f"vgg{depth}", net, "softmax_cross_entropy", input_shape, num_classes)


def cnn_small(num_classes: int = 10, batch_norm: bool = False) -> Model:
    """VGG-style: [conv3x3 32 x2, maxpool] [conv3x3 64 x2, maxpool] [conv3x3 128 dilation 2] -> 256 -> C.

    With ``batch_norm`` (registered as cnn_small_bn) each convolution is followed by batch norm (and loses its
    bias, which the norm's beta replaces).
    """

    def conv(width: int, **kw) -> list[Layer]:
        return [Conv(width, 3, padding="SAME", bias=not batch_norm, **kw), *([BatchNorm()] if batch_norm else []), Relu]

    net = serial(
        *conv(32), *conv(32), MaxPool(2),
        *conv(64), *conv(64), MaxPool(2),
        *conv(128, dilation=2), MaxPool(2, padding="SAME"),
        Flatten, Dense(256), Relu, Dense(num_classes),
    )  # fmt: skip
    return Model("cnn_small_bn" if batch_norm else "cnn_small", net, "softmax_cross_entropy", num_classes=num_classes)
