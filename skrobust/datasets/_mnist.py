"""MNIST from a data root, the per-user cache, the embedded test set or a download."""

import gzip
import hashlib
import math
import os
import shutil
import urllib.request
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
# md5 of the decompressed files, checked after a download
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# tried in order; each serves <name>.gz
MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049

DESCR = """MNIST handwritten digits (LeCun, Cortes and Burges).

70,000 grey-level 28x28 images of the digits 0-9: 60,000 for training and
10,000 for testing. ``data`` holds the images flattened to 784 float32 pixel
values scaled to [0, 1]; ``images`` the same as (n, 28, 28); ``target`` the
digit (int64).

Source: http://yann.lecun.com/exdb/mnist/
"""


def get_data_home(data_home=None):
    """The data roots searched, in order: ``data_home``, ``$SKROBUST_DATA``, the cache.

    The per-user cache is ``$SKROBUST_CACHE`` if set, else ``~/.cache/skrobust``;
    downloads go there.
    """
    roots = []
    if data_home is not None:
        roots.append(Path(data_home).expanduser())
    if os.environ.get("SKROBUST_DATA"):
        roots.append(Path(os.environ["SKROBUST_DATA"]).expanduser())
    roots.append(_cache_root())
    return roots


def _cache_root():
    cache = os.environ.get("SKROBUST_CACHE")
    return Path(cache).expanduser() if cache else Path.home() / ".cache" / "skrobust"


def _open(path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path, magic, n_expected=None):
    """Read an IDX file (optionally gzip-compressed) into a uint8 array.

    Every field is checked before use; a file that is not a complete IDX file of the
    expected kind raises a ``ValueError`` naming the file and what is wrong.

    Parameters
    ----------
    path : path-like
        The file.
    magic : int
        Expected magic number (2051 for images, 2049 for labels).
    n_expected : int, optional
        Expected number of items. With it, at most the bytes of that many 28x28
        images (or labels) are decompressed.

    Returns
    -------
    ndarray of uint8 of shape (n,) or (n, rows, cols)

    Raises
    ------
    ValueError
        If the file is not valid gzip, is shorter than an IDX header, has another
        magic number, holds more or fewer bytes than its header announces, or holds
        another number of items than ``n_expected``.
    """
    path = Path(path)
    n_dims = 3 if magic == IMAGE_MAGIC else 1
    offset = 4 + 4 * n_dims
    limit = -1
    if n_expected is not None:  # never decompress more than the expected file
        limit = offset + n_expected * (28 * 28 if magic == IMAGE_MAGIC else 1) + 1
    try:
        with _open(path) as f:
            raw = f.read(limit)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(
            f"{path} is not a valid gzip file ({type(exc).__name__}: {exc}); it is "
            "truncated or corrupt: delete it and copy or download it again."
        ) from exc
    if len(raw) >= 4 and int.from_bytes(raw[:4], "big") != magic:
        raise ValueError(f"{path} is not an IDX file with magic number {magic} "
                         f"(found {int.from_bytes(raw[:4], 'big')}).")
    if len(raw) < offset:
        raise ValueError(
            f"{path} is too short for an IDX file: {len(raw)} bytes, where the header "
            f"alone takes {offset}; it is truncated or not an MNIST file."
        )
    dims = tuple(int(d) for d in np.frombuffer(raw[4:offset], dtype=">i4"))
    if min(dims) < 0:
        raise ValueError(f"{path} has a corrupt header: negative dimensions {dims}.")
    if n_expected is not None and dims[0] != n_expected:
        raise ValueError(f"{path} holds {dims[0]} items, expected {n_expected}.")
    payload = np.frombuffer(raw, dtype=np.uint8, offset=offset)
    size = math.prod(dims)
    if payload.size != size:
        held = f"more than {size}" if payload.size > size else str(payload.size)
        raise ValueError(
            f"{path} is truncated or corrupt: header announces {dims} "
            f"({size} bytes) but holds {held}."
        )
    return payload.reshape(dims)


def _find(folder, name):
    for candidate in (folder / (name + ".gz"), folder / name):
        if candidate.is_file():
            return candidate
    return None


def _folders(root):
    # <root>/mnist as documented; <root>/MNIST/raw as torchvision leaves it
    return [root / "mnist", root / "MNIST" / "raw"]


def _embedded_folder():
    return Path(str(resources.files("skrobust.datasets") / "data" / "mnist"))


