"""The body of scripts/gpu_check.sh: runs each check as a subprocess with a time limit and prints
a markdown table (check, status, seconds, what it measured). See the shell script's header."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def checks(device: str, out: Path) -> list[tuple[str, list[str], int]]:
    sys.path.insert(0, str(ROOT))
    from pdeml.run import builtin_cases

    pdeml = [PY, "-m", "pdeml.cli"]
    fast = {
        "allen_cahn_highdim": ["--dim", "100"],
        "biharmonic_annulus": ["--dim", "5"],
        "heat_semilinear_highdim": ["--dim", "100"],
        "sine_gordon_highdim": ["--dim", "100"],
        "poisson_highdim": ["--dim", "100"],
        "convection_1d": ["--beta", "5"],
    }
    bench_ops = [PY, "tests/benchmarks/bench_operators.py", "--device", device, "--t-out", "40"]
    data64 = str(
        ROOT / "runs" / "bench-operators" / "nse64-320.h5"
    )  # written by the 64^2 benchmark
    out_list = [
        (
            "operators 128^2 s-per-epoch",
            bench_ops
            + ["--n", "128", "--samples", "40", "--test", "8", "--epochs", "6", "--batch", "8"],
            120,
        ),
        (
            "operators 64^2 accuracy",
            bench_ops
            + [
                "--n",
                "64",
                "--samples",
                "320",
                "--test",
                "32",
                "--epochs",
                "30",
                "--batch",
                "16",
                "--data",
                data64,
            ],
            180,
        ),
    ]
    out_list.append(
        (
            "walk-on-spheres lshape 10^4 points",
            pdeml
            + [
                "solve",
                "poisson_lshape",
                "--method",
                "wos",
                "--walks",
                "1024",
                "--points",
                "10000",
                "--device",
                device,
                "--out",
                str(out / "wos"),
            ],
            120,
        )
    )
    out_list.append(
        (
            "wosno vs physics-informed 32^2",
            [
                PY,
                "tests/benchmarks/bench_wosno.py",
                "--device",
                device,
                "--steps",
                "300",
                "--variants",
                "wos",
                "residual",
                "--threads",
                "8",
            ],
            240,
        )
    )
    finetune = [
        (
            "train nse_stfno 64^2",
            pdeml
            + [
                "train",
                "nse_stfno",
                "--n",
                "64",
                "--batch",
                "16",
                "--data",
                data64,
                "--steps",
                "1000",
                "--device",
                device,
                "--no-progress",
                "--out",
                str(out / "stfno64"),
            ],
            180,
        ),
        (
            "finetune 64^2 -> 256^2",
            pdeml
            + [
                "finetune",
                str(out / "stfno64"),
                "--sample",
                "0",
                "--resolution",
                "256",
                "--device",
                device,
                "--no-progress",
            ],
            150,
        ),
    ]
    out_list += [
        (
            "device tests",
            [
                PY,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/test_device.py",
                "tests/test_compile.py",
                "tests/test_hard_constraints.py",
                "-k",
                "not resumes and not sorption and not fisher_kpp",
            ],
            240,
        )
    ]
    import torch

    gpus = torch.cuda.device_count() if device.startswith("cuda") else 2
    out_list.append(
        (
            f"distributed weak scaling 1 vs {max(gpus, 1)} ranks",
            [
                PY,
                "tests/benchmarks/bench_distributed.py",
                "--device",
                device.split(":")[0],
                "--ranks",
                "1",
                str(max(gpus, 1)),
                "--points",
                "16384" if device.startswith("cuda") else "2048",
                "--steps",
                "30",
            ],
            180,
        )
    )
    out_list.append(
        (
            "PINN step: eager, compiled, CUDA graphs (L-shape)",
            [
                PY,
                "tests/benchmarks/bench_pinn_vs_jax.py",
                "--device",
                device,
                "--problems",
                "lshape",
                "--no-pin",
                "--blocks",
                "5",
            ],
            180,
        )
    )
    out_list.append(
        (
            "moe vs hc vs soft, fisher 300 steps",
            [
                PY,
                "tests/benchmarks/bench_moe.py",
                "--device",
                device,
                "--steps",
                "300",
                "--seeds",
                "0",
                "--variants",
                "soft",
                "hc",
                "moe:4",
                "--threads",
                "8",
            ],
            240,
        )
    )
    for case in builtin_cases():
        out_list.append(
            (
                f"train {case}",
                pdeml
                + [
                    "train",
                    case,
                    "--device",
                    device,
                    "--steps",
                    "30",
                    "--lbfgs-steps",
                    "5",
                    "--no-progress",
                    "--out",
                    str(out / case),
                    *fast.get(case, []),
                ],
                120,
            )
        )
    out_list += [
        (
            "dcdm train 32^2",
            pdeml
            + [
                "dcdm",
                "train",
                "--n",
                "32",
                "--epochs",
                "2",
                "--count",
                "64",
                "--ritz",
                "200",
                "--device",
                device,
                "--no-progress",
                "--out",
                str(out / "dcdm"),
            ],
            120,
        ),
        (
            "dcdm solve 64^2",
            pdeml
            + [
                "dcdm",
                "solve",
                str(out / "dcdm" / "dcdm.pt"),
                "--n",
                "64",
                "--device",
                device,
                "--no-progress",
                "--cg",
                "--out",
                str(out / "dcdm-solve"),
            ],
            120,
        ),
        (
            "bench derivatives",
            [
                PY,
                "tests/benchmarks/bench_derivatives.py",
                "--device",
                device,
                "--dims",
                "100",
                "1000",
                "--steps",
                "5",
                "--budget",
                "10",
            ],
            240,
        ),
        (
            "bench pinn vs deepxde",
            [PY, "tests/benchmarks/bench_pinn_vs_deepxde.py", "--steps", "50"],
            180,
        ),
    ]
    return out_list + finetune


def _fields(d: dict) -> str:
    if "before" in d and "after" in d:  # finetune.json
        b, a = d["before"], d["after"]
        return (
            f"{d['resolution']}^2, modes {d['modes']}: H-1 {b['h_minus_one']:.2e} -> "
            f"{a['h_minus_one']:.2e}, "
            f"error {b['relative_l2']:.2e} -> {a['relative_l2']:.2e}"
        )
    keys = [
        k
        for k in (
            "l2_relative_error",
            "iterations",
            "final_loss",
            "steps",
            "wall_time_s",
            "status",
            "walks_per_second",
        )
        if k in d
    ]
    return ", ".join(f"{k} {d[k]:.3g}" if isinstance(d[k], float) else f"{k} {d[k]}" for k in keys)


def summary(log: str) -> str:
    """What a check measured: a training run's metrics.json, a one-line JSON result, the
    benchmark's pdeml rows, or the last line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    run_dir = next(
        (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("run directory:")), None
    )
    if run_dir and (ROOT / run_dir / "metrics.json").is_file():
        return _fields(json.loads((ROOT / run_dir / "metrics.json").read_text()))
    if "{" in lines and "}" in lines:  # an indented JSON report (pdeml finetune)
        start, end = lines.index("{"), len(lines) - 1 - lines[::-1].index("}")
        try:
            return _fields(json.loads("\n".join(lines[start : end + 1])))
        except ValueError:
            pass
    for ln in reversed(lines):
        if ln.startswith("{") and ln.endswith("}"):
            try:
                return _fields(json.loads(ln))
            except ValueError:
                continue
    ops = [
        [c.strip() for c in ln.strip("|").split("|")]
        for ln in lines
        if ln.startswith(("| ST-FNO", "| FNO"))
    ]
    if ops:  # bench_operators' table: model, lr, parameters, width, error, s/epoch, ratio, peak
        return "; ".join(
            f"{r[0]} (lr {r[1]}): err {r[4]}, {r[5]} s/epoch ({r[6]}x), {r[7]} MB"
            if len(r) > 7
            else " ".join(r)
            for r in ops
        )[:300]
    wos = [
        [c.strip() for c in ln.strip("|").split("|")]
        for ln in lines
        if ln.startswith(("| wos", "| residual"))
    ]
    # bench_wosno's table: variant, lr, error mean, median, s/step, walks s/step, activations, peak
    if wos:
        return "; ".join(
            f"{r[0]}: err {r[2]}, {r[4]} s/step + walks {r[5]}, peak {r[7]} MiB" for r in wos
        )[:300]
    pinn = [
        [c.strip() for c in ln.strip("|").split("|")]
        for ln in lines
        if ln.startswith("| pdeml compile=")
    ]
    if pinn:  # bench_pinn_vs_jax's table: implementation, median, spread, ratio, warm-up
        return "; ".join(f"{r[0][len('pdeml ') :]}: {r[1]}/step" for r in pinn)[:300]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln.startswith("| ")]
    ranks = [r for r in cells if len(r) == 6 and r[0].isdigit() and r[2].endswith("ms")]
    if (
        ranks
    ):  # bench_distributed's table: ranks, global points, step, efficiency, all-reduce, share
        return "; ".join(
            f"{r[0]} ranks: {r[2]}/step, efficiency {r[3]}, all-reduce {r[4]} ({r[5]})"
            for r in ranks
        )[:300]
    moe = [
        [c.strip() for c in ln.strip("|").split("|")]
        for ln in lines
        if ln.startswith("| fisher_kpp_1d")
    ]
    if moe:  # bench_moe's table: case, variant, error mean, min-max, s/step, peak
        return "; ".join(f"{r[1]}: err {r[2]}, {r[4]} s/step, peak {r[5]} MiB" for r in moe)[:300]
    rows = [ln for ln in lines if ln.startswith("pdeml ") or ln.startswith("stde:16 vs")]
    return ("; ".join(rows) if rows else (lines[-1] if lines else ""))[:160].replace("|", "/")


