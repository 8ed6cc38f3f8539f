"""Training callbacks (progress bar, history file, early stopping) and :class:`progress`, the
same bar-or-log-line display for any long loop."""

from __future__ import annotations

import contextlib
import contextvars
import csv
import math
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

#: whether loops may draw tqdm bars on a terminal (``--no-progress`` turns them into log lines
#: for the duration of a command: :func:`bars`)
_BARS: contextvars.ContextVar[bool] = contextvars.ContextVar("pdeml_bars", default=True)


@contextlib.contextmanager
def bars(enabled: bool):
    """Within the block, :func:`progress` draws bars only if ``enabled`` (a command's
    ``--no-progress`` passes False: log lines instead, on a terminal too)."""
    token = _BARS.set(bool(enabled))
    try:
        yield
    finally:
        _BARS.reset(token)


class progress:
    """Progress of a long loop, the way training shows it: a tqdm bar on a terminal; otherwise
    (output to a file or a pipe, ``enabled=False``, or within ``bars(False)``) a plain line
    every ``log_every_s`` seconds, ``[pdeml] RVE snapshots 120/400 (30%) 31.0 s``, and a last
    one at the end if any was printed: a long setup in a log is never silent.

    Example:
        >>> import io
        >>> with progress(total=3, desc="solves", stream=io.StringIO()) as bar:
        ...     for _ in range(3):
        ...         bar.update(1)
        >>> [x for x in progress(range(2), desc="walks", stream=io.StringIO())]
        [0, 1]
    """

    def __init__(
        self,
        iterable=None,
        *,
        total: int | None = None,
        desc: str = "",
        enabled: bool = True,
        unit: str = "it",
        leave: bool = True,
        log_every_s: float = 30.0,
        stream=None,
    ):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None else _len(iterable)
        self.stream = stream if stream is not None else sys.stderr
        self.log_every_s, self.done, self.lines = log_every_s, 0, 0
        self.start = self.last = time.perf_counter()
        terminal = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = (
            tqdm(total=self.total, desc=desc, unit=unit, leave=leave, file=self.stream)
            if enabled and _BARS.get() and terminal
            else None
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.perf_counter() - self.last >= self.log_every_s:
            self._line()

    def set_postfix(self, **values) -> None:
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=False)

    def _line(self) -> None:
        self.last, self.lines = time.perf_counter(), self.lines + 1
        of = f"/{self.total} ({100 * self.done / max(self.total, 1):.0f}%)" if self.total else ""
        print(
            f"[pdeml] {self.desc} {self.done}{of} {self.unit} {self.last - self.start:.1f} s",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.lines:
            self._line()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()


def _len(iterable):
    try:
        return len(iterable)
    except TypeError:
        return None


class AbstractCallback:
    """Hooks called by :func:`pdeml.fit`; ``state`` is the :class:`pdeml.fit.TrainState`."""

    def on_start(self, state): ...

    def on_step(self, state): ...

    def on_log(self, state, row: dict): ...

    def on_checkpoint(self, state): ...

    def on_end(self, state): ...


def _fmt(v):
    return f"{v:.2e}" if isinstance(v, float) else v


class ProgressBar(AbstractCallback):
    """Progress: a tqdm bar on a terminal; elsewhere (``enabled=False``, output to a file or a
    pipe) one plain log line every ``log_every_s`` seconds of training and at the end, so a
    long run in a log is never silent and never one huge ``\r`` line.

    A line: ``[pdeml] step 1200/5000 (24%) adam loss 3.1e-03 pde 2.9e-03 ... err 1.2e-02 12.3 s``.
    """

    def __init__(
        self, enabled: bool = True, terms: int = 4, log_every_s: float = 30.0, stream=None
    ):
        self.enabled, self.terms, self.log_every_s = enabled, terms, log_every_s
        self.stream = stream if stream is not None else sys.stderr
        self.bar, self.last_log, self.last_row = None, None, None

    def _terminal(self) -> bool:
        return self.enabled and hasattr(self.stream, "isatty") and self.stream.isatty()

    def on_start(self, state):
        if state.step > 0:  # say where a resumed run continues from
            print(
                f"[pdeml] resuming at step {state.step}/{state.total_steps}",
                file=self.stream,
                flush=True,
            )
        if self._terminal():
            self.bar = tqdm(
                total=state.total_steps,
                initial=state.step,
                dynamic_ncols=True,
                desc="train",
                mininterval=0.5,
                file=self.stream,
            )
        self.last_log = time.perf_counter()

    def on_step(self, state):
        if self.bar is not None:
            self.bar.update(1)
        elif time.perf_counter() - self.last_log >= self.log_every_s:
            # between history rows too (L-BFGS steps can be slow): the step's own losses
            row = {
                "step": state.step,
                "phase": state.phase,
                "loss": sum(state.losses.values()),
                **state.losses,
                "wall_time_s": state.wall_time_s,
            }
            self._line(state, row)

    def _show(self, state, row):
        show = {"loss": row["loss"]}
        show.update({k: row[k] for k in state.term_names[: self.terms]})
        if row.get("l2_relative_error") is not None:
            show["err"] = row["l2_relative_error"]
        return show

    def on_log(self, state, row):
        self.last_row = row
        if self.bar is not None:
            show = self._show(state, row)
            show["phase"] = row["phase"]
            self.bar.set_postfix({k: _fmt(v) for k, v in show.items()}, refresh=False)
        elif time.perf_counter() - self.last_log >= self.log_every_s:
            self._line(state, row)

    def _line(self, state, row):
        self.last_log = time.perf_counter()
        pct = 100 * row["step"] / max(state.total_steps, 1)
        parts = " ".join(f"{k} {_fmt(v)}" for k, v in self._show(state, row).items())
        print(
            f"[pdeml] step {row['step']}/{state.total_steps} ({pct:.0f}%) {row['phase']} {parts} "
            f"{row['wall_time_s']:.1f} s",
            file=self.stream,
            flush=True,
        )

    def on_end(self, state):
        if self.bar is not None:
            self.bar.close()
        elif self.last_row is not None:
            self._line(state, self.last_row)


class HistoryCSV(AbstractCallback):
    """Write ``history.csv`` at every checkpoint and at the end."""

    def __init__(self, path):
        self.path = Path(path)

    def _write(self, state):
        rows = state.history
        if not rows:
            return
        keys = list(dict.fromkeys(k for r in rows for k in r))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)

    on_checkpoint = _write
    on_end = _write


class EarlyStopping(AbstractCallback):
    """Stop when ``monitor`` (a history column, default the total loss) has not improved by a
    relative ``min_delta`` for ``patience`` logged rows, or fell below ``target``."""

    def __init__(
        self,
        patience: int = 10,
        min_delta: float = 1e-3,
        monitor: str = "loss",
        target: float | None = None,
    ):
        self.patience, self.min_delta, self.monitor, self.target = (
            patience,
            min_delta,
            monitor,
            target,
        )
        self.best, self.bad = math.inf, 0

    def on_log(self, state, row):
        v = row.get(self.monitor)
        if v is None:
            return
        if self.target is not None and v <= self.target:
            state.stop, state.status = True, "early_stopped"
            return
        if v < self.best * (1 - self.min_delta):
            self.best, self.bad = v, 0
        else:
            self.bad += 1
            if self.bad >= self.patience:
                state.stop, state.status = True, "early_stopped"
