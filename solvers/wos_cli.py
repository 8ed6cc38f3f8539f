"""``pdeml solve CASE --method wos``: walk-on-spheres at the case's truth points and on its export
mesh, no training. Writes ``metrics.json`` (error against the truth, mean standard error, walks
per second), ``run.json``, the VTK file (value, std_error, exact, error) and ``field.png``."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def add_parser(sub):
    s = sub.add_parser("solve", help="solve a case without training: walk-on-spheres (Poisson-type PDE, "
                       "Dirichlet conditions); VTK with the value and its standard error", allow_abbrev=False)
    s.add_argument("case", help="a case file or built-in name whose pde is pl.pde.Poisson/ScreenedPoisson")
    s.add_argument("--method", default="wos", choices=["wos"])
    s.add_argument("--walks", type=int, default=1024, help="walks per point (std. error ~ walks^-1/2)")
    s.add_argument("--epsilon", type=float, default=1e-3, help="stopping shell, relative to the domain size")
    s.add_argument("--points", type=int, default=1000, help="truth points the error is measured on")
    s.add_argument("--resolution", type=int, default=64, help="export mesh resolution")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--out", required=True)


def solve_case(case, out, *, walks: int = 1024, epsilon: float = 1e-3, points: int = 1000, resolution: int = 64,
               seed: int = 0, device="auto", export: bool = True, world=None) -> dict:
    """Walk-on-spheres on ``case`` (object, path or name); returns the metrics it writes.
    ``world`` (:class:`pdeml.distributed.World`): under torchrun each rank runs its share of
    every point's walks and the means and standard errors are reduced; rank 0 writes the run
    directory, the other ranks walk as well and write into a throwaway one."""
    import contextlib
    import tempfile

    import torch

    from pdeml import rundir
    from pdeml._validate import positive_int
    from pdeml.device import resolve_device
    from pdeml.distributed import World, joined
    from pdeml.run import export_backend, load_case

    from .wos import WalkOnSpheres
    world = world if world is not None else World()
    points, resolution = positive_int("--points", points), positive_int("--resolution", resolution)
    source = None
    if isinstance(case, str):
        case, source = load_case(case, {})
    method = WalkOnSpheres(walks=walks, epsilon=epsilon)
    scratch = contextlib.nullcontext(out) if world.main else tempfile.TemporaryDirectory()
    with joined(world, resolve_device(device)) as dev, scratch as where:
        out = rundir.prepare(where)
        with rundir.lock(out):
            backend = method.build(case.problem, seed=seed, dtype=torch.float64, device=dev)
            backend.distribute(world)
            info = {"source": source, "method": "wos", "seed": seed, "device": str(backend.device),
                    "walks": walks, "epsilon": epsilon, "resolved": backend.resolved()}
            if world.active:
                info["world_size"] = world.size
            (out / "run.json").write_text(json.dumps(info, indent=2))
            rng = np.random.default_rng(seed + 12345)
            truth = case.problem.truth(points, rng)
            metrics = {"method": "wos", "walks": walks, "device": str(backend.device), "seed": seed,
                       **({"world_size": world.size} if world.active else {})}
            if truth is not None:
                x, v = truth
                if len(x) > points:
                    keep = np.sort(rng.choice(len(x), size=points, replace=False))
                    x, v = x[keep], v[keep]
                t = time.perf_counter()
                est = backend.estimate(x)
                wall = time.perf_counter() - t
                v = np.asarray(v, dtype=float)[:, 0]
                metrics.update({
                    "l2_relative_error": float(np.linalg.norm(est["mean"] - v) / np.linalg.norm(v)),
                    "std_error_mean": float(est["std_error"].mean()),
                    "within_4_std_errors": float(np.mean(np.abs(est["mean"] - v) <= 4 * est["std_error"])),
                    "points": len(x), "wall_time_s": round(wall, 3),
                    "walks_per_second": round(len(x) * walks / wall, 1), "steps_per_walk": round(est["steps"], 2),
                    "unfinished_walks": est["unfinished"]})
            rundir.write_json(out / "metrics.json", metrics)
            if export:
                metrics["files"] = [str(p.relative_to(out)) for p in rundir.guard_disk(
                    out, lambda: export_backend(backend, out, resolution))]
                rundir.write_json(out / "metrics.json", metrics)
    return metrics


def main(args) -> int:
    import os

    from pdeml.distributed import World
    world = World.from_env(os.environ)          # torchrun's RANK/WORLD_SIZE: read here, nowhere else
    metrics = solve_case(args.case, args.out, walks=args.walks, epsilon=args.epsilon, points=args.points,
                         resolution=args.resolution, seed=args.seed, device=args.device, world=world)
    if world.main:
        print(json.dumps({k: v for k, v in metrics.items() if k != "files"}, indent=2))
        print(f"run directory: {Path(args.out)}")
    return 0
