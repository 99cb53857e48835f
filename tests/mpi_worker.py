"""Run under ``mpiexec -n 2 python tests/mpi_worker.py MODE OUTDIR`` by test_distributed.py.

MODE
  equiv   data-parallel fit vs a single-process fit on rank 0 for several cases; rank 0
          writes OUTDIR/equiv.json with the differences
  fail    rank 1 raises in a callback in epoch 2; rank 0 checkpoints every epoch
  crash   rank 1 raises inside the step's Allreduce (outside the error protocol)
  failsave  rank 0's checkpoint write fails half-way (disk full) in epoch 3
  api     model.fit(distributed=True), evaluate, save, argument mismatch between ranks
  stop    a callback on one rank stops training (mid-epoch and after an epoch's last step)
  single  one rank without mpiexec: bitwise equal to Sequential.fit
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

import fastnn as fnn
from fastnn.distributed import DataParallel, DistributedError

MODE, OUT = sys.argv[1], sys.argv[2]


def comm_world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def make_model(case, seed):
    layers = [fnn.Dense(12, 16, activation="relu", l2=case.get("l2", 0.0),
                        l1=case.get("l1", 0.0)),
              fnn.Dropout(case.get("dropout", 0.0)),
              fnn.Dense(16, 16, activation="tanh"),
              fnn.Dropout(case.get("dropout", 0.0)),
              fnn.Dense(16, case["out"], activation=case.get("out_act"))]
    model = fnn.Sequential(layers, dtype=case["dtype"], seed=seed)
    opt = {"adam": lambda: fnn.optim.Adam(lr=1e-2),
           "sgd": lambda: fnn.optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
           "rmsprop": lambda: fnn.optim.RMSprop(lr=1e-3)}[case["opt"]]()
    metrics = case.get("metrics")
    if metrics is not None:
        metrics = [fnn.metrics.TopKAccuracy(2) if m == "top2" else m for m in metrics]
    model.compile(optimizer=opt, loss=case["loss"], metrics=metrics)
    return model


def make_data(case):
    rng = np.random.default_rng(123)
    n, k = case["n"], case["out"]
    X = rng.standard_normal((n, 12))
    if case["loss"] == "cross_entropy":
        y = rng.integers(0, k, n)
    elif case["loss"] == "mse":
        y = rng.standard_normal((n, k))
    else:
        y = (rng.random((n, k)) > 0.5).astype(float)
    return X, y


CASES = [
    # name, dtype, loss, optimizer, global batch, n rows, dropout, penalties
    dict(name="ce-f64-adam-even", dtype="float64", loss="cross_entropy", opt="adam", B=10,
         n=103, out=5, dropout=0.3, l2=1e-3),
    dict(name="ce-f32-adam-odd", dtype="float32", loss="cross_entropy", opt="adam", B=7,
         n=64, out=5, dropout=0.25, l1=1e-4),
    dict(name="mse-f64-sgd-odd", dtype="float64", loss="mse", opt="sgd", B=9, n=50, out=3,
         dropout=0.2, l2=1e-2),
    dict(name="bce-f64-rmsprop", dtype="float64", loss="binary_cross_entropy", opt="rmsprop",
         B=6, n=41, out=4, dropout=0.5),
    dict(name="ce-f32-sgd-nopenalty", dtype="float32", loss="cross_entropy", opt="sgd", B=5,
         n=47, out=4, dropout=0.4),
    # global batch 1 < N: rank 1 gets no rows in every step
    dict(name="ce-f64-batch1", dtype="float64", loss="cross_entropy", opt="adam", B=1, n=9,
         out=3, dropout=0.3),
    # fused outputs (the loss from the pre-activation) and compiled metrics (issue 14)
    dict(name="softmax-ce-f64-metrics", dtype="float64", loss="cross_entropy", opt="adam",
         B=10, n=63, out=4, dropout=0.2, out_act="softmax",
         metrics=["accuracy", "top2", "mae"]),
    dict(name="sigmoid-bce-f32-metrics", dtype="float32", loss="binary_cross_entropy",
         opt="sgd", B=7, n=45, out=3, dropout=0.0, out_act="sigmoid",
         metrics=["accuracy", "mse"]),
]


def run_equiv(cases=CASES, fname="equiv.json"):
    comm = comm_world()
    rank = comm.Get_rank()
    results = []
    for case in cases:
        X, y = make_data(case)
        half = case["n"] // 4
        Xv, yv = X[:half] * 0.5, y[:half]
        # rank 1 starts from another seed: the broadcast must make it rank 0's model
        dist = make_model(case, seed=7 if rank == 0 else 1000 + rank)
        with DataParallel(dist) as dp:
            hd = dp.fit(X, y, epochs=3, batch_size=case["B"], validation_data=(Xv, yv),
                        verbose=0)
        flats = comm.gather(dist._flat_params.copy(), root=0)
        if rank != 0:
            continue
        single = make_model(case, seed=7)
        hs = single.fit(X, y, epochs=3, batch_size=case["B"], validation_data=(Xv, yv),
                        verbose=0)
        drop_d = [ly.counter for ly in dist.layers if isinstance(ly, fnn.Dropout)]
        drop_s = [ly.counter for ly in single.layers if isinstance(ly, fnn.Dropout)]
        sd = {k: v for k, v in dist.optimizer.state.items()}
        ss = single.optimizer.state
        results.append({
            "name": case["name"], "dtype": case["dtype"],
            "max_abs_weight_diff": float(np.max(np.abs(
                dist._flat_params.astype(np.float64) - single._flat_params))),
            "max_abs_weight": float(np.max(np.abs(single._flat_params))),
            "ranks_bitwise_equal": all(np.array_equal(f.view(np.uint8), flats[0].view(np.uint8))
                                       for f in flats),
            "max_abs_optstate_diff": max(float(np.max(np.abs(sd[k].astype(np.float64) - ss[k])))
                                         for k in ss),
            "dropout_counters": [drop_d, drop_s],
            "steps": [dist.step, single.step, dist.optimizer.step_count,
                      single.optimizer.step_count],
            "epochs": [dist.epoch, single.epoch],
            "rng_equal": dist.rng.bit_generator.state == single.rng.bit_generator.state,
            "loss": [hd.history["loss"], hs.history["loss"]],
            "val_loss": [hd.history["val_loss"], hs.history["val_loss"]],
            "acc": [hd.history.get("accuracy"), hs.history.get("accuracy")],
            "val_acc": [hd.history.get("val_accuracy"), hs.history.get("val_accuracy")],
            "fused": [dist.trainer.output_mode(), single.trainer.output_mode()],
            "history": [hd.history, hs.history],
        })
    if rank == 0:
        with open(os.path.join(OUT, fname), "w") as f:
            json.dump(results, f, indent=1)


def run_equiv_bf16():
    """run_equiv's float32 cases with matmul precision bf16 on every rank (issue 20)."""
    fnn.set_matmul_precision("bf16")
    run_equiv([c for c in CASES if c["dtype"] == "float32"], "equiv_bf16.json")


