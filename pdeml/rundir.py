"""The run directory: created safely, locked while a run writes it, checked before a resume.

Measured against a hostile user: ``--out`` that is a file or read-only is a clear error; two
``pdeml train`` into one directory at once are refused (an advisory ``flock`` on
``DIR/.lock``, released by the kernel if the process dies); a kill during a checkpoint write
leaves ``.ckpt-*`` temp files, which the next run removes; ``--resume`` into another case's
directory fails before anything is rewritten; a full disk is said to be one.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from pathlib import Path

from ._validate import fail

try:
    import fcntl
except ImportError:                       # Windows: no advisory locks; the run goes unlocked
    fcntl = None


def prepare(out) -> Path:
    """``out`` as a directory that exists and can be written, or a clear error."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        fail("--out", str(out), "is a file, not a directory", "pass a directory path (it is created)",
             FileExistsError)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail("--out", str(out), f"cannot be created ({e.strerror})", "pass a directory you can write to",
             PermissionError)
    if not os.access(out, os.W_OK | os.X_OK):
        fail("--out", str(out), "is not writable", "pass a directory you can write to", PermissionError)
    return out


@contextlib.contextmanager
def lock(out: Path):
    """Hold ``out/.lock`` for the duration; a second holder gets a clear error. Removes the temp
    files of interrupted checkpoint writes once the lock is held."""
    path = out / ".lock"
    f = open(path, "a+")
    try:
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                fail("--out", str(out), f"is in use by another pdeml run ({holder})",
                     "wait for it to finish, or pass another --out", RuntimeError)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        for tmp in out.glob(".ckpt-*"):       # left by a kill during an atomic checkpoint write
            tmp.unlink(missing_ok=True)
        yield
    finally:
        f.close()


def read_info(out: Path) -> dict:
    info_path = Path(out) / "run.json"
    if not info_path.is_file():
        fail("DIR", str(out), "holds no run.json", "pass a directory written by `pdeml train`",
             FileNotFoundError)
    try:
        return json.loads(info_path.read_text())
    except (OSError, ValueError) as e:
        fail("DIR", str(out), f"has an unreadable run.json ({e})", "train again into a new directory")


def checkpoint_for_resume(out: Path, resume: bool, info: dict) -> bool:
    """Whether to resume: checks, *before* anything is rewritten, that ``out`` holds a run of the
    same case (source, options, loss terms) and a readable checkpoint; says so when there is none."""
    if not resume:
        return False
    ckpt_path = out / "checkpoint.pt"
    if (out / "run.json").is_file():
        old = read_info(out)
        for key in ("source", "case_options", "terms", "outputs"):
            if old.get(key) != info.get(key):
                fail("--resume", str(out), f"holds a run of another case ({key}: {old.get(key)!r}, this "
                     f"run: {info.get(key)!r})", "pass the run's own case, or another --out", ValueError)
    if not ckpt_path.exists():
        print(f"pdeml: --resume: {out} holds no checkpoint.pt; starting from step 0", file=sys.stderr)
        return False
    from . import checkpoint
    from .fit import FORMAT
    checkpoint.check_format(checkpoint.load(ckpt_path), ckpt_path, FORMAT)   # before run.json is rewritten
    return True


def write_json(path: Path, data: dict) -> None:
    guard_disk(path.parent, lambda: path.write_text(json.dumps(data, indent=2)))


def guard_disk(out: Path, fn):
    """``fn()``, with a full disk reported as one (naming the directory), not a library traceback."""
    try:
        return fn()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(e.errno, f"the disk holding {out} is full while writing results "
                          f"({e.filename or 'a file'}). Fix: free space, then `pdeml export {out}` "
                          "re-writes the VTK files and pictures (metrics.json is written first)") from None
        raise
