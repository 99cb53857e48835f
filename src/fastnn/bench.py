"""Training-throughput benchmark: fastnn against what a user would pick instead.

``python -m fastnn bench`` trains one Adam step at a time of an MLP (784-256-256-10,
ReLU, softmax cross-entropy, float32, He-normal weights; or 784-800-10; or a small
CNN on 1x28x28 images, ``--net cnn``) with:

    fastnn            the public API (Sequential + optim.Adam + train_step)
    numpy             hand-written NumPy forward/backward/Adam (fastnn.reference math)
    torch_eager       torch.nn.Sequential, zero_grad/forward/backward/Adam.step
    torch_fused_adam  the same with Adam(fused=True)
    jax_jit           one jax.jit-compiled step (forward, grad, Adam)
    sklearn           MLPClassifier(solver="adam").partial_fit on the batch

and, on request (``--contestants fastnn,fastnn_bf16,torch_autocast_bf16``, or
``--precision bf16`` for exactly those three), the bfloat16 matmul precision:

    fastnn_bf16          the same fastnn step under fastnn.matmul_precision("bf16")
    torch_autocast_bf16  torch_eager under torch.autocast("cpu", dtype=torch.bfloat16)

Method: each thread count runs in its own subprocess pinned to that many CPUs
(``sched_setaffinity`` before any library loads, ``OMP_NUM_THREADS`` etc. set),
because some peers size their thread pools once.  Contestants are warmed up,
calibrated to ~``target_s`` per measurement, then measured ``reps`` times in an
order rotated every rep (interleaved, so drifts in machine load hit all alike);
the table reports medians and ratios from that one run.  Optional peers that are
not installed are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

NETS = {"mlp": (784, 256, 256, 10), "wide": (784, 800, 10),
        # conv 1->16 3x3 pad 1 relu, maxpool 2, conv 16->32 3x3 pad 1 relu, maxpool 2,
        # dense 32*7*7 -> 10, on 1x28x28 images
        "cnn": ("cnn", 28, 16, 32, 10)}
CNN = NETS["cnn"]
LR, BETAS, EPS = 1e-3, (0.9, 0.999), 1e-8
ALL = ("fastnn", "numpy", "torch_eager", "torch_fused_adam", "jax_jit", "sklearn")
BF16 = ("fastnn_bf16", "torch_autocast_bf16")  # on request: --precision bf16


class Skip(Exception):
    """A contestant that cannot run here."""


def matmul_flop_per_sample(layers: tuple) -> int:
    """Forward, weight gradients, and input gradients of every layer but the first."""
    if layers == CNN:
        _, s, c1, c2, k = layers
        f1 = s * s * c1 * 9 * 2  # conv1 on s x s
        f2 = (s // 2) ** 2 * c2 * c1 * 9 * 2  # conv2 on s/2 x s/2
        f3 = c2 * (s // 4) ** 2 * k * 2  # dense
        return 2 * (f1 + f2 + f3) + f2 + f3
    w = [i * o for i, o in zip(layers[:-1], layers[1:])]
    return 2 * sum(w) + 2 * sum(w) + 2 * sum(w[1:])


def _data(layers, batch):
    import numpy as np

    rng = np.random.default_rng(0)
    n_batches = max(4, math.ceil(4096 / batch))
    shape = (1, CNN[1], CNN[1]) if layers == CNN else (layers[0],)
    x = rng.standard_normal((n_batches * batch, *shape), dtype=np.float32)
    y = rng.integers(0, layers[-1], n_batches * batch)
    return [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
            for i in range(n_batches)]


def _he(layers):
    import numpy as np

    rng = np.random.default_rng(1)
    if layers == CNN:
        _, s, c1, c2, k = layers
        shapes = [((c1, 1, 3, 3), 9), ((c2, c1, 3, 3), 9 * c1), ((c2 * (s // 4) ** 2, k),
                                                                  c2 * (s // 4) ** 2)]
        return [((rng.standard_normal(shp) * math.sqrt(2 / fan)).astype(np.float32),
                 np.zeros(shp[0] if len(shp) == 4 else shp[1], np.float32))
                for shp, fan in shapes]
    return [((rng.standard_normal((i, o)) * math.sqrt(2 / i)).astype(np.float32),
             np.zeros(o, np.float32)) for i, o in zip(layers[:-1], layers[1:])]


def _loop(step: Callable[[int], None], n_batches: int) -> Callable[[int], None]:
    state = {"i": 0}

    def run(steps: int) -> None:
        for _ in range(steps):
            step(state["i"] % n_batches)
            state["i"] += 1

    return run


def make_fastnn(layers, batch, threads, precision="float32"):
    """Fastnn through its public API."""
    import fastnn as fnn

    fnn.set_num_threads(threads)
    mods = []
    if layers == CNN:
        _, sz, c1, c2, k = layers
        mods = [fnn.Conv2D(1, c1, 3, padding=1, activation="relu"), fnn.MaxPool2D(2),
                fnn.Conv2D(c1, c2, 3, padding=1, activation="relu"), fnn.MaxPool2D(2),
                fnn.Flatten(), fnn.Dense(c2 * (sz // 4) ** 2, k)]
    for k, (w, _) in enumerate([] if layers == CNN else _he(layers)):
        last = k == len(layers) - 2
        mods.append(fnn.Dense(w.shape[0], w.shape[1], activation=None if last else "relu"))
    model = fnn.Sequential(mods, dtype="float32", seed=0,
                           input_shape=(1, CNN[1], CNN[1]) if layers == CNN else None)
    model.set_weights([a for wb in _he(layers) for a in wb])
    model.compile(optimizer=fnn.optim.Adam(lr=LR, betas=BETAS, eps=EPS), loss="cross_entropy")
    data = _data(layers, batch)
    if precision == "bf16":
        def step(i):
            with fnn.matmul_precision("bf16"):
                model.train_step(*data[i])

        return _loop(step, len(data))
    return _loop(lambda i: model.train_step(*data[i]), len(data))


def make_fastnn_bf16(layers, batch, threads):
    """Fastnn with matmul precision bf16 (GEMM operands rounded to bfloat16)."""
    return make_fastnn(layers, batch, threads, precision="bf16")


def make_numpy(layers, batch, threads):
    """Hand-written NumPy: the reference math a user would write."""
    import numpy as np

    if layers == CNN:
        raise Skip("no hand-written NumPy CNN")

    params = [[w.copy(), b.copy()] for w, b in _he(layers)]
    state = [[np.zeros_like(p) for p in wb] + [np.zeros_like(p) for p in wb] for wb in params]
    data = _data(layers, batch)
    t = {"step": 0}

    def step(i):
        x, y = data[i]
        hs = [x]
        for k, (w, b) in enumerate(params):
            z = hs[-1] @ w + b
            hs.append(np.maximum(z, 0) if k < len(params) - 1 else z)
        z = hs[-1]
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        g = p / len(y)
        t["step"] += 1
        s = t["step"]
        for k in reversed(range(len(params))):
            w, b = params[k]
            gw, gb = hs[k].T @ g, g.sum(0)
            if k:
                g = (g @ w.T) * (hs[k] > 0)
            for j, (pp, gg) in enumerate(((w, gw), (b, gb))):
                m, v = state[k][j], state[k][2 + j]
                m *= BETAS[0]
                m += (1 - BETAS[0]) * gg
                v *= BETAS[1]
                v += (1 - BETAS[1]) * gg * gg
                mh = m / (1 - BETAS[0] ** s)
                vh = v / (1 - BETAS[1] ** s)
                pp -= LR * mh / (np.sqrt(vh) + EPS)

    return _loop(step, len(data))


def _make_torch(layers, batch, threads, fused, autocast=False):
    try:
        import torch
        from torch import nn
    except ImportError as exc:
        raise Skip(f"torch not installed ({exc})") from None
    torch.set_num_threads(threads)
    mods = []
    if layers == CNN:
        (w1, b1), (w2, b2), (wd, bd) = _he(layers)
        c1, c2 = nn.Conv2d(1, w1.shape[0], 3, padding=1), nn.Conv2d(w1.shape[0], w2.shape[0], 3,
                                                                     padding=1)
        lin = nn.Linear(wd.shape[0], wd.shape[1])
        with torch.no_grad():
            for mod, w, b in ((c1, w1, b1), (c2, w2, b2), (lin, wd.T.copy(), bd)):
                mod.weight.copy_(torch.from_numpy(w))
                mod.bias.copy_(torch.from_numpy(b))
        mods = [c1, nn.ReLU(), nn.MaxPool2d(2), c2, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), lin]
    for k, (w, b) in enumerate([] if layers == CNN else _he(layers)):
        lin = nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
        if k < len(layers) - 2:
            mods.append(nn.ReLU())
    model = nn.Sequential(*mods)
    kw = {"fused": True} if fused else {}
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=BETAS, eps=EPS, **kw)
    lossf = nn.CrossEntropyLoss()
    data = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in _data(layers, batch)]

    def step(i):
        x, y = data[i]
        opt.zero_grad(set_to_none=True)
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = lossf(model(x), y)
            loss.backward()
        else:
            lossf(model(x), y).backward()
        opt.step()

    return _loop(step, len(data))


def make_torch_eager(layers, batch, threads):
    """PyTorch eager with its default (foreach) Adam."""
    return _make_torch(layers, batch, threads, fused=False)


def make_torch_autocast_bf16(layers, batch, threads):
    """PyTorch eager under torch.autocast("cpu", dtype=torch.bfloat16), default Adam."""
    return _make_torch(layers, batch, threads, fused=False, autocast=True)


def make_torch_fused_adam(layers, batch, threads):
    """PyTorch eager with Adam(fused=True)."""
    return _make_torch(layers, batch, threads, fused=True)


def make_jax_jit(layers, batch, threads):
    """The whole step (forward, grad, Adam) under one jax.jit."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as exc:
        raise Skip(f"jax not installed ({exc})") from None
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in _he(layers)]
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    opt_state = (zeros, zeros, jnp.zeros((), jnp.int32))

    def loss_fn(ps, x, y):
        h = x
        if layers == CNN:
            for w, b in ps[:2]:
                h = jax.lax.conv_general_dilated(h, w, (1, 1), "SAME",
                                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
                h = jax.nn.relu(h + b[None, :, None, None])
                h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2),
                                          "VALID")
            h = h.reshape(h.shape[0], -1) @ ps[2][0] + ps[2][1]
            logp = jax.nn.log_softmax(h)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        for k, (w, b) in enumerate(ps):
            h = h @ w + b
            if k < len(ps) - 1:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def step(ps, st, x, y):
        g = jax.grad(loss_fn)(ps, x, y)
        m, v, t = st
        t = t + 1
        m = jax.tree_util.tree_map(lambda a, b: BETAS[0] * a + (1 - BETAS[0]) * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: BETAS[1] * a + (1 - BETAS[1]) * b * b, v, g)
        c1, c2 = 1 - BETAS[0] ** t, 1 - BETAS[1] ** t
        ps = jax.tree_util.tree_map(
            lambda p, a, b: p - LR * (a / c1) / (jnp.sqrt(b / c2) + EPS), ps, m, v)
        return ps, (m, v, t)

    data = [(jnp.asarray(x), jnp.asarray(y)) for x, y in _data(layers, batch)]
    box = {"p": params, "s": opt_state}

    def run_step(i):
        box["p"], box["s"] = step(box["p"], box["s"], *data[i])
        jax.block_until_ready(box["p"])

    return _loop(run_step, len(data))


