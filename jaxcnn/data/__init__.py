"""Dataset loading: IDX files, Debian's Fashion-MNIST package, tensorflow-datasets.

``load(name, split)`` returns a `Dataset` of numpy arrays (float32 NHWC images
in [0, 1], int32 labels). TensorFlow is only imported if the tfds source is
reached.
"""

from jaxcnn.data.idx import IDX_TYPES, load_idx_pair, parse_idx, read_idx
from jaxcnn.data.sources import (
    DEBIAN_FASHION_MNIST_DIR,
    ENV_VAR,
    SPLITS,
    DataSourceNotFoundError,
    Dataset,
    find_idx_pair,
    load,
    make_dataset,
    normalize_name,
)
from jaxcnn.data.tfds_source import TfdsNotPreparedError, UnknownDatasetError

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "ENV_VAR",
    "IDX_TYPES",
    "SPLITS",
    "DataSourceNotFoundError",
    "Dataset",
    "TfdsNotPreparedError",
    "UnknownDatasetError",
    "find_idx_pair",
    "load",
    "load_idx_pair",
    "make_dataset",
    "normalize_name",
    "parse_idx",
    "read_idx",
]
