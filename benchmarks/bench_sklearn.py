"""fastnn.sklearn vs scikit-learn: fit time and test accuracy at equal epochs.

    PYTHONPATH=. python benchmarks/bench_sklearn.py [--quick] [--repeats N] [--threads N]

Both estimators get the same parameters and run exactly ``max_iter`` epochs
(``tol=0``, ``n_iter_no_change=max_iter``), at the machine's default threads
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
    X, y = load_digits(return_X_y=True)
    yield "digits (1797x64, 10 classes)", X, y, (100,), 30 if quick else 100
    n = 10_000 if quick else 50_000
    X, y = make_classification(n_samples=n, n_features=100, n_informative=50, n_redundant=10,
                               n_classes=10, n_clusters_per_class=2, class_sep=1.5,
                               random_state=0)
    yield f"make_classification ({n}x100, 10 classes)", X, y, (256, 128), 5 if quick else 20


def run(ests, Xtr, ytr, Xte, yte, repeats):
    """Best-of-``repeats`` fit time per estimator, runs interleaved (load drifts evenly)."""
    best = {k: np.inf for k in ests}
    for _ in range(repeats):
        for k, est in ests.items():
            t0 = time.perf_counter()
            est.fit(Xtr, ytr)
            best[k] = min(best[k], time.perf_counter() - t0)
    return {k: (best[k], est.score(Xte, yte), est.n_iter_) for k, est in ests.items()}


def main() -> None:
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
    for name, X, y, hidden, epochs in datasets(args.quick):
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
        sc = StandardScaler().fit(Xtr)
        Xtr, Xte = sc.transform(Xtr), sc.transform(Xte)
        params = dict(hidden_layer_sizes=hidden, max_iter=epochs, tol=0.0,
                      n_iter_no_change=epochs, random_state=0)
        res = run({"scikit-learn": SkMLP(**params), "fastnn": FnMLP(**params)},
                  Xtr, ytr, Xte, yte, args.repeats)
        (ts, accs, its), (tf, accf, itf) = res["scikit-learn"], res["fastnn"]
        assert its == itf == epochs
        rows.append((name, hidden, epochs, ts, tf, ts / tf, accs, accf))
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
    hdr = ("| data | hidden | epochs | sklearn fit (s) | fastnn fit (s) | speed-up "
           "| sklearn acc | fastnn acc |")
    print(hdr)
    print("|" + "---|" * 8)
    for name, hidden, ep, ts, tf, r, a1, a2 in rows:
        print(f"| {name} | {hidden} | {ep} | {ts:.2f} | {tf:.2f} | {r:.1f}x "
              f"| {a1:.4f} | {a2:.4f} |")


if __name__ == "__main__":
    main()
