"""The spread of DCDM's iteration count between trainings that differ only in their seed.

One training per seed on the 2-D obstacle layout (layout seed 0), then DCDM to 1e-4 on the same
layout for the noise, bump and point right-hand sides; one thread, so the counts repeat. Prints
one JSON line per seed. docs/dcdm.md has the table:

    python tests/benchmarks/bench_dcdm_spread.py --n 32 --epochs 20 --seeds 0,1,2,3,4,5
    python tests/benchmarks/bench_dcdm_spread.py --n 32 --epochs 20 --seeds 0,1,2,3,4,5 --cosine
"""

import argparse
import json
import time

import torch

import pdeml as pl
from pdeml.solvers import dcdm
from pdeml.solvers.dcdm.cli import rhs


def cpu_model() -> str:
    """The CPU's model name (rounding, and so the counts, can differ between CPUs)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--cosine", action="store_true", help="a cosine decay of the rate to zero")
    args = p.parse_args()
    torch.set_num_threads(1)
    print(json.dumps({"cpu": cpu_model(), "threads": 1, "n": args.n, "epochs": args.epochs}))
    fluid = dcdm.obstacles(args.n, 2, seed=0)
    A = dcdm.GridPoisson(fluid)
    for seed in (int(s) for s in args.seeds.split(",")):
        t = time.perf_counter()
        net, info = dcdm.train(
            fluid,
            epochs=args.epochs,
            seed=seed,
            schedule=pl.Cosine() if args.cosine else None,
            progress=False,
        )
        its = [
            dcdm.solve(A, rhs(kind, fluid), net, tol=1e-4, maxiter=300).iterations
            for kind in ("noise", "bump", "point")
        ]
        row = {"seed": seed, "loss": info["loss"][-1], "iterations": its}
        print(json.dumps(row | {"wall_s": round(time.perf_counter() - t, 1)}), flush=True)


if __name__ == "__main__":
    main()
