"""How many CPU threads torch should use: respect the affinity mask and the cgroup quota, and
back off when the cores are already busy.

Measured on a 2-core machine (issue 14, L-shape Adam steps): idle, 2 threads take 0.010 s a
step and 1 thread 0.015 s; with six busy processes on the same cores, 2 threads take 0.24 to
0.36 s and 1 thread 0.059 s. A spinning OpenMP thread that shares its core with another job
loses far more than a second thread gains, so ``auto`` gives up the cores that other runnable
processes hold *now* (the run queue in ``/proc/loadavg``, sampled for a tenth of a second; the
1-minute load average elsewhere, which still remembers a job that just ended).
``tests/benchmarks/bench_threads.py`` measures both cases.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from ._validate import fail


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup v2/v1 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(n, math.ceil(quota)) if quota else n)


def _cgroup_quota() -> float | None:
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def busy_elsewhere(samples: int = 10, interval: float = 0.01) -> float:
    """How many CPUs other processes keep busy now: the median of the run queue (the 4th field
    of ``/proc/loadavg``, which counts this process too) less one; where that file is missing,
    the 1-minute load average."""
    try:
        counts = []
        for _ in range(samples):
            counts.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1)
            time.sleep(interval)
        return float(sorted(counts)[len(counts) // 2])
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0


def auto_threads(load: float | None = None, cpus: int | None = None) -> int:
    """The available CPUs minus those other work holds (at least 1). ``load`` (CPUs busy
    elsewhere, default :func:`busy_elsewhere`) and ``cpus`` default to this machine's."""
    cpus = available_cpus() if cpus is None else cpus
    load = busy_elsewhere() if load is None else load
    return max(1, min(cpus, int(math.floor(cpus - load + 0.5))))


def resolve_threads(spec) -> int:
    """``"auto"`` (or None) -> :func:`auto_threads`; a positive integer as it is."""
    if spec is None or spec == "auto":
        return auto_threads()
    try:
        n = int(spec)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(spec).strip() != str(n):
        fail(
            "--threads", spec, "is not a positive integer or auto", "pass e.g. --threads 1, or auto"
        )
    return n
