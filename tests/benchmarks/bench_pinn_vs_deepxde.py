"""pdeml vs DeepXDE (PyTorch backend) on the same L-shape Poisson problem.

Same network (2-50-50-50-50-1 tanh, Glorot normal), same points (1200 interior + 120 boundary,
fixed), same optimizer (Adam, lr 1e-3), same step count, float32, one process, CPU threads as
torch sets them. Prints seconds per step and the relative L2 error against the case's FD
reference for both, and the ratio pdeml / DeepXDE; pdeml is timed with its default estimator
(exact Taylor mode) and with exact autograd (the same derivatives DeepXDE computes).

    python tests/benchmarks/bench_pinn_vs_deepxde.py --steps 2000
"""

import argparse
import os
import time

import numpy as np
import torch

import pdeml as pl
from pdeml.cases.poisson_lshape import VERTICES, fd_reference
from pdeml.samplers import Uniform
from pdeml.solvers import PINN


def run_pdeml(steps, seed, ref, derivatives=None):
    prob = pl.Problem(
        pl.geometry.Polygon(VERTICES),
        lambda x, u: -u.laplacian() - 1.0,
        [pl.Dirichlet(0.0)],
        reference=ref,
    )
    estimator = pl.derivatives.parse(derivatives) if derivatives else None
    method = PINN(pl.nn.MLP(50, 4), estimator=estimator, sampler=Uniform(1200, 120))
    backend = method.build(prob, seed=seed)
    pl.fit(backend, [(20, pl.FirstOrder(pl.Adam(1e-3)))], seed=seed, eval_every=10**9)  # warm-up
    backend = method.build(prob, seed=seed)
    t = time.perf_counter()
    pl.fit(backend, [(steps, pl.FirstOrder(pl.Adam(1e-3)))], seed=seed, eval_every=10**9)
    dt = (time.perf_counter() - t) / steps
    return dt, pl.relative_l2(backend.predict(ref[0]), ref[1])


def run_deepxde(steps, seed, ref):
    os.environ["DDE_BACKEND"] = "pytorch"
    import deepxde as dde

    dde.config.set_default_float("float32")
    dde.config.set_random_seed(seed)
    geom = dde.geometry.Polygon(VERTICES)
    # deepxde 1.15's Polygon returns float64 boundary points, which its float32 PyTorch model
    # rejects; cast them (a deepxde bug, not part of the timing).
    for name in ("random_boundary_points", "uniform_boundary_points"):
        orig = getattr(geom, name)
        setattr(geom, name, lambda *a, _f=orig, **k: _f(*a, **k).astype(np.float32))

    def pde(x, y):
        return -dde.grad.hessian(y, x, i=0, j=0) - dde.grad.hessian(y, x, i=1, j=1) - 1

    bc = dde.icbc.DirichletBC(geom, lambda x: 0, lambda _, on_boundary: on_boundary)
    data = dde.data.PDE(geom, pde, bc, num_domain=1200, num_boundary=120)
    net = dde.nn.FNN([2] + [50] * 4 + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)
    model.train(iterations=20, display_every=10**9, verbose=0)  # warm-up
    net = dde.nn.FNN([2] + [50] * 4 + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)
    t = time.perf_counter()
    model.train(iterations=steps, display_every=10**9, verbose=0)
    dt = (time.perf_counter() - t) / steps
    return dt, pl.relative_l2(model.predict(ref[0].astype(np.float32)).astype(float), ref[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--derivatives",
        nargs="*",
        default=["default", "autograd"],
        help="pdeml estimators to time (default: the default one and exact autograd)",
    )
    args = ap.parse_args()
    ref = fd_reference()
    rows = [
        (f"pdeml {d}", *run_pdeml(args.steps, args.seed, ref, None if d == "default" else d))
        for d in args.derivatives
    ]
    d_dt, d_err = run_deepxde(args.steps, args.seed, ref)
    print(
        f"device cpu, torch {torch.__version__}, threads {torch.get_num_threads()}, steps "
        f"{args.steps}"
    )
    print(f"{'':20s} {'s/step':>10s} {'rel L2':>10s} {'ratio':>7s}")
    for name, dt, err in rows + [("DeepXDE", d_dt, d_err)]:
        print(f"{name:20s} {dt:10.5f} {err:10.3e} {dt / d_dt:7.3f}")


if __name__ == "__main__":
    main()
