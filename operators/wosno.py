r"""WoS-NO: a neural operator for a family of domains trained on walk-on-spheres estimates, not on
solver data and not on the PDE residual (after "Neural operators meet walk-on-spheres", the
WoS-NO paper and its reference code neuraloperator/WoS-NO; walk-on-spheres:
:mod:`pdeml.solvers.wos`).

For a family of Dirichlet problems :math:`-\Delta u = f` in :math:`\Omega_a`, :math:`u = g` on
:math:`\partial\Omega_a`, the operator maps per-point inputs to :math:`u`. Training keeps, for
every training domain and every training point :math:`x_i`, the running sums of all walk
estimates so far; each time a domain is drawn into a batch, ``walks`` fresh walks per point
(10 in the paper) are folded in, so at its :math:`k`-th draw (:math:`k = 0, 1, \dots`) a point's
target is the mean of :math:`10(k+1)` walks,

.. math:: \bar u_i = \frac1{M}\sum_{m=1}^{M} \hat u^{(m)}(x_i), \qquad
          s_i^2 = \frac{1}{M(M-1)}\sum_m\big(\hat u^{(m)}(x_i) - \bar u_i\big)^2,

and the loss is the relative L2 error against :math:`\bar u` over the inside points,
:math:`\|u_\theta - \bar u\|/\|\bar u\|` per domain (``weighting="std_error"`` weighs each point
by :math:`1/(s_i^2 + \tilde s^2)`, :math:`\tilde s^2` the domain's median :math:`s_i^2`). The
estimates are unbiased, so the expected loss is the truth's loss plus the estimates' variance,
which the running mean shrinks as :math:`1/k`.

**Operator.** The paper's backbone is GINO (a graph-kernel encoder onto a latent grid, an FNO,
a decoder back to the points). Here the points are the cell centres of an ``n x n`` grid over
the family's box, and the operator is the FNO of :mod:`pdeml.operators.fno` (zero-padded: the box is
not periodic), with the paper's per-point inputs as channels: :math:`g` at the nearest boundary
point, the signed distance to the boundary and :math:`f`. On a grid the encoder and decoder of
GINO are the identity, so this is GINO without its graph kernels; what it loses is meshes with
points of their own, which the star family does not need.

**Targets** (``targets=``): ``"wos"`` (WoS-NO), ``"residual"`` (the physics-informed baseline:
the same operator trained on the 5-point residual :math:`-\Delta_h u_\theta - f` at the inside
nodes whose stencil is inside, plus :math:`u_\theta = g` at ``16n`` boundary points read by
bilinear interpolation: with ``4n`` the discrete problem is rank-deficient, its minimum-norm
solution off by 20-80%; with ``16n`` it has full rank, and its own error against the truth, the
floor of this baseline, is measured in ``tests/benchmarks/bench_wosno.py``), or ``"truth"``
(supervised on the finite-element truth: the bound
neither can beat). The error is measured against the family's finite-element truth on
``test_domains`` fixed draws.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from pdeml._validate import fail, finite_scalar, positive_int
from pdeml.backend import AbstractMethod, AbstractTrainable
from pdeml.family import AbstractFamily
from pdeml.sampling import EpochSampler
from pdeml.settings import frozen_set

from .backend import FixedTestSet, _cast, parameter_count
from .fno import FNO
from .losses import relative_l2

TARGETS = ("wos", "residual", "truth")
#: boundary points per grid cell along an axis in the physics-informed loss (16n in all)
BOUNDARY_POINTS = 16


@dataclasses.dataclass(frozen=True)
class DomainDraws(EpochSampler):
    """Training domains of a family and their targets: ``domains`` draws, ``batch_size`` of them
    per step in a fresh order every epoch. For WoS targets each drawn domain first gets ``walks``
    new walks per inside point, folded into its running sums (checkpointed, so a resumed run
    continues the same means).

    A batch is ``{"data": {"features", "inside", "params", "target", "std_error"}}``
    (``"target"``: the running means, or the truth; ``"std_error"``: the means' standard errors).
    """

    domains: int = 64
    batch_size: int = 8
    _: dataclasses.KW_ONLY
    targets: str = "wos"
    walks: int = 10
    epsilon: float = 1e-3
    progress: bool = False

    def __post_init__(self):
        positive_int("domains", self.domains)
        positive_int("batch_size", self.batch_size)
        if self.batch_size > self.domains:
            fail(
                "batch_size",
                self.batch_size,
                f"exceeds the {self.domains} training domains",
                f"pass at most {self.domains}",
            )
        if self.targets not in TARGETS:
            fail("targets", self.targets, "is not a WoS-NO target", f"pass one of {TARGETS}")
        positive_int("walks", self.walks)
        frozen_set(
            self, epsilon=finite_scalar("epsilon", self.epsilon), progress=bool(self.progress)
        )

    def _start(self, run):
        from pdeml.callbacks import progress as shown

        fam = run.problem
        run.draws = [fam.draw(run.rng) for _ in range(self.domains)]
        feats = [fam.features(d) for d in run.draws]
        run.features = np.stack([f for f, _ in feats])
        run.inside = np.stack([m for _, m in feats])
        run.params = np.stack([d.vector() for d in run.draws])
        n = run.inside.shape[1:]
        if self.targets == "truth":
            run.truth = np.stack(
                [
                    fam.truth(d, m)
                    for d, m in shown(
                        zip(run.draws, run.inside),
                        total=self.domains,
                        desc="truth",
                        enabled=self.progress,
                        unit="domains",
                    )
                ]
            )
        if self.targets == "wos":
            run.sums = np.zeros((self.domains, 2, *n))  # sum and sum of squares of the walks
            run.count = np.zeros(self.domains, dtype=np.int64)
            run._points = fam.grid()
        self._start_order(run)

    #: under torchrun each rank walks and reads its own domains
    sharded_terms: ClassVar[tuple] = ("data",)

    def _items(self, run):
        return self.domains

    def _walk(self, run, k: int, seed: int) -> np.ndarray:
        """``walks`` fresh walks (stream ``seed``) from every inside point of domain ``k``: their
        sum and sum of squares, (2, n, n), 0 outside."""
        from pdeml.solvers.wos import WalkOnSpheres

        inside = run.inside[k]
        solver = WalkOnSpheres(walks=self.walks, epsilon=self.epsilon).build(
            run.problem.wos_problem(run.draws[k]), seed=seed, dtype=torch.float64
        )
        s = solver.estimate(run._points[inside], samples=True)["samples"]
        out = np.zeros((2, *inside.shape))
        out[0][inside], out[1][inside] = s.sum(1), (s**2).sum(1)
        return out

    def _fold(self, run, idx: np.ndarray) -> None:
        """Fold fresh walks into the sums of domains ``idx``. Every rank draws every domain's seed
        (one generator, the same on all ranks); under torchrun each walks only its own domains
        (:meth:`_own`) and the ranks gather the new sums, so every rank holds all of them: the
        walks, and so the targets, of one process."""
        seeds = {int(k): int(run.rng.integers(2**31)) for k in idx}
        own = self._own(run, idx)
        new = np.stack([self._walk(run, int(k), seeds[int(k)]) for k in own])
        if len(own) < len(idx):
            from pdeml.distributed import all_gather_rows

            new = all_gather_rows(torch.as_tensor(new), run.world).numpy()
        run.sums[idx] += new
        run.count[idx] += self.walks

    def statistics(self, run, idx) -> tuple[np.ndarray, np.ndarray]:
        """The running means and their standard errors of domains ``idx`` (0 outside)."""
        m = run.count[idx].reshape(-1, 1, 1).astype(float)
        mean = run.sums[idx, 0] / m
        var = np.maximum(run.sums[idx, 1] - m * mean**2, 0) / np.maximum(m - 1, 1)
        return mean, np.sqrt(var / m)

    def _read(self, run, idx, fresh) -> dict:
        """The batch of domains ``idx`` (this rank's share of them under torchrun); for WoS targets
        a fresh read first folds in new walks (a resumed run's re-read does not: no walk is folded
        in twice)."""
        if self.targets == "wos" and fresh:
            self._fold(run, idx)
        idx = self._own(run, idx)
        out = {
            "features": run.features[idx],
            "inside": run.inside[idx].astype(float),
            "params": run.params[idx],
        }
        if self.targets == "wos":
            out["target"], out["std_error"] = self.statistics(run, idx)
        elif self.targets == "truth":
            out["target"] = run.truth[idx]
        return {"data": out}

    def _extra_state(self, run):
        return (
            {"sums": torch.as_tensor(run.sums), "count": torch.as_tensor(run.count)}
            if self.targets == "wos"
            else {}
        )

    def _load_extra_state(self, run, state):
        if self.targets == "wos":
            run.sums, run.count = state["sums"].numpy().copy(), state["count"].numpy().copy()

    def __repr__(self):
        return (
            f"DomainDraws({self.domains}, {self.batch_size}, targets={self.targets!r}, "
            f"walks={self.walks})"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class WoSNO(AbstractMethod):
    """WoS-NO settings (see the module docstring).

    Args:
        targets: ``"wos"`` (walk-on-spheres running means), ``"residual"`` (physics-informed
            baseline) or ``"truth"`` (finite-element targets).
        walks: fresh walks per point each time a domain is drawn (WoS targets).
        domains, batch_size: training draws and draws per step.
        weighting: ``"none"`` or ``"std_error"`` (weigh points by their estimates' precision).
        modes, width, layers: the FNO. test_domains: fixed draws the error is measured on.
        epsilon: walk-on-spheres' stopping shell (relative to the domain size).

    Example:
        >>> from pdeml.families.star_poisson import StarFamily
        >>> case = pl.Case(StarFamily(n=32), WoSNO(targets="wos", domains=64), steps=2000)
        >>> case.method.targets                # "residual": the physics-informed baseline
        'wos'
    """

    targets: str = "wos"
    walks: int = 10
    domains: int = 64
    batch_size: int = 8
    weighting: str = "none"
    modes: int = 12
    width: int = 32
    layers: int = 4
    test_domains: int = 16
    epsilon: float = 1e-3

    def __post_init__(self):
        if self.weighting not in ("none", "std_error"):
            fail(
                "weighting",
                self.weighting,
                "is not a WoS-NO weighting",
                'pass "none" or "std_error"',
            )
        if self.weighting == "std_error" and self.targets != "wos":
            fail(
                "weighting",
                self.weighting,
                f"needs walk-on-spheres targets, not {self.targets!r}",
                'pass targets="wos" or weighting="none"',
            )
        for k in ("modes", "width", "layers", "test_domains"):
            positive_int(k, getattr(self, k))
        self.sampler()  # validates domains, batch_size, targets, walks

    def sampler(self, progress: bool = False) -> DomainDraws:
        return DomainDraws(
            self.domains,
            self.batch_size,
            targets=self.targets,
            walks=self.walks,
            epsilon=self.epsilon,
            progress=progress,
        )

    def build(self, problem, *, seed=0, dtype=torch.float32, device="cpu") -> DomainOperator:
        needs = ("draw", "features", "truth", "wos_problem", "boundary_samples", "grid")
        if not isinstance(problem, AbstractFamily) or not all(hasattr(problem, k) for k in needs):
            fail(
                "problem",
                type(problem).__name__,
                "is not a family of domains",
                f"pass a family with {', '.join(needs)} (cases/_star_poisson.StarFamily)",
            )
        n = problem.grid().shape[0]
        if self.modes > n // 2:
            fail(
                "modes",
                self.modes,
                f"exceed what the {n} x {n} grid holds ({n // 2})",
                f"pass at most {n // 2}",
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = FNO(
                3,
                1,
                (self.modes, self.modes),
                width=self.width,
                layers=self.layers,
                padding=(max(1, n // 8),) * 2,
            )
        return _cast(DomainOperator(problem, net, self), dtype).to(device)


def relative_l2_masked(pred, target, mask, weight=None) -> torch.Tensor:
    r""":func:`pdeml.operators.losses.relative_l2` on the ``mask`` points, each weighted by
    ``weight``:
    mean over the batch of :math:`\|w^{1/2}(p - t)\|/\|w^{1/2}t\|`."""
    s = (mask if weight is None else mask * weight).sqrt()
    return relative_l2(pred * s, target * s)


def five_point_residual(u, f, inside, h: float):
    """:math:`-\\Delta_h u - f` at the inside nodes whose four neighbours are inside, and that
    mask."""
    lap = (
        u[..., 2:, 1:-1]
        + u[..., :-2, 1:-1]
        + u[..., 1:-1, 2:]
        + u[..., 1:-1, :-2]
        - 4 * u[..., 1:-1, 1:-1]
    ) / h**2
    m = (
        inside[..., 1:-1, 1:-1]
        * inside[..., 2:, 1:-1]
        * inside[..., :-2, 1:-1]
        * inside[..., 1:-1, 2:]
        * inside[..., 1:-1, :-2]
    )
    return (-lap - f[..., 1:-1, 1:-1]) * m, m


def bilinear(u, x, half: float):
    """``u`` (B, n, n) on the cell centres of [-half, half]², indexed [x, y], at points ``x`` (B,
    k, 2)."""
    grid = (x / half).flip(-1)[:, None]  # grid_sample: last axis (width) first
    return F.grid_sample(u[:, None], grid, mode="bilinear", align_corners=False)[:, 0, 0]


class DomainOperator(FixedTestSet, AbstractTrainable):
    """The trained map from a domain's per-point inputs (B, 3, n, n) to its solution (B, n, n)."""

    input_key = "features"

    def __init__(self, family, net, method: WoSNO):
        super().__init__()
        self.problem, self.net, self.method = family, net, method
        self.n = family.grid().shape[0]
        self.h = 2 * family.half / self.n

    @property
    def term_names(self):
        return ["pde", "boundary"] if self.method.targets == "residual" else ["data"]

    def forward(self, features):
        return self.net(features)[:, 0]

    def losses(self, batch, residuals=None):
        d = batch["data"]
        pred, inside = self(d["features"]), d["inside"]
        if self.method.targets == "residual":
            r, m = five_point_residual(pred, d["features"][:, 2], inside, self.h)
            xb, gb = self.problem.boundary_samples(d["params"], BOUNDARY_POINTS * self.n)
            return {
                "pde": (r**2).sum() / m.sum().clamp_min(1),
                "boundary": ((bilinear(pred, xb, self.problem.half) - gb) ** 2).mean(),
            }
        weight = None
        if self.method.weighting == "std_error":
            var = d["std_error"] ** 2
            ref = torch.stack([v[m > 0].median() for v, m in zip(var, inside)])[:, None, None]
            weight = 1 / (var + ref.clamp_min(torch.finfo(var.dtype).tiny))
        return {"data": relative_l2_masked(pred, d["target"], inside, weight)}

    def batches(self, sampler, rng):
        sampler = sampler if sampler is not None else self.method.sampler()
        if not isinstance(sampler, DomainDraws):
            fail(
                "sampler",
                sampler,
                "is not a DomainDraws",
                "leave it out (WoS-NO draws its own domains)",
            )
        return sampler.init(self.problem, rng)

    @torch.no_grad()
    def predict(self, x, chunk: int = 16) -> np.ndarray:
        """Solutions (B, n, n) at features ``x`` (B, 3, n, n); 0 outside (distance channel <= 0)."""
        x = torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)
        if x.ndim != 4 or x.shape[1:] != (3, self.n, self.n):
            fail(
                "x",
                tuple(x.shape),
                f"is not (B, 3, {self.n}, {self.n}) features",
                "pass family.features(draw)[0] stacked",
            )
        out = np.concatenate(
            [self(x[i : i + chunk]).double().cpu().numpy() for i in range(0, len(x), chunk)]
        )
        return out * (np.asarray(x[:, 1].cpu()) > 0)

    def _make_test_set(self, rng) -> dict:
        """Features, inside masks, FEM truth and the draws themselves."""
        fam = self.problem
        draws = [fam.draw(rng) for _ in range(self.method.test_domains)]
        feats = [fam.features(d) for d in draws]
        inside = np.stack([m for _, m in feats])
        return {
            "features": np.stack([f for f, _ in feats]),
            "inside": inside,
            "draws": draws,
            "truth": np.stack([fam.truth(d, m) for d, m in zip(draws, inside)]),
        }

    def resolved(self):
        return {"parameters": parameter_count(self), "grid": self.n}

    def export(self, out, resolution: int, sample: int | None = None, walks: int = 256):
        """Per test domain (``sample``, or the first three) ``test_<k>.vti``: the prediction, the
        finite-element truth, the error, and a walk-on-spheres solve with ``walks`` walks (its
        mean and standard error) at the inside cell centres; and ``field.png``."""
        from .export import export_domains

        return export_domains(self, out, [sample] if sample is not None else None, walks)


def physics_floor(family, draw) -> tuple[np.ndarray, int, int]:
    """The grid values that minimize the physics-informed loss of one draw exactly (linear least
    squares over the nodes the loss touches), with the system's rank and unknown count: the best
    the ``"residual"`` baseline can reach on this grid, whatever the network."""
    feats, inside = family.features(draw)
    n = inside.shape[0]
    f = torch.as_tensor(feats[2])[None]
    m = torch.as_tensor(inside, dtype=torch.float64)[None]
    xb, gb = family.boundary_samples(torch.as_tensor(draw.vector())[None], BOUNDARY_POINTS * n)

    def residual(u):
        r, mask = five_point_residual(u.reshape(1, n, n), f, m, 2 * family.half / n)
        return torch.cat(
            [r[mask > 0], (bilinear(u.reshape(1, n, n), xb, family.half) - gb).reshape(-1)]
        )

    zero = torch.zeros(n * n, dtype=torch.float64)
    A = torch.autograd.functional.jacobian(residual, zero)  # the loss is linear in u
    used = A.abs().sum(0) > 0
    sol = torch.linalg.lstsq(A[:, used], -residual(zero)[:, None], driver="gelsd").solution[:, 0]
    u = torch.zeros(n * n, dtype=torch.float64)
    u[used] = sol
    return (
        u.reshape(n, n).numpy() * inside,
        int(torch.linalg.matrix_rank(A[:, used])),
        int(used.sum()),
    )
