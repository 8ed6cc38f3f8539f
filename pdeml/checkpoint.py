"""Atomic checkpoints that hold only tensors and plain values (``weights_only=True`` loads)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from ._validate import guard_disk


def save(path, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write():
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

    guard_disk(
        path.parent,
        write,
        "free space, then continue with --resume (the last complete checkpoint "
        "is kept: the write goes to a temp file first)",
    )


def load(
    path,
    map_location="cpu",
    missing: str = "train first, or point --out at the run directory that holds checkpoint.pt",
    unreadable: str = "if pdeml wrote it, it was cut short: train again without --resume (or "
    "restore a copy); if it is another file, pass the checkpoint itself",
) -> dict:
    """A checkpoint's dict (``weights_only=True``); a missing, empty, truncated or foreign file is
    a clear error naming the file (``missing``: the fix to suggest when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint={str(path)!r} does not exist. Fix: {missing}")
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, random bytes, a foreign pickle, ...
        raise ValueError(
            f"checkpoint={str(path)!r} cannot be read: it is empty, truncated or not a pdeml "
            f"checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}). "
            f"Fix: {unreadable}"
        ) from None
    if not isinstance(saved, dict):
        raise ValueError(
            f"checkpoint={str(path)!r} holds a {type(saved).__name__}, not a pdeml checkpoint. "
            f"Fix: {unreadable}"
        )
    return saved


def rng_state(rng) -> str:
    return json.dumps(rng.bit_generator.state)


def set_rng_state(rng, text: str) -> None:
    rng.bit_generator.state = json.loads(text)


def check_format(saved: dict, path, expected: int) -> None:
    """A checkpoint of another layout is a clear error, not a KeyError later."""
    found = saved.get("format") if isinstance(saved, dict) else None
    if found != expected:
        raise ValueError(
            f"checkpoint={str(path)!r} has layout {found!r}, this pdeml writes {expected} "
            "(it was written by another version). Fix: start a new run directory, or "
            "train again without --resume"
        )
