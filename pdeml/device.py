"""Device selection with clear errors, and the CPU's matrix-product library (:func:`gemm`)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from ._validate import fail


def resolve_device(device="auto") -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        fail("device", device, "is not a device", 'pass "auto", "cpu", "cuda" or "cuda:N"')
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            fail(
                "device",
                device,
                "was asked for but torch sees no CUDA GPU on this machine "
                f"(torch {torch.__version__}, cuda build: {torch.version.cuda})",
                "use --device cpu (or auto), or install a CUDA build of torch on a GPU machine",
                RuntimeError,
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            fail(
                "device",
                device,
                f"does not exist ({torch.cuda.device_count()} GPU(s) visible)",
                "pick an index below the GPU count",
            )
    return dev


#: ``--gemm``: who runs a compiled CPU graph's large float32 matrix products (:mod:`pdeml.gemm`)
GEMMS = ("auto", "mkl", "onednn")


@functools.cache
def cpu_model() -> str:
    """The CPU as /proc/cpuinfo names it (vendor, model name, family and model), or the
    platform's processor string: what a cache of measurements on this machine is keyed by."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("vendor_id", "model name", "cpu family", "model") and key not in fields:
                fields[key] = value.strip()
            if not line.strip() and fields:
                break
    except OSError:
        pass
    if not fields:
        import platform

        return platform.processor() or platform.machine()
    return " ".join(fields.get(k, "") for k in ("vendor_id", "model name", "cpu family", "model"))


def onednn_available() -> bool:
    """oneDNN is built into this torch and the CPU is x86-64 with AVX2 or better."""
    return (
        torch.backends.mkldnn.is_available()
        and torch.backends.cpu.get_cpu_capability().startswith("AVX")
    )


def check_gemm(value: str) -> str:
    """``value`` if it names a matrix-product library (:data:`GEMMS`), else a clear error."""
    if value not in GEMMS:
        fail("gemm", value, "is not a matrix-product library", f"pass one of {GEMMS}")
    return value


def requested_gemm(backend) -> str:
    """What ``backend`` asks of :func:`gemm`: its ``gemm`` ("auto" by default), or "mkl" where
    ``backend.onednn_gemm`` is False (the older switch, kept for the benchmark)."""
    return getattr(backend, "gemm", "auto") if getattr(backend, "onednn_gemm", True) else "mkl"


def gemm(requested: str = "auto", device="cpu") -> tuple[str, str]:
    """``(choice, why)``: who runs a compiled CPU graph's large float32 matrix products:
    ``"mkl"`` (torch's BLAS), ``"onednn"`` (every product of at least ``pdeml.gemm.MIN_MACS``),
    or ``"auto"``: each product by the library this machine runs faster at its shape, measured
    once per machine and kept in a cache file (:mod:`pdeml.gemm`), never guessed from the CPU's
    name. Which library is faster depends on the CPU and the shape: oneDNN ran a 1600x128x128
    product 1.3x faster than MKL on an AMD EPYC, but the 1320x50x50 products of the L-shape
    step 0.87x (forward) and 0.64x (backward), and the oneDNN pass made an Intel Xeon's L-shape
    step 1.4x slower. ``"native"`` off the CPU, where the pass does not apply. The choice is
    recorded in run.json and the per-product decisions in the checkpoint, which a resumed run
    keeps."""
    check_gemm(requested)
    if torch.device(device).type != "cpu":
        return "native", f"{torch.device(device).type} runs its own products (the pass is CPU-only)"
    if requested == "onednn" and not onednn_available():
        fail(
            "gemm",
            requested,
            "is not available here (torch built without oneDNN, or a CPU without AVX2)",
            "pass --gemm mkl or auto",
        )
    if requested == "mkl":
        return "mkl", "forced (--gemm mkl, or kept from the run being resumed)"
    if requested == "onednn":
        return "onednn", "forced (--gemm onednn, or kept from the run being resumed)"
    if not onednn_available():
        return "mkl", "oneDNN is not available here"
    return "auto", "per product: MKL or oneDNN, whichever this machine runs faster at its shape"


def gemm_cache_path() -> Path:
    """The file of this machine's measured product choices (:func:`pdeml.gemm.calibrated`):
    ``$PDEML_CACHE`` or ``~/.cache/pdeml``, named by a hash of the CPU, torch's version and the
    thread count (the timings depend on all three)."""
    import hashlib
    import os

    root = (
        os.environ.get("PDEML_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pdeml"
    )
    key = f"{cpu_model()}|{torch.__version__}|{torch.get_num_threads()}"
    return Path(root) / f"gemm-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
