"""``fit``: the training loop shared by every trainable backend, run as phases of steppers.

``phases`` is a list ``[(steps, stepper), ...]`` (:mod:`pdeml.steppers`), e.g.
``[(5000, FirstOrder(Adam(1e-3))), (2000, LBFGS())]``. Each step draws a batch from the
backend's batch run (collocation points or dataset minibatches), lets the phase's stepper
take it, and logs. A step that produced NaN/inf leaves the last finite parameters in memory,
writes them to the checkpoint and raises :class:`DivergenceError`. Checkpoints hold the model,
the phase and its stepper's state, the batch run (points and generator) and the history, so
``resume=True`` continues bit-for-bit on CPU whatever the phases.
"""

from __future__ import annotations

import bisect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint as ckpt
from ._validate import fail, finite_scalar, positive_int
from .backend import AbstractTrainable
from .callbacks import AbstractCallback
from .distributed import Sharded, World, broadcast_, split_predict
from .interrupts import Interrupted, deferred
from .sampling import to_torch
from .steppers import AbstractStepper, NonFinite, Phase

FORMAT = 2  # checkpoint layout; 1 was the single-optimizer loop before phases
#: a run whose loss ends more than this many times above its first step's is warned about
WORSE = 10.0
#: an unknown parameter that moved one way by more than this fraction of its value over the last
#: tenth of the steps is still drifting (a warning at the end of ``fit``)
DRIFT = 0.005


class DivergenceError(RuntimeError):
    """Training produced NaN/inf; the last finite state was kept (and checkpointed)."""


@dataclass
class TrainState:
    step: int = 0
    total_steps: int = 0
    term_names: list = field(default_factory=list)
    history: list = field(default_factory=list)
    losses: dict = field(default_factory=dict)
    phase: str = ""
    points: dict | None = None  # the (numpy) batch in use, for callbacks
    stop: bool = False
    status: str = "running"
    wall_time_s: float = 0.0
    first_loss: float | None = None  # the total loss of step 0 (a run started here)


@dataclass
class FitResult:
    steps: int
    status: str
    losses: dict
    history: list
    wall_time_s: float
    l2_relative_error: float | None
    message: str = ""


def relative_l2(pred: np.ndarray, ref: np.ndarray) -> float:
    """:math:`\\lVert p - r\\rVert_2 / \\lVert r\\rVert_2` over all points and outputs."""
    return float(np.linalg.norm(pred - ref) / max(np.linalg.norm(ref), 1e-300))


def check_phases(phases, keep_empty: bool = False) -> list[Phase]:
    """``phases`` as a validated list of :class:`~pdeml.steppers.Phase` ``(steps, stepper)``;
    a 0-step phase is dropped unless ``keep_empty``."""
    out = []
    for i, item in enumerate(phases):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            fail(
                f"phases[{i}]",
                item,
                "is not a (steps, stepper) pair",
                "pass e.g. [pl.Phase(5000, pl.FirstOrder()), pl.Phase(2000, pl.LBFGS())]",
            )
        n, stepper = item
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            fail(f"phases[{i}] steps", n, "must be a non-negative integer", "pass e.g. 1000")
        if not isinstance(stepper, AbstractStepper):
            fail(
                f"phases[{i}] stepper",
                stepper,
                "is not a stepper",
                "pass pl.FirstOrder(pl.Adam(...)), pl.LBFGS() or pl.ENGD()",
            )
        if n or keep_empty:
            out.append(Phase(int(n), stepper))
    return out


def check_weights(weights, names=None) -> dict:
    """Loss weights: a dict of finite, non-negative values; with ``names``, of known terms."""
    if weights is not None and not isinstance(weights, dict):
        fail("weights", weights, "is not a dict", 'pass e.g. {"dirichlet": 10.0}')
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(names)) if names is not None else []
    if unknown:
        fail(
            "weights",
            weights,
            f"names unknown loss terms {unknown}",
            f"use the problem's terms {list(names)}",
        )
    for k, v in weights.items():
        if finite_scalar(f"weights[{k!r}]", v) < 0:
            fail(
                f"weights[{k!r}]",
                v,
                "is negative (a negative weight rewards the residual)",
                "pass a weight >= 0",
            )
    return {k: float(v) for k, v in weights.items()}


def _phase_at(starts: list, step: int) -> int:
    """Index of the phase that takes step ``step``, given the phases' first steps ``starts``
    (and the end); len(starts) - 1 past the end."""
    return bisect.bisect_right(starts, step) - 1


