"""Weak scaling of distributed PINN training (issue 19): the time of one training step at a fixed
number of points per rank, on 1 and on K ranks, and the share of it spent averaging gradients.

    python tests/benchmarks/bench_distributed.py [--ranks 1 2] [--points 4096] [--steps 30]
        [--width 64] [--depth 3] [--device cpu|cuda] [--optimizer adam|lbfgs]

The script launches itself under torchrun once per rank count (``--standalone``); each rank
trains the Poisson PINN of ``cases/poisson_sin_2d`` (an MLP of ``--depth`` x ``--width``) on
``--points`` interior points of its own (the global batch grows with the ranks: weak scaling),
float64 on the CPU (gloo, one thread per rank) or float32 on GPUs (NCCL, one GPU per rank).
Reported per rank count: the median step time after warm-up, the weak-scaling efficiency
(time on 1 rank / time on K), and the time of one all-reduce of the gradient measured in the same
processes, as a share of the step. On a GPU machine, pass ``--device cuda --ranks 1 N`` with N
its GPU count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def worker(args):
    import numpy as np
    import torch

    import pdeml as pl
    from pdeml.cases.poisson_sin_2d import problem
    from pdeml.distributed import World, all_mean_, start, stop
    from pdeml.samplers import Uniform
    from pdeml.solvers import PINNBackend

    world = World.from_env(os.environ)  # this script is its own CLI edge
    device = start(world, torch.device(args.device))
    torch.set_num_threads(1)
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    backend = PINNBackend(problem, pl.nn.MLP(args.width, args.depth), seed=0, dtype=dtype).to(
        device
    )
    n = args.points * world.size
    stepper = pl.LBFGS() if args.optimizer == "lbfgs" else pl.FirstOrder(pl.Adam(1e-3))

    class Clock(pl.AbstractCallback):
        def __init__(self):
            self.t, self.times = None, []

        def on_step(self, state):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            now = time.perf_counter()
            if self.t is not None:
                self.times.append(now - self.t)
            self.t = now

    clock = Clock()
    pl.fit(
        backend,
        [(args.steps, stepper)],
        sampler=Uniform(n, 64 * world.size),
        seed=0,
        world=world,
        callbacks=[clock],
        eval_every=10**9,
    )
    grad = torch.zeros(sum(p.numel() for p in backend.parameters()), dtype=dtype, device=device)
    reps, t_red = 100, []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        all_mean_([grad], world)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t_red.append(time.perf_counter() - t0)
    if world.main:
        step = statistics.median(clock.times[5:] or clock.times)
        Path(args.result).write_text(
            json.dumps(
                {
                    "ranks": world.size,
                    "step_s": step,
                    "allreduce_s": float(np.median(t_red)),
                    "parameters": int(grad.numel()),
                }
            )
        )
    stop(world)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--points", type=int, default=4096, help="interior points per rank")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--optimizer", default="adam", choices=("adam", "lbfgs"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.ranks:
            result = Path(tmp) / f"r{k}.json"
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node",
                str(k),
                __file__,
                "--worker",
                "--result",
                str(result),
                "--points",
                str(args.points),
                "--steps",
                str(args.steps),
                "--width",
                str(args.width),
                "--depth",
                str(args.depth),
                "--device",
                args.device,
                "--optimizer",
                args.optimizer,
            ]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{k} ranks failed:\n{proc.stderr[-3000:]}")
            rows.append(json.loads(result.read_text()))
    base = rows[0]["step_s"]
    print(
        f"\nPINN {args.depth} x {args.width} ({rows[0]['parameters']} parameters), {args.points} "
        "interior points "
        f"per rank, {args.optimizer}, {args.device}, {args.steps} steps (median after 5)\n"
    )
    print(
        "| ranks | global points | step | weak-scaling efficiency | gradient all-reduce | its "
        "share of the step |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        share = r["allreduce_s"] / r["step_s"] if r["ranks"] > 1 else 0.0
        print(
            f"| {r['ranks']} | {args.points * r['ranks']} | {r['step_s'] * 1e3:.2f} ms | "
            f"{base / r['step_s']:.2f} | "
            f"{r['allreduce_s'] * 1e3:.3f} ms | {share:.1%} |"
        )


if __name__ == "__main__":
    main()
