"""Soft constraints (PINN) vs hard constraints (K = 1) vs a mixture of experts at equal steps
(issue 17): relative L2 against the case's truth, seconds per step and peak memory, over seeds.

    python tests/benchmarks/bench_moe.py [--cases fisher_kpp_1d] [--steps 1000] [--seeds 0 1 2]
    python tests/benchmarks/bench_moe.py --variants soft hc moe:4 moe:4@250 --device cuda

A variant is a ``--constraint`` value; ``moe:4@250`` also sets 250 constraint points per expert
(equal total points with ``hc``'s 1000). Each run trains in its own process through
``pdeml.run.train_case`` (peak memory: resident on the CPU, ``max_memory_allocated`` on a GPU).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def one(args) -> dict:
    sys.path.insert(0, str(ROOT))
    import tempfile

    import torch

    import pdeml.run as R
    from pdeml import settings

    torch.set_num_threads(args.threads)
    constraint, _, points = args.one.partition("@")
    case, _ = R.load_case(args.case)
    case = R.apply_overrides(case, {"constraint": constraint, "steps": args.steps})
    if points:
        case = case.replace(method=settings.replace(case.method, points=int(points)))
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        m = R.train_case(
            case, out, seed=args.seed, device=args.device, progress=False, export=False
        )
    wall = time.perf_counter() - t0
    peak = (
        torch.cuda.max_memory_allocated()
        if args.device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "case": args.case,
        "variant": args.one,
        "seed": args.seed,
        "error": m["l2_relative_error"],
        "s_per_step": m["wall_time_s"] / max(m["steps"], 1),
        "wall_s": wall,
        "peak_bytes": int(peak),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=["fisher_kpp_1d"])
    ap.add_argument("--variants", nargs="+", default=["soft", "hc", "moe:4", "moe:4@250"])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return
    rows = []
    for case in args.cases:
        for v in args.variants:
            for seed in args.seeds:
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    v,
                    "--case",
                    case,
                    "--seed",
                    str(seed),
                    "--steps",
                    str(args.steps),
                    "--device",
                    args.device,
                    "--threads",
                    str(args.threads),
                ]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    print(
                        f"# {case} {v} seed {seed} failed:\n{out.stderr[-1500:]}", file=sys.stderr
                    )
                    continue
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                r = rows[-1]
                print(
                    f"# {case} {v} seed {seed}: error {r['error']:.3e}, {r['s_per_step']:.3f} "
                    "s/step, "
                    f"peak {r['peak_bytes'] / 2**20:.0f} MiB",
                    flush=True,
                )
    print(f"\n{args.steps} steps, seeds {args.seeds}, {args.device}, {args.threads} threads\n")
    print("| case | variant | error mean | error min-max | s/step | peak MiB |")
    print("|---|---|---|---|---|---|")
    for case in args.cases:
        for v in args.variants:
            rs = [r for r in rows if r["case"] == case and r["variant"] == v]
            if not rs:
                continue
            e = np.array([r["error"] for r in rs])
            print(
                f"| {case} | {v} | {e.mean():.2e} | {e.min():.2e}-{e.max():.2e} | "
                f"{np.mean([r['s_per_step'] for r in rs]):.3f} | "
                f"{max(r['peak_bytes'] for r in rs) / 2**20:.0f} |"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
