"""`load`: find a dataset split on disk and return it as numpy arrays.

Sources are tried in order:

1. an IDX directory: the ``data_dir`` argument, else the ``JAXCNN_DATA``
   environment variable (the files may also sit in a subdirectory named after
   the dataset, e.g. ``<dir>/fashion_mnist/`` or ``<dir>/fashion-mnist/``);
2. for Fashion-MNIST only, Debian's ``dataset-fashion-mnist`` package
   (``/usr/share/datasets/fashion-mnist``);
3. a prepared tensorflow-datasets data_dir (never downloads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxcnn.data.idx import load_idx_pair
from jaxcnn.data.tfds_source import TfdsNotPreparedError, UnknownDatasetError, load_tfds

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "ENV_VAR",
    "SPLITS",
    "DataSourceNotFoundError",
    "Dataset",
    "find_idx_pair",
    "load",
    "make_dataset",
    "normalize_name",
]

ENV_VAR = "JAXCNN_DATA"
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test")
#: Default number of classes for IDX data (MNIST, Fashion-MNIST, KMNIST).
IDX_DEFAULT_NUM_CLASSES = 10
#: The class counts of the IDX datasets jaxcnn knows: their labels are checked against them, in every split
#: (a label beyond them is a corrupt file, not a new class). Other IDX datasets take max(10, max label + 1).
IDX_NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "kmnist": 10}

_IDX_PREFIXES = {"train": ("train",), "test": ("t10k", "test")}


class DataSourceNotFoundError(FileNotFoundError):
    """No source holds the requested dataset split; the message says what was tried."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """One split of an image-classification dataset, as numpy arrays.

    ``images`` is float32 NHWC in [0, 1]; ``labels`` is int32 in
    ``[0, num_classes)``; ``source`` says where the data came from
    (``"idx:<dir>"``, ``"debian"`` or ``"tfds"``).
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str
    split: str
    source: str

    def __post_init__(self) -> None:
        if self.images.dtype != np.float32 or self.images.ndim != 4:
            raise ValueError(
                f"images must be float32 NHWC, got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.dtype != np.int32 or self.labels.ndim != 1:
            raise ValueError(
                f"labels must be 1-d int32, got {self.labels.dtype} {self.labels.shape}"
            )
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"{self.images.shape[0]} images but {self.labels.shape[0]} labels"
            )
        _check_labels(self.labels, self.num_classes, self.source)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape ``(H, W, C)`` of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


