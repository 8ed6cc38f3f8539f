r"""EquiNO: an equilibrium-preserving surrogate of the RVE map ε̄ ↦ (σ field, σ̄) for FE²
(Eivazi, Tröger, Wittek, Hartmann, Rausch, arXiv 2504.07976; J. Comput. Phys. 2026). The RVE
and its laws are :mod:`pdeml.solvers.rve`.

**Bases from snapshots.** RVE solves at macro strains :math:`\bar\varepsilon_s` give fluctuation
displacements :math:`\tilde u_s` and stresses :math:`\sigma_s` at the quadrature points. POD
(a thin SVD of each snapshot matrix) gives r displacement modes :math:`\phi_{u,i}`, their strains
:math:`\phi_{\varepsilon,i} = B\phi_{u,i}`, and r stress modes :math:`\phi_{\sigma,i}`. Every
stress mode is a linear combination of converged stress snapshots, each of which satisfies the
discrete weak equilibrium with periodic conditions, and equilibrium is linear in σ: so any
:math:`\sum_i b_i\phi_{\sigma,i}` is equilibrated, to round-off, whatever the :math:`b_i`.

**The network.** Two MLP branches (4 x 64, swish) map :math:`\bar\varepsilon/0.04` to
normalized coefficients; :math:`a = \mu_a + s_a\,\hat a`, :math:`b = \mu_b + s_b\,\hat b` with
the snapshots' projection statistics. Then

.. math:: \varepsilon = \bar\varepsilon + \sum_i a_i\phi_{\varepsilon,i}, \quad
          \sigma_c = \sigma(\varepsilon), \quad \sigma_{eq} = \sum_i b_i\phi_{\sigma,i}, \quad
          \mathcal L = \langle \|\sigma_c - \sigma_{eq}\|^2 \rangle_{\text{Gauss points}},

unsupervised: the snapshots build the bases, the loss is the constitutive law against the
equilibrated stress.

**The norm of the mismatch** (``norm``). The paper's loss is the Euclidean
:math:`\|\sigma_c - \sigma_{eq}\|^2`. With a stiff inclusion (K = 43452) in a soft, nearly
incompressible matrix (G₀ = c₁/2c₂ ≈ 417), it is all but blind to the matrix's deviatoric
stress, which is what a structure mostly loads: measured on the plate with a hole
(``solvers/fe2.py``), whose Gauss points sit near ε_xx ≈ -ε_yy, σ̄ was 10-30% off while the
Latin-hypercube test error was 1.4%. The default measures the mismatch in the compliance
(complementary energy) norm of each phase's small-strain moduli,

.. math:: \|\Delta\sigma\|^2_{C_0^{-1}} \approx \frac{(\operatorname{tr}\Delta\sigma/2)^2}{\kappa_0}
          + \frac{\|\operatorname{dev}\Delta\sigma\|^2}{2G_0}, \qquad \kappa_0 = K_0 + G_0/3,

the constitutive-relation-error measure (Ladevèze): every phase and mode counts by the energy it
carries. ``norm="euclidean"`` keeps the paper's. :math:`\bar\sigma(\bar\varepsilon) = \sum_i
b_i\langle\phi_{\sigma,i}\rangle`
and its tangent :math:`\partial\bar\sigma/\partial\bar\varepsilon` come from the stress
branch alone, the tangent carried through it in the same pass.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from pdeml._validate import fail, positive_int
from pdeml.backend import AbstractMethod, AbstractTrainable
from pdeml.family import AbstractFamily
from pdeml.sampling import EpochSampler
from pdeml.settings import frozen_set
from pdeml.solvers.rve import LAWS, RVE, from_voigt_strain, voigt

from .backend import FixedTestSet, parameter_count

#: the macro strain box of the paper: each Voigt component in [-0.04, 0.04]
STRAIN_RANGE = 0.04


def latin_hypercube(count: int, seed: int = 0, scale: float = STRAIN_RANGE) -> np.ndarray:
    """``count`` Voigt strains (xx, yy, γ_xy) by Latin hypercube in [-scale, scale]³."""
    from scipy.stats import qmc

    return (2 * qmc.LatinHypercube(d=3, seed=seed).random(positive_int("count", count)) - 1) * scale


def snapshots(rve: RVE, strains: np.ndarray, progress: bool = False) -> dict:
    """RVE solves at ``strains`` (S, 3): ``{"strain", "u" (S, N), "stress_qp" (S, E, Q, 2, 2),
    "stress" (S, 3)}``. Each solve starts from the previous fluctuation (nearby strains)."""
    from pdeml.callbacks import progress as shown

    out = {"strain": np.asarray(strains, float), "u": [], "stress_qp": [], "stress": []}
    # a bar on a terminal, log lines elsewhere (and under --no-progress)
    for e in shown(out["strain"], desc="RVE snapshots", enabled=progress, unit="solves"):
        r = rve.solve(e)
        out["u"].append(r["u"])
        out["stress_qp"].append(r["stress_qp"])
        out["stress"].append(r["stress"])
    return {k: np.stack(v) if isinstance(v, list) else v for k, v in out.items()}


def pod(matrix: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``r`` left singular vectors of ``matrix`` (features x snapshots) and all singular
    values (no centering: every mode is a combination of snapshots)."""
    U, s, _ = np.linalg.svd(matrix, full_matrices=False)
    if r > U.shape[1]:
        fail(
            "modes",
            r,
            f"exceed the {U.shape[1]} snapshots",
            f"pass at most {U.shape[1]} or take more snapshots",
        )
    return U[:, :r], s


