"""``pdeml`` command line: ``train``, ``export``, ``cases``, ``data``, ``condition``, and the
subcommands
that installed packages register (:mod:`pdeml.registry`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import registry
from .options import add_case_file


def _parser():
    ap = argparse.ArgumentParser(
        prog="pdeml", description="Train PDE surrogates and export them to VTK."
    )
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a case and write its run directory", allow_abbrev=False)
    t.add_argument("case", help="path of a case file, or a built-in case name (see `pdeml cases`)")
    t.add_argument("--steps", type=int, help="Adam steps (default: the case's)")
    t.add_argument("--lbfgs-steps", type=int, help="L-BFGS iterations after Adam")
    t.add_argument("--lr", type=float, help="Adam learning rate")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    t.add_argument("--out", help="run directory (default runs/<case>)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar: a log line every 30 s instead (also when output is not a terminal)",
    )
    t.add_argument(
        "--combiner",
        help="loss-term combination: sum | config | mconfig | pcgrad | gradnorm "
        "(default: the case's; mconfig switches Adam to SGD with the same learning rate)",
    )
    for option in _method_options():  # each method's own: --derivatives, --compile, --data, ...
        option.add_to(t)
    t.add_argument(
        "--optimizer",
        help="adam | sgd | engd | engd-cg (Gauss-Newton, dense or Hessian-free; "
        "default: the case's)",
    )
    t.add_argument(
        "--snapshots",
        type=int,
        default=0,
        metavar="N",
        help="every N steps save the PDE points over the residual (OUT/snapshots, .vtu and .png)",
    )
    t.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="checkpoint every N steps (default: the case's, 1000)",
    )
    t.add_argument(
        "--checkpoint-minutes",
        type=float,
        metavar="M",
        help="checkpoint at least every M minutes of training (default: the case's, 10)",
    )
    t.add_argument(
        "--threads",
        default="auto",
        help="CPU threads for torch: a number, or auto (the free cores: the affinity mask and "
        "cgroup quota less the load average; default)",
    )
    t.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train on N processes of this machine: runs torchrun --standalone --nproc-per-node N "
        "on this command (docs/distributed.md; one per GPU, or CPU processes with gloo)",
    )
    t.epilog = "Any other --name VALUE is a case option (see `pdeml cases`), e.g. --dim 1000."
    s = sub.add_parser(
        "solve",
        help="solve a case by a method that does not train (walk-on-spheres, a reference "
        "solver): metrics, VTK and pictures, no training",
        allow_abbrev=False,
    )
    s.add_argument("case", help="a case file or built-in name")
    s.add_argument(
        "--method",
        help="a registered method to solve it by instead of the case's own: wos "
        "(walk-on-spheres; the case's pde must be pl.pde.Poisson or ScreenedPoisson)",
    )
    s.add_argument("--points", type=int, default=1000, help="truth points the error is measured on")
    s.add_argument(
        "--resolution",
        type=int,
        default=64,
        help="export mesh resolution (walk-on-spheres walks every mesh node, each with "
        "walks x points / nodes walks, at least 16: the export costs about what the solve "
        "did; metrics.json records export_walks; --no-export skips it)",
    )
    s.add_argument(
        "--no-export",
        action="store_true",
        help="write metrics.json only (export later with pdeml export)",
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--out", required=True, help="run directory")
    s.add_argument(
        "--threads",
        default="auto",
        help="CPU threads for torch: a number, or auto (the free cores)",
    )
    for option in _method_options():
        option.add_to(s)
    e = sub.add_parser("export", help="re-export a run directory's VTK and pictures")
    e.add_argument("dir")
    e.add_argument(
        "--resolution",
        type=int,
        help="export mesh resolution (default: the case's); a 3-D volume is written at most 45 "
        "voxels a side (about 100k points) and pictured by its mid-plane slice",
    )
    e.add_argument(
        "--sample",
        type=int,
        help="operator runs: the test trajectory to export (default: the first three)",
    )
    e.add_argument("--device", default="auto")
    e.add_argument("--out", help="write the export into this directory (default: the run's)")
    e.add_argument(
        "--overwrite", action="store_true", help="replace the files of an earlier export"
    )
    add_case_file(e)
    sub.add_parser("cases", help="list the built-in cases")
    dd = sub.add_parser(
        "data",
        help="generate the dataset of an operator case (a family of problems)",
        epilog="Any other --OPTION VALUE goes to the case's make() (e.g. --n 64 for nse_stfno); "
        "`pdeml cases` lists each case's options.",
        allow_abbrev=False,
    )
    dd.add_argument("case", help="an operator case (file or built-in name)")
    dd.add_argument("--samples", type=int, required=True, help="trajectories to generate")
    dd.add_argument("--test", type=int, help="how many of them form the test split (default 1/8)")
    dd.add_argument("--out", required=True, help="the HDF5 file to write")
    dd.add_argument("--seed", type=int, default=0)
    dd.add_argument("--batch", type=int, default=32, help="trajectories solved at once")
    dd.add_argument("--device", default="auto")
    dd.add_argument("--no-progress", action="store_true")
    dd.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    dd.add_argument(
        "--threads",
        default="auto",
        help="CPU threads for torch: a number, or auto (the free cores; one solver step took "
        "185 ms with torch's default threads on a loaded machine, 3.3 ms with one)",
    )
    k = sub.add_parser(
        "condition",
        help="report kappa of the linearized PDE operator (why training stalls)",
        allow_abbrev=False,
    )
    k.add_argument("target", help="a case (file or name) at initialization, or a run directory")
    k.add_argument("--points", type=int, help="PDE points (default: the case's)")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--device", default="auto")
    add_case_file(k)
    for command in registry.commands().values():  # registered subcommands (entry points)
        command.add_parser(sub)
    return ap


def _method_options() -> list:
    """One option per name over the registered methods (each applies the one its method owns)."""
    return [owners[0][1] for owners in registry.method_options().values()]


def _given_options(args) -> dict:
    """The method options given on the command line (None: not given)."""
    return {
        o.name: getattr(args, o.dest)
        for o in _method_options()
        if getattr(args, o.dest) is not None
    }


def _set_threads(spec) -> int:
    """torch's CPU threads from ``--threads`` (the CLI's own process: not a library side effect)."""
    import torch

    from .threads import resolve_threads

    threads = resolve_threads(spec)
    torch.set_num_threads(threads)
    return threads


def _report(metrics: dict, out, world) -> int:
    if world.main:
        print(json.dumps({k: v for k, v in metrics.items() if k != "files"}, indent=2))
        print(f"run directory: {out}")
    return 0


def _case_options(extra: list[str]) -> dict:
    """``--name value`` / ``--name=value`` pairs left over by argparse: the case's options."""
    out, i = {}, 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise ValueError(
                f"unexpected argument {tok!r}. Fix: case options are --name VALUE pairs "
                "(see `pdeml cases`)"
            )
        if "=" in tok:
            k, v = tok[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
                raise ValueError(f"case option {tok} has no value. Fix: pass {tok} VALUE")
            k, v = tok[2:], extra[i + 1]
            i += 2
        out[k] = v
    return out


def main(argv=None) -> int:
    from .interrupts import terminate_as_interrupt

    with terminate_as_interrupt():  # SIGTERM (a scheduler's stop) unwinds like Ctrl-C
        return _main(argv)


def _main(argv=None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "solve", "condition", "data"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from . import run
    from .fit import DivergenceError

    try:
        commands = registry.commands()
        if args.command in commands:
            return commands[args.command].main(args)
        if args.command == "condition":
            report = run.condition_report(
                args.target,
                _case_options(extra),
                seed=args.seed,
                device=args.device,
                points=args.points,
                case_file=args.case_file,
            )
            print(json.dumps(report, indent=2))
            return 0
        if args.command == "data":
            _set_threads(args.threads)
            path = run.make_data(
                args.case,
                args.out,
                samples=args.samples,
                test=args.test,
                seed=args.seed,
                batch=args.batch,
                device=args.device,
                progress=not args.no_progress,
                options=_case_options(extra),
                overwrite=args.overwrite,
            )
            print(f"dataset: {path}")
            return 0
        if args.command == "cases":
            for name, doc in run.builtin_cases().items():
                print(f"{name:28s} {doc}")
            return 0
        if args.command == "export":
            for p in run.export_run(
                args.dir,
                args.resolution,
                args.device,
                args.sample,
                args.case_file,
                to=args.out,
                overwrite=args.overwrite,
            ):
                print(p)
            return 0
        from .distributed import World

        world = World.from_env(os.environ)  # torchrun's RANK/WORLD_SIZE: read here, nowhere else
        if args.command == "solve":
            threads = _set_threads(args.threads)
            metrics = run.solve_case(
                args.case,
                args.out,
                method=args.method,
                points=args.points,
                resolution=args.resolution,
                seed=args.seed,
                device=args.device,
                options=_case_options(extra),
                threads=threads,
                world=world,
                export=not args.no_export,
                **_given_options(args),
            )
            return _report(metrics, args.out, world)
        if args.nproc is not None:
            return _launch(args, sys.argv[1:] if argv is None else list(argv), world)
        options = _case_options(extra)
        out = args.out or str(Path("runs") / Path(args.case).stem)
        threads = _set_threads(args.threads)
        metrics = run.train_case(
            args.case,
            out,
            steps=args.steps,
            lr=args.lr,
            world=world,
            lbfgs_steps=args.lbfgs_steps,
            seed=args.seed,
            device=args.device,
            resume=args.resume,
            progress=not args.no_progress,
            options=options,
            combiner=args.combiner,
            optimizer=args.optimizer,
            snapshots=args.snapshots,
            threads=threads,
            checkpoint_every=args.checkpoint_every,
            checkpoint_minutes=args.checkpoint_minutes,
            **_given_options(args),
        )
        return _report(metrics, out, world)
    except DivergenceError as e:
        print(f"pdeml: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as e:
        from .interrupts import Interrupted

        if isinstance(e, Interrupted) and e.message:  # fit stopped at a step boundary
            print(f"pdeml: interrupted: {e.message}", file=sys.stderr)
            return e.exit_code
        print(
            "pdeml: interrupted; the last periodic checkpoint is kept (runs that train write "
            "one at the step they were stopped at): continue with --resume",
            file=sys.stderr,
        )
        return e.exit_code if isinstance(e, Interrupted) else 130
    except (ValueError, TypeError, KeyError, RuntimeError, OSError, ImportError) as e:
        print(f"pdeml: error: {e}", file=sys.stderr)
        return 2


def _launch(args, argv: list, world) -> int:
    """``pdeml train ... --nproc N``: this command again, under ``torchrun --standalone
    --nproc-per-node N`` (one machine), without ``--nproc``. Each process gets an equal share of
    the CPU threads unless ``--threads`` says otherwise."""
    import subprocess

    n = args.nproc
    if isinstance(n, bool) or n < 1:
        raise ValueError(
            f"--nproc={n} is not a process count. Fix: pass --nproc 2 (or more), or leave it out."
        )
    if world.active:
        raise ValueError(
            f"--nproc={n} was given under a launcher that already started {world.size} processes. "
            "Fix: leave --nproc out under torchrun."
        )
    if not str(args.device).startswith("cuda"):
        from .threads import available_cpus

        cpus = available_cpus()
        if n > cpus:
            print(
                f"pdeml: warning: --nproc={n} processes on {cpus} CPU cores: they will take turns "
                f"and run slower than one. Fix: pass --nproc {cpus} or fewer.",
                file=sys.stderr,
            )
    rest, skip = [], False
    for a in argv:  # drop --nproc N / --nproc=N, keep the rest as typed
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    if args.threads == "auto" and not str(args.device).startswith("cuda"):
        from .threads import resolve_threads

        rest += ["--threads", str(max(1, resolve_threads("auto") // n))]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(n),
        "-m",
        "pdeml",
        "--",
        *rest,
    ]
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
