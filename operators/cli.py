"""``pdeml finetune``: Spectral-Refiner on one test trajectory of a trained ST-FNO run."""

from __future__ import annotations

import json


def add_parser(sub):
    f = sub.add_parser(
        "finetune",
        help="Spectral-Refiner: refine an ST-FNO run's prediction of one test "
        "trajectory on the equation's H^-1 residual (no data)",
        allow_abbrev=False,
    )
    f.add_argument("run", help="a run directory of an ST-FNO case (nse_stfno)")
    f.add_argument(
        "--sample", type=int, default=0, help="the test trajectory (index in the test split)"
    )
    f.add_argument("--resolution", type=int, help="grid to refine on (default: twice the data's)")
    f.add_argument(
        "--iterations",
        type=int,
        default=1000,
        help="Adam iterations (cosine-decayed learning rate)",
    )
    f.add_argument(
        "--modes",
        type=int,
        help="spatial modes of the grown output layer (default: resolution // 3)",
    )
    f.add_argument(
        "--modes-t",
        type=int,
        help="temporal modes of the grown output layer (default: twice the trained)",
    )
    f.add_argument("--lr", type=float, default=1e-3, help="learning rate of the layer's weights")
    f.add_argument("--bias-lr", type=float, default=1e-2, help="learning rate of its spectral bias")
    f.add_argument(
        "--substeps",
        type=int,
        default=1,
        help="evaluate the residual on a time grid this many times finer than the frames",
    )
    f.add_argument("--no-progress", action="store_true")
    f.add_argument("--out", help="output directory (default RUN/finetune_<sample>)")
    f.add_argument("--device", default="auto")
    f.add_argument(
        "--overwrite", action="store_true", help="replace a fine-tuning already in --out"
    )
    from pdeml.options import add_case_file

    add_case_file(f)


def main(args) -> int:
    from .refiner import finetune_run

    report = finetune_run(
        args.run,
        sample=args.sample,
        resolution=args.resolution,
        iterations=args.iterations,
        modes=args.modes,
        modes_t=args.modes_t,
        lr=args.lr,
        bias_lr=args.bias_lr,
        substeps=args.substeps,
        out=args.out,
        device=args.device,
        progress=not args.no_progress,
        case_file=args.case_file,
        overwrite=args.overwrite,
    )
    print(json.dumps({k: v for k, v in report.items() if k != "loss"}, indent=2))
    return 0