def normalize_name(name: str) -> str:
    """Canonical dataset name: ``"Fashion-MNIST"`` -> ``"fashion_mnist"``."""
    return name.strip().lower().replace("-", "_")


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return split


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Raise ValueError unless integer ``labels`` all lie in ``[0, num_classes)``."""
    if num_classes < 1:
        raise ValueError(f"{where}: num_classes must be >= 1, got {num_classes}")
    if labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{where}: labels out of range: min {lo}, max {hi}, "
            f"expected 0 <= label < {num_classes}"
        )


def _to_float_images(images: np.ndarray, where: str) -> np.ndarray:
    """uint8 -> float32 / 255; float images must already lie in [0, 1]."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    if np.issubdtype(images.dtype, np.floating):
        out = images.astype(np.float32)
        if out.size and (not np.isfinite(out).all() or out.min() < 0 or out.max() > 1):
            raise ValueError(f"{where}: float images must lie in [0, 1]")
        return out
    raise ValueError(f"{where}: unsupported image dtype {images.dtype} (want uint8)")


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int | None,
    name: str,
    split: str,
    source: str,
) -> Dataset:
    """Convert raw arrays into a validated `Dataset`.

    Images (N, H, W) get a channel axis; uint8 is scaled to [0, 1]. If
    ``num_classes`` is None it is ``max(10, max label + 1)``.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        raise ValueError(f"{source}: images must be NHWC, got shape {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{source}: labels must be 1-d integers, got {labels.dtype} {labels.shape}"
        )
    if labels.size == 0:
        raise ValueError(f"{source}: the {split} split of {name!r} has no examples")
    if num_classes is None:
        num_classes = max(IDX_DEFAULT_NUM_CLASSES, int(labels.max()) + 1)
    _check_labels(labels, num_classes, source)
    return Dataset(
        images=_to_float_images(images, source),
        labels=labels.astype(np.int32),
        num_classes=int(num_classes),
        name=name,
        split=split,
        source=source,
    )


def _first_existing(directory: Path, names: list[str]) -> Path | None:
    for n in names:
        for candidate in (directory / n, directory / (n + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def find_idx_pair(
    directory: str | os.PathLike, name: str, split: str
) -> tuple[Path, Path] | None:
    """Locate ``(images, labels)`` IDX files for ``split`` under ``directory``.

    Looks in ``directory/<name>/``, ``directory/<name-with-dashes>/`` and then
    ``directory`` itself, for ``train-…`` / ``t10k-…`` files, raw or ``.gz``.
    Returns None if there are none; raises DataSourceNotFoundError if only
    one of the pair is present.
    """
    root = Path(directory)
    name = normalize_name(name)
    prefixes = _IDX_PREFIXES[_check_split(split)]
    image_names = [f"{p}-images{s}idx{d}-ubyte" for p in prefixes for d in "34" for s in "-."]
    label_names = [f"{p}-labels{s}idx1-ubyte" for p in prefixes for s in "-."]
    subdirs = dict.fromkeys([root / name, root / name.replace("_", "-"), root])
    for d in subdirs:
        if not d.is_dir():
            continue
        images = _first_existing(d, image_names)
        labels = _first_existing(d, label_names)
        if images and labels:
            return images, labels
        if images or labels:
            found, missing = (images, label_names[0]) if images else (labels, image_names[0])
            raise DataSourceNotFoundError(
                f"found {found} but not its partner {d / missing}[.gz]"
            )
    return None


def _load_idx(name: str, split: str, pair: tuple[Path, Path], source: str) -> Dataset:
    images, labels = load_idx_pair(*pair)
    num_classes = IDX_NUM_CLASSES.get(name)
    if num_classes is not None and labels.size:
        _check_labels(labels, num_classes, f"{pair[1]} ({name} has {num_classes} classes)")
    return make_dataset(images, labels, num_classes=num_classes, name=name, split=split, source=source)


def load(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    tfds_data_dir: str | None = None,
) -> Dataset:
    """Load split ``"train"`` or ``"test"`` of dataset ``name`` from the first source holding it.

    Sources: the IDX directory ``data_dir`` (else ``$JAXCNN_DATA``); for
    Fashion-MNIST, Debian's ``dataset-fashion-mnist``; a prepared
    tensorflow-datasets ``tfds_data_dir`` (never downloads).

    Raises ValueError for an unknown split or dataset name (or corrupt files),
    DataSourceNotFoundError if the dataset exists but no source holds it.
    """
    name = normalize_name(name)
    _check_split(split)
    tried: list[str] = []

    if data_dir is not None and os.fspath(data_dir) != "":
        idx_dir, origin = Path(data_dir), "data_dir"
    elif os.environ.get(ENV_VAR):
        idx_dir, origin = Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
    else:
        idx_dir, origin = None, ""
    if idx_dir is not None:
        if not idx_dir.is_dir():
            raise DataSourceNotFoundError(f"{origin} {idx_dir} is not a directory")
        pair = find_idx_pair(idx_dir, name, split)
        if pair is not None:
            return _load_idx(name, split, pair, f"idx:{pair[0].parent}")
        tried.append(f"IDX files in {idx_dir} or {idx_dir / name}/ (from {origin})")
    else:
        tried.append(f"IDX directory: none given (data_dir / --data-dir / ${ENV_VAR} unset)")

    if name == "fashion_mnist":
        pair = None
        if DEBIAN_FASHION_MNIST_DIR.is_dir():
            pair = find_idx_pair(DEBIAN_FASHION_MNIST_DIR, name, split)
        if pair is not None:
            return _load_idx(name, split, pair, "debian")
        tried.append(
            f"Debian package dataset-fashion-mnist: no IDX files in {DEBIAN_FASHION_MNIST_DIR}"
        )

    try:
        images, labels, num_classes = load_tfds(name, split, data_dir=tfds_data_dir)
    except UnknownDatasetError as err:
        raise UnknownDatasetError(
            f"{err} No IDX files were found for it either ({'; '.join(tried)})."
        ) from None
    except TfdsNotPreparedError as err:
        tried.append(str(err))
        fixes = [
            "put the IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
            "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in a directory and pass "
            f"it as --data-dir / data_dir or set {ENV_VAR}",
        ]
        if name == "fashion_mnist":
            fixes.append("apt-get install dataset-fashion-mnist")
        fixes.append(
            f"prepare the tfds data_dir where there is network access "
            f"(tfds build {name} --data_dir DIR) and pass DIR as --tfds-data-dir / tfds_data_dir"
        )
        raise DataSourceNotFoundError(
            f"no source found for {name!r} split {split!r}. Tried:\n  - "
            + "\n  - ".join(tried)
            + "\nTo fix, either:\n  - "
            + "\n  - ".join(fixes)
        ) from None
    return make_dataset(
        images, labels, num_classes=num_classes, name=name, split=split, source="tfds"
    )