def _download(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for name in names:
        for mirror in MIRRORS:
            url = mirror + name + ".gz"
            try:
                tmp = folder / (name + ".gz.part")
                with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as f:
                    shutil.copyfileobj(response, f)
                with gzip.open(tmp, "rb") as f:
                    digest = hashlib.md5(f.read()).hexdigest()
                if digest != MD5[name]:
                    tmp.unlink()
                    raise ValueError(f"checksum mismatch ({digest})")
                tmp.rename(folder / (name + ".gz"))
                break
            except Exception as exc:  # try the next mirror
                errors.append(f"{url}: {exc}")
        else:
            raise OSError(
                f"Could not download {name}.gz from any mirror:\n  " + "\n  ".join(errors)
            )


def _locate(split, data_home, download):
    images, labels, _ = FILES[split]
    roots = get_data_home(data_home)
    searched = []
    for root in roots:
        for folder in _folders(root):
            searched.append(folder)
            found = _find(folder, images), _find(folder, labels)
            if all(found):
                return found
            if any(found):  # a partial copy is an error, never a silent fallback
                present = found[0] or found[1]
                missing = labels if found[0] else images
                raise ValueError(
                    f"{folder} holds {present.name} but not {missing}[.gz]: MNIST "
                    f"{split} needs both files. Add the missing file or remove the "
                    "partial copy."
                )
    if split == "test":
        folder = _embedded_folder()
        return _find(folder, images), _find(folder, labels)
    if download:
        folder = _folders(_cache_root())[0]
        try:
            _download(folder, [images, labels])
        except OSError as exc:
            raise OSError(_not_found_message(split, searched) + f"\nDownload failed: {exc}") from exc
        return _find(folder, images), _find(folder, labels)
    raise FileNotFoundError(_not_found_message(split, searched))


def _not_found_message(split, searched):
    names = FILES[split][:2]
    places = "\n  ".join(str(p) for p in searched)
    return (
        f"MNIST {split} files ({names[0]}[.gz], {names[1]}[.gz]) not found. Looked in:\n"
        f"  {places}\nPut them in <root>/mnist/ and pass data_home=<root> or set the "
        "environment variable SKROBUST_DATA=<root>, or allow download=True."
    )


def load_mnist(*, split="train", data_home=None, download=True, return_X_y=False):
    """Load the MNIST digits.

    Searches, in order, ``<data_home>/mnist/``, ``$SKROBUST_DATA/mnist/`` and the
    per-user cache (``~/.cache/skrobust/mnist/``, or ``$SKROBUST_CACHE``); IDX files
    may be gzip-compressed or not (torchvision's ``MNIST/raw/`` layout is accepted
    too). The 10,000 test images ship with the package, so ``split="test"`` always
    works offline. The training set is downloaded into the cache when not found and
    ``download=True``.

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        The 60,000 training or the 10,000 test images.
    data_home : str or path-like, default=None
        A data root holding ``mnist/``; searched first.
    download : bool, default=True
        Download the training set into the cache if no root holds it.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (n, 784) float32 in [0, 1], ``target`` (n,) int64, ``images``
        (n, 28, 28) float32, ``DESCR`` and ``filename`` (the images file read).
    (data, target) : tuple if ``return_X_y`` is True

    Raises
    ------
    FileNotFoundError
        If no root holds the training set and ``download=False``.
    ValueError
        If a file found is damaged (not valid gzip, truncated, another magic number,
        another number of items, a label outside 0-9) or a folder holds only one of
        the two files of the split; the message names the file. A damaged or partial
        copy is never silently replaced by another source.

    Examples
    --------
    >>> from skrobust.datasets import load_mnist
    >>> X, y = load_mnist(split="test", return_X_y=True)
    >>> X.shape, y[:5].tolist()
    ((10000, 784), [7, 2, 1, 0, 4])
    """
    if split not in FILES:
        raise ValueError(f'split={split!r} is not supported; use "train" or "test".')
    images_path, labels_path = _locate(split, data_home, download)
    n = FILES[split][2]
    images = read_idx(images_path, IMAGE_MAGIC, n)
    labels = read_idx(labels_path, LABEL_MAGIC, n)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{images_path} holds images of shape {images.shape[1:]}, not (28, 28).")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} "
                         f"holds {len(labels)} labels.")
    if labels.size and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise ValueError(f"{labels_path} holds label {int(labels[bad])} at item {bad}; "
                         "MNIST labels are digits 0-9. The file is corrupt.")
    images = images.astype(np.float32) / np.float32(255.0)
    data = images.reshape(n, -1)
    target = labels.astype(np.int64)
    if return_X_y:
        return data, target
    return Bunch(data=data, target=target, images=images, DESCR=DESCR,
                 filename=str(images_path),
                 feature_names=[f"pixel_{i}" for i in range(784)],
                 target_names=np.arange(10))