class EquiNONet(nn.Module):
    """The two branches and the bases (float64 buffers), built from an RVE and its snapshots."""

    def __init__(
        self,
        rve: RVE,
        snaps: dict,
        modes: int = 16,
        width: int = 64,
        depth: int = 4,
        norm: str = "energy",
    ):
        super().__init__()
        self._build(rve, snaps, modes, width, depth, norm)
        self.branch_a, self.branch_b = _branch(modes, width, depth), _branch(modes, width, depth)

    def _build(
        self, rve: RVE, snaps: dict, modes: int, width: int, depth: int, norm: str = "energy"
    ):
        """The bases, their statistics, the laws and the mismatch norm (shared with
        :class:`WeakFormNet`)."""
        if norm not in NORMS:
            fail("norm", norm, "is not a mismatch norm", f"pass one of {NORMS}")
        self.norm = norm
        fe = rve._fe
        S = len(snaps["strain"])
        phi_u, _ = pod(snaps["u"].T, modes)
        sig_flat = voigt(snaps["stress_qp"]).reshape(S, -1)  # (S, E*Q*3)
        phi_s, self.sv_s = pod(sig_flat.T, modes)
        shape = snaps["stress_qp"].shape[1:3]  # (E, Q)
        phi_eps = np.stack(
            [fe.strains(phi_u[:, i], np.zeros((2, 2))) for i in range(modes)]
        )  # (r, E, Q, 2, 2)
        phi_sig = from_voigt_strain(
            phi_s.T.reshape(modes, *shape, 3) * np.array([1, 1, 2])
        )  # xy back to tensor
        a, b = snaps["u"] @ phi_u, sig_flat @ phi_s  # projections (S, r)
        dx = fe.basis.dx / fe.area  # (E, Q) weights of the average
        f64 = dict(dtype=torch.float64)
        self.register_buffer("phi_u", torch.as_tensor(phi_u, **f64))
        self.register_buffer("phi_eps", torch.as_tensor(phi_eps, **f64))
        self.register_buffer("phi_sig", torch.as_tensor(phi_sig, **f64))
        self.register_buffer(
            "phi_sig_mean", torch.as_tensor(voigt(np.einsum("reqij,eq->rij", phi_sig, dx)), **f64)
        )
        self.register_buffer(
            "stats",
            torch.as_tensor(
                np.stack([a.mean(0), a.std(0) + 1e-12, b.mean(0), b.std(0) + 1e-12]), **f64
            ),
        )
        self.register_buffer("inclusion", torch.as_tensor(fe.phase))
        self.laws = (rve.matrix, rve.inclusion)
        self.register_buffer("dx", torch.as_tensor(dx, **f64))
        moduli = np.where(
            fe.phase,
            np.array(small_strain_moduli(rve.inclusion))[:, None],
            np.array(small_strain_moduli(rve.matrix))[:, None],
        )  # (κ₀, 2G₀) x E
        self.register_buffer("compliance", torch.as_tensor(1 / moduli, **f64))

    def displacement_coefficients(self, strain: torch.Tensor) -> torch.Tensor:
        """a (B, r) at Voigt macro strains (B, 3)."""
        m_a, s_a, _, _ = self.stats
        return m_a + s_a * self.branch_a(strain / STRAIN_RANGE)

    def constitutive(self, strain: torch.Tensor, a: torch.Tensor):
        """ε = ε̄ + Σ aᵢφ_ε,ᵢ and σ_c = σ(ε) at the Gauss points, each (B, E, Q, 2, 2)."""
        eps = _tensor(strain)[:, None, None] + torch.einsum("br,reqij->beqij", a, self.phi_eps)
        (mk, mp), (ik, ip) = self.laws
        sig_c = torch.where(
            self.inclusion[None, :, None, None, None], LAWS[ik](eps, **ip), LAWS[mk](eps, **mp)
        )
        return eps, sig_c

    def coefficients(self, strain: torch.Tensor):
        """a, b (B, r) at Voigt macro strains (B, 3)."""
        return self.displacement_coefficients(strain), self.stress_coefficients(strain)

    def stress_coefficients(self, strain: torch.Tensor) -> torch.Tensor:
        """b (B, r): all σ̄ and its tangent need (the displacement branch serves training)."""
        _, _, m_b, s_b = self.stats
        return m_b + s_b * self.branch_b(strain / STRAIN_RANGE)

    def fields(self, strain: torch.Tensor):
        """Strain ε, constitutive stress σ_c and equilibrated stress σ_eq at the Gauss points,
        each (B, E, Q, 2, 2)."""
        a, b = self.coefficients(strain)
        eps, sig_c = self.constitutive(strain, a)
        return eps, sig_c, torch.einsum("br,reqij->beqij", b, self.phi_sig)

    def loss(self, strain: torch.Tensor) -> torch.Tensor:
        """Mean squared mismatch of σ_c and σ_eq over the Gauss points in the chosen ``norm``
        (unsupervised)."""
        _, sig_c, sig_eq = self.fields(strain)
        return self.mismatch(sig_c - sig_eq).mean()

    def mismatch(self, d: torch.Tensor) -> torch.Tensor:
        """‖d‖² per Gauss point of stress differences d (B, E, Q, 2, 2): Euclidean, or the
        compliance norm (tr d/2)²/κ₀ + ‖dev d‖²/2G₀ of each element's phase."""
        if self.norm == "euclidean":
            return (d**2).sum((-2, -1))
        p = (d[..., 0, 0] + d[..., 1, 1]) / 2
        dev = d - p[..., None, None] * torch.eye(2, dtype=d.dtype, device=d.device)
        return (
            p**2 * self.compliance[0, :, None]
            + (dev**2).sum((-2, -1)) * self.compliance[1, :, None]
        )

    def forward(self, strain: torch.Tensor) -> torch.Tensor:
        """σ̄ (B, 3) (xx, yy, xy) at Voigt macro strains (B, 3)."""
        return self.stress_coefficients(strain) @ self.phi_sig_mean

    def tangent(self, strain: torch.Tensor) -> torch.Tensor:
        """dσ̄/dε̄ (B, 3, 3) (Voigt, engineering shear)."""
        return self.stress_and_tangent(strain)[1]

    def stress_and_tangent(self, strain: torch.Tensor):
        """σ̄ (B, 3) and dσ̄/dε̄ (B, 3, 3) in one forward pass that carries the Jacobian through the
        stress branch (Linear: J W^T; SiLU: J times σ(z)(1 + z(1 - σ(z)))): what an FE² Newton
        step asks of every Gauss point, without autograd's bookkeeping (0.23 ms by three backward
        passes, 2 ms by vmap'd jacfwd, for one point)."""
        z, J = forward_jacobian(self.branch_b, strain / STRAIN_RANGE, 1 / STRAIN_RANGE)
        _, _, m_b, s_b = self.stats
        b, Jb = m_b + s_b * z, J * s_b  # (B, r), (B, 3, r)
        return b @ self.phi_sig_mean, (Jb @ self.phi_sig_mean).transpose(1, 2)


