"""Transfer learning on real MNIST: pretrain on the digits 0-4, learn 5-9 from 100 images.

1. Pretrain the ResNet of ``resnet_mnist.py`` on every training image of 0-4.
2. Take 100 training images of 5-9 (seeded, about 20 per digit) and compare, on every
   test image of 5-9:
   a. the pretrained body frozen, a new 5-way head trained on the 100 images (the body
      runs in training mode, so its batch norms use the batch's statistics and update
      their running ones, as a frozen torch module in ``train()`` does);
   b. (a), then every layer fine-tuned at a lower learning rate;
   c. frozen features + a linear head: the pretrained body's inference-mode features
      (global-average-pooled, 64 per image) computed once, a Dense(64, 5) on them;
   d. the same network trained from scratch on the same 100 images.

    python examples/transfer_mnist.py            # the README's figures
    python examples/transfer_mnist.py --quick    # a small subset, seconds (offline)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import fastnn as fnn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resnet_mnist import build_resnet, load  # noqa: E402

SEED = 0
N_FEW = 100


def fit_lrs(model: fnn.Sequential, x, y, lrs: list[float], batch: int) -> None:
    """One epoch per learning rate (Adam), rows shuffled by the model's seeded Generator."""
    sched = fnn.callbacks.LearningRateScheduler(lambda e, lr: lrs[e])
    model.fit(x, y, epochs=len(lrs), batch_size=batch, callbacks=[sched], verbose=0)


def accuracy(model: fnn.Sequential, x, y) -> float:
    """Share of rows whose largest output is the label."""
    return float((model.predict(x, batch_size=500).argmax(1) == y).mean())


def main(argv: list[str] | None = None) -> dict:
    """Run the four variants; print and return their test accuracies on 5-9."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--data-home", default=None)
    args = p.parse_args(argv)
    (x, y), (xt, yt), source = load(args.quick, args.data_home)
    scale = 0.1 if args.quick else 1.0  # epochs of the few-shot runs

    def epochs(n: int) -> int:
        return max(1, int(n * scale))

    t0 = time.perf_counter()
    # 1. pretrain on 0-4
    low = y < 5
    pre = build_resnet(seed=SEED)
    pre.pop()
    pre.add(fnn.Dense(64, 5, name="head"))
    pre.compile(fnn.optim.Adam(lr=2e-3), "cross_entropy")
    fit_lrs(pre, x[low], y[low], [2e-3] if args.quick else [2e-3, 5e-4], 64)
    pre_acc = accuracy(pre, xt[yt < 5], yt[yt < 5])

    rng = np.random.default_rng(SEED)
    few = rng.choice(np.flatnonzero(y >= 5), size=N_FEW, replace=False)
    xf, yf = x[few], y[few] - 5
    xte, yte = xt[yt >= 5], yt[yt >= 5] - 5

    # c. frozen features (inference mode) + a linear head
    body = _body_of(pre)
    feats_f, feats_t = body.predict(xf), body.predict(xte, batch_size=500)
    lin = fnn.Sequential([fnn.Dense(64, 5)], seed=SEED)
    lin.compile(fnn.optim.Adam(lr=1e-2), "cross_entropy")
    lin.fit(feats_f, yf, epochs=epochs(200), batch_size=20, verbose=0)
    linear_acc = accuracy(lin, feats_t, yte)

    # a. new head on the frozen body (fit: training mode)
    pre.pop()
    pre.add(fnn.Dense(64, 5, name="new_head"))
    pre.freeze(upto="new_head")
    pre.compile(fnn.optim.Adam(lr=3e-3), "cross_entropy")
    pre.fit(xf, yf, epochs=epochs(60), batch_size=20, verbose=0)
    frozen_acc = accuracy(pre, xte, yte)
    # b. then every layer, at a lower learning rate
    pre.unfreeze()
    pre.compile(fnn.optim.Adam(lr=3e-4), "cross_entropy")
    pre.fit(xf, yf, epochs=epochs(30), batch_size=20, verbose=0)
    finetune_acc = accuracy(pre, xte, yte)

    # d. from scratch on the same 100 images
    scratch = build_resnet(seed=SEED + 1)
    scratch.pop()
    scratch.add(fnn.Dense(64, 5, name="head"))
    scratch.compile(fnn.optim.Adam(lr=2e-3), "cross_entropy")
    scratch.fit(xf, yf, epochs=epochs(100), batch_size=20, verbose=0)
    scratch_acc = accuracy(scratch, xte, yte)

    res = {"source": source, "pretrain_0_4": pre_acc, "frozen_body_new_head": frozen_acc,
           "then_finetune_all": finetune_acc, "frozen_features_linear_head": linear_acc,
           "scratch_same_100": scratch_acc, "n_few": N_FEW, "n_test": int(len(yte)),
           "seconds": time.perf_counter() - t0}
    print(f"data: {source}; {N_FEW} training images of 5-9, {len(yte)} test images of 5-9")
    print(f"pretrained on 0-4 ({int(low.sum())} images), test accuracy on 0-4: {pre_acc:.4f}")
    print(f"5-9: frozen body + new head                    {frozen_acc:.4f}")
    print(f"5-9: then all layers fine-tuned (lr 3e-4)      {finetune_acc:.4f}")
    print(f"5-9: frozen features + linear head             {linear_acc:.4f}")
    print(f"5-9: same network from scratch on the 100      {scratch_acc:.4f}")
    return res


def _body_of(model: fnn.Sequential) -> fnn.Sequential:
    """A copy of ``model`` without its head: the features (after global average pooling)."""
    import copy

    body = copy.deepcopy(model)
    body.pop()
    return body


if __name__ == "__main__":
    main()
