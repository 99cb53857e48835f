"""1 process x 2 threads against 2 processes x 1 thread (MPI) on 784-800-10.

    python benchmarks/bench_distributed.py            # runs both configurations, prints tables
    python benchmarks/bench_distributed.py --json out.json

The network is Dense(784, 800, relu) -> Dense(800, 10), Adam, float32, cross-entropy,
synthetic MNIST-shaped data.  For each global batch (256 and 1024) it reports samples/s
of ``fit`` and, for the MPI run, the time per step spent in the gradient Allreduce
(which includes waiting for the slower rank) and in compute.  It also measures

* the step time of one process at several batch sizes with 1 and 2 threads (fastest of
  15), fitted as ``t(B) = t_fixed + B * t_sample``, and the optimizer step alone (the
  inputs of the cost model in docs/distributed.md);
* a bare ``Allreduce`` of 2..P float32 between the two ranks, fitted as
  ``t(n) = a + n * 4 / bw`` (the alpha-beta model, on shared memory).

Needs the ``mpi`` extra.  Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_IN, N_HID, N_OUT = 784, 800, 10
P = N_IN * N_HID + N_HID + N_HID * N_OUT + N_OUT
BATCHES = (256, 1024)
N_ROWS = 16384


def build():
    import fastnn as fnn

    model = fnn.Sequential([fnn.Dense(N_IN, N_HID, activation="relu", init="he_normal"),
                            fnn.Dense(N_HID, N_OUT)], dtype="float32", seed=0)
    model.compile(optimizer=fnn.optim.Adam(lr=1e-3), loss="cross_entropy")
    assert model.count_params() == P
    return model


def data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((N_ROWS, N_IN), dtype=np.float32),
            rng.integers(0, N_OUT, N_ROWS))


def step_times(model, X, y, batches, reps):
    """Fastest of ``reps`` training steps of one process, per batch size (the minimum is
    the estimate least disturbed by other processes on a shared machine)."""
    trainer = model.trainer
    trainer.attach()
    out = {}
    for b in batches:
        x, t = model.check_input(X[:b]), model.check_target(y[:b], b)
        for _ in range(3):
            trainer.compute_gradients(x, t)
            model.optimizer.step()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            trainer.compute_gradients(x, t)
            model.optimizer.step()
            ts.append(time.perf_counter() - t0)
        out[b] = min(ts)
    return out


def optimizer_step_time(model, reps):
    """Fastest optimizer step (the per-step cost every rank repeats, whatever the batch)."""
    model.trainer.attach()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        model.optimizer.step()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def linfit(xs, ys):
    a, b = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(b), float(a)  # intercept, slope


def worker_single(reps):
    import fastnn as fnn

    X, y = data()
    res = {"threads": fnn.get_num_threads(), "fit": {}}
    for b in BATCHES:
        rates = []
        for _ in range(reps):
            model = build()
            model.fit(X[:2048], y[:2048], epochs=1, batch_size=b, verbose=0)  # warm-up
            t0 = time.perf_counter()
            model.fit(X, y, epochs=1, batch_size=b, verbose=0)
            rates.append(N_ROWS / (time.perf_counter() - t0))
        res["fit"][b] = statistics.median(rates)
    sizes = (64, 128, 256, 512, 1024)
    for nt in (1, 2):
        fnn.set_num_threads(nt)
        model = build()
        st = step_times(model, X, y, sizes, reps=15)
        t_fixed, t_sample = linfit(sizes, [st[b] for b in sizes])
        res[f"step_{nt}t"] = {"step_s": st, "t_fixed_s": t_fixed, "t_sample_s": t_sample,
                              "optimizer_s": optimizer_step_time(model, 30)}
    return res


def worker_mpi(reps):
    from mpi4py import MPI

    from fastnn.distributed import DataParallel

    comm = MPI.COMM_WORLD
    X, y = data()
    res = {"size": comm.Get_size(), "fit": {}}
    import fastnn as fnn

    res["threads"] = fnn.get_num_threads()
    for b in BATCHES:
        runs = []
        for _ in range(reps):
            model = build()
            with DataParallel(model) as dp:
                dp.fit(X[:2048], y[:2048], epochs=1, batch_size=b, verbose=0)  # warm-up
                comm.Barrier()
                t0 = time.perf_counter()
                dp.fit(X, y, epochs=1, batch_size=b, verbose=0)
                dt = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
                tm = dp.timings
                steps = tm["steps"]
                runs.append({"samples_per_s": N_ROWS / dt,
                             "allreduce_ms_per_step": 1e3 * comm.allreduce(
                                 tm["allreduce_s"], op=MPI.MAX) / steps,
                             "compute_ms_per_step": 1e3 * comm.allreduce(
                                 tm["compute_s"], op=MPI.MAX) / steps,
                             "optimizer_ms_per_step": 1e3 * tm["optimizer_s"] / steps})
        res["fit"][b] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    # bare Allreduce: alpha-beta fit on this machine (shared memory)
    sizes = [2 ** k for k in range(1, 20, 2)] + [P]
    bare = {}
    for n in sizes:
        buf = np.ones(n, np.float32)
        for _ in range(5):
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        reps_n = 200 if n < 65536 else 40
        ts = []
        for _ in range(reps_n):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            ts.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
        bare[n] = min(ts)
    a, slope = linfit([4 * n for n in sizes], [bare[n] for n in sizes])
    res["bare_allreduce_s"] = bare
    res["alpha_s"], res["bytes_per_s"] = a, 1.0 / slope
    return res if comm.Get_rank() == 0 else None


# ---- cost model (docs/distributed.md) ---------------------------------------------------
LINKS = {  # name: (line rate in Gb/s, latency alpha per message in s)
    "10 Gb/s Ethernet (TCP)": (10, 25e-6),
    "25 Gb/s Ethernet (TCP)": (25, 15e-6),
    "100 Gb/s InfiniBand / RoCE": (100, 2e-6),
}
LINK_EFFICIENCY = 0.9  # achievable fraction of the line rate
NODES = (2, 4, 8, 16, 32, 64)


def ring_allreduce_s(n_nodes, alpha, bytes_per_s, nbytes=4 * P):
    """Ring Allreduce: 2(N-1) messages, each node sends and receives 2(N-1)/N x nbytes."""
    return 2 * (n_nodes - 1) * alpha + 2 * (n_nodes - 1) / n_nodes * nbytes / bytes_per_s


def min_global_batch(n_nodes, t_sample, t_fixed, t_comm, target=0.9):
    """Smallest global batch B with efficiency T1(B) / (N * TN(B)) >= target, where
    T1(B) = t_fixed + B t_sample and TN(B) = t_fixed + (B/N) t_sample + t_comm."""
    need = target * n_nodes * (t_fixed + t_comm) - t_fixed
    return max(need / ((1 - target) * t_sample), 1.0)


def scaling_table(t_sample, t_fixed):
    """Markdown table: the global batch for >= 90 % efficiency per link and node count."""
    head = "| nodes | " + " | ".join(LINKS) + " |"
    rows = [head, "|" + "---|" * (len(LINKS) + 1)]
    for n in NODES:
        cells = []
        for rate, alpha in LINKS.values():
            tc = ring_allreduce_s(n, alpha, LINK_EFFICIENCY * rate * 1e9 / 8)
            b = min_global_batch(n, t_sample, t_fixed, tc)
            cells.append(f"{1e3 * tc:.2f} ms: B >= {b:,.0f} ({b / n:,.0f}/node)")
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def mpiexec() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else "mpiexec"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=["single", "mpi"])
    ap.add_argument("--out")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--table", nargs=2, type=float, metavar=("T_SAMPLE_US", "T_FIXED_MS"),
                    help="only print the cost model's table for these per-node compute times")
    args = ap.parse_args()
    if args.table:
        print(scaling_table(args.table[0] * 1e-6, args.table[1] * 1e-3))
        return
    if args.worker:
        res = worker_single(args.reps) if args.worker == "single" else worker_mpi(args.reps)
        if res is not None:
            Path(args.out).write_text(json.dumps(res, indent=1))
        return
    here = os.path.abspath(__file__)
    env = dict(os.environ)
    root = str(Path(here).parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        single, passive, multi = (os.path.join(d, f) for f in ("s.json", "p.json", "m.json"))
        subprocess.run([sys.executable, here, "--worker", "single", "--out", single,
                        "--reps", str(args.reps)], check=True, env=dict(env, OMP_NUM_THREADS="2"))
        # the same with OpenMP's idle threads sleeping instead of spinning (matters when the
        # cores are shared with other processes)
        subprocess.run([sys.executable, here, "--worker", "single", "--out", passive,
                        "--reps", str(args.reps)], check=True,
                       env=dict(env, OMP_NUM_THREADS="2", OMP_WAIT_POLICY="passive"))
        subprocess.run([mpiexec(), "-n", "2", sys.executable, here, "--worker", "mpi", "--out",
                        multi, "--reps", str(args.reps)], check=True,
                       env=dict(env, OMP_NUM_THREADS="1"))
        s = json.loads(Path(single).read_text())
        sp = json.loads(Path(passive).read_text())
        m = json.loads(Path(multi).read_text())
    print(f"784-800-10, ReLU, Adam, float32; P = {P:,} parameters ({4 * P / 1e6:.2f} MB of "
          f"gradients); {N_ROWS} samples per epoch; median of {args.reps} runs; load average "
          f"{load0:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} CPUs)")
    print(f"{'global batch':>12} | {'1 proc x 2 thr':>15} | {'same, passive':>15} | "
          f"{'2 proc x 1 thr':>15} | {'Allreduce/step':>14} | {'compute/step':>12}")
    for b in BATCHES:
        f1, f1p, f2 = s["fit"][str(b)], sp["fit"][str(b)], m["fit"][str(b)]
        print(f"{b:>12} | {f1:>11,.0f} s/s | {f1p:>11,.0f} s/s | "
              f"{f2['samples_per_s']:>11,.0f} s/s | {f2['allreduce_ms_per_step']:>11.2f} ms | "
              f"{f2['compute_ms_per_step']:>9.2f} ms")
    s["passive"] = sp
    for nt, st in ((1, s["step_1t"]), (2, s["step_2t"]), ("2 passive", sp["step_2t"])):
        print(f"one process, {nt} thread(s): optimizer step {1e3 * st['optimizer_s']:.2f} ms; "
              f"step = {1e3 * st['t_fixed_s']:.2f} ms + "
              f"B x {1e6 * st['t_sample_s']:.1f} us  (fastest of 15: " + ", ".join(
                  f"B={b}: {1e3 * v:.1f} ms" for b, v in st["step_s"].items()) + ")")
    print(f"bare Allreduce between 2 ranks (shared memory, fastest of 40-200): "
          f"alpha = {1e6 * m['alpha_s']:.1f} us, bandwidth = {m['bytes_per_s'] / 1e9:.2f} GB/s; "
          "of P floats: "
          f"{1e3 * m['bare_allreduce_s'][str(P)]:.2f} ms")
    # the least disturbed estimates: the fastest per-sample step time over the batch sizes
    # (faster compute needs a larger batch to hide communication: conservative)
    t_sample = min(v / int(b) for b, v in s["step_1t"]["step_s"].items()) / 2
    t_fixed = s["step_1t"]["optimizer_s"]
    print(f"\ncost model with a node = this machine's 2 cores (t_sample = fastest 1-thread "
          f"per-sample step time / 2 = {1e6 * t_sample:.1f} us, t_fixed = optimizer step = "
          f"{1e3 * t_fixed:.2f} ms):")
    print(scaling_table(t_sample, t_fixed))
    if args.json:
        Path(args.json).write_text(json.dumps({"single": s, "mpi": m}, indent=1))


if __name__ == "__main__":
    main()