class FailAt(fnn.callbacks.Callback):
    """Raise on one rank at (epoch, batch)."""

    def __init__(self, rank, epoch, batch):
        self.rank, self.epoch, self.batch, self.cur = rank, epoch, batch, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.cur = epoch

    def on_batch_end(self, batch, logs=None):
        if comm_world().Get_rank() == self.rank and (self.cur, batch) == (self.epoch, self.batch):
            raise ValueError(f"injected failure on rank {self.rank}")


def run_fail():
    comm = comm_world()
    rank = comm.Get_rank()
    case = CASES[0]
    X, y = make_data(case)
    model = make_model(case, seed=7)
    ckpt = os.path.join(OUT, "ckpt.fnn")
    cbs = [fnn.callbacks.ModelCheckpoint(ckpt, monitor="loss"), FailAt(1, 1, 3)]
    status = {"rank": rank}
    try:
        model.fit(X, y, epochs=4, batch_size=10, callbacks=cbs, verbose=0, distributed=True)
        status["outcome"] = "returned"
    except DistributedError as exc:
        status["outcome"] = "DistributedError"
        status["message"] = str(exc)
        status["failures"] = {str(k): v for k, v in exc.failures.items()}
    except ValueError as exc:
        status["outcome"] = "ValueError"
        status["message"] = str(exc)
        status["notes"] = list(getattr(exc, "__notes__", []))
    status["epoch"] = model.epoch
    if rank == 0:
        # what the single process had after epoch 1 (the last complete checkpoint)
        ref = make_model(case, seed=7)
        ref.fit(X, y, epochs=1, batch_size=10, verbose=0)
        np.save(os.path.join(OUT, "ref_epoch1.npy"), ref._flat_params)
    with open(os.path.join(OUT, f"fail-{rank}.json"), "w") as f:
        json.dump(status, f)
    sys.exit(3 if status["outcome"] != "returned" else 0)


