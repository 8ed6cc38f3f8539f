"""DCDM against CG, IC(0)-PCG and AMG-PCG: iterations and seconds to 1e-4 and 1e-6.

One script, the same right-hand sides for every solver (white noise, a smooth bump, a point
source, unit norm), on (a) the 2-D training grid, (b) an unseen obstacle layout, (c) twice the
training resolution (the training layout refined 2x, no retraining) and (d) a 3-D grid (a net
trained on 16^3, run on 32^3). DCDM runs as in the paper (the net on the full grid) and with
``multilevel="auto"`` (DCDM-ML: the net on its training grid at the bottom of a W-cycle). Then
CG's and DCDM's iteration counts from n^2 to (2n)^2 to (4n)^2.
Trains the networks first unless checkpoints are given.

    python tests/benchmarks/bench_dcdm.py                     # trains both nets: ~16 min on one
    thread
    python tests/benchmarks/bench_dcdm.py --net2d runs/dcdm/dcdm.pt --device cuda
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pdeml.solvers import dcdm
from pdeml.solvers.dcdm.baselines import amg_preconditioner, ic0_preconditioner, pcg
from pdeml.solvers.dcdm.cli import rhs

KINDS = ("noise", "bump", "point")
TOLS = (1e-4, 1e-6)


def refine(fluid, times):
    return np.kron(fluid, np.ones((times,) * fluid.ndim, dtype=int)).astype(bool)


def get_net(path, fluid, epochs, count, device, tag):
    if path:
        return dcdm.load(path, device), {"loaded": path}
    t = time.perf_counter()
    net, info = dcdm.train(
        fluid,
        epochs=epochs,
        count=count,
        device=device,
        checkpoint=f"runs/bench-dcdm/{tag}.pt",
        progress=True,
    )
    print(
        f"# trained {tag} on {fluid.shape}: {time.perf_counter() - t:.0f} s, loss "
        f"{info['loss'][0]:.3f} -> "
        f"{info['loss'][-1]:.4f}",
        flush=True,
    )
    return net.eval(), info


def outcome(result) -> tuple:
    """(iterations, or None if not converged; seconds) of a DCDM SolveResult or a pcg dict."""
    if isinstance(result, dict):
        return (result["iterations"] if result["converged"] else None), result["seconds"]
    return (result.iterations if result.converged else None), result.seconds


def run_case(name, fluid, net, device, maxiter):
    A = dcdm.assemble(fluid)
    op = dcdm.GridPoisson(fluid).to(device)
    t = time.perf_counter()
    ic0 = ic0_preconditioner(A)
    t_ic0 = time.perf_counter() - t
    t = time.perf_counter()
    amg = amg_preconditioner(A)
    t_amg = time.perf_counter() - t
    rows = []
    for kind in KINDS:
        b = rhs(kind, fluid)
        bf = dcdm.restrict(fluid, b)
        for tol in TOLS:
            r = dcdm.solve(op, b, net, tol=tol, maxiter=maxiter)
            ml = dcdm.solve(op, b, net, tol=tol, maxiter=maxiter, multilevel="auto")
            if device.type == "cuda":
                torch.cuda.synchronize()
            row = {
                "case": name,
                "rhs": kind,
                "tol": tol,
                "dcdm": outcome(r),
                "fallbacks": r.fallbacks,
                "ml": outcome(ml),
            }
            for label, M in (("cg", None), ("ic0", ic0), ("amg", amg)):
                row[label] = outcome(pcg(A, bf, M, tol, maxiter=20000))
            rows.append(row)
            print("#", row, flush=True)
    return rows, {"ic0_setup_s": t_ic0, "amg_setup_s": t_amg, "unknowns": int(fluid.sum())}


def fmt(v):
    its, sec = v
    return f"{'-' if its is None else its:>5} {sec:7.3f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64, help="2-D training grid")
    ap.add_argument("--n3d-train", type=int, default=16)
    ap.add_argument("--n3d", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--epochs3d", type=int, default=60)
    ap.add_argument("--count", type=int, default=800)
    ap.add_argument("--net2d"), ap.add_argument("--net3d")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--maxiter", type=int, default=2000)
    ap.add_argument(
        "--growth",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8],
        help="refinements of the training layout for the growth table",
    )
    ap.add_argument(
        "--growth3d",
        type=int,
        nargs="+",
        default=[16, 32, 64, 128],
        help="3-D sides for the growth table",
    )
    args = ap.parse_args()
    dev = torch.device(args.device)
    train2d = dcdm.obstacles(args.n, 2, seed=0)
    net2d, _ = get_net(args.net2d, train2d, args.epochs, args.count, dev, "net2d")
    train3d = dcdm.obstacles(args.n3d_train, 3, count=4, seed=0)
    net3d, _ = get_net(args.net3d, train3d, args.epochs3d, args.count, dev, "net3d")
    cases = [
        ("(a) train grid", train2d, net2d),
        ("(b) unseen layout", dcdm.obstacles(args.n, 2, seed=1), net2d),
        ("(c) 2x resolution", refine(train2d, 2), net2d),
        ("(d) 3-D", dcdm.obstacles(args.n3d, 3, count=4, seed=2), net3d),
    ]
    rows, setup = [], {}
    for name, fluid, net in cases:
        r, s = run_case(name, fluid, net, dev, args.maxiter)
        rows += r
        setup[name] = s
    print(
        f"\ndevice {args.device}; iterations and seconds to ||r|| <= tol ||b|| ('-': not within "
        f"{args.maxiter}); "
        "q=r: DCDM steps that used the stall safeguard; DCDM-ML: multilevel='auto' (the net on its "
        "training grid at the bottom of a W-cycle; the same as DCDM on grids no finer)"
    )
    head = (
        f"{'case':20s} {'rhs':6s} {'tol':>6s} | {'DCDM':>13s} {'q=r':>4s} | {'DCDM-ML':>13s} | "
        f"{'CG':>13s} | "
        f"{'IC(0)-PCG':>13s} | {'AMG-PCG':>13s} | DCDM/CG ML/CG"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = [
            f"{r[key][0] / r['cg'][0]:.2f}" if r[key][0] and r["cg"][0] else "-"
            for key in ("dcdm", "ml")
        ]
        print(
            f"{r['case']:20s} {r['rhs']:6s} {r['tol']:6.0e} | {fmt(r['dcdm'])} {r['fallbacks']:4d} "
            f"| {fmt(r['ml'])} | "
            f"{fmt(r['cg'])} | {fmt(r['ic0'])} | {fmt(r['amg'])} | {ratio[0]:>7s} {ratio[1]:>5s}"
        )
    for name, s in setup.items():
        print(
            f"{name}: {s['unknowns']} unknowns, IC(0) setup {s['ic0_setup_s']:.2f} s, AMG setup "
            f"{s['amg_setup_s']:.2f} s"
        )
    print(
        "\nGrowth with the grid, 2-D (the training layout refined; tol 1e-4; iterations for noise "
        "/ bump / "
        "point, seconds for the three):"
    )
    growth([refine(train2d, t) for t in args.growth], net2d, dev, args.maxiter)
    print("\nGrowth with the grid, 3-D (the 16^3 net on layouts drawn like (d) at each size):")
    growth([dcdm.obstacles(n, 3, count=4, seed=2) for n in args.growth3d], net3d, dev, args.maxiter)


def growth(fluids, net, dev, maxiter):
    """Iterations (noise / bump / point, tol 1e-4) and seconds for the three on each grid; the
    paper's DCDM is skipped beyond 4x the training side (at 512^2 it runs thousands of
    full-grid network evaluations)."""
    for fluid in fluids:
        op, A = dcdm.GridPoisson(fluid).to(dev), dcdm.assemble(fluid)
        amg = amg_preconditioner(A)
        solvers = {
            "DCDM": lambda b: dcdm.solve(op, b, net, tol=1e-4, maxiter=maxiter),
            "DCDM-ML": lambda b: dcdm.solve(
                op, b, net, tol=1e-4, maxiter=maxiter, multilevel="auto"
            ),
            "CG": lambda b: pcg(A, dcdm.restrict(fluid, b), None, 1e-4, maxiter=20000),
            "AMG-PCG": lambda b: pcg(A, dcdm.restrict(fluid, b), amg, 1e-4, maxiter=20000),
        }
        line = f"  {fluid.shape[0]:4d}^{fluid.ndim}:"
        for label, solve in solvers.items():
            if label == "DCDM" and max(fluid.shape) > 4 * max(net.trained_on or fluid.shape):
                line += f"  {label} {'not run':>12s} {'':8s} |"
                continue
            out = [outcome(solve(rhs(kind, fluid))) for kind in KINDS]
            its = "/".join("-" if i is None else str(i) for i, _ in out)
            line += f"  {label} {its:>12s} {sum(sec for _, sec in out):6.2f} s |"
        print(line.rstrip(" |"), flush=True)


if __name__ == "__main__":
    main()
