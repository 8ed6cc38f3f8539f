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
from .sampling import to_torch
from .steppers import AbstractStepper, NonFinite

FORMAT = 2  # checkpoint layout; 1 was the single-optimizer loop before phases


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


def check_phases(phases) -> list[tuple[int, AbstractStepper]]:
    """``phases`` as a validated list of ``(steps, stepper)``; a 0-step phase is dropped."""
    out = []
    for i, item in enumerate(phases):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            fail(
                f"phases[{i}]",
                item,
                "is not a (steps, stepper) pair",
                "pass e.g. [(5000, pl.FirstOrder(pl.Adam(1e-3))), (2000, pl.LBFGS())]",
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
        if n:
            out.append((int(n), stepper))
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
    dtype, device = backend.dtype, backend.device
    batches = backend.batches(sampler, np.random.default_rng(seed))
    if world.active:
        batches = Sharded(batches, world, backend.whole_terms)
        backend.distribute(world)
        broadcast_(list(backend.parameters()) + list(backend.buffers()), world)
    state = TrainState(total_steps=sum(n for n, _ in phases), term_names=list(backend.term_names))
    starts = np.cumsum([0] + [n for n, _ in phases]).tolist()
    run: Any = None  # the current phase's stepper run
    run_phase = -1  # and its index

    def start_phase(i):
        return phases[i][1].init(backend, weights, phases[i][0], world)

    if resume and checkpoint is not None and Path(checkpoint).exists():
        saved = ckpt.load(checkpoint, map_location=device)
        ckpt.check_format(saved, checkpoint, FORMAT)
        step = int(saved["step"])
        if step >= state.total_steps:  # nothing left to do: leave the checkpoint alone
            backend.load_state_dict(saved["model"])
            history = json.loads(saved["history"])
            msg = (
                f"the checkpoint is at step {step}, the phases end at {state.total_steps}: "
                "nothing left to train"
            )
            return FitResult(
                step,
                "finished",
                _last_losses(history, backend.term_names),
                history,
                float(saved["wall_time_s"]),
                _last_error(history),
                msg,
            )
        backend.load_state_dict(saved["model"])
        batches.load_state_dict(saved["batches"])
        state.step, state.history = step, json.loads(saved["history"])
        state.wall_time_s = float(saved["wall_time_s"])
        i = _phase_at(starts, step)
        if step > starts[i]:  # inside a phase: it must be the saved one
            if saved["stepper"] != phases[i][1].name or int(saved["phase"]) != i:
                fail(
                    "resume",
                    str(checkpoint),
                    f"was written in phase {int(saved['phase'])} ({saved['stepper']}) at step "
                    f"{step}, "
                    f"but with these settings step {step} falls in phase {i} ({phases[i][1].name})",
                    "resume with the phase lengths of the original run (--steps, --lbfgs-steps), "
                    "or start a new run directory",
                )
            run, run_phase = start_phase(i), i
            run.load_state_dict(saved["stepper_state"])
    truth_t = None if truth is None else (np.asarray(truth[0]), np.asarray(truth[1]))
    cached = {"version": None, "batch": None}

    def tensors(raw):
        key = (batches.version, id(raw))  # the fixed batch may be another object than current()
        if cached["version"] != key:
            cached["batch"], cached["version"] = to_torch(raw, dtype, device), key
        return cached["batch"]

    def save():
        if checkpoint is None or run is None or not world.main:  # rank 0 holds the whole state
            return
        ckpt.save(
            checkpoint,
            {
                "format": FORMAT,
                "step": state.step,
                "phase": run_phase,
                "stepper": run.name,
                "stepper_state": run.state_dict(),
                "model": backend.state_dict(),
                "batches": batches.state_dict(),
                "history": json.dumps(state.history),
                "wall_time_s": state.wall_time_s,
                "term_names": json.dumps(state.term_names),
            },
        )
        for cb in callbacks:
            cb.on_checkpoint(state)

    state.points = batches.current()
    for cb in callbacks:
        cb.on_start(state)
    t_start = time.perf_counter() - state.wall_time_s
    last_save = time.perf_counter()
    try:
        while state.step < state.total_steps and not state.stop:
            i = _phase_at(starts, state.step)
            if i != run_phase:
                run, run_phase = start_phase(i), i
            state.phase = run.name
            k = state.step - starts[i]
            want = run.redraws and batches.wants_residuals
            # a fixed objective (L-BFGS) trains on the sampler's fixed batch
            state.points = batches.batch(state.step) if run.redraws else batches.fixed_batch()
            batch = tensors(state.points)
            try:
                out = run.step(batch, k, want)
            except NonFinite as e:
                save()
                where = (
                    f" The last finite state is in {checkpoint}." if checkpoint is not None else ""
                )
                raise DivergenceError(
                    f"training diverged at step {state.step} ({run.name}): {e.what} became NaN/inf."
                    f"{where} Fix: lower the learning rate (--lr), add loss weights, or check the "
                    "PDE "
                    "for divisions by zero; then resume with --resume."
                ) from None
            if out.residuals is not None:
                batches.observe(state.step, out.residuals)
            state.step += 1
            state.losses = {n: float(v) for n, v in out.losses.items()}
            state.wall_time_s = time.perf_counter() - t_start
            for cb in callbacks:
                cb.on_step(state)
            if out.done and state.step < starts[i + 1]:  # the stepper can make no more progress
                if i == len(phases) - 1:
                    state.stop, state.status = True, "finished"
                else:  # on to the next phase, same numbering
                    state.step = starts[i + 1]
            if state.step % eval_every == 0 or state.step == state.total_steps or out.done:
                row = {
                    "step": state.step,
                    "phase": run.name,
                    "loss": float(out.total),
                    **state.losses,
                    "lr": out.lr,
                    "wall_time_s": round(state.wall_time_s, 4),
                }
                row.update({f"param_{k}": v for k, v in backend.parameter_values().items()})
                row["l2_relative_error"] = (
                    relative_l2(split_predict(backend, truth_t[0], world), truth_t[1])
                    if truth_t is not None
                    else None
                )
                state.history.append(row)
                for cb in callbacks:
                    cb.on_log(state, row)
            minutes_up = (
                checkpoint_minutes is not None
                and time.perf_counter() - last_save >= 60 * checkpoint_minutes
            )
            if state.step % checkpoint_every == 0 or minutes_up:
                save()
                last_save = time.perf_counter()
    finally:
        state.wall_time_s = time.perf_counter() - t_start
        if state.status == "running":
            state.status = "finished" if state.step >= state.total_steps else "stopped"
        for cb in callbacks:
            cb.on_end(state)
    save()
    err = _last_error(state.history)
    if truth_t is not None and (not state.history or state.history[-1]["step"] != state.step):
        err = relative_l2(split_predict(backend, truth_t[0], world), truth_t[1])
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
