"""Training callbacks: progress bar, history file, early stopping."""
from __future__ import annotations

import csv
import math
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
    """tqdm bar: step, it/s, each loss term and the error against the truth."""

    def __init__(self, enabled: bool = True, terms: int = 4):
        self.enabled, self.terms, self.bar = enabled, terms, None

    def on_start(self, state):
        self.bar = tqdm(total=state.total_steps, initial=state.step, disable=not self.enabled,
                        dynamic_ncols=True, desc="train", mininterval=0.5)

    def on_step(self, state):
        self.bar.update(1)

    def on_log(self, state, row):
        show = {"loss": row["loss"]}
        show.update({k: row[k] for k in state.term_names[: self.terms]})
        if row.get("l2_relative_error") is not None:
            show["err"] = row["l2_relative_error"]
        show["phase"] = row["phase"]
        self.bar.set_postfix({k: _fmt(v) for k, v in show.items()}, refresh=False)

    def on_end(self, state):
        if self.bar is not None:
            self.bar.close()


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

    def __init__(self, patience: int = 10, min_delta: float = 1e-3, monitor: str = "loss",
                 target: float | None = None):
        self.patience, self.min_delta, self.monitor, self.target = patience, min_delta, monitor, target
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
