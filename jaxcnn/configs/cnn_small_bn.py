"""cnn_small_bn: cnn_small with batch normalisation (Ioffe & Szegedy 2015) after every convolution.

cnn_small's recipe for 8 epochs: batch norm costs about twice the time per image on the CPU and did not beat
cnn_small within that budget.
"""

from jaxcnn.configs.expected import Expected
from jaxcnn.train.config import TrainConfig

EXPECTED = Expected(
    test_accuracy="92.90%", cpu="22 min 37 s on the 2-core CPU while it was shared with a profiler (371 img/s)"
)


def get_config() -> TrainConfig:
    return TrainConfig(model="cnn_small_bn", epochs=8, batch_size=64, flip=True, crop_pad=2, weight_decay=1e-3)
