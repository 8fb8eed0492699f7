"""AlexNet (Krizhevsky et al. 2012) scaled to 28x28 images: five convolutions, local response normalisation,
overlapping 3x3/2 max pools, dropout 0.5 in two fully connected layers.

10 epochs of Adam 1e-3 (cosine decay), batch 64, flips and translations by up to two pixels.
"""

from jaxcnn.configs.expected import Expected
from jaxcnn.train.config import TrainConfig

EXPECTED = Expected(test_accuracy="91.63%", cpu="7 min 36 s on the 2-core CPU")


def get_config() -> TrainConfig:
    return TrainConfig(model="alexnet", epochs=10, batch_size=64, flip=True, crop_pad=2)