def make_sklearn(layers, batch, threads):
    """scikit-learn's MLPClassifier, one partial_fit per batch."""
    if layers == CNN:
        raise Skip("scikit-learn has no convolution")
    try:
        import warnings

        from sklearn.neural_network import MLPClassifier
    except ImportError as exc:
        raise Skip(f"scikit-learn not installed ({exc})") from None
    import numpy as np

    clf = MLPClassifier(hidden_layer_sizes=layers[1:-1], solver="adam", learning_rate_init=LR,
                        batch_size=batch, alpha=0.0, random_state=0)
    data = _data(layers, batch)
    classes = np.arange(layers[-1])
    warnings.filterwarnings("ignore")
    return _loop(lambda i: clf.partial_fit(*data[i], classes=classes), len(data))


MAKERS = {"fastnn": make_fastnn, "numpy": make_numpy, "torch_eager": make_torch_eager,
          "torch_fused_adam": make_torch_fused_adam, "jax_jit": make_jax_jit,
          "sklearn": make_sklearn, "fastnn_bf16": make_fastnn_bf16,
          "torch_autocast_bf16": make_torch_autocast_bf16}


def _thread_env(threads: int) -> dict[str, str]:
    """Environment that limits every library to `threads` threads (set before they load)."""
    env = {var: str(threads) for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                          "MKL_NUM_THREADS")}
    env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=" + ("true" if threads > 1 else "false")
    return env


