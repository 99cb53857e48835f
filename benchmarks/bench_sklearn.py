"""fastnn.sklearn vs scikit-learn: fit time and test accuracy at equal epochs (issue 18).

    PYTHONPATH=src python benchmarks/bench_sklearn.py [--quick] [--repeats N] [--threads N]

Both estimators get the same parameters (hidden (256, 128), adam, batch 64, tol 0) and
run exactly ``max_iter`` epochs, on the same X: float64 X (fastnn's default dtype rule
then trains in float64) and float32 X (both train in float32).  The four fits of a
problem are interleaved, best of ``--repeats``.  Default threads: the machine's
(fastnn: OpenMP threads = CPUs available; scikit-learn: NumPy's BLAS threads).
Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import sklearn
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLP
from sklearn.preprocessing import StandardScaler

import fastnn
from fastnn.sklearn import MLPClassifier as FnMLP


def datasets(quick: bool):
    """Issue 18's two problems: (name, X_train, X_test, y_train, y_test, hidden, epochs)."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # scaled to [0, 1]
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    yield "digits (1797x64, 10 classes, /16)", Xtr, Xte, ytr, yte, (256, 128), \
        10 if quick else 60
    n = 10_000 if quick else 50_000
    X, y = make_classification(n_samples=n, n_features=100, random_state=0)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    sc = StandardScaler().fit(Xtr)
    yield f"make_classification({n}, 100) (2 classes, standardized)", sc.transform(Xtr), \
        sc.transform(Xte), ytr, yte, (256, 128), 5 if quick else 20


def run(ests, repeats):
    """Best-of-``repeats`` fit time per contestant, runs interleaved (load drifts evenly).

    ``ests``: name -> (estimator, X_train, y_train, X_test, y_test).
    """
    best = {k: np.inf for k in ests}
    for _ in range(repeats):
        for k, (est, Xtr, ytr, _, _) in ests.items():
            t0 = time.perf_counter()
            est.fit(Xtr, ytr)
            best[k] = min(best[k], time.perf_counter() - t0)
    return {k: (best[k], est.score(Xte, yte), est.n_iter_, est.coefs_[0].dtype)
            for k, (est, _, _, Xte, yte) in ests.items()}


def main() -> None:
    """Run both problems, print the machine line and the table (Markdown)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for both (fastnn and the BLAS); default: the machine's")
    args = ap.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        fastnn.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    warnings.simplefilter("ignore", ConvergenceWarning)
    load0 = os.getloadavg()[0]
    rows = []
    for name, Xtr, Xte, ytr, yte, hidden, epochs in datasets(args.quick):
        params = dict(hidden_layer_sizes=hidden, solver="adam", batch_size=64, max_iter=epochs,
                      tol=0.0, n_iter_no_change=epochs, random_state=0)
        X32, Xte32 = Xtr.astype(np.float32), Xte.astype(np.float32)
        # fastnn at its default dtype (scikit-learn's rule): float64 X -> float64, float32
        # X -> float32; scikit-learn on the same X
        res = run({"sk64": (SkMLP(**params), Xtr, ytr, Xte, yte),
                   "fn64": (FnMLP(**params), Xtr, ytr, Xte, yte),
                   "sk32": (SkMLP(**params), X32, ytr, Xte32, yte),
                   "fn32": (FnMLP(**params), X32, ytr, Xte32, yte)}, args.repeats)
        assert all(r[2] == epochs for r in res.values())
        assert res["fn64"][3] == np.float64 and res["fn32"][3] == np.float32
        for xdt, sk, fn in (("float64", "sk64", "fn64"), ("float32", "sk32", "fn32")):
            rows.append((name, xdt, epochs, res[sk][0], res[fn][0], res["sk64"][0],
                         res[sk][1], res[fn][1]))
    cfg = fastnn.config()
    from threadpoolctl import threadpool_info

    blas = "; ".join(f"{i['internal_api']} {i['version']} threads={i['num_threads']}"
                     for i in threadpool_info() if i["user_api"] == "blas")
    head = (f"machine: {platform.machine()} {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))}"
            f" usable), load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}; "
            f"fastnn {fastnn.__version__} "
            f"isa={cfg['isa']} threads={cfg['threads']}; scikit-learn BLAS: {blas}; "
            f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
            f"python {platform.python_version()}")
    print(head)
    print("hidden (256, 128), adam, batch 64, tol 0; best of "
          f"{args.repeats} interleaved fits; accuracy on a stratified 20% test split")
    hdr = ("| data | X dtype | epochs | sklearn fit (s) | fastnn fit (s) | speed-up "
           "| vs sklearn on float64 X | sklearn acc | fastnn acc |")
    print(hdr)
    print("|" + "---|" * 9)
    for name, xdt, ep, ts, tf, ts64, a1, a2 in rows:
        print(f"| {name} | {xdt} | {ep} | {ts:.2f} | {tf:.2f} | {ts / tf:.1f}x "
              f"| {ts64 / tf:.1f}x | {a1:.4f} | {a2:.4f} |")


if __name__ == "__main__":
    main()
