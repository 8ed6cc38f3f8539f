"""WoS-NO vs the physics-informed operator at equal steps (issue 16): the same FNO, the same
training domains, optimizer, steps and batch; only the targets differ. Reported per variant:
the test error against the finite-element truth (mean and median over 16 fixed test domains),
seconds per step (the network's step, and the walks' share apart), the activation memory of one
step (bytes autograd saves: device-independent) and the process's peak memory (peak resident
memory on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU). Also the physics-informed
loss's own floor on this grid (its exact minimizer's error,
:func:`pdeml.operators.wosno.physics_floor`).

    python tests/benchmarks/bench_wosno.py [--n 32] [--steps 1000] [--domains 64] [--batch 8]
    [--device cuda]
    python tests/benchmarks/bench_wosno.py --variants wos residual --lr 1e-3 3e-3

Each variant trains in its own process (its peak memory is its own), through ``pdeml.fit``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = {
    "wos": dict(targets="wos"),
    "wos-weighted": dict(targets="wos", weighting="std_error"),
    "residual": dict(targets="residual"),
    "truth": dict(targets="truth"),
}


def one(args) -> dict:
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    import pdeml as pl
    from pdeml.cases.poisson_star_family import make
    from pdeml.operators.wosno import DomainDraws

    torch.set_num_threads(args.threads)
    from pdeml.run import apply_overrides

    case = apply_overrides(
        make(n=args.n, domains=args.domains, batch=args.batch, **VARIANTS[args.one]),
        {"steps": args.steps, "lr": args.lr},
    )
    backend = case.method.build(case.problem, seed=args.seed, device=args.device)
    walk_s = [0.0]
    walk = DomainDraws._walk

    def timed(self, k):
        t0 = time.perf_counter()
        walk(self, k)
        walk_s[0] += time.perf_counter() - t0

    DomainDraws._walk = timed

    # activation memory of one step: the bytes autograd saves for the backward pass
    run = backend.batches(None, np.random.default_rng(args.seed))
    batch = pl.sampling.to_torch(run.current(), backend.dtype, backend.device)
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        sum(backend.losses(batch).values()).backward()
    backend.zero_grad()
    walk_s[0] = 0.0
    truth = backend.reference(None)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = pl.fit(
        backend,
        case.phases,
        weights=case.weights,
        seed=args.seed,
        truth=truth,
        eval_every=max(1, args.steps // 10),
    )
    wall = time.perf_counter() - t0
    errors = backend.errors()
    peak = (
        torch.cuda.max_memory_allocated()
        if args.device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    return {
        "variant": args.one,
        "lr": args.lr,
        "error_mean": float(errors.mean()),
        "error_median": float(np.median(errors)),
        "s_per_step": (wall - walk_s[0]) / args.steps,
        "walk_s_per_step": walk_s[0] / args.steps,
        "saved_bytes": saved[0],
        "peak_bytes": int(peak),
        "curve": [(r["step"], r["l2_relative_error"]) for r in result.history],
    }


def floor(args) -> dict:
    """The physics-informed loss's exact minimizer on the test domains: its error and rank."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from pdeml.families.star_poisson import StarFamily
    from pdeml.operators.backend import TEST_SEED
    from pdeml.operators.wosno import physics_floor

    fam, rng = StarFamily(args.n), np.random.default_rng(TEST_SEED)
    errs, deficient = [], 0
    for _ in range(16):
        star = fam.draw(rng)
        feats, inside = fam.features(star)
        truth = fam.truth(star, inside)
        u, rank, unknowns = physics_floor(fam, star)
        errs.append(np.linalg.norm(u - truth) / np.linalg.norm(truth))
        deficient += rank < unknowns
    return {
        "floor_mean": float(np.mean(errs)),
        "floor_median": float(np.median(errs)),
        "rank_deficient": deficient,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--domains", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8, help="domains per step")
    ap.add_argument("--lr", type=float, nargs="+", default=[3e-3])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", choices=list(VARIANTS), help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.one:
        args.lr = args.lr[0]
        print(json.dumps(one(args)))
        return
    rows = []
    for v in args.variants:
        for lr in args.lr:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                v,
                "--lr",
                str(lr),
                "--n",
                str(args.n),
                "--steps",
                str(args.steps),
                "--domains",
                str(args.domains),
                "--batch",
                str(args.batch),
                "--device",
                args.device,
                "--threads",
                str(args.threads),
                "--seed",
                str(args.seed),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(
                f"# {v} lr {lr:g}: error {r['error_mean']:.3e} (median {r['error_median']:.3e}), "
                f"{r['s_per_step']:.3f} s/step + walks {r['walk_s_per_step']:.3f}, "
                f"saved {r['saved_bytes'] / 2**20:.1f} MiB, peak {r['peak_bytes'] / 2**20:.0f} MiB",
                flush=True,
            )
    fl = floor(args) if "residual" in args.variants else {}
    marks = sorted({s for r in rows for s, _ in r["curve"]})
    print("\ntest error (mean over the test domains' relative L2 of the whole set) at steps", marks)
    for r in rows:
        print(f"  {r['variant']} lr {r['lr']:g}: " + " ".join(f"{e:.3g}" for _, e in r["curve"]))
    print(
        f"\n{args.n}² grid, {args.domains} training domains, {args.steps} steps, batch "
        f"{args.batch}, {args.device}\n"
    )
    print(
        "| variant | peak lr | test error mean | median | s/step (network) | walks s/step | "
        "activations MiB | peak MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['lr']:g} | {r['error_mean']:.2e} | {r['error_median']:.2e} | "
            f"{r['s_per_step']:.3f} | {r['walk_s_per_step']:.3f} | {r['saved_bytes'] / 2**20:.1f} "
            "| "
            f"{r['peak_bytes'] / 2**20:.0f} |"
        )
    if fl:
        print(
            "\nphysics-informed loss's exact minimizer on the test domains: error mean "
            f"{fl['floor_mean']:.2e}, "
            f"median {fl['floor_median']:.2e}, rank-deficient systems: {fl['rank_deficient']}/16"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "floor": fl}, indent=1))


if __name__ == "__main__":
    main()
