"""A small learnable image-classification set written as real IDX files (the format jaxcnn.data reads)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip when the name ends in .gz)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def synthetic_images(n: int, seed: int, size: int = 28, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Class k is a bright 6x6 square at a class-specific place, on noise: easy to learn, hard to memorise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)
    images = rng.integers(0, 90, size=(n, size, size))
    for i, k in enumerate(labels):
        r, c = 2 + 5 * (k // 4), 2 + 6 * (k % 4)
        images[i, r : r + 6, c : c + 6] = 200 + rng.integers(0, 55)
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_synthetic_idx_dir(directory: Path, n_train: int = 1024, n_test: int = 256) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = synthetic_images(n, seed)
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory
