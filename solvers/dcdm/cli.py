"""``pdeml dcdm train`` / ``pdeml dcdm solve``: train a direction network, solve with it."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from pdeml._validate import fail


def rhs(kind: str, fluid: np.ndarray, seed: int = 0) -> np.ndarray:
    """Right-hand sides of the benchmark: "noise" (white), "bump" (smooth Gaussian), "point"."""
    shape = fluid.shape
    if kind == "noise":
        b = np.random.default_rng(seed).standard_normal(shape)
    elif kind == "bump":
        grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
        centre = (0.3, 0.6, 0.5)[: len(shape)]
        b = np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre)) / (2 * 0.1**2))
    elif kind == "point":
        b = np.zeros(shape)
        idx = np.argwhere(fluid)
        b[tuple(idx[np.argmin(((idx - np.array(shape) / 2) ** 2).sum(1))])] = 1.0
    else:
        fail("rhs", kind, "is not a right-hand side", 'use "noise", "bump" or "point"')
    b = b * fluid
    return b / np.linalg.norm(b)


def _multilevel(value: str):
    if value in ("auto", "off"):
        return None if value == "off" else value
    try:
        return int(value)
    except ValueError:
        fail(
            "--multilevel", value, "is not auto, off or a grid side", "pass e.g. --multilevel auto"
        )


def _operator(args):
    """The system of ``dcdm train`` / ``dcdm solve``: the obstacle layout's fluid mask (its
    Poisson matrix), or the user's matrix (``--matrix``) as a MatrixOperator."""
    from .operator import MatrixOperator
    from .poisson import obstacles

    if args.matrix is None:
        for flag in ("grid", "fluid", "b"):
            if getattr(args, flag, None) is not None:
                fail(
                    f"--{flag}",
                    getattr(args, flag),
                    "is only used with --matrix",
                    "add --matrix A.npz or leave it out",
                )
        return obstacles(args.n, args.dim, count=args.obstacles, seed=args.layout_seed)
    import scipy.sparse as sp

    if (args.grid is None) == (args.fluid is None):
        fail(
            "--grid/--fluid",
            f"{args.grid}/{args.fluid}",
            "exactly one is needed with --matrix",
            "pass --grid NX NY [NZ] or --fluid mask.npy",
        )
    matrix = _load("--matrix", args.matrix, sp.load_npz, "a scipy sparse matrix .npz")
    fluid = (
        args.grid if args.fluid is None else _load("--fluid", args.fluid, np.load, "a .npy mask")
    )
    return MatrixOperator(matrix, fluid)


def _load(flag: str, path, reader, what: str):
    """``reader(path)``, or an error naming the flag, the file and what it should hold (a missing
    file, an unreadable one, an object array that would need pickle)."""
    p = Path(path)
    if not p.is_file():
        fail(flag, str(path), "does not exist", f"pass {what}", FileNotFoundError)
    try:
        return reader(p)
    except Exception as e:  # numpy and scipy raise many kinds (zip, pickle, format, ...)
        fail(flag, str(path), f"cannot be read as {what} ({type(e).__name__}: {e})", f"pass {what}")


def _system(args):
    """(operator, fluid mask, right-hand side on the grid) for ``dcdm solve``."""
    from .poisson import GridPoisson

    system = _operator(args)
    if isinstance(system, np.ndarray):
        return GridPoisson(system), system, rhs(args.rhs, system)
    fluid = system.fluid.numpy()
    b = (
        rhs(args.rhs, fluid)
        if args.b is None
        else system.on_grid(_load("--b", args.b, np.load, "a .npy vector"), "--b")[0].numpy()
    )
    return system, fluid, b


#: the ``dcdm train`` options that decide what is trained (the matrix, its data, the network's
#: start): a ``--resume`` must name the same ones; ``--epochs`` may grow
TRAINING_SETTINGS = (
    "n", "dim", "obstacles", "layout_seed", "matrix", "grid", "fluid", "count", "seed", "ritz",
    "smooth",
)  # fmt: skip


def _check_resume(out: Path, settings: dict) -> None:
    """A ``--resume`` of ``out`` with other training settings than its run.json records would
    train the saved network on other data: an error naming what differs."""
    path = out / "run.json"
    if not path.exists():
        return
    saved = json.loads(path.read_text()).get("settings", {})
    differ = {
        k: {"saved": saved.get(k), "now": v} for k, v in settings.items() if saved.get(k) != v
    }
    if differ:
        fail(
            "--resume",
            str(out),
            f"was trained with other settings ({differ})",
            "pass the options it was trained with (see its run.json), or another --out",
        )


