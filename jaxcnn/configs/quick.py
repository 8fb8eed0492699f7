"""quick: one epoch of the lenet5 recipe on the first 2048 training and 512 test images, to check in seconds
that data, training, evaluation, checkpoints and plots all run.

``OVERRIDES`` is what ``--quick`` of ``experiments/train_models.py`` and ``experiments/zoo.py`` lays over any
recipe. The accuracy on 512 images says only that the network learned something (chance is 10%).
"""

import dataclasses

from jaxcnn.configs import lenet5
from jaxcnn.configs.expected import Expected
from jaxcnn.train.config import TrainConfig

OVERRIDES = dict(epochs=1, train_subset=2048, test_subset=512)

EXPECTED = Expected(test_accuracy="68.95%", cpu="33 s on the 2-core CPU shared with other jobs (load 6-7)")


def get_config() -> TrainConfig:
    return dataclasses.replace(lenet5.get_config(), **OVERRIDES)
