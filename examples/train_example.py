"""A small CPU-bound "training" workload for `carbontrack run` (standard library only).

Fits a logistic-regression classifier with plain stochastic gradient descent on a
synthetic, seeded data set and prints the loss per epoch. About 10-20 s on one core.

    carbontrack run --zone DE -- python examples/train_example.py
    python examples/train_example.py --epochs 2 --samples 5000      # shorter
"""

from __future__ import annotations

import argparse
import math
import random
import time


def make_data(n: int, dim: int, rng: random.Random) -> tuple[list[list[float]], list[int]]:
    true_w = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    xs, ys = [], []
    for _ in range(n):
        x = [rng.gauss(0.0, 1.0) for _ in range(dim)]
        z = sum(w * v for w, v in zip(true_w, x, strict=True))
        xs.append(x)
        ys.append(1 if rng.random() < 1.0 / (1.0 + math.exp(-z)) else 0)
    return xs, ys


def train(epochs: int, n: int = 50_000, dim: int = 32, lr: float = 0.05, seed: int = 0) -> float:
    rng = random.Random(seed)
    xs, ys = make_data(n, dim, rng)
    w = [0.0] * dim
    loss = float("nan")
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        total = 0.0
        order = list(range(n))
        rng.shuffle(order)
        for i in order:
            x, y = xs[i], ys[i]
            z = sum(wj * xj for wj, xj in zip(w, x, strict=True))
            p = 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))
            total -= math.log(p if y else 1.0 - p)
            g = p - y
            w = [wj - lr * g * xj for wj, xj in zip(w, x, strict=True)]
        loss = total / n
        print(f"epoch {epoch}/{epochs}  loss {loss:.4f}  {time.perf_counter() - t0:.1f} s", flush=True)
    return loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20, help="passes over the data (default 20)")
    ap.add_argument("--samples", type=int, default=50_000, help="training examples (default 50000)")
    args = ap.parse_args()
    train(args.epochs, n=args.samples)


if __name__ == "__main__":
    main()