def add_parser(sub):
    d = sub.add_parser("dcdm", help="deep conjugate-direction solver for grid Poisson systems")
    dsub = d.add_subparsers(dest="dcdm_command", required=True)
    for name in ("train", "solve"):
        p = dsub.add_parser(name)
        if name == "solve":
            p.add_argument("checkpoint", help="dcdm.pt written by `pdeml dcdm train`")
        p.add_argument("--n", type=int, default=64, help="cells per side")
        p.add_argument("--dim", type=int, default=2, help="2 or 3")
        p.add_argument("--obstacles", type=int, default=6, help="random solid boxes")
        p.add_argument("--layout-seed", type=int, default=0, help="seed of the obstacle layout")
        p.add_argument("--out", help="output directory (default runs/dcdm or runs/dcdm-solve)")
        p.add_argument("--device", default="auto")
        p.add_argument("--no-progress", action="store_true")
        p.add_argument(
            "--matrix",
            help=f"{name} on your own system: a scipy sparse SPD matrix saved with "
            "scipy.sparse.save_npz (instead of a random obstacle layout)",
        )
        p.add_argument(
            "--grid",
            type=int,
            nargs="+",
            help="with --matrix: the grid shape (every cell an unknown)",
        )
        p.add_argument(
            "--fluid",
            help="with --matrix: a .npy boolean mask whose True cells (C order) carry the unknowns",
        )
    t = dsub.choices["train"]
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--epochs", type=int, default=120)
    t.add_argument("--count", type=int, default=800, help="training right-hand sides")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--ritz", type=int, default=1000, help="Lanczos steps for the training right-hand sides"
    )
    t.add_argument(
        "--smooth",
        type=float,
        default=0.5,
        help="fraction of training right-hand sides from the lowest 5%% of the Ritz pairs",
    )
    s = dsub.choices["solve"]
    s.add_argument("--rhs", default="bump", help="noise | bump | point")
    s.add_argument("--tol", type=float, default=1e-6)
    s.add_argument("--maxiter", type=int, default=1000)
    s.add_argument(
        "--multilevel",
        default="auto",
        help="on grids finer than the network's training grid, run the network on a coarse "
        "level of a multigrid W-cycle: auto (the checkpoint's training grid), off (the paper's "
        "method: the network on the full grid), or the coarsest side N",
    )
    s.add_argument(
        "--cg",
        action="store_true",
        help="also run CG (q = r) and draw its residuals in convergence.png",
    )
    s.add_argument(
        "--b",
        help="with --matrix: a .npy right-hand side, on the grid or over the unknowns "
        "(default: --rhs drawn on the grid)",
    )


def main(args) -> int:
    import torch

    from pdeml.device import resolve_device
    from pdeml.export.image import write_image_data
    from pdeml.export.plots import plot_grid_solve

    from . import solver

    dev = resolve_device(args.device)
    if args.dcdm_command == "train":
        import os

        from pdeml.distributed import World, joined

        world = World.from_env(os.environ)  # torchrun's RANK/WORLD_SIZE: read here, nowhere else
        from pdeml import rundir

        out = Path(args.out or "runs/dcdm")
        with (
            joined(world, dev) as dev,
            rundir.session(out) if world.main else contextlib.nullcontext(out),
        ):
            settings = {
                k: (str(v) if k in ("matrix", "fluid") and v is not None else v)
                for k, v in vars(args).items()
                if k in TRAINING_SETTINGS
            }
            if args.resume:
                _check_resume(out, settings)
            if world.main:
                rundir.write_json(out / "run.json", {"command": "dcdm train", "settings": settings})
            _, info = solver.train(
                _operator(args),
                epochs=args.epochs,
                count=args.count,
                seed=args.seed,
                device=dev,
                ritz=args.ritz,
                smooth=args.smooth,
                checkpoint=out / "dcdm.pt",
                resume=args.resume,
                progress=not args.no_progress,
                world=world,
            )
            if world.main:
                if world.active:
                    info["world_size"] = world.size
                rundir.write_json(out / "train.json", info)
        if world.main:
            print(
                json.dumps(
                    {k: info[k] for k in ("epochs", "wall_time_s", "grid")}
                    | {"final_loss": info["loss"][-1]}
                )
            )
            print(f"checkpoint: {out / 'dcdm.pt'}")
        return 0
    from pdeml import rundir

    out = Path(args.out or "runs/dcdm-solve")
    net = solver.load(args.checkpoint, dev)
    A, fluid, b = _system(args)
    if net.dim != fluid.ndim:
        flag, value = (
            ("--dim", args.dim) if args.matrix is None else ("--grid/--fluid", list(fluid.shape))
        )
        fail(
            flag,
            value,
            f"does not match the checkpoint's {net.dim}-D network",
            f"pass --dim {net.dim}"
            if args.matrix is None
            else f"solve a {net.dim}-D grid with this network",
        )
    with rundir.session(out) as out:
        A = A.to(dev)
        result = solver.solve(
            A,
            b,
            net,
            tol=args.tol,
            maxiter=args.maxiter,
            progress=not args.no_progress,
            multilevel=_multilevel(args.multilevel),
        )
        x = result.x.cpu().numpy()
        r = b - A(torch.as_tensor(x, device=dev)[None])[0].cpu().numpy()
        histories = {
            "DCDM"
            if args.multilevel == "off"
            else f"DCDM, multilevel {args.multilevel}": result.residuals
        }
        if args.cg:
            histories["CG"] = solver.solve(
                A, b, None, tol=args.tol, maxiter=100 * args.maxiter
            ).residuals
        summary = {
            "iterations": result.iterations,
            "converged": result.converged,
            "seconds": result.seconds,
            "multilevel": args.multilevel,
            "final_relative_residual": result.residuals[-1],
            "grid": list(fluid.shape),
        }
        rundir.write_json(out / "solve.json", summary | {"residuals": result.residuals})

        def files():
            write_image_data(
                out / "solution.vti", {"x": x, "b": b, "residual": r, "fluid": fluid.astype(float)}
            )
            plot_grid_solve(out / "convergence.png", x, fluid, histories, tol=args.tol)

        rundir.guard_disk(out, files)
    print(json.dumps(summary))
    return 0 if result.converged else 1
