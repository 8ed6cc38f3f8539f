r"""2-D incompressible Navier-Stokes in vorticity form on the periodic unit square: our own
pseudo-spectral reference solver, batched over trajectories in torch (CPU or GPU).

.. math:: \partial_t w + u\cdot\nabla w = \nu\Delta w + f, \qquad u = \nabla^\perp\psi =
          (\partial_y\psi, -\partial_x\psi), \qquad -\Delta\psi = w.

In Fourier space (wavenumbers :math:`k = 2\pi m`, :math:`m\in\mathbb Z^2`):
:math:`\hat\psi = \hat w/|k|^2`, :math:`\hat u = i k_y\hat\psi`, :math:`\hat v = -i k_x\hat\psi`.
The advection term :math:`N(w) = u\,w_x + v\,w_y` is formed in physical space and dealiased by
the 2/3 rule (modes with :math:`|m_i| > N/3` set to zero). Time stepping: Crank-Nicolson for
the diffusion and Heun (explicit trapezoid) for advection and forcing,

.. math:: \hat w^* = \frac{(1 - \tfrac{\Delta t}{2}\nu|k|^2)\hat w^n + \Delta t(\hat f - \hat N^n)}
                          {1 + \tfrac{\Delta t}{2}\nu|k|^2}, \qquad
          \hat w^{n+1} = \frac{(1 - \tfrac{\Delta t}{2}\nu|k|^2)\hat w^n
                          + \Delta t(\hat f - \tfrac12(\hat N^n + \hat N^*))}{1 + \tfrac{\Delta
                          t}{2}\nu|k|^2},

second order in time (tested), spectral in space (tested), and exact for the Taylor-Green
vortex, which has no advection and decays as :math:`e^{-8\pi^2\nu t}` (tested). The same scheme
generates the Navier-Stokes data of Li et al., "Fourier neural operator for parametric partial
differential equations", ICLR 2021.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from pdeml._validate import fail, finite_scalar, positive_int
from pdeml.family import AbstractFamily
from pdeml.settings import frozen_set


def wavenumbers(n: int, dtype=torch.float64, device="cpu"):
    """``(kx, ky)`` of an ``rfft2`` on an n x n grid of the unit square, as 2π times integers;
    ``kx`` runs along the first grid axis (x), ``ky`` along the second (y, the rfft axis)."""
    m = torch.fft.fftfreq(n, d=1.0 / n, dtype=dtype, device=device)
    my = torch.fft.rfftfreq(n, d=1.0 / n, dtype=dtype, device=device)
    kx, ky = torch.meshgrid(2 * math.pi * m, 2 * math.pi * my, indexing="ij")
    return kx, ky


def dealias_mask(n: int, device="cpu") -> torch.Tensor:
    """The 2/3 rule: keep integer wavenumbers with :math:`|m_x|, |m_y| \\le n/3`."""
    m = torch.fft.fftfreq(n, d=1.0 / n, device=device).abs()
    my = torch.fft.rfftfreq(n, d=1.0 / n, device=device)
    return (m[:, None] <= n / 3) & (my[None, :] <= n / 3)


def velocity(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u, v) = ∇⊥ψ`` with :math:`-\\Delta\\psi = w` (zero-mean ψ), on the grid of ``w`` (...,
    n, n)."""
    kx, ky = wavenumbers(w.shape[-1], w.dtype, w.device)
    return _velocity_hat(torch.fft.rfft2(w), kx, ky)


def _psi_hat(w_hat, kx, ky):
    r"""ψ̂ = ŵ/|k|² with zero mean: the spectral solve of :math:`-\Delta\psi = w`."""
    k2 = kx**2 + ky**2
    psi = w_hat / torch.where(k2 > 0, k2, torch.ones_like(k2))
    psi[..., 0, 0] = 0
    return psi


def _velocity_hat(w_hat, kx, ky):
    """``(u, v)`` on the grid from the vorticity's ``rfft2``."""
    n = kx.shape[0]
    psi = _psi_hat(w_hat, kx, ky)
    return torch.fft.irfft2(1j * ky * psi, s=(n, n)), torch.fft.irfft2(-1j * kx * psi, s=(n, n))


