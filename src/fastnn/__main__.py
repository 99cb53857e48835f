"""Command line: ``python -m fastnn demo | info``."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

import numpy as np


def two_spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals in 2-D, ``n`` points each; labels 0 and 1.

    Returns
    -------
    X : ndarray, (2n, 2) float32
    y : ndarray, (2n,) int64

    """
    t = np.sqrt(rng.random(n)) * 3 * np.pi
    pts = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (3 * np.pi)
    x = np.concatenate([pts, -pts]) + rng.normal(0, 0.02, (2 * n, 2))
    y = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
    return x.astype(np.float32), y


def load_demo_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """scikit-learn's bundled 8x8 digits (1797 images), or two spirals without scikit-learn.

    Returns
    -------
    X : ndarray, (n, features) float32
    y : ndarray, (n,) int64
    name : str
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("scikit-learn is not installed, so the digits data set is not available "
              "(pip install \"fastnn[examples]\"); using a generated two-spirals set instead.")
        x, y = two_spirals(1000, np.random.default_rng(seed))
        return x, y, "two spirals (generated)"
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64), "digits (8x8)"


def demo(seed: int = 0, epochs: int = 40) -> float:
    """Train an MLP with the public API, print the test accuracy and the training speed."""
    import fastnn as fnn

    x, y, name = load_demo_data(seed)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x))
    x, y = x[perm], y[perm]
    n_test = len(x) // 5
    xtr, ytr, xte, yte = x[n_test:], y[n_test:], x[:n_test], y[:n_test]
    n_classes = int(y.max()) + 1
    model = fnn.Sequential([
        fnn.Dense(x.shape[1], 256, activation="relu", init="he_normal"),
        fnn.Dropout(0.1),
        fnn.Dense(256, 128, activation="relu", init="he_normal"),
        fnn.Dense(128, n_classes),
    ], dtype="float32", seed=seed)
    model.compile(optimizer=fnn.optim.Adam(lr=2e-3), loss="cross_entropy")
    print(f"data: {name}, {len(xtr)} training / {len(xte)} test samples")
    model.summary()
    t0 = time.perf_counter()
    model.fit(xtr, ytr, epochs=epochs, batch_size=32, shuffle=True, verbose=1,
              validation_data=(xte, yte),
              callbacks=[fnn.schedules.CosineAnnealingLR(epochs, warmup_epochs=2)])
    seconds = time.perf_counter() - t0
    acc = model.evaluate(xte, yte)["accuracy"]
    print(f"trained {epochs} epochs in {seconds:.2f} s "
          f"({epochs * len(xtr) / seconds:,.0f} samples/s, with validation)")
    print(f"test accuracy: {acc:.4f}")
    return acc


#: File names of OpenMP runtimes: GNU (libgomp, also auditwheel's renamed
#: libgomp-<hash>.so), LLVM (libomp, delocate's copy in .dylibs), Intel
#: (libiomp5) and MSVC (vcomp140, delvewheel's renamed vcomp140-<hash>.dll).
_OPENMP_LIB = re.compile(
    r"(?:lib)?(gomp|omp|iomp5|vcomp\d*)(?:-[0-9a-f]+)?(?:\.\d+)*\.(?:so|dylib|dll)(?:\.\d+)*",
    re.IGNORECASE)


def _loaded_libraries() -> list[str]:
    """Paths of the shared libraries mapped into this process (best effort, [] if unknown)."""
    if sys.platform.startswith("linux"):
        # /proc/self/maps: "address perms offset dev inode pathname"
        try:
            with open("/proc/self/maps") as f:
                fields = [line.split(None, 5) for line in f]
        except OSError:
            return []
        return list(dict.fromkeys(x[5].strip() for x in fields
                                  if len(x) == 6 and x[5].startswith("/")))
    import ctypes

    try:
        if sys.platform == "darwin":
            libc = ctypes.CDLL(None)
            libc._dyld_image_count.restype = ctypes.c_uint32
            libc._dyld_get_image_name.restype = ctypes.c_char_p
            libc._dyld_get_image_name.argtypes = [ctypes.c_uint32]
            return [os.fsdecode(libc._dyld_get_image_name(i))
                    for i in range(libc._dyld_image_count())]
        if sys.platform == "win32":
            from ctypes import wintypes

            psapi, kernel32 = ctypes.WinDLL("Psapi.dll"), ctypes.WinDLL("kernel32")
            kernel32.GetCurrentProcess.restype = wintypes.HANDLE
            proc = kernel32.GetCurrentProcess()
            mods = (wintypes.HMODULE * 1024)()
            needed = wintypes.DWORD()
            if not psapi.EnumProcessModulesEx(proc, mods, ctypes.sizeof(mods),
                                              ctypes.byref(needed), 3):
                return []
            buf = ctypes.create_unicode_buffer(32768)
            out = []
            for h in mods[:needed.value // ctypes.sizeof(wintypes.HMODULE)]:
                if kernel32.GetModuleFileNameW(wintypes.HMODULE(h), buf, len(buf)):
                    out.append(buf.value)
            return out
    except (OSError, AttributeError):
        return []
    return []


def openmp_runtimes() -> list[tuple[str, str]]:
    """The OpenMP runtimes loaded in this process after importing fastnn.

    Returns
    -------
    list of (name, path)
        ``name`` is ``"libgomp"`` (GNU), ``"libomp"`` (LLVM), ``"libiomp5"``
        (Intel) or ``"vcomp"`` (MSVC); ``path`` is the file that was loaded,
        e.g. the copy that ``auditwheel`` vendored in ``fastnn.libs/``.

    """
    from . import _kernels  # noqa: F401 -- loading it maps its OpenMP runtime

    found = []
    for path in _loaded_libraries():
        m = _OPENMP_LIB.fullmatch(os.path.basename(path))
        if m:
            kind = m.group(1).lower()
            name = "vcomp" if kind.startswith("vcomp") else "lib" + kind
            found.append((name, path))
    return found


def info() -> None:
    """Print the version, ISA, threads, OpenMP runtime and NumPy in use."""
    from . import config, show_config

    show_config()
    cfg = config()
    if not cfg["openmp"]:
        print("  openmp lib : none (built without OpenMP: single-threaded)")
    else:
        libs = openmp_runtimes()
        if not libs:
            print("  openmp lib : linked, but not found among the loaded libraries")
        for name, path in libs:
            print(f"  openmp lib : {name} ({path})")
    print(f"  python     : {sys.version.split()[0]} ({sys.executable})")
    print(f"  fastnn at  : {os.path.dirname(os.path.abspath(__file__))}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fastnn``."""
    parser = argparse.ArgumentParser(prog="python -m fastnn", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="train a small network and print its accuracy")
    sub.add_parser("info", help="print the version, ISA, threads, OpenMP runtime and NumPy")
    sub.add_parser("bench", help="training throughput against PyTorch, JAX, scikit-learn "
                                 "(python -m fastnn bench --help)", add_help=False)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main

        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    if args.cmd == "info":
        info()
    elif args.cmd == "demo":
        demo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
