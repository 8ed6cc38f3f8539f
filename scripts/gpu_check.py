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
    fast = {"allen_cahn_highdim": ["--dim", "100"], "biharmonic_annulus": ["--dim", "5"],
            "heat_semilinear_highdim": ["--dim", "100"], "sine_gordon_highdim": ["--dim", "100"],
            "poisson_highdim": ["--dim", "100"], "convection_1d": ["--beta", "5"]}
    out_list = [("device tests", [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_device.py",
                                  "tests/test_compile.py"], 240)]
    for case in builtin_cases():
        out_list.append((f"train {case}", pdeml + ["train", case, "--device", device, "--steps", "30",
                                                    "--lbfgs-steps", "5", "--no-progress", "--out",
                                                    str(out / case), *fast.get(case, [])], 120))
    out_list += [
        ("dcdm train 32^2", pdeml + ["dcdm", "train", "--n", "32", "--epochs", "2", "--count", "64", "--ritz", "200",
                                    "--device", device, "--no-progress", "--out", str(out / "dcdm")], 120),
        ("dcdm solve 64^2", pdeml + ["dcdm", "solve", str(out / "dcdm" / "dcdm.pt"), "--n", "64", "--device", device,
                                    "--no-progress", "--cg", "--out", str(out / "dcdm-solve")], 120),
        ("bench derivatives", [PY, "tests/benchmarks/bench_derivatives.py", "--device", device, "--dims", "100",
                               "1000", "--steps", "5", "--budget", "10"], 240),
        ("bench pinn vs deepxde", [PY, "tests/benchmarks/bench_pinn_vs_deepxde.py", "--steps", "50"], 180),
    ]
    return out_list


def _fields(d: dict) -> str:
    keys = [k for k in ("l2_relative_error", "iterations", "final_loss", "steps", "wall_time_s", "status") if k in d]
    return ", ".join(f"{k} {d[k]:.3g}" if isinstance(d[k], float) else f"{k} {d[k]}" for k in keys)


def summary(log: str) -> str:
    """What a check measured: a training run's metrics.json, a one-line JSON result, the
    benchmark's pdeml rows, or the last line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    run_dir = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("run directory:")), None)
    if run_dir and (ROOT / run_dir / "metrics.json").is_file():
        return _fields(json.loads((ROOT / run_dir / "metrics.json").read_text()))
    for ln in reversed(lines):
        if ln.startswith("{") and ln.endswith("}"):
            try:
                return _fields(json.loads(ln))
            except ValueError:
                continue
    rows = [ln for ln in lines if ln.startswith("pdeml ") or ln.startswith("stde:16 vs")]
    return ("; ".join(rows) if rows else (lines[-1] if lines else ""))[:160].replace("|", "/")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="runs/gpu-check")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch
    head = (f"device {args.device}: " + (torch.cuda.get_device_name() if args.device.startswith("cuda")
                                        and torch.cuda.is_available() else "cpu")
            + f", torch {torch.__version__}")
    rows, t_all = [], time.perf_counter()
    for name, cmd, limit in checks(args.device, out):
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
            status, log = ("ok" if p.returncode == 0 else f"FAIL rc={p.returncode}"), p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            status, log = f"TIMEOUT {limit}s", (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        (out / (name.replace(" ", "_").replace("^", "") + ".log")).write_text(log)
        rows.append((name, status, time.perf_counter() - t0, summary(log)))
        print(f"{name}: {status} ({rows[-1][2]:.1f} s)", file=sys.stderr, flush=True)
    table = [head, "", "| check | status | seconds | measured |", "|---|---|---|---|"]
    table += [f"| {n} | {s} | {t:.1f} | {m} |" for n, s, t, m in rows]
    table.append(f"\ntotal {time.perf_counter() - t_all:.0f} s")
    text = "\n".join(table)
    (out / "table.md").write_text(text + "\n")
    print(text)
    return 0 if all(s == "ok" for _, s, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