def _limit_threads(threads: int) -> None:
    """Pin this process to `threads` CPUs (the environment was set by the parent)."""
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[:threads])


def worker(net: str, batches: list[int], threads: int, names: list[str], reps: int,
           target_s: float) -> dict:
    """Measure every (contestant, batch) in this process; return seconds per step lists."""
    _limit_threads(threads)
    layers = NETS[net]
    out: dict = {}
    for batch in batches:
        runs, skipped = {}, {}
        for name in names:
            try:
                run = MAKERS[name](layers, batch, threads)
                run(3)
                t0 = time.perf_counter()
                run(3)
                per = (time.perf_counter() - t0) / 3
                runs[name] = (run, max(2, int(target_s / max(per, 1e-7))))
            except Skip as exc:
                skipped[name] = str(exc)
        times: dict[str, list[float]] = {n: [] for n in runs}
        order = list(runs)
        for r in range(reps):
            rot = order[r % len(order):] + order[:r % len(order)] if order else []
            for name in rot:
                run, steps = runs[name]
                time.sleep(0.15)  # let other libraries' spinning workers idle (OpenBLAS: ~0.1 s)
                t0 = time.perf_counter()
                run(steps)
                times[name].append((time.perf_counter() - t0) / steps)
        out[str(batch)] = {"seconds_per_step": times, "skipped": skipped}
    return out