def solve(w0, *, nu: float, forcing=None, dt: float, steps: int, record_every: int | None = None):
    """Integrate ``steps`` steps of ``dt`` from ``w0`` (n, n) or (B, n, n), a real tensor on the
    uniform grid :math:`x_i = i/n` (first axis x, second y). ``forcing``: a tensor of ``w0``'s
    grid shape, or None. Returns the vorticity at t = 0, record_every·dt, ... (``steps`` must be
    a multiple of ``record_every``; default: only the end), shape (..., n_records, n, n)."""
    w0 = torch.as_tensor(w0)
    if w0.ndim not in (2, 3) or w0.shape[-1] != w0.shape[-2]:
        fail(
            "w0",
            tuple(w0.shape),
            "is not an n x n grid (or a batch of them)",
            "pass (n, n) or (B, n, n)",
        )
    if not w0.is_floating_point():
        w0 = w0.double()
    nu, dt = finite_scalar("nu", nu), finite_scalar("dt", dt)
    steps = positive_int("steps", steps)
    every = steps if record_every is None else positive_int("record_every", record_every)
    if steps % every:
        fail("record_every", every, f"does not divide steps={steps}", "pass a divisor of steps")
    n = w0.shape[-1]
    kx, ky = wavenumbers(n, w0.dtype, w0.device)
    k2 = kx**2 + ky**2
    mask = dealias_mask(n, w0.device)
    f_hat = (
        0
        if forcing is None
        else torch.fft.rfft2(torch.as_tensor(forcing, dtype=w0.dtype, device=w0.device))
    )
    half = 0.5 * dt * nu * k2
    lhs, rhs = 1 + half, 1 - half

    def advection(w_hat):
        u, v = _velocity_hat(w_hat, kx, ky)
        wx = torch.fft.irfft2(1j * kx * w_hat, s=(n, n))
        wy = torch.fft.irfft2(1j * ky * w_hat, s=(n, n))
        return torch.fft.rfft2(u * wx + v * wy) * mask

    w_hat = torch.fft.rfft2(w0)
    u, v = _velocity_hat(w_hat, kx, ky)
    cfl = float(torch.maximum(u.abs().max(), v.abs().max())) * dt * n
    if cfl > 1:
        fail(
            "dt",
            dt,
            f"gives a CFL number of {cfl:.2f} for the initial velocity (the explicit advection "
            "step is unstable above 1)",
            f"pass dt <= {dt / cfl:.3g}",
        )
    out = [w0]
    for step in range(1, steps + 1):
        n0 = advection(w_hat)
        star = (rhs * w_hat + dt * (f_hat - n0)) / lhs
        w_hat = (rhs * w_hat + dt * (f_hat - 0.5 * (n0 + advection(star)))) / lhs
        if step % every == 0:
            out.append(torch.fft.irfft2(w_hat, s=(n, n)))
    return torch.stack(out, dim=-3)


def kolmogorov_forcing(
    n: int, amplitude: float = 0.1, dtype=torch.float64, device="cpu"
) -> torch.Tensor:
    """:math:`f = a(\\sin 2\\pi(x + y) + \\cos 2\\pi(x + y))` on the n x n grid (Li et al.'s
    forcing)."""
    x = torch.arange(n, dtype=dtype, device=device) / n
    s = 2 * math.pi * (x[:, None] + x[None, :])
    return amplitude * (torch.sin(s) + torch.cos(s))


def stream_function(w: torch.Tensor) -> torch.Tensor:
    r"""ψ with :math:`-\Delta\psi = w` and zero mean, on the grid of ``w`` (..., n, n)."""
    kx, ky = wavenumbers(w.shape[-1], w.dtype, w.device)
    return torch.fft.irfft2(_psi_hat(torch.fft.rfft2(w), kx, ky), s=w.shape[-2:])


def dealias(r: torch.Tensor) -> torch.Tensor:
    """``r`` (..., n, n) with the modes beyond the 2/3 rule removed."""
    n = r.shape[-1]
    return torch.fft.irfft2(torch.fft.rfft2(r) * dealias_mask(n, r.device), s=(n, n))


