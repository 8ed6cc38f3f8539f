"""Training callbacks: progress bar, history file, early stopping."""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm


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
