"""Threads on a shared machine: L-shape Adam steps with 1 and 2 torch threads, idle and with
busy neighbours, and what ``--threads auto`` picks in each case.

    python tests/benchmarks/bench_threads.py [--steps 300] [--busy 6]

Each timing runs in its own process (torch's thread count is per process). "busy" starts
``--busy`` processes that spin on the CPU for the whole measurement, the situation of a shared
workstation, a CI runner or our own benchmarks run side by side. Ratios are against 1 thread
in the same condition.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def one(threads: int, steps: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(threads)
    import pdeml as pl
    from pdeml.run import load_case

    case, _ = load_case("poisson_lshape")
    backend = case.method.build(case.problem, seed=0)
    phases = [(steps, pl.FirstOrder(pl.Adam(1e-3)))]
    pl.fit(backend, [(20, pl.FirstOrder(pl.Adam(1e-3)))], eval_every=10**9)  # warm-up
    t = time.perf_counter()
    pl.fit(backend, phases, eval_every=10**9)
    return {"threads": threads, "s_per_step": (time.perf_counter() - t) / steps}


def spin(seconds: float):
    end = time.time() + seconds
    x = 0
    while time.time() < end:
        x += 1


def measure(threads: int, steps: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--one", str(threads), "--steps", str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["s_per_step"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument(
        "--busy", type=int, default=6, help="spinning neighbour processes in the busy case"
    )
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps)))
        return
    sys.path.insert(0, str(ROOT))
    from pdeml.threads import auto_threads, available_cpus, busy_elsewhere

    rows = []
    for label, busy in (("idle", 0), (f"{args.busy} busy processes", args.busy)):
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r});"
                    f"from bench_threads import spin; spin(3600)",
                ]
            )
            for _ in range(busy)
        ]
        try:
            time.sleep(2 if busy else 0)  # let them start spinning
            auto, seen = auto_threads(), busy_elsewhere()
            t1, t2 = measure(1, args.steps), measure(2, args.steps)
        finally:
            for p in procs:
                p.kill()
        rows.append((label, t1, t2, auto, seen))
        time.sleep(5)
    print(
        f"{available_cpus()} CPUs available; L-shape Adam step (2000 + 400 points, MLP 50x4), "
        f"{args.steps} steps"
    )
    print(
        "| condition | 1 thread s/step | 2 threads s/step | 2 / 1 | auto picks | CPUs busy "
        "elsewhere |"
    )
    print("|---|---|---|---|---|---|")
    for label, t1, t2, auto, load in rows:
        print(f"| {label} | {t1:.4f} | {t2:.4f} | {t2 / t1:.2f} | {auto} | {load:.1f} |")


if __name__ == "__main__":
    main()
