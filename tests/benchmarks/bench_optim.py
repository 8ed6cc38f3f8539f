"""The optimizer layer: error against wall time, one process (one thread) per run.

Part A, ``poisson_sin_2d`` (Müller & Zeinhofer's setting: 2 -> 64 -> 1 tanh, 900 + 120 fixed
points, float64): Adam, Adam then L-BFGS, ENGD (dense Gauss-Newton) and ENGD-CG (Hessian-free),
each for the same wall-time budget; relative L2 at checkpoints in time.

Part B, multi-term losses (Burgers with soft initial/boundary terms, Kovasznay flow): the
weighted sum with Adam against PCGrad, ConFIG, M-ConFIG (with SGD) and grad-norm weights, for
the same wall time. Reported like ConFIG's paper as the test MSE, and as relative L2.

    python tests/benchmarks/bench_optim.py                       # both parts, default budgets
    python tests/benchmarks/bench_optim.py --part a --budget 60 --jobs 2
"""

import argparse
import json
import sys
from pathlib import Path

from _jobs import add_job_arguments, run_jobs

ROOT = Path(__file__).resolve().parents[2]
PART_A = {
    "adam": dict(optimizer="adam", lr=1e-3),
    "adam+lbfgs": dict(optimizer="adam", lr=1e-3, lbfgs=True),
    "engd": dict(optimizer="engd"),
    "engd-cg": dict(optimizer="engd-cg"),
}
PART_B = ["sum", "pcgrad", "config", "mconfig", "gradnorm"]
CHECKS = (5, 10, 30, 60, 120, 300)


def one(case_name: str, config: str, budget: float, seed: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    import pdeml as pl
    from pdeml.run import apply_overrides, build, load_case
    from pdeml.samplers import Uniform
    from pdeml.settings import replace

    case, _ = load_case(case_name, {})
    if case_name == "poisson_sin_2d":
        spec = PART_A[config]
        # 3000 Adam steps, then L-BFGS for the rest of the budget (adam+lbfgs)
        case = apply_overrides(
            case,
            {
                "optimizer": spec["optimizer"],
                "lr": spec.get("lr"),
                "steps": 3000 if spec.get("lbfgs") else 10**7,
                "lbfgs_steps": 10**7 if spec.get("lbfgs") else 0,
            },
        )
    else:
        if case_name == "burgers_1d":
            s = case.method.sampler
            case = case.replace(
                method=replace(
                    case.method,
                    transform=None,
                    sampler=Uniform(s.n_domain, s.n_boundary, s.n_initial),
                )
            )
        case = apply_overrides(case, {"combiner": config, "steps": 10**7, "lbfgs_steps": 0})
    backend = build(case, seed=seed, device="cpu")
    truth = case.problem.truth(4096, np.random.default_rng(seed + 12345))

    class Budget(pl.AbstractCallback):
        def on_step(self, state):
            if state.wall_time_s > budget:
                state.stop = True

    res = pl.fit(
        backend,
        case.phases,
        weights=case.weights,
        seed=seed,
        truth=truth,
        eval_every=10 if "engd" in config else 100,
        callbacks=[Budget()],
    )
    curve = [(r["wall_time_s"], r["l2_relative_error"]) for r in res.history]
    pred = backend.predict(truth[0])
    return {
        "error": res.l2_relative_error,
        "mse": float(np.mean((pred - truth[1]) ** 2)),
        "steps": res.steps,
        "wall_s": res.wall_time_s,
        "curve": curve,
        "threads": torch.get_num_threads(),
    }


def at(curve, t):
    errs = [e for w, e in curve if w <= t]
    return errs[-1] if errs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["a", "b", "both"], default="both")
    ap.add_argument("--budget", type=float, default=60.0, help="wall seconds per run")
    ap.add_argument(
        "--cases", nargs="*", default=["burgers_1d", "kovasznay_2d"], help="part B's cases"
    )
    add_job_arguments(ap, ROOT / "runs" / "bench-optim")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.budget, args.seed)))
        return
    configs = []
    if args.part in ("a", "both"):
        configs += [("poisson_sin_2d", c) for c in PART_A]
    if args.part in ("b", "both"):
        configs += [(c, k) for c in args.cases for k in PART_B]
    out = Path(args.out)
    results = run_jobs(
        configs,
        lambda cfg: [
            sys.executable,
            __file__,
            "--one",
            *cfg,
            "--budget",
            str(args.budget),
            "--seed",
            str(args.seed),
        ],
        out,
        args.jobs,
    )
    checks = [t for t in CHECKS if t <= args.budget]
    print(f"budget {args.budget:.0f} s per run, 1 thread; relative L2 at wall time t")
    print(
        "| case | method | steps | "
        + " | ".join(f"t = {t} s" for t in checks)
        + " | final rel. L2 | test MSE |"
    )
    print("|---|---|---|" + "---|" * len(checks) + "---|---|")
    for cfg in configs:
        r = results[cfg]
        if "error" not in r:
            print(f"| {cfg[0]} | {cfg[1]} | {r.get('failed')} |")
            continue
        cells = " | ".join(
            "-" if at(r["curve"], t) is None else f"{at(r['curve'], t):.2e}" for t in checks
        )
        print(
            f"| {cfg[0]} | {cfg[1]} | {r['steps']} | {cells} | {r['error']:.2e} | {r['mse']:.2e} |"
        )
    (out / "results.json").write_text(
        json.dumps({f"{c}/{k}": v for (c, k), v in results.items()}, indent=1)
    )


if __name__ == "__main__":
    main()