def forward_jacobian(mlp: nn.Sequential, z: torch.Tensor, scale: float = 1.0):
    """An MLP of Linear and SiLU layers at inputs z (B, d) with its input Jacobian carried along,
    transposed: returns (out (B, m), J (B, d, m)) with J[b] = scale · (d out_b / d z_b)ᵀ. Linear:
    J Wᵀ; SiLU: J times σ(z)(1 + z(1 - σ(z))). One pass, none of autograd's bookkeeping."""
    J = torch.eye(z.shape[1], dtype=z.dtype, device=z.device).expand(len(z), -1, -1) * scale
    for layer in mlp:
        if isinstance(layer, nn.Linear):
            z, J = layer(z), J @ layer.weight.T
        elif isinstance(layer, nn.SiLU):
            sg = torch.sigmoid(z)
            J = J * (sg * (1 + z * (1 - sg)))[:, None, :]
            z = z * sg
        else:
            fail(
                "mlp",
                type(layer).__name__,
                "is not a Linear or SiLU layer",
                "build the branch from those two",
            )
    return z, J


NORMS = ("energy", "euclidean")


def small_strain_moduli(law: tuple) -> tuple[float, float]:
    """(κ₀, 2G₀) of a law at ε = 0: the in-plane bulk modulus K + G/3 and twice the shear modulus
    (the nonlinear matrix: G₀ = c₁/2c₂)."""
    kind, p = law
    G = p["G"] if kind == "linear" else p["c1"] / p["c2"] / 2
    return p["K"] + G / 3, 2 * G


