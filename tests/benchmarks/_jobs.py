"""Run benchmark configurations as subprocesses, ``jobs`` at a time, one thread each.

Each configuration is a tuple of strings; ``command(cfg)`` gives its argv. Output goes to a log
file per configuration (never a pipe, which a chatty run could fill and block on); the last
line of a successful run's log is its JSON result.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def run_jobs(configs, command, out: Path, jobs: int = 1) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    results, running, queue = {}, [], list(configs)
    while queue or running:
        while queue and len(running) < jobs:
            cfg = queue.pop(0)
            log = out / ("-".join(cfg) + ".log")
            running.append(
                (
                    cfg,
                    log,
                    subprocess.Popen(
                        command(cfg), stdout=log.open("w"), stderr=subprocess.STDOUT, env=env
                    ),
                )
            )
        done = [item for item in running if item[2].poll() is not None]
        if not done:
            time.sleep(1.0)
        for item in done:
            running.remove(item)
            cfg, log, proc = item
            lines = log.read_text().strip().splitlines() or ["?"]
            results[cfg] = json.loads(lines[-1]) if proc.returncode == 0 else {"failed": lines[-1]}
            shown = {k: v for k, v in results[cfg].items() if k != "curve"}
            print(f"# {' '.join(cfg)}: {shown}", file=sys.stderr, flush=True)
    return results


def add_job_arguments(ap, out_default: Path) -> None:
    """The options every subprocess benchmark shares (the hidden --one runs a single config)."""
    ap.add_argument(
        "--jobs", type=int, default=1, help="configurations run at once (one thread each)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(out_default))
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
