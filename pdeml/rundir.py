"""The run directory: created safely, locked while a run writes it, checked before a resume.

Measured against a hostile user: ``--out`` that is a file or read-only is a clear error; two
``pdeml train`` into one directory at once are refused (an advisory ``flock`` on
``DIR/.lock``, released by the kernel if the process dies); a kill during a checkpoint write
leaves ``.ckpt-*`` temp files, which the next run removes; ``--resume`` into another case's
directory fails before anything is rewritten; a full disk is said to be one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._validate import fail, guard_disk

fcntl: Any
try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the run goes unlocked
    fcntl = None


def prepare(out) -> Path:
    """``out`` as a directory that exists and can be written, or a clear error."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        fail(
            "--out",
            str(out),
            "is a file, not a directory",
            "pass a directory path (it is created)",
            FileExistsError,
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(
            "--out",
            str(out),
            f"cannot be created ({e.strerror})",
            "pass a directory you can write to",
            PermissionError,
        )
    if not os.access(out, os.W_OK | os.X_OK):
        fail(
            "--out",
            str(out),
            "is not writable",
            "pass a directory you can write to",
            PermissionError,
        )
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
                fail(
                    "--out",
                    str(out),
                    f"is in use by another pdeml run ({holder})",
                    "wait for it to finish, or pass another --out",
                    RuntimeError,
                )
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        for pattern in (".ckpt-*", ".*.json-*"):  # left by a kill during an atomic write
            for tmp in out.glob(pattern):
                tmp.unlink(missing_ok=True)
        try:
            yield
        except BaseException:
            f.close()
            _drop_if_empty(out, path)
            raise
    finally:
        f.close()


def _drop_if_empty(out: Path, lock_path: Path) -> None:
    """After a failure that wrote nothing, remove the lock file and the directory it leaves
    empty (a failed ``pdeml solve`` used to leave a directory holding only ``.lock``)."""
    try:
        if [p.name for p in out.iterdir()] == [lock_path.name]:
            lock_path.unlink()
            out.rmdir()
    except OSError:
        pass


def read_info(out: Path) -> dict:
    info_path = Path(out) / "run.json"
    if not info_path.is_file():
        fail(
            "DIR",
            str(out),
            "holds no run.json",
            "pass a directory written by `pdeml train`",
            FileNotFoundError,
        )
    try:
        return json.loads(info_path.read_text())
    except (OSError, ValueError) as e:
        fail(
            "DIR", str(out), f"has an unreadable run.json ({e})", "train again into a new directory"
        )


def checkpoint_for_resume(out: Path, resume: bool, info: dict) -> bool:
    """Whether to resume: checks, *before* anything is rewritten, that ``out`` holds a run of the
    same case (source, options, loss terms) and a readable checkpoint; says so when there is
    none."""
    if not resume:
        return False
    ckpt_path = out / "checkpoint.pt"
    if (out / "run.json").is_file():
        old = read_info(out)
        for key in ("source", "case_options", "terms", "outputs"):
            if old.get(key) != info.get(key):
                fail(
                    "--resume",
                    str(out),
                    f"holds a run of another case ({key}: {old.get(key)!r}, this "
                    f"run: {info.get(key)!r})",
                    "pass the run's own case, or another --out",
                    ValueError,
                )
    if not ckpt_path.exists():
        print(
            f"pdeml: --resume: {out} holds no checkpoint.pt; starting from step 0", file=sys.stderr
        )
        return False
    from . import checkpoint
    from .fit import FORMAT

    checkpoint.check_format(
        checkpoint.load(ckpt_path), ckpt_path, FORMAT
    )  # before run.json is rewritten
    return True


def write_json(path: Path, data: dict) -> None:
    """``data`` as JSON at ``path``, atomically (a temp file renamed over it: a reader never sees
    half a file, a kill leaves the old one), with a full disk reported as one."""
    path = Path(path)

    def write():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(data, indent=2))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    guard_disk(path.parent, write)


@contextlib.contextmanager
def session(out):
    """The run directory ``out`` prepared (:func:`prepare`) and locked (:func:`lock`) for the
    duration: what every command that writes one holds while it runs."""
    out = prepare(out)
    with lock(out):
        yield out