def _branch(modes: int, width: int, depth: int) -> nn.Sequential:
    """ε̄/0.04 -> r normalized coefficients: ``depth`` x ``width`` SiLU layers, float64."""
    layers, d = [], 3
    for _ in range(depth):
        layers += [nn.Linear(d, width, dtype=torch.float64), nn.SiLU()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, modes, dtype=torch.float64))


class WeakFormNet(EquiNONet):
    r"""The physics-informed baseline without the stress basis (the paper's variational
    competitor, VPIONet-like): one branch ε̄ -> a, the displacement coefficients, and the loss
    the discrete weak equilibrium of the constitutive stress,

    .. math:: \mathcal L = \frac{1}{N}\Big\|P^\top\!\int B^\top\sigma\big(\bar\varepsilon +
              \textstyle\sum_i a_i\phi_{\varepsilon,i}\big)\Big\|^2 \Big/ s^2,

    (s: the snapshots' mean |σ̄|, so the loss is of order one), minimized without data as
    EquiNO's. Equilibrium is now only as good as the training; σ̄ = ⟨σ_c⟩ needs the whole field,
    and its tangent comes from autodiff through the law at every Gauss point."""

    def __init__(self, rve: RVE, snaps: dict, modes: int = 16, width: int = 64, depth: int = 4):
        nn.Module.__init__(self)
        self._build(rve, snaps, modes, width, depth)
        self.branch_a = _branch(modes, width, depth)
        G = weak_form_operator(rve)
        G = G.tocoo()
        self.register_buffer(
            "G",
            torch.sparse_coo_tensor(
                np.stack([G.row, G.col]), G.data, G.shape, dtype=torch.float64
            ).coalesce(),
            persistent=False,
        )
        self.scale = float(np.abs(snaps["stress"]).mean())

    def weak_residual(self, sig: torch.Tensor) -> torch.Tensor:
        """Pᵀ∫Bᵀσ (B, N_r) for stresses (B, E, Q, 2, 2) at the Gauss points."""
        return (self.G @ sig.reshape(len(sig), -1).T).T

    def loss(self, strain):
        _, sig_c = self.constitutive(strain, self.displacement_coefficients(strain))
        return (self.weak_residual(sig_c) ** 2).mean() / self.scale**2

    def forward(self, strain):
        _, sig_c = self.constitutive(strain, self.displacement_coefficients(strain))
        s = torch.einsum("beqij,eq->bij", sig_c, self.dx)
        return torch.stack([s[:, 0, 0], s[:, 1, 1], s[:, 0, 1]], -1)

    def stress_and_tangent(self, strain):
        J = torch.func.vmap(torch.func.jacrev(lambda e: self(e[None])[0]))(strain)
        return self(strain), J


