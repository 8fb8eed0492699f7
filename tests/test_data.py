"""Tests for jaxcnn.data: the IDX reader, source resolution, Debian and tfds sources."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxcnn.data import (
    DEBIAN_FASHION_MNIST_DIR,
    ENV_VAR,
    DataSourceNotFoundError,
    Dataset,
    load,
    load_idx_pair,
    normalize_name,
    read_idx,
)

TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as IDX (big-endian), independently of jaxcnn.data."""
    header = bytes([0, 0, TYPE_CODES[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_file(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    return write_file(path, idx_bytes(array), gz)


def make_split(seed: int, n: int, h: int = 4, w: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    return images, labels


def write_mnist_dir(directory: Path, *, seed: int = 0, gz: bool = True) -> dict:
    """Write a tiny MNIST-layout IDX directory; return the arrays per split."""
    ext = ".gz" if gz else ""
    out = {}
    for split, prefix, n in (("train", "train", 7), ("test", "t10k", 3)):
        images, labels = make_split(seed + n, n)
        write_idx(directory / f"{prefix}-images-idx3-ubyte{ext}", images, gz)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{ext}", labels, gz)
        out[split] = (images, labels)
    return out


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    """Make tests independent of the caller's $JAXCNN_DATA."""
    monkeypatch.delenv(ENV_VAR, raising=False)


# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", list(TYPE_CODES), ids=str)
def test_read_idx_roundtrip(tmp_path, dtype, gz):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((3, 4, 2)) * 100).astype(dtype)
    path = write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), array, gz)
    got = read_idx(path)
    assert got.dtype == dtype and got.dtype.isnative
    np.testing.assert_array_equal(got, array)


def test_read_idx_is_big_endian(tmp_path):
    # Two int16 items 0x0102 and 0xFFFE = 258, -2; one dimension of size 2.
    path = write_file(tmp_path / "be", bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 1, 2, 0xFF, 0xFE]))
    np.testing.assert_array_equal(read_idx(path), [258, -2])


def test_read_idx_gzip_detected_by_content(tmp_path):
    array = np.arange(6, dtype=np.uint8)
    # gzip data without .gz, raw data with .gz: both read.
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "x", array, gz=True)), array)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "y.gz", array)), array)


