"""Walk-on-spheres vs the PINN on ``poisson_lshape``: error against the case's FD truth vs wall
time, at 100 and at 10⁴ points. Walk-on-spheres pays per point (walks x points); the PINN pays
once (training) and then evaluates anywhere for almost nothing.

    python tests/benchmarks/bench_wos.py [--walks 64 256 1024 4096] [--steps 500 2000 5000]
    [--threads 2]

Also reports walk-on-spheres' walks per second (batched torch on the CPU; ``--device cuda`` for a
GPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--walks", type=int, nargs="+", default=[64, 256, 1024, 4096])
    ap.add_argument("--steps", type=int, nargs="+", default=[500, 2000, 5000])
    ap.add_argument("--points", type=int, nargs="+", default=[100, 10_000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    import pdeml as pl
    from pdeml.cases import poisson_lshape
    from pdeml.solvers.wos import WalkOnSpheres

    torch.set_num_threads(args.threads)
    case = poisson_lshape.case
    x_all, v_all = case.problem.truth(0, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    sets = {
        n: np.sort(rng.choice(len(x_all), size=min(n, len(x_all)), replace=False))
        for n in args.points
    }

    def err(pred, keep):
        v = v_all[keep, 0]
        return float(np.linalg.norm(pred - v) / np.linalg.norm(v))

    rows = []
    WalkOnSpheres(walks=4).build(case.problem, dtype=torch.float64, device=args.device).estimate(
        x_all[:2]
    )  # JIT
    for walks in args.walks:
        backend = WalkOnSpheres(walks=walks).build(
            case.problem, dtype=torch.float64, device=args.device
        )
        for n, keep in sets.items():
            t = time.perf_counter()
            est = backend.estimate(x_all[keep])
            wall = time.perf_counter() - t
            rows.append(
                (
                    "walk-on-spheres",
                    f"{walks} walks",
                    n,
                    err(est["mean"], keep),
                    wall,
                    f"{n * walks / wall:,.0f} walks/s",
                )
            )
            print(rows[-1], file=sys.stderr, flush=True)
    pinns = [(f"{s} Adam steps", case.replace(steps=s, lbfgs_steps=0)) for s in args.steps]
    pinns.append((f"the case's {case.steps} Adam + {case.lbfgs_steps} L-BFGS", case))
    for label, run in pinns:
        run = run.replace(eval_every=10**9, checkpoint_every=10**9)
        torch.manual_seed(0)
        backend = run.method.build(run.problem, seed=0, dtype=run.torch_dtype, device=args.device)
        t = time.perf_counter()
        pl.fit(backend, run.phases, weights=run.weights, seed=0)
        train = time.perf_counter() - t
        for n, keep in sets.items():
            t = time.perf_counter()
            pred = backend.predict(x_all[keep])[:, 0]
            wall = time.perf_counter() - t
            rows.append(
                (
                    "PINN",
                    label,
                    n,
                    err(pred, keep),
                    train + wall,
                    f"train {train:.1f} s + evaluate {wall:.3f} s",
                )
            )
            print(rows[-1], file=sys.stderr, flush=True)
    print(
        "poisson_lshape (-lap u = 1, u = 0 on the L-shape), error vs the 5-point FD truth; "
        f"{args.threads} threads, "
        f"{args.device}"
    )
    for n in args.points:
        print(f"\n{n} points:\n| method | setting | rel. L2 | wall s | |\n|---|---|---|---|---|")
        for method, setting, m, e, wall, extra in rows:
            if m == n:
                print(f"| {method} | {setting} | {e:.2e} | {wall:.2f} | {extra} |")


if __name__ == "__main__":
    main()
