"""Models (``jaxcnn.models.get_model(name)``): each a ``serial`` network plus its input shape and loss.

Every model takes NHWC batches of 28x28x1 images (Fashion-MNIST, MNIST, KMNIST) by default; the architectures
after LeNet-5 (AlexNet, Krizhevsky et al. 2012; VGG, Simonyan & Zisserman 2014; GoogLeNet, Szegedy et al. 2014;
ResNet, He et al. 2015; DenseNet, Huang et al. 2016) also take 32x32x3 (CIFAR-10) via ``input_shape``; the two
worked examples (``single_kernel_14x14``, ``two_filters_4x4``) first mean-pool the image down to their own size.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

from jaxcnn.models.alexnet import alexnet
from jaxcnn.models.densenet import densenet
from jaxcnn.models.googlenet import googlenet
from jaxcnn.models.lenet import lenet5, lenet5_classic
from jaxcnn.models.model import Model
from jaxcnn.models.resnet import resnet
from jaxcnn.models.worked_examples import single_kernel_14x14, two_filters_4x4
from jaxcnn.models.vgg import cnn_small, vgg

MODELS: dict[str, Callable[..., Model]] = {
    "lenet5": lenet5,
    "lenet5_classic": lenet5_classic,
    "single_kernel_14x14": single_kernel_14x14,
    "two_filters_4x4": two_filters_4x4,
    "cnn_small": cnn_small,
    "cnn_small_bn": functools.partial(cnn_small, batch_norm=True),
    "alexnet": alexnet,
    "vgg": vgg,
    "vgg11": functools.partial(vgg, depth=11),
    "vgg16": functools.partial(vgg, depth=16),
    "googlenet": googlenet,
    "resnet8": functools.partial(resnet, depth=8),
    "resnet20": functools.partial(resnet, depth=20),
    "densenet": densenet,
}


def get_model(name: str, num_classes: int = 10, input_shape: tuple[int, int, int] | None = None) -> Model:
    """The model called ``name``; ``input_shape`` (H, W, C) for the models built for any image size."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    factory = MODELS[name]
    if input_shape is None:
        return factory(num_classes)
    if "input_shape" not in inspect.signature(factory).parameters:
        built = factory(num_classes)
        if tuple(input_shape) != built.input_shape:
            raise ValueError(f"model {name!r} takes {built.input_shape} images only, got input_shape {tuple(input_shape)}")
        return built
    return factory(num_classes, input_shape=tuple(input_shape))
