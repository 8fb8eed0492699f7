"""A tiny real tensorflow-datasets builder for testing the tfds source offline.

Importing this module imports TensorFlow and registers the dataset name
``jaxcnn_tiny_images`` with tfds (class definition registers it, so the class
must be defined exactly once per process: import this module, never exec it).
"""

from __future__ import annotations

import numpy as np

from jaxcnn.data.tfds_source import import_tfds

tfds = import_tfds()

NAME = "jaxcnn_tiny_images"
NUM_CLASSES = 3
IMAGE_SHAPE = (8, 8, 1)
SPLIT_SIZES = {"train": 6, "test": 4}


def tiny_examples(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 images and int labels of ``split``, from a fixed RNG."""
    seed = {"train": 0, "test": 1}[split]
    rng = np.random.default_rng(seed)
    n = SPLIT_SIZES[split]
    images = rng.integers(0, 256, size=(n, *IMAGE_SHAPE), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, size=n)
    return images, labels


class JaxcnnTinyImages(tfds.core.GeneratorBasedBuilder):
    """8x8x1 random images in 3 classes; no download, examples kept in order."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo directly: dataset_info_from_configs() wants a package dir.
        return tfds.core.DatasetInfo(
            builder=self,
            description="Tiny test set for jaxcnn.data.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=IMAGE_SHAPE),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
            disable_shuffling=True,  # keep generator order so tests can compare
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in SPLIT_SIZES}

    def _generate_examples(self, split):
        images, labels = tiny_examples(split)
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": image, "label": int(label)}


def build(data_dir: str) -> None:
    """Prepare the tiny dataset in ``data_dir``."""
    JaxcnnTinyImages(data_dir=data_dir).download_and_prepare()
