"""CNN operations with hand-derived backward passes (impl="manual") and autodiff twins (impl="autodiff").

Layout: activations NHWC, conv kernels HWIO, dense kernels (in, out). Each op's module states the forward
formula, the derived backward and the shapes; the backward sits next to the forward. Faster evaluations of the
same formulas for one platform live apart (``jaxcnn/ops/xla_cpu``) and are chosen per platform when a program is
lowered (``jaxcnn/ops/evaluation.py``); importing this package registers them.
"""

from jaxcnn.ops.activations import log_softmax, relu, sigmoid, softmax, tanh
from jaxcnn.ops.batch_norm import batch_norm, batch_norm_state
from jaxcnn.ops.conv import conv2d
from jaxcnn.ops.conv_transpose import conv2d_transpose
from jaxcnn.ops.dense import dense
from jaxcnn.ops.dropout import dropout
from jaxcnn.ops.global_pool import global_avg_pool
from jaxcnn.ops.losses import mse, softmax_cross_entropy
from jaxcnn.ops.lrn import local_response_norm
from jaxcnn.ops.merge import add, concat
from jaxcnn.ops.pooling import avg_pool, max_pool
from jaxcnn.ops.subsample import subsample, upsample
from jaxcnn.ops import xla_cpu  # noqa: E402,F401  registers the XLA:CPU evaluations on the rules

# The ops, each with impl="manual" | "autodiff"; batch_norm_state (batch_norm's initial running statistics)
# is exported beside them but is not an op.
__all__ = [
    "add",
    "avg_pool",
    "batch_norm",
    "concat",
    "conv2d",
    "conv2d_transpose",
    "dense",
    "dropout",
    "global_avg_pool",
    "local_response_norm",
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