GOOD = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize(
    "data, needles",
    [
        (b"\x00\x00", ["too short"]),
        (b"\x01\x00" + GOOD[2:], ["magic", "0x0100"]),
        (b"\x00\x07" + GOOD[2:], ["magic"]),
        (GOOD[:2] + b"\x0a" + GOOD[3:], ["type code 0x0A"]),
        (b"\x00\x00\x08\x00", ["0 dimensions"]),
        (GOOD[:9], ["truncated IDX header"]),
        (GOOD[:-1], ["truncated", "needs 12 bytes", "has 11 bytes"]),
        (GOOD[:12], ["truncated", "needs 12 bytes", "has 0 bytes"]),
        (GOOD + b"\x00\x00", ["over-long", "needs 12 bytes", "has 14 bytes"]),
    ],
    ids=[
        "short",
        "magic0",
        "magic1",
        "typecode",
        "ndim0",
        "header",
        "truncated",
        "nopayload",
        "overlong",
    ],
)
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_read_idx_corrupt(tmp_path, data, needles, gz):
    path = write_file(tmp_path / "bad-idx3-ubyte", data, gz)
    with pytest.raises(ValueError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize(
    "blob",
    [
        gzip.compress(GOOD)[:-6],  # truncated stream
        gzip.compress(GOOD)[:10] + b"\xff" * 20,  # garbage deflate data
        gzip.compress(GOOD)[:-8] + b"\0\0\0\0\0\0\0\0",  # bad CRC / length
    ],
    ids=["truncated", "garbage", "crc"],
)
def test_read_idx_corrupt_gzip(tmp_path, blob):
    path = write_file(tmp_path / "x-idx3-ubyte.gz", blob)
    with pytest.raises(ValueError, match="corrupt gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_load_idx_pair(tmp_path):
    images, labels = make_split(0, 5)
    got_images, got_labels = load_idx_pair(
        write_idx(tmp_path / "i", images), write_idx(tmp_path / "l", labels)
    )
    assert got_images.shape == (5, 4, 5, 1)
    np.testing.assert_array_equal(got_images[..., 0], images)
    np.testing.assert_array_equal(got_labels, labels)
    # 4-d images are kept as they are.
    four = np.zeros((5, 2, 2, 3), np.uint8)
    assert load_idx_pair(write_idx(tmp_path / "i4", four), tmp_path / "l")[0].shape == four.shape


def test_load_idx_pair_count_mismatch(tmp_path):
    images, labels = make_split(0, 5)
    ipath = write_idx(tmp_path / "imgs", images)
    lpath = write_idx(tmp_path / "labs", labels[:4])
    with pytest.raises(ValueError) as info:
        load_idx_pair(ipath, lpath)
    message = str(info.value)
    for needle in ("5 images", "4 labels", str(ipath), str(lpath)):
        assert needle in message


def test_load_idx_pair_bad_ranks(tmp_path):
    images, labels = make_split(0, 5)
    ipath, lpath = write_idx(tmp_path / "i", images), write_idx(tmp_path / "l", labels)
    flat = write_idx(tmp_path / "flat", images.reshape(5, -1))
    with pytest.raises(ValueError, match=r"3-d \(N, H, W\) or 4-d"):
        load_idx_pair(flat, lpath)
    with pytest.raises(ValueError, match="labels must be 1-d"):
        load_idx_pair(ipath, write_idx(tmp_path / "l2", labels.reshape(5, 1)))


# ---------------------------------------------------------- IDX directories


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_idx_dir(tmp_path, gz, split):
    arrays = write_mnist_dir(tmp_path, gz=gz)
    ds = load("mnist", split, data_dir=tmp_path)
    images, labels = arrays[split]
    assert isinstance(ds, Dataset)
    assert ds.images.dtype == np.float32 and ds.images.shape == (*images.shape, 1)
    assert ds.labels.dtype == np.int32
    np.testing.assert_array_equal(ds.images[..., 0], images.astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.labels, labels)
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert (ds.num_classes, ds.name, ds.split) == (10, "mnist", split)
    assert ds.source == f"idx:{tmp_path}"
    assert len(ds) == len(labels) and ds.image_shape == (4, 5, 1)


@pytest.mark.parametrize("subdir", ["fashion_mnist", "fashion-mnist"])
@pytest.mark.parametrize("name", ["fashion_mnist", "fashion-mnist", "Fashion-MNIST"])
def test_load_idx_subdir_named_after_dataset(tmp_path, subdir, name):
    write_mnist_dir(tmp_path / "mnist", seed=1)
    arrays = write_mnist_dir(tmp_path / subdir, seed=2)
    ds = load(name, "test", data_dir=str(tmp_path))
    assert ds.name == "fashion_mnist"
    assert ds.source == f"idx:{tmp_path / subdir}"
    np.testing.assert_array_equal(ds.labels, arrays["test"][1])


def test_normalize_name():
    assert {normalize_name(n) for n in ["fashion_mnist", "fashion-mnist", "Fashion-MNIST"]} == {
        "fashion_mnist"
    }


def test_data_dir_beats_env_var_beats_debian(tmp_path, monkeypatch):
    arg_dir, env_dir = tmp_path / "arg", tmp_path / "env"
    arg = write_mnist_dir(arg_dir, seed=10)
    env = write_mnist_dir(env_dir, seed=20)
    monkeypatch.setenv(ENV_VAR, str(env_dir))
    ds = load("fashion_mnist", "train", data_dir=arg_dir)
    assert ds.source == f"idx:{arg_dir}"
    np.testing.assert_array_equal(ds.labels, arg["train"][1])
    # No argument: the environment variable wins over Debian's package.
    ds = load("fashion_mnist", "train")
    assert ds.source == f"idx:{env_dir}"
    np.testing.assert_array_equal(ds.labels, env["train"][1])


@pytest.mark.parametrize("split", ["validation", "Train", "", "t10k"])
def test_bad_split(tmp_path, split):
    write_mnist_dir(tmp_path)
    with pytest.raises(ValueError, match=f"unknown split '{split}'"):
        load("mnist", split, data_dir=tmp_path)


def test_negative_labels_rejected(tmp_path):
    images, _ = make_split(0, 4)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, -1, 2], np.int8))
    with pytest.raises(ValueError, match="labels out of range: min -1"):
        load("mnist", "train", data_dir=tmp_path)


def test_num_classes_grows_with_labels_of_an_unknown_idx_dataset(tmp_path):
    images, _ = make_split(0, 3)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 12, 3], np.uint8))
    assert load("my_digits", "train", data_dir=tmp_path).num_classes == 13


def test_training_labels_beyond_a_known_datasets_classes_are_refused(tmp_path):
    """Regression (issue 19): a training label of 12 in MNIST grew the class count to 13 without a word."""
    images, _ = make_split(0, 3)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 12, 3], np.uint8))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte \(mnist has 10 classes\): labels out of range: min 0, max 12"):
        load("mnist", "train", data_dir=tmp_path)


def test_dataset_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="labels out of range"):
        Dataset(
            images=np.zeros((2, 1, 1, 1), np.float32),
            labels=np.array([0, 3], np.int32),
            num_classes=3,
            name="x",
            split="train",
            source="test",
        )


