"""LeNet-5 as LeCun et al. 1998 built it, in the notation of Bouvrie 2006: tanh, sub-sampling with a trained
multiplicative bias beta and additive bias b, sigmoid outputs trained with the squared error on one-hot targets.

10 epochs of Adam 1e-3 (cosine decay, batch 32) with random flips.
"""

from jaxcnn.configs.expected import Expected
from jaxcnn.train.config import TrainConfig

EXPECTED = Expected(test_accuracy="89.50%", cpu="2 min 25 s on the 2-core CPU")


def get_config() -> TrainConfig:
    return TrainConfig(model="lenet5_classic", epochs=10, flip=True)