def weak_form_operator(rve: RVE):
    """The sparse matrix G (N_r, E·Q·4) with G·vec(σ) = Pᵀ∫Bᵀσ for stress tensors σ (E, Q, 2, 2)
    at the Gauss points (the periodic-reduced internal force; :meth:`RVE.equilibrium_residual`
    computes the same by assembly)."""
    import scipy.sparse as sp

    fe = rve._fe
    basis = fe.basis
    E, Q = basis.dx.shape
    rows, cols, vals = [], [], []
    col = np.arange(E * Q * 4).reshape(E, Q, 2, 2)
    for i, phi in enumerate(basis.basis):
        g = phi[0].grad  # (2, 2, E, Q)
        sym = 0.5 * (g + g.transpose(1, 0, 2, 3)) * basis.dx
        for a in range(2):
            for b in range(2):
                rows.append(np.repeat(basis.element_dofs[i], Q))
                cols.append(col[:, :, a, b].ravel())
                vals.append(sym[a, b].ravel())
    B = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(basis.N, E * Q * 4),
    )
    return (fe.P.T @ B).tocsr()


class EquiNOMaterial:
    """A trained EquiNO (or any net with ``stress_and_tangent``) as a macroscopic FE² material
    (:mod:`pdeml.solvers.fe2`): σ̄ and ∂σ̄/∂ε̄ at all macro Gauss points in one batched pass.
    ``outside`` is the largest fraction of points seen outside the training box [-0.04, 0.04]³,
    where the surrogate extrapolates: that is an error unless ``allow_extrapolation`` (then it is
    only recorded)."""

    def __init__(self, net: nn.Module, allow_extrapolation: bool = False):
        self.net, self.outside = net, 0.0
        self.allow_extrapolation = bool(allow_extrapolation)

    def __call__(self, strain: np.ndarray):
        from pdeml.solvers.fe2 import outside_box

        frac = outside_box(strain, STRAIN_RANGE)
        if frac > 0 and not self.allow_extrapolation:
            big = float(np.abs(np.asarray(strain)).max())
            fail(
                "strain",
                f"{big:.4g} at {100 * frac:.0f}% of the Gauss points",
                f"leaves EquiNO's training box [-{STRAIN_RANGE}, {STRAIN_RANGE}]³, where the "
                "surrogate extrapolates",
                "lower --strain, train EquiNO on a larger box, or pass --allow-extrapolation",
            )
        self.outside = max(self.outside, frac)
        p = next(self.net.parameters())
        x = torch.as_tensor(np.asarray(strain), dtype=torch.float64, device=p.device)
        with torch.no_grad():
            sig, C = self.net.stress_and_tangent(x)
        return sig.cpu().numpy(), C.cpu().numpy()


