"""``fit``: the training loop shared by every backend that exposes per-term losses.

Adam (or any first-order optimizer object) for ``steps`` steps, then optionally L-BFGS for
``lbfgs.steps`` iterations on the last collocation points. Every step checks the loss and
gradient for NaN/inf *before* updating, so the parameters in memory and in the checkpoint are
always the last finite ones. Checkpoints hold the model, optimizer, sampler points, the RNG
state and the history, so ``resume=True`` continues bit-for-bit on CPU.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from .callbacks import AbstractCallback
from .combine import AbstractCombiner, Sum
from .optim import LBFGS, Adam
from .sampling import AbstractSampler, to_torch


class DivergenceError(RuntimeError):
    """Training produced NaN/inf; the last finite state was kept (and checkpointed)."""


@dataclass
class TrainState:
    step: int = 0
    total_steps: int = 0
    term_names: list = field(default_factory=list)
    history: list = field(default_factory=list)
    losses: dict = field(default_factory=dict)
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


def relative_l2(pred: np.ndarray, ref: np.ndarray) -> float:
    """:math:`\\lVert p - r\\rVert_2 / \\lVert r\\rVert_2` over all points and outputs."""
    return float(np.linalg.norm(pred - ref) / max(np.linalg.norm(ref), 1e-300))


def fit(backend, *, steps: int, sampler: AbstractSampler, optimizer=None, lbfgs: LBFGS | None = None,
        combiner: AbstractCombiner | None = None, callbacks=(), seed: int = 0,
        checkpoint=None, checkpoint_every: int = 1000, resume: bool = False,
        truth=None, eval_every: int = 100) -> FitResult:
    """Train ``backend`` (a module with ``losses(batch)``, ``term_names``, ``predict``).

    Args:
        steps: first-order optimizer steps. ``lbfgs``: optional L-BFGS stage after them.
        sampler: collocation points (:class:`pdeml.sampling.AbstractSampler`).
        optimizer: default ``Adam(1e-3)``; a Gauss-Newton optimizer (``ENGD``) takes whole
            steps from the residual vector instead. ``combiner``: default ``Sum()``.
        callbacks: :class:`pdeml.callbacks.AbstractCallback` objects.
        seed: seeds the sampler's generator (the model was seeded by the backend).
        checkpoint: path of ``checkpoint.pt``; written atomically every ``checkpoint_every``
            steps, on stop, and on divergence (with the last finite parameters).
        resume: continue from ``checkpoint`` if it exists.
        truth: ``(points, values)`` for the relative L2 error logged every ``eval_every`` steps.

    Returns:
        :class:`FitResult`. Raises :class:`DivergenceError` on NaN/inf.
    """
    optimizer = optimizer if optimizer is not None else Adam(1e-3)
    combiner = combiner if combiner is not None else Sum()
    combiner.check(backend.term_names)
    callbacks = list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, AbstractCallback):
            raise TypeError(f"callbacks holds {cb!r}, which is not a pdeml callback. Fix: subclass "
                            "pdeml.callbacks.AbstractCallback.")
    problem = backend.problem
    dtype, device = backend.center.dtype, backend.center.device
    params = [p for p in backend.parameters() if p.requires_grad]
    rng = np.random.default_rng(seed)
    if hasattr(backend, "residual_at"):
        sampler.attach(backend.residual_at)
    sampler.reset(problem, rng)
    n_lbfgs = lbfgs.steps if lbfgs is not None else 0
    state = TrainState(total_steps=steps + n_lbfgs, term_names=list(backend.term_names))
    adam = optimizer.build(params)
    gauss_newton = getattr(optimizer, "gauss_newton", False)
    # Gauss-Newton minimizes the weighted sum of squares; other combiners' weights are not loss
    # weights (GradNorm's are per-step gradient scalings)
    gn_weights = combiner.weights if isinstance(combiner, Sum) else None
    quasi = None  # L-BFGS optimizer, built when its stage starts
    if resume and checkpoint is not None and Path(checkpoint).exists():
        saved = ckpt.load(checkpoint, map_location=device)
        backend.load_state_dict(saved["model"])
        sampler.load_state_dict(saved["sampler"])
        combiner.load_state_dict(saved.get("combiner", {}))
        ckpt.set_rng_state(rng, saved["rng"])
        state.step, state.history = int(saved["step"]), json.loads(saved["history"])
        state.wall_time_s = float(saved["wall_time_s"])
        if saved["phase"] == "lbfgs":
            quasi = lbfgs.build(params)
            quasi.load_state_dict(saved["optimizer"])
        else:
            adam.load_state_dict(saved["optimizer"])
    truth_t = None
    if truth is not None:
        truth_t = (np.asarray(truth[0]), np.asarray(truth[1]))

    cached = {"version": None, "batch": None}

    def tensors(raw):
        if cached["version"] != sampler.version:
            cached["batch"], cached["version"] = to_torch(raw, dtype, device), sampler.version
        return cached["batch"]

    def save(phase):
        if checkpoint is None:
            return
        opt = quasi if phase == "lbfgs" else adam
        ckpt.save(checkpoint, {
            "format": 1, "step": state.step, "phase": phase, "model": backend.state_dict(),
            "optimizer": opt.state_dict(), "sampler": sampler.state_dict(),
            "combiner": combiner.state_dict(),
            "rng": ckpt.rng_state(rng), "history": json.dumps(state.history),
            "wall_time_s": state.wall_time_s, "term_names": json.dumps(state.term_names)})
        for cb in callbacks:
            cb.on_checkpoint(state)

    def diverged(losses, grad_norm, phase):
        bad = [k for k, v in losses.items() if not math.isfinite(float(v))]
        what = f"loss terms {bad}" if bad else f"the gradient (norm {grad_norm})"
        save(phase)
        where = f" The last finite state is in {checkpoint}." if checkpoint is not None else ""
        raise DivergenceError(
            f"training diverged at step {state.step}: {what} became NaN/inf.{where} Fix: lower the "
            "learning rate (--lr), add loss weights, or check the PDE for divisions by zero; then "
            "resume with --resume.")

    for cb in callbacks:
        cb.on_start(state)
    t_start = time.perf_counter() - state.wall_time_s
    phase = "adam"
    stalled = 0      # L-BFGS iterations in a row that left the parameters unchanged
    try:
        while state.step < state.total_steps and not state.stop:
            phase = "adam" if state.step < steps else "lbfgs"
            if phase == "adam":
                batch = tensors(sampler.batch(state.step, rng))
                res = {} if sampler.wants_residuals else None
                if gauss_newton:   # a whole step from the residual vector, then the losses after it
                    optimizer.step(backend, batch, params, gn_weights)
                    losses = {k: v.detach() for k, v in backend.losses(batch, res).items()}
                    total, gnorm = combiner.total(losses), torch.zeros(())
                else:
                    adam.zero_grad(set_to_none=True)
                    losses = backend.losses(batch, res)
                    total = combiner.backward(losses, params)
                    gnorm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
                if not bool(torch.isfinite(total) & torch.isfinite(gnorm)):
                    diverged(losses, float(gnorm), phase)
                lr = optimizer.lr_at(state.step)
                if not gauss_newton:
                    for g in adam.param_groups:
                        g["lr"] = lr
                    adam.step()
                if res is not None:
                    sampler.observe(state.step, res)
            else:
                if quasi is None:
                    quasi = lbfgs.build(params)
                batch = tensors(sampler.current())  # L-BFGS keeps the last points
                last = {}

                def closure():
                    quasi.zero_grad(set_to_none=True)
                    ls = backend.losses(batch)
                    tot = combiner.total(ls)
                    tot.backward()
                    last["losses"] = ls
                    return tot

                snapshot = [p.detach().clone() for p in params]
                quasi.step(closure)
                losses = last["losses"]
                total = combiner.total(losses)
                if not bool(torch.isfinite(total)):
                    with torch.no_grad():
                        for p, s in zip(params, snapshot):
                            p.copy_(s)
                    diverged(losses, float("nan"), phase)
                lr = lbfgs.lr
                moved = any(not torch.equal(p, s) for p, s in zip(params, snapshot))
                stalled = 0 if moved else stalled + 1
                if stalled >= lbfgs.patience:       # nothing left to gain: end the stage
                    warnings.warn(f"L-BFGS left the parameters unchanged for {stalled} iterations in "
                                  f"a row (the loss {float(total):.3e} is at its floating-point floor or "
                                  f"the gradient is zero); ending it at step {state.step + 1} of "
                                  f"{state.total_steps}.", stacklevel=2)
                    state.status, state.stop = "finished", True
            state.step += 1
            state.losses = {k: float(v.detach()) for k, v in losses.items()}
            state.wall_time_s = time.perf_counter() - t_start
            for cb in callbacks:
                cb.on_step(state)
            if state.step % eval_every == 0 or state.step == state.total_steps:
                row = {"step": state.step, "phase": phase, "loss": float(total.detach()), **state.losses,
                       "lr": lr, "wall_time_s": round(state.wall_time_s, 4)}
                row.update({f"param_{k}": v for k, v in backend.parameter_values().items()}
                           if hasattr(backend, "parameter_values") else {})
                row["l2_relative_error"] = (relative_l2(backend.predict(truth_t[0]), truth_t[1])
                                            if truth_t is not None else None)
                state.history.append(row)
                for cb in callbacks:
                    cb.on_log(state, row)
            if state.step % checkpoint_every == 0:
                save(phase)
    finally:
        state.wall_time_s = time.perf_counter() - t_start
        if state.status == "running":
            state.status = "finished" if state.step >= state.total_steps else "stopped"
        for cb in callbacks:
            cb.on_end(state)
    save(phase)
    err = next((r["l2_relative_error"] for r in reversed(state.history)
                if r.get("l2_relative_error") is not None), None)
    if truth_t is not None and (not state.history or state.history[-1]["step"] != state.step):
        err = relative_l2(backend.predict(truth_t[0]), truth_t[1])
    return FitResult(steps=state.step, status=state.status, losses=state.losses,
                     history=state.history, wall_time_s=state.wall_time_s, l2_relative_error=err)
