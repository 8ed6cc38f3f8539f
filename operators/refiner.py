r"""Spectral-Refiner fine-tuning (Cao, Brarda, Li, Xi, ICLR 2025): at test time, on one
trajectory, with no data, refine a trained ST-FNO's output by the equation's residual.

1. Freeze the trained network and cache its latent state before the output layer
   (:meth:`pdeml.operators.stfno.STFNONet.latent`), on the input frames at the (finer) resolution.
2. Replace the output spectral convolution by one with more modes (:func:`grow`): the trained
   weights go into the low modes, the new ones start near zero (uniform with gain 1e-6).
3. Optimize only that layer (Adam, a larger learning rate for its spectral bias than for its
   weights) on :math:`\|R\|^2_{L^2(0,T;H^{-1})}`
   (:func:`pdeml.operators.losses.h_minus_one_squared`)
   of the predicted trajectory with the last input frame in front (so the first output frame
   has a time derivative).
"""

from __future__ import annotations

import copy

import torch

from pdeml._validate import fail, finite_scalar, positive_int
from pdeml.backend import AbstractTrainable
from pdeml.sampling import NoPoints

from .fno import SpectralConv
from .losses import h_minus_one_squared


def grow(conv: SpectralConv, modes, gain: float = 1e-6) -> SpectralConv:
    """A copy of ``conv`` with more ``modes``: its weights (and spectral bias) in the low modes of
    each corner block, the new modes small random (``gain``)."""
    modes = tuple(positive_int("modes", m) for m in modes)
    if len(modes) != len(conv.modes) or any(m < o for m, o in zip(modes, conv.modes)):
        fail(
            "modes",
            modes,
            f"must be at least the trained layer's {conv.modes} in every axis",
            f"pass e.g. {tuple(2 * m for m in conv.modes)}",
        )
    new = SpectralConv(conv.in_channels, conv.out_channels, modes, bias=conv.bias_scale or 0.0)
    new = new.to(conv.weight.device)
    with torch.no_grad():
        new.weight.copy_(
            gain * torch.complex(torch.rand_like(new.weight.real), torch.rand_like(new.weight.real))
        )
        for c, signs in enumerate(conv.corners):
            dst = tuple(
                slice(0, o) if s > 0 else slice(m - o, m)
                for s, o, m in zip(signs, conv.modes[:-1], modes[:-1])
            )
            dst += (slice(0, conv.modes[-1]),)
            new.weight[(c, slice(None), slice(None), *dst)] = conv.weight[c]
            if conv.bias is not None:
                new.bias[(c, slice(None), *dst)] = conv.bias[c]
    return new


class Refinement(AbstractTrainable):
    """One Spectral-Refiner fine-tuning as a trainable backend: the trained network frozen (its
    latent state cached on ``inputs``), a grown copy of its output layer the only parameters,
    the H⁻¹ residual of the prediction the one loss term. Trained by :func:`pdeml.fit`
    (:func:`refine` sets up the phase); the spectral bias learns at ``bias_lr / lr`` times the
    weights' rate (:meth:`lr_scales`)."""

    def __init__(
        self,
        net,
        inputs,
        residual,
        *,
        frame_dt: float,
        modes,
        out_steps: int,
        substeps: int = 1,
        bias_scale: float = 10.0,
    ):
        super().__init__()
        self.substeps = positive_int("substeps", substeps)
        self.frozen = [net]  # a list: not a submodule, so its parameters stay out of training
        self.residual, self.frame_dt, self.out_steps = residual, frame_dt, out_steps
        self.register_buffer("inputs", inputs)  # buffers: the run's dtype and device are theirs
        with torch.no_grad():
            self.register_buffer("latent", net.latent(inputs))
        self.conv = grow(net.out_conv, modes)
        self.bias_scale = bias_scale

    @property
    def term_names(self):
        return ["h_minus_one"]

    def lr_scales(self) -> dict[str, float]:
        return {"conv.bias": self.bias_scale} if self.conv.bias is not None else {}

    def batches(self, sampler, rng):
        return NoPoints().init(None, rng)

    def reference(self, rng):
        return None

    def prediction_and_loss(self):
        """The refined prediction (B, out_steps, n, n) and its squared H⁻¹ residual norm."""
        s = self.substeps
        pred = self.frozen[0].head(self.latent, self.inputs, self.out_steps, self.conv, substeps=s)
        traj = torch.cat([self.inputs[:, -1:], pred], dim=1)
        dt = self.frame_dt / s
        return pred[:, s - 1 :: s], h_minus_one_squared(self.residual(traj, dt), dt).mean()

    def losses(self, batch, residuals=None):
        return {"h_minus_one": self.prediction_and_loss()[1]}

    @torch.no_grad()
    def predict(self, x):
        return self.prediction_and_loss()[0].cpu().numpy()


