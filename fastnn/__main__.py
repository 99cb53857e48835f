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


def demo_kernels(seed: int = 0) -> float:
    """Train a 2-64-64-2 tanh MLP on two spirals with the raw kernels; return test accuracy."""
    from . import kernels as K

    rng = np.random.default_rng(seed)
    x, y = two_spirals(1000, rng)
    perm = rng.permutation(len(x))
    x, y = x[perm], y[perm]
    xtr, ytr, xte, yte = x[:1600], y[:1600], x[1600:], y[1600:]
    sizes = [2, 64, 64, 2]
    acts = ["tanh", "tanh", "identity"]
    params = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        lim = np.sqrt(6 / (i + o))
        params.append([rng.uniform(-lim, lim, (i, o)).astype(np.float32),
                       np.zeros(o, np.float32)])
    t0 = time.perf_counter()
    batch, lr, epochs = 32, 0.1, 300
    for _ in range(epochs):
        order = rng.permutation(len(xtr))
        for s in range(0, len(xtr), batch):
            idx = order[s:s + batch]
            hs = [xtr[idx]]
            for (w, b), act in zip(params, acts):
                hs.append(K.dense_forward(hs[-1], w, b, act))
            _, g = K.cross_entropy(hs[-1], ytr[idx])
            for li in reversed(range(len(params))):
                w, b = params[li]
                g, dw, db = K.dense_backward(g, hs[li], w, hs[li + 1], None, acts[li],
                                             need_dx=li > 0)
                K.sgd_update(w, dw, lr)
                K.sgd_update(b, db, lr)
    seconds = time.perf_counter() - t0
    h = xte
    for (w, b), act in zip(params, acts):
        h = K.dense_forward(h, w, b, act)
    acc = float(np.mean(h.argmax(1) == yte))
    print(f"two spirals, 2-64-64-2 tanh MLP, {epochs} epochs of SGD in {seconds:.1f} s "
          f"({epochs * len(xtr) / seconds:,.0f} samples/s)")
    print(f"test accuracy: {acc:.3f}")
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
    args = parser.parse_args(argv)
    if args.cmd == "info":
        info()
    elif args.cmd == "demo":
        demo_kernels()
    return 0


if __name__ == "__main__":
    sys.exit(main())
