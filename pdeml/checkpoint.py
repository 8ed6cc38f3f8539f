"""Atomic checkpoints that hold only tensors and plain values (``weights_only=True`` loads)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch


def save(path, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint={str(path)!r} does not exist. Fix: train first, or "
                                "point --out at the run directory that holds checkpoint.pt")
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_state(rng) -> str:
    return json.dumps(rng.bit_generator.state)


def set_rng_state(rng, text: str) -> None:
    rng.bit_generator.state = json.loads(text)
