r"""Walk-on-spheres: a grid-free Monte Carlo solver for Poisson-type problems with Dirichlet
conditions (Muller, "Some continuous Monte Carlo methods for the Dirichlet problem", 1956;
Sawhney & Crane, "Monte Carlo geometry processing", SIGGRAPH 2020). No mesh, no training: the
solution at any point, with its standard error.

For :math:`-\Delta u = f` in :math:`\Omega`, :math:`u = g` on :math:`\partial\Omega`, a walk
from :math:`x_0` repeats: :math:`R_k` = the distance to the boundary (the geometry's signed
distance; a lower bound is safe), then jump to a uniform point of the sphere
:math:`\partial B(x_k, R_k)`; it stops once :math:`R_k < \varepsilon` and reads g at the
closest boundary point :math:`\bar x_N`. One walk's estimate is

.. math:: \hat u(x_0) = g(\bar x_N) + \sum_k |G_k|\, f(y_k),

with :math:`|G_k|` the integral over the ball of its Green's function (:math:`R_k^2/4` in 2-D,
:math:`R_k^2/6` in 3-D) and :math:`y_k` drawn with density :math:`G/|G_k|`: a uniform direction
and radius :math:`R_k\sqrt{U_1U_2}` in 2-D (density :math:`4s\ln(1/s)` of :math:`s = r/R`),
:math:`R_k\cdot\mathrm{median}(U_1, U_2, U_3)` in 3-D (density :math:`6s(1-s)`).

**Screened Poisson** :math:`-\Delta u + \sigma u = f`: the ball's Poisson kernel has mass
:math:`p_k < 1` (2-D :math:`1/I_0(\sqrt\sigma R_k)`, 3-D :math:`\sqrt\sigma R_k/\sinh(\sqrt\sigma
R_k)`);
a walk survives each step with probability :math:`p_k` (Russian roulette: otherwise it ends and
adds no boundary value, which keeps the estimate unbiased), and the source term uses the
Yukawa Green's function :math:`G^\sigma` by importance weights :math:`G^\sigma(r)/G(r)` on the
same radial draw, :math:`|G_k|\,f(y_k)\,G^\sigma(r)/G(r)`.

The walks are advanced in lock step as one batch of tensors (CPU or GPU; every walk of every
point at once, in chunks), seeded by a ``torch.Generator`` on the CPU so results do not depend
on the device's generator.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from pdeml._validate import fail, finite_scalar, positive_int
from pdeml.backend import AbstractBackend, AbstractMethod
from pdeml.conditions import Dirichlet, _eval
from pdeml.options import Option, set_field

from ._wos_numba import summarize


def _unit_directions(n: int, d: int, gen, dtype) -> torch.Tensor:
    v = torch.randn(n, d, generator=gen, dtype=dtype)
    return v / v.norm(dim=1, keepdim=True)


def _green_radius(n: int, d: int, gen, dtype) -> torch.Tensor:
    """s = r/R drawn with density G/|G| of the ball's Laplace Green's function."""
    if d == 2:
        return torch.sqrt(
            torch.rand(n, generator=gen, dtype=dtype) * torch.rand(n, generator=gen, dtype=dtype)
        )
    return torch.rand(n, 3, generator=gen, dtype=dtype).median(dim=1).values


def _green_mass(R: torch.Tensor, d: int) -> torch.Tensor:
    return R**2 / (4.0 if d == 2 else 6.0)


def _survival(R, d: int, sigma: float):
    """The screened ball's Poisson-kernel mass |P^σ|: the probability a walk goes on."""
    kR = math.sqrt(sigma) * R
    return 1 / torch.special.i0(kR) if d == 2 else kR / torch.sinh(kR)


def _screened_weight(R, s, d: int, sigma: float):
    """Importance weight G^σ(r)/G(r) of a source point drawn at r = s R from the Laplace law."""
    k, tiny = math.sqrt(sigma), torch.finfo(R.dtype).tiny
    kR = k * R
    r = (s * R).clamp_min(tiny)
    if d == 2:
        g_sigma = (
            torch.special.modified_bessel_k0(k * r)
            - torch.special.modified_bessel_k0(kR) * torch.special.i0(k * r) / torch.special.i0(kR)
        ) / (2 * math.pi)
        g_laplace = torch.log(1 / s.clamp_min(tiny)) / (2 * math.pi)
    else:
        g_sigma = torch.sinh(k * (R - r)) / (4 * math.pi * r * torch.sinh(kR))
        g_laplace = (1 / r - 1 / R) / (4 * math.pi)
    return g_sigma / g_laplace.clamp_min(tiny)


