"""CNN operations with hand-derived backward passes (impl="manual") and autodiff twins (impl="autodiff").

Layout: activations NHWC, conv kernels HWIO, dense kernels (in, out). Each op's module states the forward
formula, the derived backward and the shapes; the backward sits next to the forward.
"""

from jaxcnn.ops.activations import log_softmax, relu, sigmoid, softmax, tanh
from jaxcnn.ops.conv import conv2d
from jaxcnn.ops.conv_transpose import conv2d_transpose
from jaxcnn.ops.dense import dense
from jaxcnn.ops.losses import mse, softmax_cross_entropy
from jaxcnn.ops.pooling import avg_pool, max_pool
from jaxcnn.ops.subsample import subsample, upsample

__all__ = [
    "avg_pool",
    "conv2d",
    "conv2d_transpose",
    "dense",
    "log_softmax",
    "max_pool",
    "mse",
    "relu",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "subsample",
    "tanh",
    "upsample",
]
