"""GoogLeNet (Szegedy et al. 2014) scaled to 28x28 images: Inception blocks of four branches joined by a
channel concatenation, global average pooling.

5 epochs of Adam 1e-3 (cosine decay), batch 64, random flips.
"""

from jaxcnn.configs.expected import Expected
from jaxcnn.train.config import TrainConfig

EXPECTED = Expected(test_accuracy="92.92%", cpu="24 min 40 s on the 2-core CPU")


def get_config() -> TrainConfig:
    return TrainConfig(model="googlenet", epochs=5, batch_size=64, flip=True)