def walk(
    x0: torch.Tensor,
    walks: int,
    *,
    distance,
    boundary_value,
    source=None,
    sigma: float = 0.0,
    epsilon: float,
    max_steps: int = 100_000,
    generator: torch.Generator | None = None,
    device=None,
) -> dict:
    """``walks`` walks from each row of ``x0`` (N, d), d = 2 or 3.

    Args:
        distance: x (M, d) -> (M,) distance to the boundary (>= 0 inside; a lower bound is safe).
        boundary_value: x (M, d) points on the boundary -> (M,) values of g there.
        source: x (M, d) -> (M,) values of f, or None for f = 0.
        sigma: screening coefficient (0: Poisson).
        epsilon: stop in this shell of the boundary. max_steps: walks still going after that
            many steps stop where they are (counted in ``unfinished``).
        generator: a CPU generator (the draws do not depend on the device).

    Returns:
        ``{"mean": (N,), "std_error": (N,), "steps": mean steps per walk, "unfinished": count,
        "samples": (N, walks)}``: each walk's estimate, their mean and its standard error
        (sample std / sqrt(walks)).
    """
    n, d = x0.shape
    if d not in (2, 3):
        fail(
            "x",
            f"points of dimension {d}",
            "are not 2-D or 3-D (the Green's functions here are)",
            "pass (N, 2) or (N, 3)",
        )
    walks, max_steps = positive_int("walks", walks), positive_int("max_steps", max_steps)
    device = x0.device if device is None else device
    dtype = x0.dtype
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    x = x0.repeat_interleave(walks, dim=0).to(device)
    total = torch.zeros(n * walks, dtype=dtype, device=device)
    alive = torch.arange(n * walks, device=device)
    steps = 0
    for _ in range(max_steps):
        if len(alive) == 0:
            break
        xa = x[alive]
        R = distance(xa)
        stop = R < epsilon
        if stop.any():
            idx, xs = alive[stop], xa[stop]
            total[idx] += boundary_value(_closest_boundary(xs, distance))
            keep = ~stop
            alive, xa, R = alive[keep], xa[keep], R[keep]
            if len(alive) == 0:
                break
        m = len(alive)
        steps += m
        if source is not None:
            s = _green_radius(m, d, gen, dtype).to(device)
            y = xa + (s * R)[:, None] * _unit_directions(m, d, gen, dtype).to(device)
            term = _green_mass(R, d) * source(y)
            total[alive] += term * _screened_weight(R, s, d, sigma) if sigma > 0 else term
        x[alive] = xa + R[:, None] * _unit_directions(m, d, gen, dtype).to(device)
        if sigma > 0:
            survive = torch.rand(m, generator=gen, dtype=dtype).to(device) < _survival(R, d, sigma)
            alive = alive[survive]  # the others end: no boundary value (unbiased)
    unfinished = len(alive)
    if unfinished:  # stopped by max_steps: read g where they are
        total[alive] += boundary_value(_closest_boundary(x[alive], distance))
    return summarize(total.reshape(n, walks), steps / (n * walks), unfinished)


def _reduce_walks(parts: list, walks: int, world, samples: bool) -> dict:
    """One process's walks of every point (the chunks ``parts`` of :func:`walk`) combined with the
    other ranks': the mean over all ``walks`` walks, the standard error from the summed squared
    deviations about it (two passes: no cancellation), the mean steps and the unfinished walks."""
    from pdeml.distributed import all_gather_object, all_sum

    local = torch.cat([p["samples"] for p in parts]).double().cpu()  # (N, this rank's walks)
    mean = all_sum(local.sum(1), world) / walks
    dev = all_sum(((local - mean[:, None]) ** 2).sum(1), world)
    std = (
        (dev / (walks - 1)).sqrt() / math.sqrt(walks)
        if walks > 1
        else torch.full_like(mean, float("inf"))
    )
    n_loc = torch.tensor(
        [
            sum(p["steps"] * p["samples"].numel() for p in parts),
            sum(p["unfinished"] for p in parts),
        ],
        dtype=torch.float64,
    )
    steps, unfinished = all_sum(n_loc, world).tolist()
    out = {
        "mean": mean.numpy(),
        "std_error": std.numpy(),
        "steps": steps / (len(local) * walks),
        "unfinished": int(unfinished),
    }
    if samples:
        out["samples"] = np.concatenate(all_gather_object(local.numpy(), world), axis=1)
    return out