def test_partial_idx_dir_is_an_error(tmp_path):
    images, _ = make_split(0, 3)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, gz=True)
    with pytest.raises(DataSourceNotFoundError, match="train-labels-idx1-ubyte"):
        load("mnist", "train", data_dir=tmp_path)


def test_missing_data_dir_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(DataSourceNotFoundError, match="data_dir .* is not a directory"):
        load("mnist", "train", data_dir=tmp_path / "nope")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(DataSourceNotFoundError, match=rf"\${ENV_VAR} .* is not a directory"):
        load("mnist", "train")


def test_corrupt_file_in_data_dir(tmp_path):
    write_mnist_dir(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        load("mnist", "train", data_dir=tmp_path)


def test_idx_path_does_not_import_tensorflow(tmp_path):
    write_mnist_dir(tmp_path)
    code = (
        "import sys; from jaxcnn.data import load; "
        f"load('mnist', 'train', data_dir={str(tmp_path)!r}); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# ------------------------------------------------------------------- Debian

debian = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST_DIR.is_dir(),
    reason=f"{DEBIAN_FASHION_MNIST_DIR} absent (apt-get install dataset-fashion-mnist)",
)


@debian
@pytest.mark.parametrize("name", ["fashion_mnist", "Fashion-MNIST"])
def test_debian_fashion_mnist_test_split(name):
    ds = load(name, "test")
    assert ds.source == "debian"
    assert ds.images.shape == (10000, 28, 28, 1) and ds.images.dtype == np.float32
    assert ds.num_classes == 10
    assert 0.0 <= ds.images.min() and ds.images.max() == 1.0
    np.testing.assert_array_equal(np.bincount(ds.labels, minlength=10), [1000] * 10)


@debian
def test_debian_only_for_fashion_mnist(tmp_path):
    # The Debian package must not be used for other names: plain MNIST with
    # no IDX dir goes on to tfds, where it is not prepared in this data_dir.
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DataSourceNotFoundError) as info:
        load("mnist", "test", tfds_data_dir=str(tmp_path))
    assert "dataset-fashion-mnist" not in str(info.value)


# --------------------------------------------------------------------- tfds


@pytest.fixture(scope="session")
def tiny_tfds(tmp_path_factory):
    """Import TF once and prepare the tiny real tfds dataset; yield (module, data_dir)."""
    pytest.importorskip("tensorflow_datasets")
    import _tiny_tfds

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    _tiny_tfds.build(data_dir)
    return _tiny_tfds, data_dir


@pytest.mark.parametrize("split", ["train", "test"])
def test_tfds_tiny_dataset(tiny_tfds, split):
    module, data_dir = tiny_tfds
    ds = load(module.NAME, split, tfds_data_dir=data_dir)
    images, labels = module.tiny_examples(split)
    assert ds.source == "tfds" and ds.name == module.NAME and ds.split == split
    assert ds.num_classes == module.NUM_CLASSES
    assert ds.images.dtype == np.float32 and ds.images.shape == images.shape
    assert ds.labels.dtype == np.int32
    np.testing.assert_array_equal(ds.images, images.astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.labels, labels)


def test_tfds_unknown_name(tiny_tfds):
    _, data_dir = tiny_tfds
    with pytest.raises(ValueError, match="no_such_dataset_xyz") as info:
        load("no_such_dataset_xyz", "train", tfds_data_dir=data_dir)
    assert not isinstance(info.value, DataSourceNotFoundError)
    assert len(str(info.value)) < 1000  # not tfds' list of every dataset


def test_tfds_not_prepared_lists_what_was_tried(tiny_tfds, tmp_path, monkeypatch):
    module, _ = tiny_tfds
    empty = tmp_path / "empty_tfds"
    empty.mkdir()
    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    monkeypatch.setenv(ENV_VAR, str(idx_dir))
    with pytest.raises(DataSourceNotFoundError) as info:
        load(module.NAME, "train", tfds_data_dir=str(empty))
    message = str(info.value)
    for needle in (module.NAME, str(idx_dir), str(empty), "--data-dir", ENV_VAR, "tfds build"):
        assert needle in message


def test_fashion_mnist_not_found_mentions_apt(tiny_tfds, tmp_path, monkeypatch):
    # Debian's package made absent (where it is installed it would be found): the message when everything fails.
    import jaxcnn.data.sources

    monkeypatch.setattr(jaxcnn.data.sources, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian-package")
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(DataSourceNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load("fashion_mnist", "train", tfds_data_dir=str(tmp_path))


def test_idx_dir_beats_tfds(tiny_tfds, tmp_path):
    module, data_dir = tiny_tfds
    arrays = write_mnist_dir(tmp_path / module.NAME)
    ds = load(module.NAME, "train", data_dir=tmp_path, tfds_data_dir=data_dir)
    assert ds.source == f"idx:{tmp_path / module.NAME}"
    np.testing.assert_array_equal(ds.labels, arrays["train"][1])
