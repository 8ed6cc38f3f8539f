"""The 3-D export against training: ``poisson_manufactured_3d`` (the unit cube less a ball)
trained as its case says, then exported, in one process; and the walk-on-spheres export against
its solve on the notched box below.

    python tests/benchmarks/bench_export.py [--steps N] [--lbfgs-steps N] [--threads 2]

Prints one JSON line: training and export seconds and their ratio (the goal: the export under a
quarter of training), the nodes written and how many lie outside the body (the goal: none); for
walk-on-spheres the solve's and the export's seconds and the walks each export node got; for a
triangle-mesh body the volume's inside tests, numba against the torch definition.
Shorter ``--steps`` give a smaller denominator: the ratio is then an upper bound.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pinn_3d(steps: int | None, lbfgs: int | None, out: Path) -> dict:
    import meshio

    from pdeml.run import export_backend, load_run, train_case

    overrides = {k: v for k, v in (("steps", steps), ("lbfgs_steps", lbfgs)) if v is not None}
    t = time.perf_counter()
    metrics = train_case("poisson_manufactured_3d", out, progress=False, export=False, **overrides)
    train_s = time.perf_counter() - t
    case, backend = load_run(out, "cpu")
    t = time.perf_counter()
    files = export_backend(backend, out, case.export_resolution)
    export_s = time.perf_counter() - t
    m = meshio.read(out / "solution.vtu")
    outside = int((~case.problem.geometry.inside(m.points)).sum())
    return {
        "train_s": round(train_s, 2),
        "export_s": round(export_s, 2),
        "export_over_train": round(export_s / train_s, 4),
        "nodes": len(m.points),
        "nodes_outside": outside,
        "l2_relative_error": metrics.get("l2_relative_error"),
        "files": [Path(f).name for f in files],
    }


def wos_notched(out: Path) -> dict:
    """A notched box (a cube less a corner block): walk-on-spheres at 1000 points, 1024 walks."""
    import meshio

    import pdeml as pl
    from pdeml.run import solve_case

    box = pl.geometry.Cuboid([0, 0, 0], [1, 1, 1]) - pl.geometry.Cuboid([0.5, 0.5, 0.5], [1, 1, 1])

    def exact(x):
        return x[:, :1] ** 2 - x[:, 1:2] ** 2 + 0 * x[:, 2:]  # harmonic

    problem = pl.Problem(box, pl.pde.Poisson(source=0.0), [pl.Dirichlet(exact)], exact=exact)
    case = pl.Case(problem, pl.WalkOnSpheres(walks=1024), export_resolution=24)
    t = time.perf_counter()
    metrics = solve_case(case, out, export=False)
    solve_s = time.perf_counter() - t
    t = time.perf_counter()
    metrics = solve_case(case, out / "with_export", resolution=24)
    both_s = time.perf_counter() - t
    m = meshio.read(out / "with_export" / "solution.vtu")
    return {
        "solve_s": round(solve_s, 2),
        "export_s": round(both_s - solve_s, 2),
        "export_over_solve": round((both_s - solve_s) / solve_s, 3),
        "export_walks": metrics.get("export_walks"),
        "export_points": metrics.get("export_points"),
        "nodes_outside": int((~box.inside(m.points)).sum()),
    }


def mesh_volume(level: int = 3, resolution: int = 45) -> dict:
    """The 3-D export's mesh of a triangle surface (a subdivided icosahedron, 20 * 4^level
    triangles) at the volume budget: the numba inside test against the torch definition (winding
    number and distance at every node), the baseline, on the same nodes."""
    import numpy as np
    import torch

    import pdeml as pl
    from pdeml.export import mesh

    sys.path.insert(0, str(ROOT / "tests"))
    from test_mesh_geometry import icosphere

    pts, tri = icosphere(level)
    g = pl.geometry.Mesh(points=pts, triangles=tri)
    g.inside(np.zeros((1, 3)))  # compile (or load the cache) outside the timing
    t = time.perf_counter()
    nodes, _, cells = mesh(g, resolution)
    numba_s = time.perf_counter() - t

    class Torch(pl.geometry.Mesh):
        def inside(self, x):
            x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
            tol = 1e-9 * self._scale()
            return ((self.winding_number(x) > 0.5) | (self.unsigned_distance(x) <= tol)).numpy()

    t = time.perf_counter()
    same = mesh(Torch(points=pts, triangles=tri), resolution)
    torch_s = time.perf_counter() - t
    return {
        "triangles": len(tri),
        "resolution": resolution,
        "nodes": len(nodes),
        "numba_s": round(numba_s, 2),
        "torch_s": round(torch_s, 2),
        "speedup": round(torch_s / numba_s, 1),
        "same_mesh": bool(np.array_equal(same[2], cells)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int)
    ap.add_argument("--lbfgs-steps", type=int)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "cpu": cpu_name(),
            "threads": args.threads,
            "poisson_manufactured_3d": pinn_3d(args.steps, args.lbfgs_steps, Path(tmp) / "p3"),
            "wos_notched_box": wos_notched(Path(tmp) / "wos"),
            "mesh_volume": mesh_volume(),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
