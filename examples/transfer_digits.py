"""Transfer learning on the 8x8 digits: pretrain on 0-4, fine-tune a new head on 5-9.

1. Train an MLP on the digits 0-4 (all their training images).
2. Keep its body, freeze it, put a new 5-way head on it and fine-tune only the
   head on 10% of the training images of the digits 5-9, with a lower learning rate.
3. Train the same architecture from scratch on the same 10%.
4. Compare the test accuracies on the digits 5-9.

Run: ``python examples/transfer_digits.py`` (needs scikit-learn for the data).
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

import fastnn as fnn

SEED = 0


def body_and_head(n_out: int, seed: int) -> fnn.Sequential:
    """The shared architecture: 64-128-64 ReLU body and a linear head."""
    return fnn.Sequential([
        fnn.Dense(64, 128, "relu", init="he_normal", name="body1"),
        fnn.Dropout(0.2, name="drop"),
        fnn.Dense(128, 64, "relu", init="he_normal", name="body2"),
        fnn.Dense(64, n_out, name="head"),
    ], seed=seed)


def main() -> dict[str, float]:
    """Run the experiment; print and return the accuracies."""
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target
    rng = np.random.default_rng(SEED)
    perm = rng.permutation(len(x))
    x, y = x[perm], y[perm]
    split = int(0.7 * len(x))
    xtr, ytr, xte, yte = x[:split], y[:split], x[split:], y[split:]

    low_tr, high_tr = ytr < 5, ytr >= 5
    # 1. pretrain on 0-4
    pre = body_and_head(5, SEED)
    pre.compile(fnn.optim.Adam(lr=2e-3), "cross_entropy")
    pre.fit(xtr[low_tr], ytr[low_tr], epochs=30, batch_size=32, verbose=0)
    pre_acc = pre.evaluate(xte[yte < 5], yte[yte < 5])["accuracy"]

    # the few labelled examples of 5-9
    idx = np.flatnonzero(high_tr)
    few = rng.choice(idx, size=len(idx) // 10, replace=False)
    xf, yf = xtr[few], ytr[few] - 5
    xt, yt = xte[yte >= 5], yte[yte >= 5] - 5

    # 2. transfer: new head, frozen body, lower learning rate
    pre.pop()
    pre.add(fnn.Dense(64, 5, name="new_head"))
    pre.freeze(upto="new_head")
    pre.compile(fnn.optim.Adam(lr=3e-3), "cross_entropy")
    pre.fit(xf, yf, epochs=200, batch_size=16, verbose=0)
    transfer_acc = pre.evaluate(xt, yt)["accuracy"]
    # then unfreeze and fine-tune everything briefly with a small learning rate
    pre.unfreeze()
    pre.compile(fnn.optim.Adam(lr=3e-4), "cross_entropy")
    pre.fit(xf, yf, epochs=50, batch_size=16, verbose=0)
    finetune_acc = pre.evaluate(xt, yt)["accuracy"]

    # 3. from scratch on the same 10%
    scratch = body_and_head(5, SEED + 1)
    scratch.compile(fnn.optim.Adam(lr=2e-3), "cross_entropy")
    scratch.fit(xf, yf, epochs=200, batch_size=16, verbose=0)
    scratch_acc = scratch.evaluate(xt, yt)["accuracy"]

    res = {"pretrain_0_4": pre_acc, "transfer_frozen_body": transfer_acc,
           "transfer_then_finetune_all": finetune_acc, "scratch_same_10pct": scratch_acc}
    print(f"training images of 5-9 used: {len(few)} of {len(idx)}; test images: {len(xt)}")
    print(f"pretrained on 0-4, test accuracy on 0-4:          {pre_acc:.3f}")
    print(f"5-9, frozen pretrained body + new head:           {transfer_acc:.3f}")
    print(f"5-9, then all layers fine-tuned at lr 3e-4:       {finetune_acc:.3f}")
    print(f"5-9, same network from scratch on the same 10%:   {scratch_acc:.3f}")
    return res


if __name__ == "__main__":
    main()
