"""Device selection with clear errors."""

from __future__ import annotations

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
