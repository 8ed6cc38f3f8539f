"""``pdeml fe2``: the macroscopic plate with a hole (``solvers/fe2.py``) with a chosen material at
its Gauss points: a law, an RVE solve per point (classical FE²) or a trained EquiNO run. Writes
``plate.vtu`` (displacement; σ̄, ε̄ and von Mises per cell) and ``metrics.json``."""

from __future__ import annotations

import json

MATERIALS = ("linear", "matrix", "rve", "equino")


def add_parser(sub):
    s = sub.add_parser(
        "fe2",
        help="solve the macroscopic plate with a hole with a law, RVE solves (FE²) or a "
        "trained EquiNO at every Gauss point",
        allow_abbrev=False,
    )
    s.add_argument(
        "--material",
        required=True,
        choices=MATERIALS,
        help="linear: the matrix's small-strain law; matrix: its nonlinear law; rve: one RVE solve "
        "per "
        "Gauss point; equino: the surrogate of --run",
    )
    s.add_argument("--run", help="an equino_rve run directory (with --material equino)")
    from pdeml.options import add_case_file

    add_case_file(s)
    s.add_argument(
        "--strain", type=float, default=0.01, help="mean strain the plate is pulled to in x"
    )
    s.add_argument("--m", type=int, default=4, help="2m elements around the hole")
    s.add_argument("--k", type=int, default=4, help="k elements from the hole to the edges")
    s.add_argument("--n", type=int, default=4, help="RVE mesh density (with --material rve)")
    s.add_argument(
        "--fraction", type=float, default=0.3, help="RVE inclusion fraction (with --material rve)"
    )
    s.add_argument("--device", default="auto")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.add_argument(
        "--allow-extrapolation",
        action="store_true",
        help="let EquiNO answer at strains outside its training box (recorded, not refused)",
    )
    s.add_argument("--out", required=True)


def material(args):
    """The material ``args`` name, and a dict of what to report about it afterwards."""
    from pdeml._validate import fail
    from pdeml.solvers.fe2 import LawMaterial, RVEMaterial
    from pdeml.solvers.rve import MATRIX, RVE

    if (args.run is not None) != (args.material == "equino"):
        fail(
            "--run",
            args.run,
            "goes with --material equino and only with it",
            "pass --material equino --run runs/equino, or leave --run out",
        )
    if args.material == "linear":
        return LawMaterial("linear", {"K": MATRIX["K"], "G": MATRIX["c1"] / MATRIX["c2"] / 2}), {}
    if args.material == "matrix":
        return LawMaterial("nonlinear", MATRIX), {}
    if args.material == "rve":
        mat = RVEMaterial(RVE(n=args.n, fraction=args.fraction), progress=not args.no_progress)
        return mat, {"rve_solves": lambda: mat.solves}
    from pdeml.operators.equino import EquiNOMaterial
    from pdeml.run import load_run

    _, backend = load_run(args.run, args.device, args.case_file)
    if not hasattr(getattr(backend, "net", None), "stress_and_tangent"):
        fail(
            "--run",
            args.run,
            f"holds a {type(backend).__name__} run, not an EquiNO one (no macroscopic stress to "
            "use as a material)",
            "pass a run of `pdeml train equino_rve`",
        )
    mat = EquiNOMaterial(backend.net, allow_extrapolation=args.allow_extrapolation)
    return mat, {"outside_training_box": lambda: mat.outside}


def main(args) -> int:
    from pdeml import rundir
    from pdeml.solvers.fe2 import Plate

    with rundir.session(args.out) as out:
        mat, extra = material(args)
        plate = Plate(m=args.m, k=args.k)
        r = plate.solve(mat, args.strain, progress=not args.no_progress)
        metrics = {
            "material": args.material,
            "strain": args.strain,
            "gauss_points": plate.points,
            "newton_iterations": r["iterations"],
            "relative_residuals": r["residuals"],
            "reaction_x": r["reaction"],
            "wall_time_s": round(r["wall_s"], 4),
            "material_time_s": round(r["material_s"], 4),
            **{k: f() for k, f in extra.items()},
        }
        rundir.write_json(out / "metrics.json", metrics)
        rundir.guard_disk(out, lambda: plate.write(r, out / "plate.vtu"))
    print(json.dumps(metrics, indent=2))
    print(f"run directory: {out}")
    return 0
