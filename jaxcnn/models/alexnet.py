"""AlexNet (Krizhevsky et al. 2012), scaled down for 28x28 and 32x32 images.

Five convolutions with ReLU, local response normalisation after the first two, overlapping 3x3/2 max
pooling, and two dropout-regularised fully connected layers, as in the original; widths divided by ~3
and the 11x11/4 stem replaced by a 5x5/1 one, since the images are 7x smaller than ImageNet's.
"""

from __future__ import annotations

from jaxcnn.layers import Conv, Dense, Dropout, Flatten, LocalResponseNorm, MaxPool, Relu, serial
from jaxcnn.models.model import Model


def alexnet(num_classes: int = 10, input_shape: tuple[int, int, int] = (28, 28, 1)) -> Model:
    """conv5x5 32 relu LRN pool3/2 | conv5x5 64 relu LRN pool3/2 | conv3x3 96, 96, 64 relu pool3/2 |
    256 relu dropout 0.5 | 256 relu dropout 0.5 | C, softmax cross-entropy."""
    pool = MaxPool(3, stride=2, padding="SAME")
    net = serial(
        Conv(32, 5, padding="SAME"), Relu, LocalResponseNorm(5), pool,
        Conv(64, 5, padding="SAME"), Relu, LocalResponseNorm(5), pool,
        Conv(96, 3, padding="SAME"), Relu, Conv(96, 3, padding="SAME"), Relu, Conv(64, 3, padding="SAME"), Relu, pool,
        Flatten, Dense(256), Relu, Dropout(0.5), Dense(256), Relu, Dropout(0.5), Dense(num_classes),
    )  # fmt: skip
    return Model("alexnet", net, "softmax_cross_entropy", input_shape, num_classes)