def run_failsave():
    """Rank 0's checkpoint write fails half-way in epoch 3: every rank stops, the epoch-2
    checkpoint stays on disk, loadable, and no temporary file is left behind."""
    import fastnn.io as fio

    comm = comm_world()
    rank = comm.Get_rank()
    case = CASES[0]
    X, y = make_data(case)
    model = make_model(case, seed=7)
    ckpt = os.path.join(OUT, "ckpt.fnn")
    real = fio._npy_bytes
    calls = {"n": 0}
    n_arrays = len(model.get_weights()) + 2  # params + Adam's two state buffers

    def failing(arr):
        calls["n"] += 1
        if calls["n"] == 2 * n_arrays + 3:  # the 3rd save, part-way through
            raise OSError(28, "No space left on device (simulated)")
        return real(arr)

    fio._npy_bytes = failing
    status = {"rank": rank}
    try:
        model.fit(X, y, epochs=5, batch_size=10, verbose=0, distributed=True,
                  callbacks=[fnn.callbacks.ModelCheckpoint(ckpt, monitor="loss")])
        status["outcome"] = "returned"
    except DistributedError as exc:
        status["outcome"] = "DistributedError"
        status["message"] = str(exc)
    except OSError as exc:
        status["outcome"] = "OSError"
        status["message"] = str(exc)
    status["epoch"] = model.epoch
    if rank == 0:
        ref = make_model(case, seed=7)
        ref.fit(X, y, epochs=2, batch_size=10, verbose=0)
        np.save(os.path.join(OUT, "ref_epoch2.npy"), ref._flat_params)
    with open(os.path.join(OUT, f"failsave-{rank}.json"), "w") as f:
        json.dump(status, f)


class StopAt(fnn.callbacks.Callback):
    """Ask to stop after (epoch, batch) -- on one rank only when ``rank`` is given."""

    def __init__(self, epoch, batch, rank=None):
        self.epoch, self.batch, self.rank, self.cur = epoch, batch, rank, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.cur = epoch

    def on_batch_end(self, batch, logs=None):
        if self.rank is not None and comm_world().Get_rank() != self.rank:
            return
        if (self.cur, batch) == (self.epoch, self.batch):
            self.model.stop_training = True


def run_stop():
    """A callback on rank 1 only stops training mid-epoch: every rank stops after the same
    step, with the weights and dropout counters of a single process stopped there."""
    comm = comm_world()
    rank = comm.Get_rank()
    case = CASES[0]
    X, y = make_data(case)
    out = {}
    for label, (ep, bt) in {"mid": (1, 3), "last": (0, 10)}.items():
        dist = make_model(case, seed=7)
        hd = dist.fit(X, y, epochs=3, batch_size=10, verbose=0, distributed=True,
                      callbacks=[StopAt(ep, bt, rank=1)])
        flats = comm.gather(dist._flat_params.copy(), root=0)
        if rank == 0:
            single = make_model(case, seed=7)
            hs = single.fit(X, y, epochs=3, batch_size=10, verbose=0, callbacks=[StopAt(ep, bt)])
            out[label] = {
                "diff": float(np.max(np.abs(dist._flat_params - single._flat_params))),
                "ranks_equal": all(np.array_equal(f, flats[0]) for f in flats),
                "steps": [dist.step, single.step], "epochs": [dist.epoch, single.epoch],
                "counters": [[ly.counter for ly in m.layers if isinstance(ly, fnn.Dropout)]
                             for m in (dist, single)],
                "loss": [hd.history["loss"], hs.history["loss"]]}
    if rank == 0:
        with open(os.path.join(OUT, "stop.json"), "w") as f:
            json.dump(out, f)


