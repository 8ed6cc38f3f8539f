"""Ctrl-C and SIGTERM: stop at a step boundary, keep the state, say how to continue.

Schedulers (Slurm, Kubernetes, torchrun) send SIGTERM before they stop a job, a user presses
Ctrl-C (SIGINT). :func:`deferred` is what ``fit`` trains inside: the first such signal is noted
and the current step finishes; ``fit`` then writes its checkpoint and raises
:class:`Interrupted`, so ``--resume`` continues bit-for-bit from that step. A second signal
stops at once. :func:`terminate_as_interrupt` makes SIGTERM raise :class:`Interrupted` where no
step boundary is being waited for (dataset generation, export), so ``finally`` blocks and
context managers clean up (a half-written dataset's temporary file is removed).
"""

from __future__ import annotations

import contextlib
import signal
import threading


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM (``signum``); ``message`` says what was kept."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"stopped by {signal.Signals(signum).name}")
        self.signum = int(signum)
        self.message = message

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


class _Noted:
    signum: int | None = None


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def deferred():
    """Inside, SIGINT and SIGTERM set ``noted.signum`` (yielded) instead of interrupting; a second
    one raises :class:`Interrupted` at once. Outside the main thread (where Python cannot take
    signals) nothing is deferred. The previous handlers are restored on exit."""
    noted = _Noted()
    if not _main_thread():
        yield noted
        return

    def handler(signum, frame):
        if noted.signum is not None:  # asked twice: stop now
            raise Interrupted(signum, "stopped at once by a second signal")
        noted.signum = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield noted
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def terminate_as_interrupt():
    """Inside, SIGTERM raises :class:`Interrupted` (as SIGINT raises KeyboardInterrupt), so the
    code unwinds and cleans up instead of dying where it stands."""
    if not _main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
