"""Loading image-classification sets through tensorflow-datasets (tfds).

TensorFlow and tfds are imported lazily, inside the functions here, because
the import takes several seconds and the IDX sources do not need it.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

__all__ = ["TfdsNotPreparedError", "UnknownDatasetError", "import_tfds", "load_tfds"]


class UnknownDatasetError(ValueError):
    """tensorflow-datasets has no dataset of this name."""


class TfdsNotPreparedError(FileNotFoundError):
    """The tfds dataset exists but is not prepared in the given data_dir."""


def import_tfds() -> Any:
    """Import tensorflow_datasets with TensorFlow hidden from GPUs.

    As in the Flax examples, TensorFlow must not grab GPU memory that JAX
    needs; tfds is only used as a CPU-side input pipeline.
    """
    import tensorflow as tf

    try:
        tf.config.experimental.set_visible_devices([], "GPU")
    except RuntimeError:  # TF runtime already initialised: too late to change.
        pass
    import tensorflow_datasets as tfds

    return tfds


def _label_num_classes(info: Any) -> int | None:
    """Number of classes of the supervised label feature, if tfds knows it."""
    keys = info.supervised_keys
    if not isinstance(keys, tuple) or len(keys) != 2 or not isinstance(keys[1], str):
        return None
    feature = info.features[keys[1]]
    return getattr(feature, "num_classes", None)


def load_tfds(
    name: str, split: str, *, data_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Load a prepared tfds split as ``(images, labels, num_classes)`` numpy arrays.

    Never downloads. Raises UnknownDatasetError (a ValueError) if tfds has no
    dataset ``name``, ValueError if it has no split ``split``, and
    TfdsNotPreparedError if the dataset is known but not prepared in
    ``data_dir`` (tfds' default directory when None).
    """
    tfds = import_tfds()
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        close = difflib.get_close_matches(
            name, tfds.list_builders(with_community_datasets=False), n=3
        )
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownDatasetError(
            f"unknown dataset {name!r}: tensorflow-datasets has no such dataset.{hint}"
        ) from None
    if not builder.is_prepared():
        raise TfdsNotPreparedError(
            f"tfds dataset {name!r} is not prepared in "
            f"{builder.data_dir_root if data_dir is None else data_dir}"
        )
    if split not in builder.info.splits:
        raise ValueError(
            f"tfds dataset {name!r} has no split {split!r} "
            f"(available: {', '.join(sorted(builder.info.splits))})"
        )
    ds, info = tfds.load(
        name,
        split=split,
        data_dir=data_dir,
        download=False,
        batch_size=-1,
        as_supervised=True,
        with_info=True,
    )
    images, labels = tfds.as_numpy(ds)
    return np.asarray(images), np.asarray(labels), _label_num_classes(info)
