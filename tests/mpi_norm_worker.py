"""Run under ``mpiexec -n 2 python tests/mpi_norm_worker.py OUTDIR`` by test_norm.py.

Data-parallel training of a model with BatchNorm2D/BatchNorm1D/LayerNorm: each rank
normalizes its own shard (torch DDP without SyncBatchNorm) and the running statistics
are rank 0's (broadcast at every epoch's end).  Rank 0 also replays the same steps in
one process -- each shard's gradient on a copy of the weights, scaled by its share of
the batch and summed, the running statistics updated by shard 0 only -- and writes
both to OUTDIR/norm-<rank>.json.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

import fastnn as fnn
from fastnn.distributed import DataParallel, shard_bounds

OUT = sys.argv[1]
BATCH, EPOCHS = 16, 2


def make_model(seed):
    return fnn.Sequential([
        fnn.Conv2D(2, 3, 3, padding=1), fnn.BatchNorm2D(3), fnn.Activation("relu"),
        fnn.Flatten(), fnn.Dense(3 * 5 * 5, 6), fnn.BatchNorm1D(6), fnn.LayerNorm(6),
        fnn.Dense(6, 3)], dtype="float64", seed=seed, input_shape=(2, 5, 5))


def compiled(model):
    return model.compile(fnn.optim.SGD(lr=0.05, momentum=0.9), "cross_entropy")


def replay(x, y):
    """The data-parallel run in one process (rank 0's initial model, seed 0)."""
    ref, shadow = compiled(make_model(0)), compiled(make_model(0))
    yy = ref.check_target(y, x.shape[0])
    for _ in range(EPOCHS):
        for s in range(0, x.shape[0], BATCH):
            m = min(BATCH, x.shape[0] - s)
            total = np.zeros_like(ref.gradients())
            for r, model in ((0, ref), (1, shadow)):
                lo, hi = shard_bounds(m, r, 2)
                shadow.parameters()[...] = ref.parameters()
                model.trainer.compute_gradients(x[s + lo:s + hi], yy[s + lo:s + hi],
                                                scale=(hi - lo) / m)
                total += model.gradients()
            ref.gradients()[...] = total
            ref.trainer.apply()
    return ref


def main():
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2, 5, 5)) * 2 + 1
    y = rng.integers(0, 3, 40)
    model = compiled(make_model(rank))  # rank 1's own seed: rank 0's state wins
    with DataParallel(model) as dp:
        hist = dp.fit(x, y, epochs=EPOCHS, batch_size=BATCH, shuffle=False, verbose=0,
                      validation_data=(x[:10], y[:10]))
        ev = dp.evaluate(x, y)
    out = {"weights": [w.tolist() for w in model.get_weights()],
           "buffers": {la.name: {k: np.asarray(v).tolist() for k, v in la.buffers().items()}
                       for la in model.layers if la.buffers()},
           "val_loss": hist.history["val_loss"], "evaluate": ev}
    if rank == 0:
        ref = replay(x, y)
        out["ref_weights"] = [w.tolist() for w in ref.get_weights()]
        out["ref_buffers"] = {la.name: {k: np.asarray(v).tolist()
                                        for k, v in la.buffers().items()}
                              for la in ref.layers if la.buffers()}
        out["ref_evaluate"] = ref.evaluate(x, y)
    with open(os.path.join(OUT, f"norm-{rank}.json"), "w") as f:
        json.dump(out, f)


main()
