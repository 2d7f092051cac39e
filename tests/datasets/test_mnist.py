import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from skrobust.datasets import _mnist, get_data_home, load_mnist

EMBEDDED = _mnist._embedded_folder()
SHARED = Path(os.environ.get("SKROBUST_DATA", Path(__file__).parents[3] / "shared" / "data"))


@pytest.fixture
def no_roots(monkeypatch, tmp_path):
    """No data root, an empty cache, no download mirror reachable."""
    monkeypatch.delenv("SKROBUST_DATA", raising=False)
    monkeypatch.setenv("SKROBUST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_mnist, "MIRRORS", [(tmp_path / "nowhere").as_uri() + "/"])
    return tmp_path


def test_embedded_test_set(no_roots):
    data = load_mnist(split="test")
    assert data.data.shape == (10000, 784) and data.data.dtype == np.float32
    assert data.images.shape == (10000, 28, 28)
    assert data.target.dtype == np.int64
    assert 0.0 <= data.data.min() and data.data.max() == 1.0
    np.testing.assert_array_equal(
        np.bincount(data.target), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    assert "MNIST" in data.DESCR
    X, y = load_mnist(split="test", return_X_y=True)
    np.testing.assert_array_equal(X, data.data)


def _write_root(root, compress):
    folder = root / "mnist"
    folder.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(EMBEDDED / (name + ".gz")) as src:
            raw = src.read()
        if compress:
            with gzip.open(folder / (name + ".gz"), "wb") as dst:
                dst.write(raw)
        else:
            (folder / name).write_bytes(raw)
    return folder


@pytest.mark.parametrize("compress", [True, False])
def test_reads_gzip_and_raw_idx_from_data_home(no_roots, compress):
    root = no_roots / "root"
    _write_root(root, compress)
    data = load_mnist(split="test", data_home=root)
    assert data.filename.startswith(str(root))
    assert data.data.shape == (10000, 784)


def test_search_order_data_home_then_env(no_roots, monkeypatch):
    env_root, home_root = no_roots / "env", no_roots / "home"
    _write_root(env_root, True)
    monkeypatch.setenv("SKROBUST_DATA", str(env_root))
    assert load_mnist(split="test").filename.startswith(str(env_root))
    _write_root(home_root, False)
    assert load_mnist(split="test", data_home=home_root).filename.startswith(str(home_root))
    assert get_data_home(home_root)[:2] == [home_root, env_root]


def test_missing_training_set_says_where_it_looked(no_roots):
    with pytest.raises(FileNotFoundError, match="Looked in") as info:
        load_mnist(split="train", data_home=no_roots / "empty", download=False)
    message = str(info.value)
    assert str(no_roots / "empty" / "mnist") in message
    assert "SKROBUST_DATA" in message and "data_home" in message


def test_offline_download_fails_with_the_places_searched(no_roots):
    with pytest.raises(OSError, match="Download failed"):
        load_mnist(split="train", data_home=no_roots / "empty")


def test_download_from_a_mirror_verifies_checksums(no_roots, monkeypatch):
    mirror = no_roots / "mirror"
    mirror.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(EMBEDDED / (name + ".gz"), mirror / (name + ".gz"))
    monkeypatch.setattr(_mnist, "MIRRORS", [no_roots.as_uri() + "/nowhere/", mirror.as_uri() + "/"])
    target = no_roots / "cache" / "mnist"
    _mnist._download(target, ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
    assert (target / "t10k-images-idx3-ubyte.gz").is_file()
    monkeypatch.setitem(_mnist.MD5, "t10k-labels-idx1-ubyte", "0" * 32)
    with pytest.raises(OSError, match="checksum mismatch"):
        _mnist._download(no_roots / "other", ["t10k-labels-idx1-ubyte"])


def test_corrupt_files_are_reported(tmp_path):
    bad_magic = tmp_path / "bad-magic"
    bad_magic.write_bytes(np.array([2049, 1], dtype=">i4").tobytes() + b"\x00")
    with pytest.raises(ValueError, match="magic number 2051"):
        _mnist.read_idx(bad_magic, 2051)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(np.array([2051, 2, 28, 28], dtype=">i4").tobytes() + b"\x00" * 100)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        _mnist.read_idx(truncated, 2051)
    ok = tmp_path / "labels"
    ok.write_bytes(np.array([2049, 3], dtype=">i4").tobytes() + b"\x01\x02\x03")
    with pytest.raises(ValueError, match="holds 3 items, expected 5"):
        _mnist.read_idx(ok, 2049, n_expected=5)


def test_bad_split():
    with pytest.raises(ValueError, match='split=\'valid\' is not supported'):
        load_mnist(split="valid")


@pytest.mark.skipif(not (SHARED / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                    reason="full MNIST not in the data root")
def test_full_training_set_from_the_data_root():
    X, y = load_mnist(split="train", data_home=SHARED, download=False, return_X_y=True)
    assert X.shape == (60000, 784)
    assert abs(X.mean() - 0.1307) < 1e-4


# --- damaged data folders: an error naming the file, never a silent fallback -------

def _idx(magic, dims, payload):
    header = np.array([magic, *dims], dtype=">i4").tobytes()
    return header + np.asarray(payload, np.uint8).tobytes()


def _test_folder(root, images=None, labels=None, n=3):
    """<root>/mnist with t10k files of n items; ``images``/``labels`` replace the bytes
    of a file (``b""`` leaves the file out)."""
    folder = root / "mnist"
    folder.mkdir(parents=True)
    good = {"t10k-images-idx3-ubyte": _idx(2051, (n, 28, 28), np.zeros(n * 784, np.uint8)),
            "t10k-labels-idx1-ubyte": _idx(2049, (n,), np.arange(n) % 10)}
    for name, raw in zip(good, (images, labels)):
        raw = good[name] if raw is None else raw
        if raw != b"":
            (folder / name).write_bytes(raw)
    return folder


@pytest.fixture
def ten_thousand(monkeypatch):
    """Accept a 3-item test split, so damaged files can be small."""
    monkeypatch.setitem(_mnist.FILES, "test", ("t10k-images-idx3-ubyte",
                                               "t10k-labels-idx1-ubyte", 3))


def test_small_valid_folder_loads(no_roots, ten_thousand):
    _test_folder(no_roots / "root")
    X, y = load_mnist(split="test", data_home=no_roots / "root", return_X_y=True)
    assert X.shape == (3, 784) and y.tolist() == [0, 1, 2]


def _gzip_bytes(raw):
    import io

    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as f:
        f.write(raw)
    return buffer.getvalue()


@pytest.mark.parametrize("case, match", [
    ("not-gzip", "not a valid gzip file"),
    ("truncated-gzip", "not a valid gzip file"),
    ("six-bytes", "too short for an IDX file: 6 bytes"),
    ("wrong-magic", "magic number 2049 \\(found 2051\\)"),
    ("truncated-payload", "truncated or corrupt: header announces \\(3,\\)"),
    ("too-many-items", "holds 60000 items, expected 3"),
])
def test_damaged_label_file_is_refused_naming_it(no_roots, ten_thousand, case, match):
    good = _idx(2049, (3,), [1, 2, 3])
    raw = {
        "not-gzip": b"\x1f\x8b\x08garbage",
        "truncated-gzip": _gzip_bytes(good)[:-12],
        "six-bytes": good[:6],
        "wrong-magic": _idx(2051, (3,), [1, 2, 3]),
        "truncated-payload": good[:-1],
        "too-many-items": _idx(2049, (60000,), np.zeros(60000, np.uint8)),
    }[case]
    suffix = ".gz" if "gzip" in case else ""
    folder = _test_folder(no_roots / "root", labels=b"")
    path = folder / ("t10k-labels-idx1-ubyte" + suffix)
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match) as info:
        load_mnist(split="test", data_home=no_roots / "root")
    assert str(path) in str(info.value)


def test_label_outside_0_to_9_is_refused(no_roots, ten_thousand):
    folder = _test_folder(no_roots / "root", labels=_idx(2049, (3,), [1, 200, 3]))
    with pytest.raises(ValueError, match="holds label 200 at item 1; MNIST labels are "
                                         "digits 0-9") as info:
        load_mnist(split="test", data_home=no_roots / "root")
    assert str(folder / "t10k-labels-idx1-ubyte") in str(info.value)


def test_image_and_label_counts_must_agree(no_roots, ten_thousand):
    # read_idx on its own: two files, each with a count of its own
    folder = _test_folder(no_roots / "root", labels=_idx(2049, (2,), [1, 2]))
    with pytest.raises(ValueError, match="holds 2 items, expected 3"):
        load_mnist(split="test", data_home=no_roots / "root")
    images = _mnist.read_idx(folder / "t10k-images-idx3-ubyte", 2051)
    labels = _mnist.read_idx(folder / "t10k-labels-idx1-ubyte", 2049)
    assert (len(images), len(labels)) == (3, 2)


@pytest.mark.parametrize("missing", ["images", "labels"])
def test_partial_folder_is_an_error_not_a_fallback(no_roots, missing):
    folder = _test_folder(no_roots / "root", **{missing: b""})
    with pytest.raises(ValueError, match="needs both files") as info:
        load_mnist(split="test", data_home=no_roots / "root")
    message = str(info.value)
    assert str(folder) in message
    assert ("t10k-images" if missing == "images" else "t10k-labels") in message


def test_negative_dimensions_and_huge_headers(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(np.array([2049, -5], dtype=">i4").tobytes())
    with pytest.raises(ValueError, match="negative dimensions"):
        _mnist.read_idx(path, 2049)
    path.write_bytes(_idx(2051, (2**31 - 1, 2**31 - 1, 2**31 - 1), [0]))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        _mnist.read_idx(path, 2051)
