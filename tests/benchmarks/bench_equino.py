"""EquiNO against the RVE solver and a plain MLP (issue 18): σ̄ and local stress errors on
held-out macro strains, and the time of one σ̄ + tangent evaluation against one RVE Newton solve.

    python tests/benchmarks/bench_equino.py [--n 4] [--snapshots 100] [--test 50] [--steps 2000] [--lbfgs 2000]

Snapshots and held-out strains are Latin hypercubes in [-0.04, 0.04]³ (seeds 0 and 99). EquiNO
trains unsupervised (the snapshots build its bases only). The plain MLP (ε̄ -> σ̄, 4 x 64,
swish, the same input scaling) is fitted to the same snapshots' σ̄ with the same optimizer
budget. Both run in float64 on the CPU, in this process.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from operators.equino import STRAIN_RANGE, EquiNONet, latin_hypercube, snapshots, train  # noqa: E402
from solvers.rve import RVE  # noqa: E402


def plain_mlp(strains, stress, steps, lbfgs, seed=0):
    """ε̄ -> σ̄ fitted to the snapshots (normalized outputs), Adam then L-BFGS."""
    torch.manual_seed(seed)
    f64 = dict(dtype=torch.float64)
    layers, d = [], 3
    for _ in range(4):
        layers += [torch.nn.Linear(d, 64, **f64), torch.nn.SiLU()]
        d = 64
    net = torch.nn.Sequential(*layers, torch.nn.Linear(d, 3, **f64))
    x = torch.as_tensor(strains) / STRAIN_RANGE
    y = torch.as_tensor(stress)
    mu, sd = y.mean(0), y.std(0)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=gen)[:10]
        loss = ((net(x[idx]) - (y[idx] - mu) / sd) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt = torch.optim.LBFGS(net.parameters(), max_iter=lbfgs, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((net(x) - (y - mu) / sd) ** 2).mean()
        loss.backward()
        return loss
    opt.step(closure)
    return lambda e: (mu + sd * net(torch.as_tensor(e) / STRAIN_RANGE)).detach().numpy()


def rel(p, t):
    return np.linalg.norm((p - t).reshape(len(t), -1), axis=1) / np.linalg.norm(t.reshape(len(t), -1), axis=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4, help="RVE mesh density (12 n² Q8 elements)")
    ap.add_argument("--snapshots", type=int, default=100)
    ap.add_argument("--train", type=int, default=200, help="training strains (unsupervised)")
    ap.add_argument("--test", type=int, default=50)
    ap.add_argument("--modes", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lbfgs", type=int, default=2000, help="L-BFGS iterations (training is optimizer-limited: "
                    "300 left 4.5%% on σ̄, 2000 1.4%%)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rve = RVE(n=args.n)
    t0 = time.perf_counter()
    snaps = snapshots(rve, latin_hypercube(args.snapshots, seed=0), progress=True)
    t_snap = time.perf_counter() - t0
    test = latin_hypercube(args.test, seed=99)
    t0 = time.perf_counter()
    truth = snapshots(rve, test, progress=True)
    t_rve = (time.perf_counter() - t0) / args.test
    torch.manual_seed(0)
    net = EquiNONet(rve, snaps, modes=args.modes)
    t0 = time.perf_counter()
    hist = train(net, latin_hypercube(args.train, seed=1), steps=args.steps, lbfgs=args.lbfgs)
    t_train = time.perf_counter() - t0
    x = torch.as_tensor(test)
    with torch.no_grad():
        _, _, sig_eq = net.fields(x)
    e_bar = rel(net(x).detach().numpy(), truth["stress"])
    e_field = rel(sig_eq.numpy(), truth["stress_qp"])
    eq = max(rve.equilibrium_residual(s) for s in sig_eq.numpy())
    mlp = plain_mlp(snaps["strain"], snaps["stress"], args.steps, args.lbfgs)
    e_mlp = rel(mlp(test), truth["stress"])
    one = x[:1]
    reps = 500
    with torch.no_grad():
        net.stress_and_tangent(one)                                # warm up
        t0 = time.perf_counter()
        for _ in range(reps):
            net.stress_and_tangent(one)
    t_eval = (time.perf_counter() - t0) / reps
    print(f"\nRVE n = {args.n} ({rve._fe.basis.N} DOFs), {args.snapshots} snapshots ({t_snap:.1f} s), "
          f"{args.modes} modes, {args.train} training strains, {args.steps} Adam + {args.lbfgs} L-BFGS "
          f"({t_train:.1f} s, loss {hist[0]:.3g} -> {hist[-1]:.3g}), {args.test} held-out strains\n")
    print("| model | σ̄ error mean | σ̄ error max | stress field error mean | max | equilibrium residual |")
    print("|---|---|---|---|---|---|")
    print(f"| EquiNO | {e_bar.mean():.2e} | {e_bar.max():.2e} | {e_field.mean():.2e} | {e_field.max():.2e} | {eq:.1e} |")
    print(f"| plain MLP on σ̄ | {e_mlp.mean():.2e} | {e_mlp.max():.2e} | - | - | - |")
    print(f"\nσ̄ + tangent: {t_eval * 1e3:.3f} ms; one RVE Newton solve: {t_rve * 1e3:.1f} ms; "
          f"ratio {t_rve / t_eval:.0f}x")


if __name__ == "__main__":
    main()