def fit(
    backend,
    phases,
    *,
    sampler=None,
    weights=None,
    callbacks=(),
    seed: int = 0,
    checkpoint=None,
    checkpoint_every: int = 1000,
    checkpoint_minutes: float | None = None,
    resume: bool = False,
    truth=None,
    eval_every: int = 100,
    world: World | None = None,
) -> FitResult:
    """Train ``backend`` (a :class:`pdeml.backend.AbstractTrainable`) through ``phases``.

    Args:
        phases: ``[(steps, stepper), ...]`` (:mod:`pdeml.steppers`, :class:`pdeml.ENGD`).
        sampler: the batches' settings (default: the backend's own, e.g. the PINN method's
            sampler); started with a generator seeded by ``seed``.
        weights: ``{term: weight}`` for the loss terms (default 1 each), for every phase.
        callbacks: :class:`pdeml.callbacks.AbstractCallback` objects.
        checkpoint: path of ``checkpoint.pt``; written atomically every ``checkpoint_every``
            steps, every ``checkpoint_minutes`` minutes of training, at the end, and on
            divergence (with the last finite parameters).
        resume: continue from ``checkpoint`` if it exists (a checkpoint already past the
            phases' end is left as it is).
        truth: ``(points, values)`` for the relative L2 error logged every ``eval_every`` steps.
        world: this process's place in a multi-process job (:mod:`pdeml.distributed`; default:
            one process). Every rank draws the same global batch and trains on its share;
            gradients and losses are averaged over the ranks, so all ranks hold the same
            parameters; only rank 0 writes the checkpoint, which then holds the whole state.

    Returns:
        :class:`FitResult`. Raises :class:`DivergenceError` on NaN/inf.
    """
    if not isinstance(backend, AbstractTrainable):
        fail(
            "backend",
            type(backend).__name__,
            "is not trainable",
            "train a PINN or an operator backend",
        )
    phases = check_phases(phases)
    weights = check_weights(weights, backend.term_names)
    eval_every = positive_int("eval_every", eval_every)
    checkpoint_every = positive_int("checkpoint_every", checkpoint_every)
    if (
        checkpoint_minutes is not None
        and not finite_scalar("checkpoint_minutes", checkpoint_minutes) > 0
    ):
        fail("checkpoint_minutes", checkpoint_minutes, "must be positive", "pass e.g. 10, or None")
    callbacks = list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, AbstractCallback):
            raise TypeError(
                f"callbacks holds {cb!r}, which is not a pdeml callback. Fix: subclass "
                "pdeml.callbacks.AbstractCallback."
            )
    world = world if world is not None else World()
    batches = backend.batches(sampler, np.random.default_rng(seed))
    if world.active:
        batches = Sharded(batches, world, backend.whole_terms)
        backend.distribute(world)
        broadcast_(list(backend.parameters()) + list(backend.buffers()), world)
    run = _Run(
        backend,
        phases,
        weights,
        batches,
        callbacks,
        world,
        checkpoint,
        eval_every,
        None if truth is None else (np.asarray(truth[0]), np.asarray(truth[1])),
    )
    if resume and checkpoint is not None and Path(checkpoint).exists():
        done = run.resume(ckpt.load(checkpoint, map_location=backend.device))
        if done is not None:
            return done
    run.train(checkpoint_every, checkpoint_minutes)
    return run.result()