def refine(
    net,
    inputs: torch.Tensor,
    residual,
    *,
    frame_dt: float,
    modes,
    out_steps: int,
    iterations: int = 100,
    lr: float = 1e-3,
    bias_lr: float = 1e-2,
    substeps: int = 1,
    callbacks=(),
):
    """Fine-tune ``net``'s output layer on the H⁻¹ residual of its prediction from ``inputs``
    (B, T_in, n, n): ``iterations`` Adam steps under :func:`pdeml.fit`, the rate cosine-annealed
    from ``lr`` (``bias_lr`` for the spectral bias) to zero. ``residual(trajectory, dt)`` is the
    equation's residual of (B, T, n, n) frames ``dt`` apart. ``substeps`` > 1 evaluates the
    residual on the prediction sampled that many times per frame (:meth:`STFNONet.head`): its
    central time differences are then ``substeps²`` times more accurate. ``callbacks`` go to
    ``fit`` (a progress bar). Returns ``(refined prediction (B, out_steps, n, n), the grown
    layer, [loss per iteration, then after the last])``; ``net`` itself is left unchanged."""
    from pdeml.fit import fit
    from pdeml.optim import Adam, Cosine
    from pdeml.steppers import FirstOrder

    iterations = positive_int("iterations", iterations)
    run = Refinement(
        net,
        inputs,
        residual,
        frame_dt=frame_dt,
        modes=modes,
        out_steps=out_steps,
        substeps=substeps,
        bias_scale=bias_lr / lr,
    )
    result = fit(
        run,
        [(iterations, FirstOrder(Adam(lr, schedule=Cosine())))],
        eval_every=1,
        callbacks=callbacks,
    )
    with torch.no_grad():
        pred, loss = run.prediction_and_loss()
    history = [row["h_minus_one"] for row in result.history] + [float(loss)]
    return pred, copy.deepcopy(run.conv), history