def _closest_boundary(x: torch.Tensor, distance) -> torch.Tensor:
    """x moved along the distance's gradient to the boundary: x - d(x) ∇d(x)/|∇d(x)|."""
    with torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        dist = distance(xr)
        (grad,) = torch.autograd.grad(dist.sum(), xr)
    n = grad / grad.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return (x - dist.detach()[:, None] * n).detach()


@dataclasses.dataclass(frozen=True, eq=False)
class WalkOnSpheres(AbstractMethod):
    """Walk-on-spheres settings (see the module docstring for the estimator).

    Args:
        walks: walks per point (the standard error falls as walks^(-1/2)).
        epsilon: the stopping shell, relative to the domain's size (its bounding-box diagonal).
        max_steps: a cap on each walk's steps.
        chunk: walks advanced at once (memory: a few vectors of this length).
        kernel: ``"torch"`` (lock-step batches, CPU or GPU), ``"numba"`` (CPU, parallel over
            walks; boxes, balls, polygons and meshes: :mod:`pdeml.solvers._wos_numba`), or
            ``"auto"``:
            numba on the CPU where it applies, else torch.

    Example:
        >>> disk = pl.geometry.Disk([0, 0], 1.0)      # -Δu = 1, u = 0: u = (1 - r²)/4
        >>> problem = pl.Problem(disk, pl.pde.Poisson(source=1.0), [pl.Dirichlet(0.0)])
        >>> backend = WalkOnSpheres(walks=4096).build(problem, dtype=torch.float64)
        >>> est = backend.estimate(np.array([[0.5, 0.0]]))    # the mean and its standard error
        >>> bool(abs(est["mean"][0] - 0.1875) < 4 * est["std_error"][0] < 0.01)
        True
    """

    walks: int = 1024
    epsilon: float = 1e-3
    max_steps: int = 100_000
    chunk: int = 1 << 20
    kernel: str = "auto"

    def __post_init__(self):
        if self.kernel not in ("auto", "torch", "numba"):
            fail(
                "kernel",
                self.kernel,
                "is not a walk-on-spheres kernel",
                'pass "auto", "torch" or "numba"',
            )
        for k in ("walks", "max_steps", "chunk"):
            positive_int(k, getattr(self, k))
        eps = finite_scalar("epsilon", self.epsilon)
        if not 0 < eps < 0.5:
            fail(
                "epsilon",
                eps,
                "is not a small positive fraction of the domain size",
                "pass e.g. 1e-3",
            )

    @classmethod
    def cli_options(cls) -> tuple[Option, ...]:
        return (
            Option(
                "walks",
                "walks per point (the standard error falls as walks^-1/2; default: the method's, "
                "1024)",
                set_field("walks", flag="--walks"),
                type=int,
            ),
            Option(
                "epsilon",
                "stopping shell, relative to the domain size (default: the method's, 1e-3)",
                set_field("epsilon", flag="--epsilon"),
                type=float,
            ),
        )

    def build(self, problem, *, seed=0, dtype=torch.float32, device="cpu") -> WoSBackend:
        return WoSBackend(problem, self, seed=seed, dtype=dtype, device=device)


