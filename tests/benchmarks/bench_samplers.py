"""Adaptive samplers against uniform points: relative L2 error at equal steps and equal wall time.

Cases: convection_1d (beta = 30 and 50), allen_cahn_1d, peak_2d. Samplers: uniform (the
case's fixed points), uniform redrawn as often as the adaptive ones move their points
("uniform-redraw": the same point budget per step), RAD, R3, causal R3 (time-dependent cases
only), AAS. Every (case, sampler) run trains through ``pdeml.run.train_case`` with the case's
settings, in its own process (``--jobs`` at a time, one thread each). One table: the error
after the same number of steps, and the error at the same wall time (the fastest run's total
time for that case, read off each run's history), plus for peak_2d the fraction of the final
PDE points within r < 0.1 of the peak (uniform: 0.79%).

    python tests/benchmarks/bench_samplers.py                                  # everything, case
    defaults
    python tests/benchmarks/bench_samplers.py --cases peak_2d --steps 3000 --jobs 2
    python tests/benchmarks/bench_samplers.py --cases allen_cahn_1d --samplers aas \
        --set steps=20000 lbfgs_steps=0                          # any plain Case field, every run
"""

import argparse
import json
import sys
from pathlib import Path

from _jobs import add_job_arguments, run_jobs

ROOT = Path(__file__).resolve().parents[2]
CASES = {
    "convection_b30": ("convection_1d", {"beta": 30.0}),
    "convection_b50": ("convection_1d", {"beta": 50.0}),
    "allen_cahn_1d": ("allen_cahn_1d", {}),
    "peak_2d": ("peak_2d", {}),
}
SAMPLERS = ["uniform", "uniform-redraw", "rad", "r3", "r3-causal", "aas"]
REDRAW = 200  # steps between draws for uniform-redraw (AAS's default period)


def case_fields(pairs) -> dict:
    """``["steps=20000", "lbfgs_steps=0"]`` -> Case field overrides, typed like the field's
    default (by the conversion ``pdeml train`` applies to case options)."""
    from dataclasses import fields

    from pdeml.problem import Case
    from pdeml.run import typed_option

    defaults = {
        f.name: f.default
        for f in fields(Case)
        if isinstance(f.default, (int, float, str)) and not isinstance(f.default, bool)
    }
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or key not in defaults:
            raise SystemExit(
                f"--set {pair!r}: expected FIELD=VALUE with FIELD a Case field holding a "
                f"number, string or flag, e.g. steps=20000. Fix: one of {sorted(defaults)}"
            )
        out[key] = typed_option(f"--set {key}", value, defaults[key])
    return out


def one(
    case_key: str, sampler: str, steps: int | None, out: Path, seed: int, overrides=None
) -> dict:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from pdeml import checkpoint as ckpt
    from pdeml.run import load_case, train_case
    from pdeml.samplers import Uniform

    name, options = CASES[case_key]
    case, _ = load_case(name, {k: str(v) for k, v in options.items()})
    case = case.replace(**case_fields(overrides)) if overrides else case
    if case.problem.time is None and sampler == "r3-causal":
        return {"skipped": "not time-dependent"}
    s = case.method.sampler
    counts = dict(n_domain=s.n_domain, n_boundary=s.n_boundary, n_initial=s.n_initial)
    if sampler == "uniform":
        chosen = Uniform(**counts)
    elif sampler == "uniform-redraw":
        chosen = Uniform(**counts, every=REDRAW)
    else:
        chosen = sampler  # a registry name, built from the case's counts
    m = train_case(case, out, steps=steps, seed=seed, progress=False, export=False, sampler=chosen)
    saved = ckpt.load(out / "checkpoint.pt")
    hist = json.loads(saved["history"])
    row = {
        "error": m["l2_relative_error"],
        "wall_s": m["wall_time_s"],
        "steps": m["steps"],
        "curve": [
            (r["wall_time_s"], r["l2_relative_error"])
            for r in hist
            if r.get("l2_relative_error") is not None
        ],
    }
    if name == "peak_2d":
        x = saved["batches"]["domain/x"].numpy()
        row["near_peak"] = float((np.linalg.norm(x, axis=1) < 0.1).mean())
    return row


def at_time(curve, t):
    errs = [e for w, e in curve if w <= t]
    return errs[-1] if errs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--samplers", nargs="*", default=SAMPLERS)
    ap.add_argument("--steps", type=int, help="Adam steps for every run (default: each case's)")
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="override Case fields in every run, e.g. lbfgs_steps=0 steps=20000",
    )
    add_job_arguments(ap, ROOT / "runs" / "bench-samplers")
    args = ap.parse_args()
    if args.one:
        case_key, sampler = args.one
        print(
            json.dumps(
                one(
                    case_key,
                    sampler,
                    args.steps,
                    Path(args.out) / case_key / sampler,
                    args.seed,
                    args.set,
                )
            )
        )
        return
    case_fields(args.set)  # a bad --set fails here, not in every job
    configs = [(c, s) for c in args.cases for s in args.samplers]

    def command(cfg):
        cmd = [sys.executable, __file__, "--one", *cfg, "--out", args.out, "--seed", str(args.seed)]
        return (
            cmd
            + (["--steps", str(args.steps)] if args.steps else [])
            + (["--set", *args.set] if args.set else [])
        )

    results = run_jobs(configs, command, Path(args.out), args.jobs)
    print(
        f"steps: {args.steps or 'case defaults'}{'; ' + ' '.join(args.set) if args.set else ''}; "
        "equal wall time = the fastest run of each case"
    )
    head = "| case | sampler | rel. L2 (equal steps) | rel. L2 (equal time) | wall s | near peak |"
    print(head)
    print("|---|---|---|---|---|---|")
    for c in args.cases:
        rows = {s: results[c, s] for s in args.samplers if "error" in results.get((c, s), {})}
        t_eq = min((r["wall_s"] for r in rows.values()), default=0.0)
        for s in args.samplers:
            r = results.get((c, s), {})
            if "error" not in r:
                print(f"| {c} | {s} | {r.get('skipped') or r.get('failed', '-')} | | | |")
                continue
            eq = at_time(r["curve"], t_eq)
            near = f"{100 * r['near_peak']:.1f}%" if "near_peak" in r else ""
            print(
                f"| {c} | {s} | {r['error']:.3g} | {'-' if eq is None else f'{eq:.3g}'} | "
                f"{r['wall_s']:.0f} | {near} |"
            )
    (Path(args.out) / "results.json").write_text(
        json.dumps({f"{c}/{s}": v for (c, s), v in results.items()}, indent=1)
    )


if __name__ == "__main__":
    main()
