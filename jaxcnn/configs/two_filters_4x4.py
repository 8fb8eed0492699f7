"""two_filters_4x4: the worked network of two 2x2 filters on a 4x4 image (ReLU, 2x2 max pool with stride 1,
fully connected, softmax), on Fashion-MNIST mean-pooled to 4x4.

5 epochs of Adam 1e-3 (cosine decay, batch 32). Sixteen pixels of a garment and 100 parameters: the recipe shows
the network learns, not a competitive accuracy.
"""

from jaxcnn.configs.expected import Expected
from jaxcnn.train.config import TrainConfig

EXPECTED = Expected(test_accuracy="62.69%", cpu="27 s on the 2-core CPU shared with other jobs (load 6-7)")


def get_config() -> TrainConfig:
    return TrainConfig(model="two_filters_4x4", epochs=5)