class WoSBackend(AbstractBackend):
    """Walk-on-spheres estimates at any points: ``predict`` the mean, ``exports`` its standard
    error (and the error against the truth where the case has one)."""

    def __init__(
        self, problem, method: WalkOnSpheres, *, seed=0, dtype=torch.float32, device="cpu"
    ):
        super().__init__()
        from pdeml.pde import ScreenedPoisson, structured

        self.problem, self.method, self.seed = problem, method, int(seed)
        self.pde = structured(problem.pde, "walk-on-spheres")
        self.sigma = self.pde.sigma if isinstance(self.pde, ScreenedPoisson) else 0.0
        if getattr(problem, "time", None) is not None:
            fail(
                "problem",
                "a time-dependent problem",
                "is not elliptic",
                "walk-on-spheres solves steady problems",
            )
        others = [c for c in problem.conditions if not isinstance(c, Dirichlet)]
        if others or not problem.conditions:
            what = type(others[0]).__name__ if others else "no condition"
            fail(
                "conditions",
                what,
                "is not a Dirichlet condition (walk-on-spheres handles Dirichlet only so far)",
                "give every boundary part a pl.Dirichlet(...)",
            )
        if problem.domain.dim not in (2, 3):
            fail(
                "geometry",
                f"{problem.domain.dim}-D",
                "is not 2-D or 3-D",
                "use a 2-D or 3-D geometry",
            )
        lo, hi = problem.domain.bbox
        self.size = float(np.linalg.norm(np.asarray(hi) - np.asarray(lo)))
        self.register_buffer("_anchor", torch.zeros((), dtype=dtype, device=device))
        self._cache = None
        self.kernel = self._choose_kernel(method.kernel, torch.device(device))

    def _choose_kernel(self, wanted: str, device: torch.device) -> str:
        from . import _wos_numba as nk

        spec = nk.geometry_spec(self.problem.domain)
        usable = (
            nk.available()
            and spec is not None
            and device.type == "cpu"
            and not (self.sigma > 0 and self.problem.domain.dim == 2)
        )
        if wanted == "numba" and not usable:
            why = (
                "numba is not installed"
                if not nk.available()
                else "it runs on the CPU only"
                if device.type != "cpu"
                else "it has no distance for this geometry"
                if spec is None
                else "it has no 2-D screened Green's function"
            )
            fail("kernel", "numba", f"cannot run here: {why}", 'pass kernel="torch" (or "auto")')
        self._spec = spec
        return "numba" if wanted == "numba" or (wanted == "auto" and usable) else "torch"

    def _distance(self, x):
        return -self.problem.domain.sdf(x).reshape(-1)

    def _boundary_value(self, x):
        conds = self.problem.conditions
        if len(conds) == 1 and conds[0].on is None:
            return _eval(conds[0].value, x, "Dirichlet(value)").reshape(-1)
        out = torch.full((len(x),), float("nan"), dtype=x.dtype, device=x.device)
        for c in conds:
            mask = (
                torch.ones(len(x), dtype=torch.bool, device=x.device)
                if c.on is None
                else c.on(x).to(x.device)
            )
            free = mask & out.isnan()
            if free.any():
                out[free] = _eval(c.value, x[free], "Dirichlet(value)").reshape(-1)
        if out.isnan().any():
            fail(
                "conditions",
                "their on= predicates",
                f"leave {int(out.isnan().sum())} boundary points without a value",
                "cover the whole boundary (points are on it up to epsilon: compare with a "
                "tolerance)",
            )
        return out

    def estimate(self, x, samples: bool = False) -> dict:
        """Mean, standard error, mean steps and unfinished walks at points ``x`` (N, d); with
        ``samples``, every walk's estimate too (N, walks)."""
        x = torch.as_tensor(np.asarray(x), dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.problem.domain.dim:
            fail(
                "x",
                tuple(x.shape),
                f"is not (N, {self.problem.domain.dim}) points",
                "pass one point per row",
            )
        m, world = self.method, self.world
        source = None
        if not (self.pde.constant_source and self.pde.source == 0):
            source = lambda y: self.pde.f(y).reshape(-1)  # noqa: E731
        walks, first = m.walks, 0
        if world.active:  # several processes: each runs its share of every point's walks
            if m.walks < world.size:
                fail(
                    "walks",
                    m.walks,
                    f"are fewer than the {world.size} processes",
                    f"pass at least {world.size}",
                )
            counts = [len(a) for a in np.array_split(np.arange(m.walks), world.size)]
            walks, first = counts[world.rank], sum(counts[: world.rank])
        per = max(1, m.chunk // m.walks)
        if self.kernel == "numba":
            from ._wos_numba import walk_numba

            per = max(1, per // 4)  # its recorded source points: 32 per walk, more if one is longer
            # walk j from point i seeds with seed_base + i * walks + j: no two walks share a stream,
            # and
            # a rank running walks first..first+walks of each point runs exactly those of one
            # process
            parts = [
                walk_numba(
                    x[i : i + per].double().numpy(),
                    walks,
                    self._spec,
                    boundary_value=self._boundary_value,
                    source=None if self.pde.constant_source else source,
                    f_const=float(self.pde.source) if self.pde.constant_source else 0.0,
                    sigma=self.sigma,
                    epsilon=m.epsilon * self.size,
                    max_steps=m.max_steps,
                    seed=self.seed * 1_000_003 + i * m.walks + first,
                    stride=m.walks,
                )
                for i in range(0, len(x), per)
            ]
        else:
            gen = torch.Generator().manual_seed(
                self.seed if not world.active else self.seed * 1_000_003 + world.rank
            )
            parts = [
                walk(
                    x[i : i + per].to(self.device),
                    walks,
                    distance=self._distance,
                    boundary_value=self._boundary_value,
                    source=source,
                    sigma=self.sigma,
                    epsilon=m.epsilon * self.size,
                    max_steps=m.max_steps,
                    generator=gen,
                )
                for i in range(0, len(x), per)
            ]
        if world.active:
            return _reduce_walks(parts, m.walks, world, samples)
        sizes = [len(p["mean"]) for p in parts]
        out = (
            {"samples": torch.cat([p["samples"] for p in parts]).double().cpu().numpy()}
            if samples
            else {}
        )
        return out | {
            "mean": torch.cat([p["mean"] for p in parts]).double().cpu().numpy(),
            "std_error": torch.cat([p["std_error"] for p in parts]).double().cpu().numpy(),
            "steps": float(np.average([p["steps"] for p in parts], weights=sizes)),
            "unfinished": int(sum(p["unfinished"] for p in parts)),
        }

    def _estimate_cached(self, x):
        key = np.asarray(x)
        if (
            self._cache is None
            or self._cache[0].shape != key.shape
            or not np.array_equal(self._cache[0], key)
        ):
            self._cache = (key.copy(), self.estimate(key))
        return self._cache[1]

    def predict(self, x) -> np.ndarray:
        return self._estimate_cached(x)["mean"][:, None]

    def exports(self, x) -> dict[str, np.ndarray]:
        return {"std_error": self._estimate_cached(x)["std_error"]}

    #: the fewest walks an export point gets, whatever the budget
    EXPORT_MIN_WALKS = 16

    def export(self, out, resolution: int, sample: int | None = None) -> list:
        """The VTK mesh and ``field.png`` (:meth:`AbstractBackend.export`) with a walk budget: the
        export walks about as many walks in all as the solve did (its points times ``walks``;
        1000 points' worth when it did not run here), so each export point gets
        ``walks * solve points / export points`` walks, at most ``walks`` and at least
        :data:`EXPORT_MIN_WALKS`. ``std_error`` in the VTK file is that estimate's. The walks per
        point are recorded in ``export_info`` (metrics.json: ``export_walks``)."""
        from pdeml.export.mesh import mesh
        from pdeml.export.vtk import volume_resolution

        m, g = self.method, self.problem.geometry
        points = len(mesh(g, resolution if g.dim < 3 else volume_resolution(resolution))[0])
        budget = getattr(self, "solve_walks", 1000 * m.walks)
        walks = int(min(m.walks, max(self.EXPORT_MIN_WALKS, budget // max(points, 1))))
        saved = self.method
        self.method, self._cache = dataclasses.replace(m, walks=walks), None
        try:
            files = super().export(out, resolution, sample)
        finally:
            self.method, self._cache = saved, None
        self.export_info = {"export_walks": walks, "export_points": points}
        return files

    def solve(self, truth) -> dict:
        """Estimates at the truth's points: the relative L2 error, the mean standard error, the
        share of points within 4 standard errors, walks per second."""
        metrics = {"walks": self.method.walks}
        if truth is None:
            return metrics
        x, v = truth
        self.solve_walks = len(x) * self.method.walks
        t = time.perf_counter()
        est = self.estimate(x)
        wall = time.perf_counter() - t
        v = np.asarray(v, dtype=float)[:, 0]
        return {
            **metrics,
            "l2_relative_error": float(np.linalg.norm(est["mean"] - v) / np.linalg.norm(v)),
            "std_error_mean": float(est["std_error"].mean()),
            "within_4_std_errors": float(np.mean(np.abs(est["mean"] - v) <= 4 * est["std_error"])),
            "points": len(x),
            "wall_time_s": round(wall, 3),
            "walks_per_second": round(len(x) * self.method.walks / wall, 1),
            "steps_per_walk": round(est["steps"], 2),
            "unfinished_walks": est["unfinished"],
        }

    def resolved(self) -> dict:
        return {
            "pde": repr(self.pde),
            "epsilon_absolute": self.method.epsilon * self.size,
            "kernel": self.kernel,
        }