def run_single():
    """A one-rank DataParallel (no mpiexec) is bitwise the single-process fit."""
    case = CASES[0]
    X, y = make_data(case)
    a, b = make_model(case, seed=5), make_model(case, seed=5)
    with DataParallel(a) as dp:
        ha = dp.fit(X, y, epochs=2, batch_size=10, verbose=0)
    hb = b.fit(X, y, epochs=2, batch_size=10, verbose=0)
    with open(os.path.join(OUT, "single.json"), "w") as f:
        json.dump({"size": dp.size, "equal": bool(np.array_equal(a._flat_params, b._flat_params)),
                   "loss": [ha.history["loss"], hb.history["loss"]]}, f)


def run_crash():
    comm = comm_world()
    rank = comm.Get_rank()
    case = CASES[0]
    X, y = make_data(case)
    model = make_model(case, seed=7)
    ckpt = os.path.join(OUT, "ckpt.fnn")
    dp = DataParallel(model)
    real = dp.comm.Allreduce
    calls = {"n": 0}

    def flaky(*args, **kwargs):  # rank 1's MPI "breaks" in the 15th step (epoch 2)
        calls["n"] += 1
        if rank == 1 and calls["n"] == 15:
            raise RuntimeError("simulated MPI failure inside Allreduce")
        return real(*args, **kwargs)

    class Comm:  # a proxy: mpi4py communicators do not accept new attributes
        def __getattr__(self, name):
            return getattr(real.__self__, name)

    proxy = Comm()
    proxy.Allreduce = flaky
    dp.comm = proxy
    dp.fit(X, y, epochs=4, batch_size=10, verbose=0,
           callbacks=[fnn.callbacks.ModelCheckpoint(ckpt, monitor="loss")])
    with open(os.path.join(OUT, f"crash-{rank}.json"), "w") as f:
        json.dump({"rank": rank, "outcome": "returned"}, f)


def run_api():
    comm = comm_world()
    rank = comm.Get_rank()
    case = dict(CASES[0], dropout=0.0)
    X, y = make_data(case)
    out = {}
    model = make_model(case, seed=3)
    hist = model.fit(X, y, epochs=2, batch_size=16, verbose=1, distributed=True,
                     validation_split=0.2)
    out["history_keys"] = sorted(hist.history)
    out["loss"] = hist.history["loss"]
    with DataParallel(model) as dp:
        out["evaluate"] = dp.evaluate(X, y)
        out["evaluate_local"] = model.evaluate(X, y)
        dp.save(os.path.join(OUT, "api.fnn"))
        # a mismatch between ranks is an error on every rank, not a hang
        try:
            dp.fit(X, y, epochs=1, batch_size=16 + rank, verbose=0)
            out["mismatch"] = "returned"
        except DistributedError as exc:
            out["mismatch"] = str(exc)
        # bad input on one rank only: that rank's ValueError, DistributedError elsewhere
        try:
            dp.fit(X if rank == 0 else X[:, :5], y, epochs=1, batch_size=16, verbose=0)
            out["bad_input"] = "returned"
        except ValueError as exc:
            out["bad_input"] = f"ValueError: {exc}"
        except DistributedError as exc:
            out["bad_input"] = f"DistributedError: {exc}"
    out["loaded_epoch"] = fnn.load(os.path.join(OUT, "api.fnn")).epoch
    with open(os.path.join(OUT, f"api-{rank}.json"), "w") as f:
        json.dump(out, f)


{"equiv": run_equiv, "equiv_bf16": run_equiv_bf16,
 "fail": run_fail, "failsave": run_failsave, "crash": run_crash,
 "api": run_api, "single": run_single, "stop": run_stop}[MODE]()