def finetune_run(
    run_dir,
    *,
    sample: int = 0,
    resolution: int | None = None,
    iterations: int = 1000,
    modes: int | None = None,
    modes_t: int | None = None,
    lr: float = 1e-3,
    bias_lr: float = 1e-2,
    substeps: int = 1,
    out=None,
    device="auto",
    progress: bool = True,
    case_file=None,
    overwrite: bool = False,
) -> dict:
    """``pdeml finetune``: Spectral-Refiner on test trajectory ``sample`` of an ST-FNO run, at
    ``resolution`` (default: twice the data's). The truth at that resolution is our solver's,
    from the sample's initial vorticity interpolated to the finer grid (exact: it is
    band-limited). Writes ``finetune.json`` (H⁻¹ residual and error before and after),
    ``refined.pvd`` and ``finetune.png`` into ``out`` (default ``RUN/finetune_<sample>``); an
    ``out`` that holds a fine-tuning already is refused before any work unless ``overwrite``.

    The grown layer's default modes: ``resolution // 3`` in space (the band the dealiased
    residual sees) and twice the trained temporal modes (at most what the latent time grid
    holds). Measured (docs/operators.md): with 6 temporal modes the layer cannot represent the
    truth better than 0.3%, with 10 it can to 0.03%, and the residual then falls ~100x in norm."""
    from pathlib import Path

    from pdeml import rundir
    from pdeml.datasets import Dataset, interpolate
    from pdeml.run import load_run

    from .stfno import STFNONet

    # every argument checked before any work (a bad one used to fail after minutes, or not at all)
    iterations = positive_int("--iterations", iterations)
    for name, value in (("--lr", lr), ("--bias-lr", bias_lr)):
        if not finite_scalar(name, value) > 0:
            fail(name, value, "must be positive", f"pass e.g. {name} 1e-3")
    for name, value in (("--modes", modes), ("--modes-t", modes_t), ("--substeps", substeps)):
        if value is not None:
            positive_int(name, value)
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
        fail("--sample", sample, "is not a test-sample index", "pass 0 or more")
    out = Path(out) if out is not None else Path(run_dir) / f"finetune_{sample:03d}"
    if (out / "finetune.json").exists() and not overwrite:
        fail(
            "--out",
            str(out),
            "holds a fine-tuning already",
            "pass --overwrite to replace it, or another --out",
            FileExistsError,
        )
    case, backend = load_run(run_dir, device, case_file)
    if not isinstance(backend.net, STFNONet):
        fail(
            "RUN",
            str(run_dir),
            f"holds a {type(backend.net).__name__}, not an ST-FNO",
            "fine-tune an nse_stfno run",
        )
    family, method = case.problem, case.method
    with Dataset(method.data.path) as ds:
        test = list(ds.test)
        if not 0 <= sample < len(test):
            fail(
                "--sample",
                sample,
                f"is not a test sample (the split has {len(test)})",
                f"pass 0..{len(test) - 1}",
            )
        w0 = ds[test[sample]]["w"][0].double()
    n = w0.shape[-1]
    resolution = 2 * n if resolution is None else positive_int("--resolution", resolution)
    fine_family = family.at_resolution(resolution)
    fine = fine_family.trajectory(interpolate(w0, resolution)[None]).to(
        backend.device, torch.float32
    )
    t_in, t_out = method.t_in, method.t_out
    inputs, truth = fine[:, :t_in], fine[:, t_in : t_in + t_out]
    net = backend.net
    old = net.out_conv.modes
    # the cached latent's time grid (twice that, padded) holds 2 more
    limit_t = 1 + net.latent_steps
    grown = ((modes or max(old[0], resolution // 3)),) * 2 + (
        (modes_t or max(old[2], min(2 * old[2], limit_t))),
    )

    def residual(w, dt=family.frame_dt):
        return fine_family.residual(w.double(), dt).to(w.dtype)

    def measures(pred):
        traj = torch.cat([inputs[:, -1:], pred], dim=1)
        return {
            "h_minus_one": float(
                h_minus_one_squared(residual(traj), family.frame_dt).sqrt().mean()
            ),
            "relative_l2": float((pred - truth).norm() / truth.norm()),
        }

    with torch.no_grad():
        first = net(inputs, out_steps=t_out)
    from pdeml.callbacks import ProgressBar

    with rundir.session(out) as out:
        pred, _, history = refine(
            net,
            inputs,
            residual,
            frame_dt=family.frame_dt,
            modes=grown,
            out_steps=t_out,
            iterations=iterations,
            lr=lr,
            bias_lr=bias_lr,
            substeps=substeps,
            callbacks=[ProgressBar(progress)],
        )
        report = {
            "sample": sample,
            "resolution": resolution,
            "modes": list(grown),
            "iterations": iterations,
            "lr": lr,
            "bias_lr": bias_lr,
            "substeps": substeps,
            "before": measures(first),
            "after": measures(pred.detach()),
            "loss": history,
        }
        rundir.write_json(out / "finetune.json", report)
        p, y = pred.detach()[0].cpu().numpy(), truth[0].cpu().numpy()
        from .export import plot_trajectory, write_series

        def pictures():
            write_series(out, "refined", p, y, t_in * family.frame_dt, family.frame_dt)
            plot_trajectory(p, y, t_in, family.frame_dt, out / "finetune.png")

        rundir.guard_disk(out, pictures)
    return report
