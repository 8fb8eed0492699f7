"""Reader for the IDX file format used by MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim``
big-endian uint32 dimension sizes, then the row-major big-endian payload.
Files may be gzip-compressed; compression is detected from the content, not
the file name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from math import prod

import numpy as np

__all__ = ["IDX_TYPES", "read_idx", "parse_idx", "load_idx_pair"]

#: IDX type code -> big-endian numpy dtype.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str | os.PathLike) -> bytes:
    """Return the (decompressed, if gzip) contents of ``path``."""
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{os.fspath(path)}: corrupt gzip data ({err})") from err


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse uncompressed IDX ``data``; ``name`` is used in error messages."""
    if len(data) < 4:
        raise ValueError(
            f"{name}: too short for an IDX header ({len(data)} bytes, need at least 4)"
        )
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    hint = " (a .gz name but not gzip data?)" if name.endswith(".gz") else ""
    if zero0 != 0 or zero1 != 0:
        raise ValueError(
            f"{name}: bad IDX magic number 0x{data[:4].hex()}: the first two bytes "
            f"must be zero{hint}"
        )
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise ValueError(
            f"{name}: unknown IDX type code 0x{type_code:02X} (expected one of {known})"
        )
    if ndim < 1:
        raise ValueError(f"{name}: IDX header declares {ndim} dimensions (need >= 1)")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(
            f"{name}: truncated IDX header: {ndim} dimensions need {header_len} "
            f"header bytes, file has {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    expected = prod(dims) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        kind = "truncated" if actual < expected else "over-long"
        raise ValueError(
            f"{name}: {kind} IDX payload: shape {dims} of {dtype.itemsize}-byte items "
            f"needs {expected} bytes, file has {actual} bytes after the header"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian numpy array.

    Raises ValueError naming the file for corrupt gzip data, a bad magic number
    or type code, or a payload whose size does not match the declared shape.
    """
    return parse_idx(_read_bytes(path), os.fspath(path))


def load_idx_pair(
    images_path: str | os.PathLike, labels_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Read an images/labels IDX pair; return ``(images NHWC, labels)``.

    Images must be 3-d ``(N, H, W)`` (a channel axis of 1 is appended) or 4-d
    ``(N, H, W, C)``; labels must be 1-d with the same ``N``. Dtypes are kept
    as stored.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    elif images.ndim != 4:
        raise ValueError(
            f"{os.fspath(images_path)}: images must be 3-d (N, H, W) or 4-d "
            f"(N, H, W, C), got shape {images.shape}"
        )
    if labels.ndim != 1:
        raise ValueError(
            f"{os.fspath(labels_path)}: labels must be 1-d, got shape {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"image/label count mismatch: {images.shape[0]} images in "
            f"{os.fspath(images_path)} but {labels.shape[0]} labels in "
            f"{os.fspath(labels_path)}"
        )
    return images, labels
