"""Mutators and the check for fuzzing the model-file loader (``fastnn.load``): no input
may crash it or raise anything but ValueError.

Three mutators over a valid model file (Dense, Conv2D, pools, Dropout, Adam state):
raw bytes (flips, truncation, splices), the JSON header (a value anywhere in the tree
replaced by a hostile one, keys deleted), and the .npy headers (shape, dtype, order) --
the last two re-zipped with correct CRCs, so they reach the parser behind the checksum.

Used by tests/test_fuzz_loader.py (hypothesis, bounded) and by tools/fuzz_loader.py
(atheris, unbounded).  Lives in tests/ so that it travels with the tests.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import tempfile
import zipfile

import numpy as np

HOSTILE = [None, True, False, 0, 1, -1, 2, 3, 2**31, 2**31 - 1, 2**32, 2**40, 2**62, 2**63,
           2**64, -2**63, 10**30, 0.5, -0.0, 1e308, math.inf, -math.inf, math.nan, "", "x",
           "relu", "softmax", "Dense", "Conv2D", "float16", "object", [], [0], [1, 1],
           [2**40, 2**40], [-1, 3], [None], {}, {"a": 1}, {"type": "Dense", "config": {}},
           [[[[[[[[[[[]]]]]]]]]]]]
DTYPES = ["<f4", "<f8", ">f8", "<f2", "|u1", "<i8", "|b1", "<c8", "|O", "|V8", "<U3", "<M8[s]",
          "<f16", "x", ""]


def seed_file() -> bytes:
    """A valid model file with every layer type and optimizer state."""
    import fastnn as fnn

    model = fnn.Sequential([fnn.Conv2D(1, 2, 3, padding=1, activation="relu"),
                            fnn.MaxPool2D(2), fnn.AvgPool2D(1), fnn.Flatten(),
                            fnn.Dropout(0.25), fnn.Dense(8, 3, "gelu"),
                            fnn.Activation("tanh"), fnn.Dense(3, 2)], seed=1)
    model.compile(fnn.optim.Adam(lr=0.01, amsgrad=True), "cross_entropy")
    x = np.random.default_rng(0).standard_normal((4, 1, 4, 4)).astype(np.float32)
    model.train_step(x, [0, 1, 1, 0])
    d = tempfile.mkdtemp()
    path = os.path.join(d, "seed.fnn")
    model.save(path)
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    os.rmdir(d)
    return data


def _entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, b in entries.items():
            z.writestr(n, b)
    return buf.getvalue()


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def mutate_bytes(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(5)
        if not b:
            break
        i = rnd.randrange(len(b))
        if op == 0:
            b[i] = rnd.randrange(256)
        elif op == 1:
            del b[rnd.randrange(len(b) + 1):]
        elif op == 2:
            j = min(len(b), i + rnd.randint(1, 64))
            del b[i:j]
        elif op == 3:
            j = rnd.randrange(len(b))
            b[i:i] = b[j:j + rnd.randint(1, 256)]
        else:
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16)))
    return bytes(b)


def mutate_json(data: bytes, rnd: random.Random) -> bytes:
    ent = _entries(data)
    meta = json.loads(ent["fastnn.json"])
    for _ in range(rnd.randint(1, 3)):
        paths = [p for p in _paths(meta) if p]
        path = rnd.choice(paths)
        parent = meta
        for k in path[:-1]:
            parent = parent[k]
        if rnd.random() < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rnd.choice(HOSTILE))
    ent["fastnn.json"] = json.dumps(meta).encode()
    return _zip(ent)


def mutate_npy(data: bytes, rnd: random.Random) -> bytes:
    ent = _entries(data)
    name = rnd.choice([n for n in ent if n.endswith(".npy")])
    arr = np.load(io.BytesIO(ent[name]))
    shape = rnd.choice([arr.shape, (), (0,), (2**40,), (2**62, 2**62), (-1,), arr.shape[::-1],
                        (*arr.shape, 1), (arr.size + 1,)])
    header = {"descr": rnd.choice(DTYPES + [arr.dtype.str] * 4),
              "fortran_order": rnd.random() < 0.3, "shape": shape}
    text = repr(header).encode()
    if rnd.random() < 0.2:
        text = text[:rnd.randrange(len(text) + 1)]
    hdr = text + b" " * (-(len(text) + 11) % 64) + b"\n"
    body = arr.tobytes()
    if rnd.random() < 0.3:
        body = body[:rnd.randrange(len(body) + 1)]
    ent[name] = b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr + body
    return _zip(ent)


MUTATORS = [mutate_bytes, mutate_json, mutate_npy]


def check(data: bytes, path: str) -> str:
    """Load ``data`` from ``path``; 'ok' or 'error' (ValueError); anything else raises."""
    import fastnn as fnn

    with open(path, "wb") as f:
        f.write(data)
    try:
        model = fnn.load(path)
    except ValueError:
        return "error"
    model.get_config()
    model.count_params()
    return "ok"


def run_random(n: int, seed: int = 0) -> dict[str, int]:
    good = seed_file()
    rnd = random.Random(seed)
    counts = {"ok": 0, "error": 0}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "fuzz.fnn")
        for _ in range(n):
            counts[check(rnd.choice(MUTATORS)(good, rnd), path)] += 1
    return counts