def _tensor(strain: torch.Tensor) -> torch.Tensor:
    """Voigt strains (B, 3) (engineering shear) as tensors (B, 2, 2)."""
    xy = strain[:, 2] / 2
    return torch.stack(
        [torch.stack([strain[:, 0], xy], -1), torch.stack([xy, strain[:, 1]], -1)], -2
    )


@dataclasses.dataclass(frozen=True, eq=False)
class StrainDraws(EpochSampler):
    """Training macro strains (a Latin hypercube of ``count`` from the run's generator, or the
    given ``strains`` (S, 3)), ``batch_size`` per Adam step in a fresh order every epoch; L-BFGS
    (a fixed objective) gets all of them. A batch is ``{"data": {"strain": (B, 3)}}``."""

    count: int = 200
    batch_size: int = 10
    _: dataclasses.KW_ONLY
    strains: np.ndarray | None = None

    def __post_init__(self):
        if self.strains is not None:
            strains = np.asarray(self.strains, dtype=float)
            if strains.ndim != 2 or strains.shape[1] != 3 or not np.isfinite(strains).all():
                fail(
                    "strains",
                    strains.shape,
                    "are not finite Voigt strains (S, 3)",
                    "pass an (S, 3) array",
                )
            frozen_set(self, strains=strains, count=len(strains))
        positive_int("count", self.count)
        positive_int("batch_size", self.batch_size)
        if self.batch_size > self.count:
            fail(
                "batch_size",
                self.batch_size,
                f"exceeds the {self.count} training strains",
                f"pass at most {self.count}",
            )

    def _start(self, run):
        if self.strains is not None:
            self._set(run, self.strains)
        else:
            self._set(run, latin_hypercube(self.count, seed=int(run.rng.integers(2**31))))
        self._start_order(run)

    def _set(self, run, strains):
        run.pool = strains  # this run's training strains
        run._all = {"data": {"strain": strains}}  # one object: fit converts it once per phase

    def _items(self, run):
        return self.count

    def _read(self, run, idx, fresh):
        return {"data": {"strain": run.pool[idx]}}

    def fixed_batch(self, run):
        return run._all

    def _extra_state(self, run):
        return {"strains": torch.as_tensor(run.pool)}

    def _load_extra_state(self, run, state):
        self._set(run, state.pop("strains").numpy())