def _table(head, rows, total) -> str:
    table = [head, "", "| check | status | seconds | measured |", "|---|---|---|---|"]
    table += [f"| {n} | {s} | {t:.1f} | {m} |" for n, s, t, m in rows]
    table.append(f"\ntotal {total:.0f} s")
    return "\n".join(table)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument(
        "--out", default="runs/gpu-check", help="the table (table.md) and the logs (checks.log)"
    )
    ap.add_argument("--runs", help="the checks' run folders (default OUT/runs)")
    ap.add_argument("--only", help="run only the checks whose names contain this")
    ap.add_argument(
        "--budget",
        type=float,
        default=float("inf"),
        help="seconds: start no check after this (the rest are listed as skipped)",
    )
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(args.runs) if args.runs else out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    logs = out / "checks.log"
    logs.write_text("")
    import torch

    head = (
        f"device {args.device}: "
        + (
            torch.cuda.get_device_name()
            if args.device.startswith("cuda") and torch.cuda.is_available()
            else "cpu"
        )
        + f", torch {torch.__version__}"
    )
    rows, t_all = [], time.perf_counter()
    for name, cmd, limit in checks(args.device, runs):
        if args.only and args.only not in name:
            continue
        if time.perf_counter() - t_all > args.budget:
            rows.append((name, "skipped (budget)", 0.0, ""))
            continue
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
            status, log = (
                ("ok" if p.returncode == 0 else f"FAIL rc={p.returncode}"),
                p.stdout + p.stderr,
            )
        except subprocess.TimeoutExpired as e:
            status, log = (
                f"TIMEOUT {limit}s",
                (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""),
            )
        with logs.open("a") as f:
            f.write(f"\n===== {name}: {status}\n$ {' '.join(cmd)}\n{log}\n")
        rows.append((name, status, time.perf_counter() - t0, summary(log)))
        print(f"{name}: {status} ({rows[-1][2]:.1f} s)", file=sys.stderr, flush=True)
        text = _table(head, rows, time.perf_counter() - t_all)
        (out / "table.md").write_text(
            text + "\n"
        )  # after every check: a cut-off run keeps its rows
    print(text)
    return 0 if all(s == "ok" for _, s, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