class _Run:
    """One ``fit``: the phases' stepper runs, the batches, the state callbacks see, and the
    checkpoint. ``fit`` validates, then ``resume`` (optional), ``train``, ``result``."""

    def __init__(
        self, backend, phases, weights, batches, callbacks, world, checkpoint, eval_every, truth
    ):
        self.backend, self.phases, self.weights, self.batches = backend, phases, weights, batches
        self.callbacks, self.world, self.checkpoint = callbacks, world, checkpoint
        self.eval_every, self.truth = eval_every, truth
        self.state = TrainState(
            total_steps=sum(n for n, _ in phases), term_names=list(backend.term_names)
        )
        self.starts = np.cumsum([0] + [n for n, _ in phases]).tolist()
        self.stepper: Any = None  # the current phase's stepper run
        self.phase = -1  # and its index
        self.dtype, self.device = backend.dtype, backend.device
        self._cached: tuple = (None, None)

    def start_phase(self, i: int) -> None:
        steps, stepper = self.phases[i]
        self.stepper, self.phase = stepper.init(self.backend, self.weights, steps, self.world), i

    def resume(self, saved: dict) -> FitResult | None:
        """Restore a checkpoint; a run already past the phases' end returns its result as it
        was (the checkpoint is left alone)."""
        ckpt.check_format(saved, self.checkpoint, FORMAT)
        state, step = self.state, int(saved["step"])
        self.backend.load_state_dict(saved["model"])
        self.backend.keep_choices(json.loads(saved.get("choices", "{}")))
        if step >= state.total_steps:  # nothing left to do
            history = json.loads(saved["history"])
            msg = (
                f"the checkpoint is at step {step}, the phases end at {state.total_steps}: "
                "nothing left to train"
            )
            return FitResult(
                step,
                "finished",
                _last_losses(history, self.backend.term_names),
                history,
                float(saved["wall_time_s"]),
                _last_error(history),
                msg,
            )
        self.batches.load_state_dict(saved["batches"])
        state.step, state.history = step, json.loads(saved["history"])
        state.wall_time_s = float(saved["wall_time_s"])
        i = _phase_at(self.starts, step)
        if step > self.starts[i]:  # inside a phase: it must be the saved one
            if saved["stepper"] != self.phases[i][1].name or int(saved["phase"]) != i:
                fail(
                    "resume",
                    str(self.checkpoint),
                    f"was written in phase {int(saved['phase'])} ({saved['stepper']}) at step "
                    f"{step}, "
                    f"but with these settings step {step} falls in phase {i} "
                    f"({self.phases[i][1].name})",
                    "resume with the phase lengths of the original run (--steps, --lbfgs-steps), "
                    "or start a new run directory",
                )
            self.start_phase(i)
            self.stepper.load_state_dict(saved["stepper_state"])
        return None

    def tensors(self, raw: dict) -> dict:
        """The batch as tensors, converted once per batch (the fixed batch may be another
        object than current())."""
        key = (self.batches.version, id(raw))
        if self._cached[0] != key:
            self._cached = (key, to_torch(raw, self.dtype, self.device))
        return self._cached[1]

    def save(self) -> None:
        if self.checkpoint is None or self.stepper is None or not self.world.main:
            return  # rank 0 holds the whole state
        state = self.state
        ckpt.save(
            self.checkpoint,
            {
                "format": FORMAT,
                "step": state.step,
                "phase": self.phase,
                "stepper": self.stepper.name,
                "stepper_state": self.stepper.state_dict(),
                "model": self.backend.state_dict(),
                "batches": self.batches.state_dict(),
                "history": json.dumps(state.history),
                "wall_time_s": state.wall_time_s,
                "term_names": json.dumps(state.term_names),
                "choices": json.dumps(self.backend.choices()),
            },
        )
        for cb in self.callbacks:
            cb.on_checkpoint(state)

    def step(self) -> tuple:
        """One training step of the phase the step falls in; ``(result, phase index)``."""
        state = self.state
        i = _phase_at(self.starts, state.step)
        if i != self.phase:
            self.start_phase(i)
        run = self.stepper
        state.phase = run.name
        want = run.redraws and self.batches.wants_residuals
        # a fixed objective (L-BFGS) trains on the sampler's fixed batch
        state.points = self.batches.batch(state.step) if run.redraws else self.batches.fixed_batch()
        if self.world.active:  # this rank's share of each term's rows (uneven shards are exact)
            by_key = self.batches.shares(state.points)
            run.shares = {t: by_key.get(k, 1.0) for t, k in self.backend.term_keys().items()}
        try:
            out = run.step(self.tensors(state.points), state.step - self.starts[i], want)
        except NonFinite as e:
            self.save()
            where = (
                f" The last finite state is in {self.checkpoint}."
                if self.checkpoint is not None
                else ""
            )
            raise DivergenceError(
                f"training diverged at step {state.step} ({run.name}): {e.what} became NaN/inf."
                f"{where} Fix: lower the learning rate (--lr), add loss weights, or check the "
                "PDE for divisions by zero; then resume with --resume."
            ) from None
        if out.residuals is not None:
            self.batches.observe(state.step, out.residuals)
        if state.step == 0:
            state.first_loss = float(out.total)
        state.step += 1
        state.losses = {n: float(v) for n, v in out.losses.items()}
        return out, i

    def end_phase_if_done(self, out, i: int) -> None:
        """A stepper that can make no more progress (L-BFGS at its floor) ends its phase: the
        next one starts at its own first step, or the run is finished."""
        state = self.state
        if out.done and state.step < self.starts[i + 1]:
            if i == len(self.phases) - 1:
                state.stop, state.status = True, "finished"
            else:
                state.step = self.starts[i + 1]

    def error(self) -> float | None:
        if self.truth is None:
            return None
        return relative_l2(split_predict(self.backend, self.truth[0], self.world), self.truth[1])

    def log(self, out) -> None:
        """A history row (with the error against the truth) every ``eval_every`` steps, at the
        end and when a phase stops early."""
        state = self.state
        if not (state.step % self.eval_every == 0 or state.step == state.total_steps or out.done):
            return
        row = {
            "step": state.step,
            "phase": self.stepper.name,
            "loss": float(out.total),
            **state.losses,
            "lr": out.lr,
            "wall_time_s": round(state.wall_time_s, 4),
        }
        row.update({f"param_{k}": v for k, v in self.backend.parameter_values().items()})
        row["l2_relative_error"] = self.error()
        state.history.append(row)
        for cb in self.callbacks:
            cb.on_log(state, row)

    def train(self, checkpoint_every: int, checkpoint_minutes: float | None) -> None:
        """Step through the phases, logging and checkpointing, then checkpoint the end."""
        state = self.state
        state.points = self.batches.current()
        for cb in self.callbacks:
            cb.on_start(state)
        t_start = time.perf_counter() - state.wall_time_s
        last_save = time.perf_counter()
        with deferred() as noted:
            self._loop(t_start, last_save, checkpoint_every, checkpoint_minutes, noted)
        self.save()

    def _loop(self, t_start, last_save, checkpoint_every, checkpoint_minutes, noted) -> None:
        state = self.state
        try:
            while state.step < state.total_steps and not state.stop:
                if noted.signum is not None:  # Ctrl-C or SIGTERM: stop at this step boundary
                    state.status = "interrupted"
                    self.save()
                    where = (
                        "nothing was saved (no checkpoint path)"
                        if self.checkpoint is None
                        else f"the checkpoint {self.checkpoint} (rank 0 writes it) holds it: "
                        "continue with --resume"
                    )
                    raise Interrupted(noted.signum, f"stopped at step {state.step}; {where}")
                out, i = self.step()
                state.wall_time_s = time.perf_counter() - t_start
                for cb in self.callbacks:
                    cb.on_step(state)
                self.end_phase_if_done(out, i)
                self.log(out)
                minutes_up = (
                    checkpoint_minutes is not None
                    and time.perf_counter() - last_save >= 60 * checkpoint_minutes
                )
                if state.step % checkpoint_every == 0 or minutes_up:
                    self.save()
                    last_save = time.perf_counter()
        finally:
            state.wall_time_s = time.perf_counter() - t_start
            if state.status == "running":
                state.status = "finished" if state.step >= state.total_steps else "stopped"
            for cb in self.callbacks:
                cb.on_end(state)

    def warn_if_worse(self) -> None:
        """A run whose loss ended far above where it started (a step size too large, a loss
        weight too large) says so: small steps of a diverging run look like training."""
        state = self.state
        start = state.first_loss
        if start is None and state.history:
            start = state.history[0].get("loss")
        end = state.history[-1].get("loss") if state.history else None
        if start is None or end is None or not start > 0 or not end > WORSE * start:
            return
        import warnings

        warnings.warn(
            f"the loss ended at {end:.3g}, {end / start:.0f}x where it started ({start:.3g}): "
            "training made it worse. Fix: lower the learning rate (--lr), or check the loss "
            "weights and the case's scaling.",
            stacklevel=4,
        )

    def warn_if_drifting(self) -> None:
        """An unknown parameter (an inverse problem's) that still moves one way over the last
        tenth of the steps, by more than :data:`DRIFT` of its value, has not converged: the run
        says so, with the values, rather than report the last one as the answer. (Moving back
        and forth is Adam's jitter about a value, not drift.)"""
        state = self.state
        rows = [r for r in state.history if any(k.startswith("param_") for k in r)]
        if state.status != "finished" or len(rows) < 2:
            return
        since = rows[-1]["step"] - max(1, state.total_steps // 10)
        tail = [r for r in rows if r["step"] >= since]
        tail = tail if len(tail) >= 2 else rows[-2:]
        import warnings

        for k in (k for k in tail[-1] if k.startswith("param_")):
            values = np.array([r[k] for r in tail])
            steps = np.diff(values)
            moved = values[-1] - values[0]
            one_way = bool(np.all(steps * np.sign(moved) >= 0))
            if one_way and abs(moved) > DRIFT * max(abs(values[-1]), 1e-12):
                name = k[len("param_") :]
                warnings.warn(
                    f"parameter {name!r} is still drifting: it went from {values[0]:.6g} at step "
                    f"{tail[0]['step']} to {values[-1]:.6g} at step {tail[-1]['step']}, one way "
                    f"(the last tenth of the steps): {values[-1]:.6g} has not converged. Fix: "
                    "train longer (--steps), or give it a larger learning rate, "
                    "pl.Parameter(..., lr_scale=...); loss.png plots its path.",
                    stacklevel=4,
                )

    def result(self) -> FitResult:
        state = self.state
        self.warn_if_worse()
        self.warn_if_drifting()
        err = _last_error(state.history)
        if self.truth is not None and (
            not state.history or state.history[-1]["step"] != state.step
        ):
            err = self.error()
        return FitResult(
            steps=state.step,
            status=state.status,
            losses=state.losses,
            history=state.history,
            wall_time_s=state.wall_time_s,
            l2_relative_error=err,
        )


def _last_error(history):
    return next(
        (
            r["l2_relative_error"]
            for r in reversed(history)
            if r.get("l2_relative_error") is not None
        ),
        None,
    )


def _last_losses(history, names):
    return {k: history[-1][k] for k in names if k in history[-1]} if history else {}
