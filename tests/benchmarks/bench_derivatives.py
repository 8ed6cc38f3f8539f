"""Seconds per training step and peak memory of the Laplacian estimators, D = 10 ... 10000.

Two-body Allen-Cahn on the unit ball (``cases/allen_cahn_highdim.py``), MLP 128 x 4 tanh with the
hard constraint, 100 collocation points, one Adam step = residual loss + backward + update.
Estimators: exact autograd (d Hessian-row backward passes), exact Taylor mode (forward
Laplacian), SDGD by double backward (B sampled dimensions), STDE sparse (B one-hot 2-jets,
collapsed) and dense (B Rademacher 2-jets), and sparse STDE with the loss under ``torch.compile``
(``+compile``: ``PINN(compile=True)``, ``pdeml train --compile``; its compile time is
reported and not counted per step; SDGD cannot be compiled, torch.compile has no double
backward). Every (estimator, D) runs in its own subprocess so
the peak resident memory (Linux VmHWM after resetting it, minus the resident memory before the
first step; on CUDA ``max_memory_allocated``) is its own. A configuration that would take longer
than the budget
per step is skipped ("-"). Ratios are to exact autograd at the same D.

    python tests/benchmarks/bench_derivatives.py                 # CPU, D = 10 100 1000 10000
    python tests/benchmarks/bench_derivatives.py --device cuda --dims 100 1000 10000 100000
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ESTIMATORS = ["autograd", "taylor", "sdgd:{B}", "stde:{B}", "stde-dense:{B}", "stde:{B}+compile"]


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    """Hand the allocator's free memory back to the OS (glibc ``malloc_trim``), so that a step's
    allocations show in the resident size even when earlier steps (the compile's warm-up) left
    a heap large enough to serve them without growing."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> int:
    """Reset the kernel's peak-RSS mark (Linux: clear_refs 5) and return the current RSS in kB,
    so the set-up (e.g. 2048 sample points in 10^4 dimensions) does not hide the step's peak."""
    _trim_heap()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kb("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_kb() -> int:
    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def one(spec: str, dim: int, device: str, steps: int, budget: float) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from pdeml.families.highdim import make_case
    from pdeml.solvers import PINNBackend

    dev = torch.device(device)
    case = make_case("allen_cahn", dim, 0)
    spec, _, flag = spec.partition("+")
    compiled = flag == "compile"
    be = PINNBackend(
        case.problem,
        case.method.model,
        estimator=spec,
        hard_dirichlet=True,
        seed=0,
        compile_losses=compiled,
    ).to(dev)
    opt = torch.optim.Adam(be.parameters(), 1e-3, fused=True)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(100, dim, generator=gen)
    x = (x / x.norm(dim=1, keepdim=True) * torch.rand(100, 1, generator=gen) ** (1 / dim)).to(dev)
    batch = {"domain": {"x": x}}

    def step():
        loss = be.losses(batch)["pde"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    compile_s = None
    if compiled:  # the first call learns the plan, the second compiles: before the peak reset
        t = time.perf_counter()
        step()
        step()
        sync()
        compile_s = time.perf_counter() - t
    base = _reset_peak()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    t = time.perf_counter()
    step()  # warm-up; also the budget probe
    sync()
    first = time.perf_counter() - t
    if first > budget:
        return {"s_per_step": None, "first_step_s": first}
    n = max(1, min(steps, int(budget / max(first, 1e-6))))
    t = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    dt = (time.perf_counter() - t) / n
    if dev.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    else:
        peak = (_peak_kb() - base) / 1024
    out = {"s_per_step": dt, "peak_mb": peak, "steps": n}
    return out if compile_s is None else {**out, "compile_s": compile_s}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", type=int, nargs="*", default=[10, 100, 1000, 10000])
    ap.add_argument("--samples", type=int, default=16, help="B: sampled dimensions / probes")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per configuration")
    ap.add_argument(
        "--exact-max-dim",
        type=int,
        default=1000,
        help="skip the exact estimators (d directions / d backward passes) above this D",
    )
    ap.add_argument("--one", nargs=2, metavar=("SPEC", "DIM"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.device, args.steps, args.budget)))
        return
    specs = [s.format(B=args.samples) for s in ESTIMATORS]
    results = {}
    for dim in args.dims:
        for spec in specs:
            if spec in ("autograd", "taylor") and dim > args.exact_max_dim:
                results[spec, dim] = {
                    "s_per_step": None,
                    "skipped": f"exact, D > {args.exact_max_dim}",
                }
                continue
            try:
                r = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        spec,
                        str(dim),
                        "--device",
                        args.device,
                        "--steps",
                        str(args.steps),
                        "--budget",
                        str(args.budget),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=10 * args.budget,
                )
                results[spec, dim] = (
                    json.loads(r.stdout.strip().splitlines()[-1])
                    if r.returncode == 0
                    else {"s_per_step": None, "error": r.stderr.strip().splitlines()[-1:]}
                )
            except subprocess.TimeoutExpired:
                results[spec, dim] = {"s_per_step": None, "error": f"> {10 * args.budget} s"}
            print(f"# {spec:16s} D={dim:<6d} {results[spec, dim]}", file=sys.stderr, flush=True)
    print(
        f"device {args.device}, B = {args.samples}, 100 points, MLP 128x4 tanh, Allen-Cahn two-body"
    )
    head = (
        f"{'estimator':16s} {'D':>6s} {'s/step':>9s} {'it/s':>8s} {'x autograd':>10s} "
        f"{'peak MB':>8s} {'mem x':>6s}"
    )
    print(head)
    print("-" * len(head))
    for dim in args.dims:
        ref = results["autograd", dim]
        for spec in specs:
            r = results[spec, dim]
            if r.get("s_per_step") is None:
                print(f"{spec:16s} {dim:6d} {'-':>9s} {'-':>8s} {'-':>10s} {'-':>8s} {'-':>6s}")
                continue
            speed = (
                f"{ref['s_per_step'] / r['s_per_step']:10.1f}"
                if ref.get("s_per_step")
                else f"{'-':>10s}"
            )
            mem = (
                f"{r['peak_mb'] / ref['peak_mb']:6.3f}"
                if ref.get("s_per_step") and ref["peak_mb"] > 0
                else f"{'-':>6s}"
            )
            print(
                f"{spec:16s} {dim:6d} {r['s_per_step']:9.4f} {1 / r['s_per_step']:8.1f} {speed} "
                f"{r['peak_mb']:8.1f} {mem}"
            )
    for dim in args.dims:
        sdgd = results[f"sdgd:{args.samples}", dim]
        for spec in (f"stde:{args.samples}", f"stde:{args.samples}+compile"):
            stde = results[spec, dim]
            if sdgd.get("s_per_step") and stde.get("s_per_step"):
                extra = f" (compile {stde['compile_s']:.0f} s once)" if "compile_s" in stde else ""
                print(
                    f"{spec} vs SDGD (double backward) at D = {dim}: "
                    f"{sdgd['s_per_step'] / stde['s_per_step']:.1f}x faster per step, "
                    f"{sdgd['peak_mb'] / max(stde['peak_mb'], 1e-9):.1f}x less peak memory{extra}"
                )


if __name__ == "__main__":
    main()