def run(net: str = "mlp", batches: tuple[int, ...] = (16, 64, 256, 1024),
        threads: tuple[int, ...] = (1, 2), names: tuple[str, ...] = ALL, reps: int = 7,
        target_s: float = 0.25) -> dict:
    """Run one worker subprocess per thread count; return all measurements."""
    result = {"net": net, "layers": NETS[net], "flop_per_sample":
              matmul_flop_per_sample(NETS[net]), "threads": {}}
    env = dict(os.environ)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # they slow a current OpenBLAS
        env.pop(var, None)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "33554432")  # recycle peers' temporaries
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "1073741824")
    for t in threads:
        args = json.dumps({"net": net, "batches": list(batches), "threads": t,
                           "names": list(names), "reps": reps, "target_s": target_s})
        proc = subprocess.run([sys.executable, "-m", "fastnn.bench", "--worker", args],
                              capture_output=True, text=True, env={**env, **_thread_env(t)},
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark worker failed:\n{proc.stderr[-3000:]}")
        result["threads"][str(t)] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _net_name(layers) -> str:
    if tuple(layers) == CNN:
        _, s, c1, c2, k = CNN
        return (f"CNN (1x{s}x{s}: conv3x3 {c1}, maxpool 2, conv3x3 {c2}, maxpool 2, "
                f"dense {k})")
    return "-".join(map(str, layers))


def table(result: dict) -> str:
    """Markdown table: samples/s (median) per contestant, ratios of fastnn to each peer."""
    lines = []
    names = [n for n in ALL + BF16 if any(n in b["seconds_per_step"]
                                          for t in result["threads"].values() for b in t.values())]
    head = "| batch | threads | " + " | ".join(names) + " | fastnn ÷ best peer | % of FMA cap |"
    lines += [f"Network {_net_name(result['layers'])}, Adam, float32; samples/s "
              f"(median of interleaved reps); {result['flop_per_sample'] / 1e6:.2f} MFLOP of "
              "matrix work per sample.", "", head,
              "|" + "---|" * (len(names) + 4)]
    peak = result.get("fma_peak_gflops")
    for t, per_batch in result["threads"].items():
        for b, m in per_batch.items():
            sps = {n: int(b) / statistics.median(v) for n, v in m["seconds_per_step"].items()}
            peers = [v for n, v in sps.items() if n != "fastnn" and n not in BF16]
            ratio = (f"{sps['fastnn'] / max(peers):.2f}x" if peers and "fastnn" in sps else "-")
            cap = "-"
            if peak and "fastnn" in sps:
                cap = f"{100 * sps['fastnn'] * result['flop_per_sample'] / (peak[t] * 1e9):.0f}%"
            cells = [f"{sps[n]:,.0f}" if n in sps else "skip" for n in names]
            lines.append(f"| {b} | {t} | " + " | ".join(cells) + f" | {ratio} | {cap} |")
    bf = [(t, b, {n: int(b) / statistics.median(v) for n, v in m["seconds_per_step"].items()})
          for t, per_batch in result["threads"].items() for b, m in per_batch.items()]
    if any("fastnn_bf16" in sps for _, _, sps in bf):
        lines += ["", "bf16 (float32 peers excluded above): fastnn_bf16 ÷ each", "",
                  "| batch | threads | ÷ torch_autocast_bf16 | ÷ fastnn (float32) |",
                  "|---|---|---|---|"]
        for t, b, sps in bf:
            if "fastnn_bf16" not in sps:
                continue
            r = [f"{sps['fastnn_bf16'] / sps[n]:.2f}x" if n in sps else "-"
                 for n in ("torch_autocast_bf16", "fastnn")]
            lines.append(f"| {b} | {t} | {r[0]} | {r[1]} |")
    return "\n".join(lines)


def fma_peaks(threads: tuple[int, ...] | list[int], reps: int = 3, seconds: float = 0.2
              ) -> dict[str, Any]:
    """The float32 FMA peak at each thread count, with the widest vectors fastnn runs here
    (``_kernels.fma_peak``: independent FMA chains on every thread).

    Parameters
    ----------
    threads : sequence of int
        Thread counts to measure.
    reps : int
        Repetitions per count; the best is kept.
    seconds : float
        Length of one repetition.

    Returns
    -------
    dict
        ``"wall"`` and ``"cpu"``: thread count -> GFLOP/s, the best wall-clock rate and
        the best sum of the threads' rates per CPU-second (the peak while running, even
        on a shared machine); ``"width"``: vector width in bits (512 on AVX-512, 256 on
        AVX2); ``"isa"``: the level that ran.
    """
    from . import _kernels

    out: dict[str, Any] = {"wall": {}, "cpu": {}, "width": 0, "isa": ""}
    for t in threads:
        runs = [_kernels.fma_peak(seconds, t) for _ in range(reps)]
        out["wall"][t] = max(r["wall"] for r in runs)
        out["cpu"][t] = max(r["cpu"] for r in runs)
        out["width"], out["isa"] = runs[0]["width"], runs[0]["isa"]
    return out


def measure_fma_peak(threads: tuple[int, ...], reps: int = 3) -> tuple[dict[str, float], int]:
    """The per-CPU-second FMA peak per thread count (see :func:`fma_peaks`), keyed like
    a result's entries.

    Returns
    -------
    peaks : dict
        Thread count (as a string) -> GFLOP/s per CPU-second.
    width : int
        The vector width measured, in bits.
    """
    p = fma_peaks(threads, reps)
    return {str(t): g for t, g in p["cpu"].items()}, p["width"]


def main(argv: list[str] | None = None) -> int:
    """Command line (``python -m fastnn bench`` forwards here)."""
    p = argparse.ArgumentParser(prog="python -m fastnn bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", choices=sorted(NETS), default="mlp")
    p.add_argument("--batches", default="16,64,256,1024")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--contestants", default=",".join(ALL),
                   help=f"comma-separated, of {', '.join(ALL + BF16)}")
    p.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                   help="bf16: contestants fastnn, fastnn_bf16, torch_autocast_bf16 "
                        "(unless --contestants is given)")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--target-s", type=float, default=0.25)
    p.add_argument("--fma-peak", default=None,
                   help="GFLOP/s of the FMA peak per thread count, e.g. '1:92,2:180' "
                        "(default: measured with the widest FMA vectors this CPU runs)")
    p.add_argument("--json", default=None, help="also write the raw measurements here")
    p.add_argument("--plot", default=None, help="also draw samples/s against batch size "
                                                "(a PNG; needs matplotlib)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        w = json.loads(a.worker)
        print(json.dumps(worker(w["net"], w["batches"], w["threads"], w["names"], w["reps"],
                                w["target_s"])))
        return 0
    contestants = a.contestants
    if a.precision == "bf16" and contestants == ",".join(ALL):
        contestants = "fastnn,fastnn_bf16,torch_autocast_bf16"
    unknown = [n for n in contestants.split(",") if n not in MAKERS]
    if unknown:
        p.error(f"unknown contestant(s) {', '.join(unknown)}; choose from {', '.join(MAKERS)}")
    res = run(a.net, tuple(int(b) for b in a.batches.split(",")),
              tuple(int(t) for t in a.threads.split(",")), tuple(contestants.split(",")),
              a.reps, a.target_s)
    if a.fma_peak:
        res["fma_peak_gflops"] = {k: float(v) for k, v in
                                  (kv.split(":") for kv in a.fma_peak.split(","))}
    else:
        res["fma_peak_gflops"], res["fma_peak_width"] = measure_fma_peak(
            tuple(int(t) for t in a.threads.split(",")))
        print(f"FMA peak ({res['fma_peak_width']}-bit FMAs, float32): " + ", ".join(
            f"{t} thread(s) {g:.1f} GFLOP/s" for t, g in res["fma_peak_gflops"].items()))
    print(table(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    if a.plot:
        plot(res, a.plot)
    return 0


def plot(result: dict, path: str) -> None:
    """samples/s against batch size, one line per contestant, one panel per thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = list(result["threads"])
    fig, axes = plt.subplots(1, len(threads), figsize=(6 * len(threads), 4.5), squeeze=False)
    for ax, t in zip(axes[0], threads):
        per_batch = result["threads"][t]
        batches = sorted(int(b) for b in per_batch)
        for name in ALL:
            pts = [(b, b / statistics.median(per_batch[str(b)]["seconds_per_step"][name]))
                   for b in batches if name in per_batch[str(b)]["seconds_per_step"]]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name,
                        linewidth=2.5 if name == "fastnn" else 1.2)
        peak = result.get("fma_peak_gflops", {}).get(t)
        if peak:
            ax.axhline(peak * 1e9 / result["flop_per_sample"], color="gray", linestyle="--",
                       label="FMA peak cap")
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel("samples / s")
        ax.set_title(f"{_net_name(result['layers'])}, Adam, float32, {t} thread(s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