@dataclasses.dataclass(frozen=True)
class NavierStokesFamily(AbstractFamily):
    r"""Trajectories of the forced vorticity equation from Gaussian random initial vorticities.

    Each sample is ``{"w": (frames, n, n)}``: the vorticity every ``frame_dt`` from t = 0,
    solved on an ``n`` x ``n`` grid with time step ``dt`` (``frame_dt`` a multiple of it), viscosity
    ``nu``, Li et al.'s forcing :math:`f = 0.1(\sin 2\pi(x+y) + \cos 2\pi(x+y))`, and initial
    vorticity from :func:`pdeml.random_fields.gaussian_random_field` (``alpha``, ``tau``).
    """

    n: int = 64
    frames: int = 50
    frame_dt: float = 0.1
    dt: float = 2e-3
    nu: float = 1e-3
    alpha: float = 2.5
    tau: float = 7.0

    def __post_init__(self):
        positive_int("n", self.n)
        positive_int("frames", self.frames)
        frozen_set(
            self,
            **{
                k: finite_scalar(k, getattr(self, k))
                for k in ("frame_dt", "dt", "nu", "alpha", "tau")
            },
        )
        ratio = self.frame_dt / self.dt
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            fail(
                "frame_dt",
                self.frame_dt,
                f"is not a multiple of dt={self.dt}",
                f"pass e.g. frame_dt={round(max(ratio, 1)) * self.dt}",
            )

    @property
    def every(self) -> int:
        """Solver steps per saved frame."""
        return round(self.frame_dt / self.dt)

    def shapes(self):
        return {"w": (self.frames, self.n, self.n)}

    def generate(self, count, generator, device="cpu"):
        from pdeml.random_fields import gaussian_random_field

        w0 = gaussian_random_field(
            self.n, count, alpha=self.alpha, tau=self.tau, generator=generator, device=device
        )
        return {"w": self.trajectory(w0)}

    def trajectory(self, w0: torch.Tensor) -> torch.Tensor:
        """The reference trajectories (B, frames, n, n) from initial vorticities (B, n, n)."""
        return solve(
            w0,
            nu=self.nu,
            forcing=kolmogorov_forcing(w0.shape[-1], dtype=w0.dtype, device=w0.device),
            dt=self.dt,
            steps=self.every * (self.frames - 1),
            record_every=self.every,
        )

    def at_resolution(self, m: int) -> NavierStokesFamily:
        """The same family on an m x m grid (the time step shrunk with the grid spacing)."""
        return NavierStokesFamily(
            n=m,
            frames=self.frames,
            frame_dt=self.frame_dt,
            nu=self.nu,
            alpha=self.alpha,
            tau=self.tau,
            dt=self.dt * min(1.0, self.n / m),
        )

    @staticmethod
    def forcing(x: torch.Tensor) -> torch.Tensor:
        r""":math:`f = 0.1(\sin 2\pi(x + y) + \cos 2\pi(x + y))` at points ``x`` (..., >= 2)."""
        s = 2 * math.pi * (x[..., 0:1] + x[..., 1:2])
        return 0.1 * (torch.sin(s) + torch.cos(s))

    def pde(self, x, f):
        r"""The vorticity equation, written once for every method of this family:
        :math:`R = \partial_t w + u\,\partial_x w + v\,\partial_y w - \nu\Delta w - f` with
        :math:`(u, v) = (\partial_y\psi, -\partial_x\psi)`. ``f`` holds the outputs ``w`` and
        ``psi``:
        a PINN's :class:`pdeml.Field` (autograd at points ``x`` (N, 3)) or a
        :class:`pdeml.grid.GridField` (spectral in space, central differences in time on the
        grid)."""
        w, psi = f["w"], f["psi"]
        u, v = psi.d("y"), -psi.d("x")
        return w.dt() + u * w.d("x") + v * w.d("y") - self.nu * w.laplacian() - self.forcing(x)

    def pinn_pde(self, x, f):
        r""":meth:`pde` and the stream function's equation :math:`\Delta\psi + w = 0`: the residuals
        of a PINN of this family with outputs ``("w", "psi")``."""
        return self.pde(x, f), f["psi"].laplacian() + f["w"].value

    def residual(self, w, frame_dt=None):
        """:meth:`pde` on trajectories ``w`` (..., T, m, m) of this family (any grid m), sampled
        every ``frame_dt`` (default the family's): ψ from the spectral Poisson solve, the residual
        at the interior frames (..., T - 2, m, m), dealiased by the 2/3 rule (the advection
        product's aliased modes removed, as the solver removes them)."""
        from pdeml.grid import GridField

        f = GridField(
            {"w": w, "psi": stream_function(w)}, self.frame_dt if frame_dt is None else frame_dt
        )
        return dealias(self.pde(f.x, f)[..., 0])


def family(n: int = 64) -> NavierStokesFamily:
    """The operator cases' family: 50 frames every 0.1 time units at n x n (ν = 1e-3)."""
    return NavierStokesFamily(n=n, frames=50, frame_dt=0.1, dt=2e-3 if n <= 64 else 1e-3)