class StrainLoss(AbstractTrainable):
    """Any strain-to-stress network with a physics loss (``net.loss(strain)``, ``net(strain)``:
    :class:`EquiNONet`, :class:`WeakFormNet`) as a trainable backend, so that it trains under
    :func:`pdeml.fit` on :class:`StrainDraws` (the benchmark's networks and the tests' use it;
    the EquiNO method builds :class:`EquiNOBackend`, which adds its family and test set).

    Example:
        >>> from pdeml.solvers.rve import RVE
        >>> rve = RVE(n=1)
        >>> net = EquiNONet(rve, snapshots(rve, latin_hypercube(12, seed=0)), modes=4)
        >>> draws = StrainDraws(batch_size=5, strains=latin_hypercube(20, seed=1))
        >>> phases = [(20, pl.FirstOrder(pl.Adam(1e-3))), (5, pl.LBFGS())]
        >>> result = pl.fit(StrainLoss(net), phases, sampler=draws, eval_every=1)  # = fit_strains
        >>> first, last = result.history[0]["constitutive"], result.losses["constitutive"]
        >>> result.steps, last < first / 2
        (25, True)
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    @property
    def term_names(self):
        return ["constitutive"]

    def losses(self, batch, residuals=None):
        return {"constitutive": self.net.loss(batch["data"]["strain"])}

    def batches(self, sampler, rng):
        if not isinstance(sampler, StrainDraws):
            fail(
                "sampler",
                sampler,
                "is not a StrainDraws",
                "pass fit(..., sampler=StrainDraws(...))",
            )
        return sampler.init(None, rng)

    def reference(self, rng):
        return None

    @torch.no_grad()
    def predict(self, x) -> np.ndarray:
        x = torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)
        return self.net(x).cpu().numpy()


def fit_strains(
    net: nn.Module,
    strains,
    *,
    steps: int,
    lbfgs: int,
    lr: float = 1e-3,
    batch: int = 10,
    seed: int = 0,
):
    """``net`` (:class:`StrainLoss`) trained by :func:`pdeml.fit` on its physics loss at
    ``strains`` (S, 3): ``steps`` Adam steps on ``batch`` strains each, then ``lbfgs`` L-BFGS
    iterations on all of them. Returns the :class:`pdeml.fit.FitResult`; its history has the
    loss after every step."""
    from pdeml.fit import fit
    from pdeml.optim import Adam
    from pdeml.steppers import LBFGS, FirstOrder

    phases = [(steps, FirstOrder(Adam(lr))), (lbfgs, LBFGS())]
    draws = StrainDraws(batch_size=batch, strains=strains)
    return fit(StrainLoss(net), phases, sampler=draws, eval_every=1, seed=seed)


@dataclasses.dataclass(frozen=True, eq=False)
class EquiNO(AbstractMethod):
    """EquiNO settings (see the module docstring).

    Args:
        modes: r, the POD modes of displacement and of stress. width, depth: each branch.
        snapshots: RVE solves that build the bases (Latin hypercube, seed ``snapshot_seed``).
        strains, batch_size: unsupervised training strains and strains per Adam step.
        test: held-out strains the error is measured on (RVE truth).
        norm: the mismatch norm of the loss, ``"energy"`` (default) or the paper's
            ``"euclidean"`` (see the module docstring).

    Example:
        >>> from pdeml.families.rve import RVEFamily
        >>> case = pl.Case(RVEFamily(n=4), EquiNO(), steps=2000, lbfgs_steps=2000, dtype="float64")
        >>> case.method.modes
        16
    """

    modes: int = 16
    width: int = 64
    depth: int = 4
    snapshots: int = 100
    snapshot_seed: int = 0
    strains: int = 200
    batch_size: int = 10
    test: int = 50
    norm: str = "energy"

    def __post_init__(self):
        for k in ("modes", "width", "depth", "snapshots", "strains", "batch_size", "test"):
            positive_int(k, getattr(self, k))
        if self.norm not in NORMS:
            fail("norm", self.norm, "is not a mismatch norm", f"pass one of {NORMS}")

    def build(self, problem, *, seed=0, dtype=torch.float64, device="cpu") -> EquiNOBackend:
        if not isinstance(problem, AbstractFamily) or not hasattr(problem, "rve"):
            fail(
                "problem",
                type(problem).__name__,
                "is not an RVE family",
                "pass pdeml.families.rve.RVEFamily",
            )
        if dtype != torch.float64:
            fail(
                "dtype",
                dtype,
                "is not float64 (the bases and the laws are float64)",
                'set Case(dtype="float64")',
            )
        rve = problem.rve
        snaps = snapshots(
            rve, latin_hypercube(self.snapshots, seed=self.snapshot_seed), progress=True
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = EquiNONet(
                rve, snaps, modes=self.modes, width=self.width, depth=self.depth, norm=self.norm
            )
        return EquiNOBackend(problem, net, self).to(device)


class EquiNOBackend(FixedTestSet, AbstractTrainable):
    """The trained surrogate: ``predict`` maps Voigt macro strains (B, 3) to σ̄ (B, 3)."""

    input_key = "strain"

    def __init__(self, family, net: EquiNONet, method: EquiNO):
        super().__init__()
        self.problem, self.net, self.method = family, net, method

    @property
    def term_names(self):
        return ["constitutive"]

    def forward(self, strain):
        return self.net(strain)

    def losses(self, batch, residuals=None):
        return {"constitutive": self.net.loss(batch["data"]["strain"])}

    def batches(self, sampler, rng):
        sampler = (
            sampler
            if sampler is not None
            else StrainDraws(self.method.strains, self.method.batch_size)
        )
        if not isinstance(sampler, StrainDraws):
            fail(
                "sampler",
                sampler,
                "is not a StrainDraws",
                "leave it out (EquiNO draws its own strains)",
            )
        return sampler.init(self.problem, rng)

    @torch.no_grad()
    def predict(self, x) -> np.ndarray:
        return (
            self.net(torch.as_tensor(np.asarray(x), dtype=torch.float64, device=self.device))
            .cpu()
            .numpy()
        )

    def _make_test_set(self, rng) -> dict:
        strains = latin_hypercube(self.method.test, seed=int(rng.integers(2**31)))
        return {"strain": strains, "truth": snapshots(self.problem.rve, strains)["stress"]}

    def resolved(self):
        return {
            "parameters": parameter_count(self),
            "rve_dofs": int(self.problem.rve._fe.basis.N),
            "stress_singular_values": (
                self.net.sv_s[: self.method.modes + 1] / self.net.sv_s[0]
            ).tolist(),
        }

    def export(self, out, resolution: int, sample: int | None = None):
        """``rve_<k>.vtu`` for test strain ``sample`` (default 0): EquiNO's fields (u from the
        displacement modes, σ_eq, ε) beside the RVE's stress and the mismatch σ_c - σ_eq; and
        ``plate.vtu``, the macroscopic plate solved with EquiNO (:meth:`export_plate`)."""
        from pathlib import Path

        from pdeml.solvers.rve import cell_average, write_rve

        t = self.test_set()
        k = 0 if sample is None else sample
        if not 0 <= k < len(t["strain"]):
            fail(
                "--sample",
                k,
                f"is not a test strain (there are {len(t['strain'])})",
                f"pass 0..{len(t['strain']) - 1}",
            )
        e = torch.as_tensor(t["strain"][k : k + 1])
        with torch.no_grad():
            a, _ = self.net.coefficients(e)
            eps, sig_c, sig_eq = (v[0].cpu().numpy() for v in self.net.fields(e))
        rve = self.problem.rve
        truth = rve.solve(t["strain"][k])
        cell = lambda q: voigt(cell_average(rve._fe.basis, q))  # noqa: E731
        result = {
            "u": (self.net.phi_u @ a[0]).cpu().numpy(),
            "stress_qp": sig_eq,
            "strain_qp": eps,
            "macro_strain": t["strain"][k],
        }
        files = [
            write_rve(
                rve,
                result,
                Path(out) / f"rve_{k:03d}.vtu",
                extra_cells={
                    "stress_rve": cell(truth["stress_qp"]),
                    "mismatch": cell(sig_c - sig_eq),
                },
            )
        ]
        return files + [self.export_plate(Path(out) / "plate.vtu")]

    def export_plate(self, path, strain: float = 0.01, plate=None):
        """The macroscopic FE² plate with a hole (:class:`pdeml.solvers.fe2.Plate`) pulled to a mean
        ``strain`` with this surrogate at every Gauss point, as ``.vtu``: displacement; σ̄, ε̄ and
        von Mises per cell, and ``outside_training_box``, the fraction of the cell's Gauss points
        whose strain leaves [-0.04, 0.04]³ (where the surrogate extrapolates)."""
        from pdeml.solvers.fe2 import Plate

        plate = plate or Plate()
        # the picture records where the surrogate extrapolates (a cell field), it does not refuse
        r = plate.solve(EquiNOMaterial(self.net, allow_extrapolation=True), strain)
        box = (np.abs(r["strain_qp"]) > STRAIN_RANGE).any(-1).mean(1)
        return plate.write(r, path, extra_cells={"outside_training_box": box})


__all__ = [
    "EquiNO",
    "EquiNOBackend",
    "EquiNOMaterial",
    "EquiNONet",
    "WeakFormNet",
    "weak_form_operator",
    "StrainDraws",
    "latin_hypercube",
    "pod",
    "snapshots",
    "StrainLoss",
    "fit_strains",
    "STRAIN_RANGE",
    "forward_jacobian",
]
