r"""A periodic representative volume element (RVE) solver for small-strain FE² (issue 18's truth
and snapshots; EquiNO: Eivazi, Tröger, Wittek, Hartmann, Rausch, arXiv 2504.07976).

The unit cell :math:`[-\tfrac12, \tfrac12]^2` holds a circular inclusion of area fraction f.
Under a macroscopic strain :math:`\bar\varepsilon` (Voigt: :math:`\bar\varepsilon_{xx},
\bar\varepsilon_{yy}, \bar\gamma_{xy} = 2\bar\varepsilon_{xy}`) the displacement is
:math:`u = \bar\varepsilon x + \tilde u` with :math:`\tilde u` periodic, and :math:`\tilde u`
solves the weak equilibrium

.. math:: \int_\Omega \sigma(\bar\varepsilon + \nabla^s\tilde u) : \nabla^s v \, d\Omega = 0
          \quad \forall v \text{ periodic},

in plane strain. The macroscopic stress is the volume average :math:`\bar\sigma =
\langle\sigma\rangle`.

Materials (the paper's; :func:`matrix_stress`, :func:`linear_stress`, one torch implementation
each, the tangent by autodiff): the matrix is nonlinear elastic,
:math:`\sigma = K\,\mathrm{tr}\,\varepsilon\, I + \frac{c_1}{c_2 + \|\varepsilon^D\|}\varepsilon^D`
(K = 4780, c₁ = 50, c₂ = 0.06; :math:`\varepsilon^D` the 3-D deviator of the plane strain), the
inclusion linear elastic (K = 43452, G = 29918).

**Discretization** (scikit-fem): Q8 serendipity quadrilaterals with 3 x 3 Gauss points, as the
paper's, on an O-grid that follows the circle (a square core, a ring of n layers out to the
circle, n layers out to the cell's sides), so the interface is resolved without a mesh
generator and opposite sides carry the same nodes. Periodicity is imposed by eliminating the
right and top degrees of freedom onto the left and bottom ones (:math:`\tilde u = P\tilde u_r`)
and one corner is pinned (the rigid translation). Newton's method with the consistent tangent
converges quadratically.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from pdeml._validate import fail, finite_scalar, positive_int

#: the paper's materials
MATRIX = {"K": 4780.0, "c1": 50.0, "c2": 0.06}
INCLUSION = {"K": 43452.0, "G": 29918.0}


# ----------------------------------------------------------------------------- constitutive laws
# One implementation per law, in torch: the RVE solver takes its consistent tangent by forward-mode
# autodiff, and EquiNO trains through the same function.
def linear_stress(eps, K: float, G: float):
    r"""Linear elasticity :math:`\sigma = K\,\mathrm{tr}\,\varepsilon I + 2G\varepsilon^D` in plane
    strain: in-plane σ (..., 2, 2) from in-plane strains (..., 2, 2) (ε_zz = 0)."""
    import torch

    tr = eps[..., 0, 0] + eps[..., 1, 1]
    return (K - 2 * G / 3) * tr[..., None, None] * torch.eye(
        2, dtype=eps.dtype, device=eps.device
    ) + 2 * G * eps


def matrix_stress(eps, K: float = MATRIX["K"], c1: float = MATRIX["c1"], c2: float = MATRIX["c2"]):
    r"""The matrix's nonlinear law :math:`\sigma = K\,\mathrm{tr}\,\varepsilon I +
    g(s)\varepsilon^D`,
    :math:`g(s) = c_1/(c_2 + s)`, :math:`s = \|\varepsilon^D\|` (the 3-D deviator of the plane
    strain, ε_zz = 0): in-plane σ (..., 2, 2)."""
    import torch

    I2 = torch.eye(2, dtype=eps.dtype, device=eps.device)
    tr = eps[..., 0, 0] + eps[..., 1, 1]
    dev = eps - tr[..., None, None] / 3 * I2  # in-plane part; zz part is -tr/3
    s = torch.sqrt((dev**2).sum((-2, -1)) + (tr / 3) ** 2)
    return K * tr[..., None, None] * I2 + (c1 / (c2 + s))[..., None, None] * dev


LAWS = {"linear": linear_stress, "nonlinear": matrix_stress}


def stress_and_tangent(eps: np.ndarray, kind: str, params: dict):
    """σ (..., 2, 2) and the consistent tangent dσ/dε (..., 2, 2, 2, 2) of a law at strains
    (..., 2, 2) (numpy in and out), the tangent by forward-mode autodiff."""
    import torch

    fn = LAWS[kind]
    e = torch.as_tensor(eps, dtype=torch.float64).reshape(-1, 2, 2)
    one = lambda x: fn(x, **params)  # noqa: E731
    sig = one(e)
    C = torch.func.vmap(torch.func.jacfwd(one))(e)
    return sig.reshape(eps.shape).numpy(), C.reshape(eps.shape + (2, 2)).numpy()


def voigt(t):
    """(..., 2, 2) tensors as Voigt vectors (..., 3): xx, yy, xy (stress convention)."""
    return np.stack([t[..., 0, 0], t[..., 1, 1], t[..., 0, 1]], -1)


def from_voigt_strain(e):
    """Voigt strains (..., 3) with engineering shear γ = 2ε_xy as tensors (..., 2, 2)."""
    e = np.asarray(e, float)
    out = np.empty(e.shape[:-1] + (2, 2))
    out[..., 0, 0], out[..., 1, 1] = e[..., 0], e[..., 1]
    out[..., 0, 1] = out[..., 1, 0] = e[..., 2] / 2
    return out


# ------------------------------------------------------------------------------------- the mesh
def o_grid(n: int, radius: float):
    """A quadrilateral O-grid of the unit cell [-1/2, 1/2]² around a circle of ``radius``: a
    2n x 2n core square of half-width radius/2, n layers out to the circle and n out to the
    sides (every side: 2n elements). Returns ``(points (2, N), quads (4, E), inside (E,))``."""
    m, s = 2 * n, radius / 2
    pts, quads, inside = [], [], []

    def block(P, inner):
        """Structured (m+1) x (k+1) point grid P[i, j] -> quads (counterclockwise in i, j)."""
        base = sum(len(p) for p in pts)
        a, b = P.shape[:2]
        pts.append(P.reshape(-1, 2))
        idx = base + np.arange(a * b).reshape(a, b)
        q = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]]).reshape(4, -1)
        quads.append(q)
        inside.append(np.full(q.shape[1], inner))

    xi = np.linspace(0, 1, m + 1)
    g = -s + 2 * s * xi
    block(np.stack(np.meshgrid(g, g, indexing="ij"), -1), True)
    for side in range(4):  # right, top, left, bottom
        rot = np.array(
            [
                [math.cos(side * math.pi / 2), -math.sin(side * math.pi / 2)],
                [math.sin(side * math.pi / 2), math.cos(side * math.pi / 2)],
            ]
        )
        theta = -math.pi / 4 + xi * math.pi / 2
        p_in = np.stack([np.full_like(xi, s), -s + 2 * s * xi], -1) @ rot.T
        p_c = radius * np.stack([np.cos(theta), np.sin(theta)], -1) @ rot.T
        p_o = np.stack([np.full_like(xi, 0.5), -0.5 + xi], -1) @ rot.T
        eta = np.linspace(0, 1, n + 1)[None, :, None]
        block(p_in[:, None] * (1 - eta) + p_c[:, None] * eta, True)
        block(p_c[:, None] * (1 - eta) + p_o[:, None] * eta, False)
    P = np.concatenate(pts)
    key = np.round(P, 12)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    T = inv.ravel()[np.concatenate(quads, 1)]
    # orient every quad counterclockwise
    x, y = uniq[T, 0], uniq[T, 1]
    area = 0.5 * ((x * np.roll(y, -1, 0)).sum(0) - (np.roll(x, -1, 0) * y).sum(0))
    T[:, area < 0] = T[::-1, area < 0]
    return uniq.T.copy(), T, np.concatenate(inside)


# ------------------------------------------------------------------------------------ the solver
@dataclasses.dataclass(frozen=True)
class RVE:
    """The periodic unit cell with a circular inclusion (see the module docstring).

    Args:
        n: mesh density (every cell side has 2n Q8 elements; 20 n² elements in all).
        fraction: the inclusion's area fraction.
        matrix, inclusion: ``("nonlinear", {K, c1, c2})`` or ``("linear", {K, G})`` laws.
        tol: Newton's stopping rule on the residual relative to max|σ|·√|Ω| (1e-12: stress snapshots
            then equilibrated to ~1e-13, and POD modes, which divide by small singular values,
            to ~1e-11; at 1e-10 the modes reached 2e-9). max_iter: its cap.

    Example:
        >>> rve = RVE(n=4)
        >>> out = rve.solve([0.01, -0.005, 0.002])      # Voigt strain (γ_xy engineering)
        >>> out["stress"].round(2)                        # σ̄ (xx, yy, xy)
        array([44.1 , 23.77,  1.09])
    """

    n: int = 4
    fraction: float = 0.3
    matrix: tuple = ("nonlinear", MATRIX)
    inclusion: tuple = ("linear", INCLUSION)
    tol: float = 1e-12
    max_iter: int = 30

    def __post_init__(self):
        positive_int("n", self.n)
        positive_int("max_iter", self.max_iter)
        if not 0 < finite_scalar("fraction", self.fraction) < 0.7:
            fail(
                "fraction",
                self.fraction,
                "leaves no room for the O-grid (0 < f < 0.7)",
                "pass e.g. 0.3",
            )
        for name in ("matrix", "inclusion"):
            law = getattr(self, name)
            if not (isinstance(law, tuple) and len(law) == 2 and law[0] in ("linear", "nonlinear")):
                fail(
                    name,
                    law,
                    "is not a law",
                    '("linear", {"K": .., "G": ..}) or ("nonlinear", {"K", "c1", "c2"})',
                )
        object.__setattr__(self, "_fe", _Discretization(self))

    @property
    def radius(self) -> float:
        return math.sqrt(self.fraction / math.pi)

    @property
    def mesh(self):
        return self._fe.mesh

    def law(self, eps: np.ndarray, phase: np.ndarray):
        """σ and the tangent at strains ``eps`` (E, Q, 2, 2) of elements in ``phase`` (E,) (True:
        inclusion)."""
        sig, C = np.empty_like(eps), np.empty(eps.shape + (2, 2))
        for mask, (kind, p) in ((phase, self.inclusion), (~phase, self.matrix)):
            if mask.any():
                sig[mask], C[mask] = stress_and_tangent(eps[mask], kind, p)
        return sig, C

    def equilibrium_residual(self, stress_qp: np.ndarray) -> float:
        r"""The discrete weak equilibrium of a stress field at the quadrature points (E, Q, 2, 2):
        :math:`\|P^\top\int B^\top\sigma\| / (\max|\sigma| \sqrt{|\Omega|})`, zero (to
        round-off) for every converged solution and, equilibrium being linear in σ, for every
        linear combination of them: the fact EquiNO's stress basis rests on."""
        f = self._fe.internal_force(np.asarray(stress_qp, float))
        return float(
            np.linalg.norm(self._fe.P.T @ f)
            / max(np.abs(stress_qp).max() * math.sqrt(self._fe.area), 1e-300)
        )

    def solve(self, strain, u0: np.ndarray | None = None, tangent: bool = False) -> dict:
        r"""Equilibrium under the macroscopic Voigt ``strain`` (3,), Newton from the fluctuation
        ``u0`` (default 0). Returns ``{"stress": σ̄ (3,), "u": fluctuation DOFs, "strain_qp",
        "stress_qp" (E, Q, 2, 2), "iterations", "residual"}``, and with ``tangent`` the
        homogenized consistent tangent ``"tangent"``
        :math:`\partial\bar\sigma/\partial\bar\varepsilon`
        (3, 3, Voigt, engineering shear): what a macroscopic Newton step needs. For each unit macro
        strain :math:`E_k`, :math:`K\,\delta\tilde u_k = -\int B^\top C E_k` (the converged
        tangent K, one factorization, three right-hand sides) and
        :math:`\bar C_{:k} = \langle C(E_k + \nabla^s\delta\tilde u_k)\rangle`."""
        strain = np.asarray(strain, float)
        if strain.shape != (3,) or not np.isfinite(strain).all():
            fail(
                "strain",
                strain,
                "is not a finite Voigt strain (xx, yy, γ_xy)",
                "pass e.g. [0.01, 0, 0.002]",
            )
        warn_large_strain("strain", strain)
        return self._fe.newton(from_voigt_strain(strain), u0, tangent)


#: the largest strain component the small-strain cell model is meant for (10%)
SMALL_STRAIN = 0.1


def warn_large_strain(name: str, strain) -> None:
    """Warn when a strain leaves the small-strain model's range (|component| > 10%): the usual
    cause is a percentage typed as a fraction (``10`` for 10%)."""
    big = float(np.abs(np.asarray(strain, float)).max())
    if big > SMALL_STRAIN:
        import warnings

        warnings.warn(
            f"{name}={np.asarray(strain).tolist()} reaches {big:g} ({100 * big:g}% strain), "
            f"beyond the small-strain model's range ({100 * SMALL_STRAIN:g}%): the answer is "
            f"not physical there. Fix: give strains as fractions (0.1 for 10%).",
            stacklevel=3,
        )


def cell_average(basis, q: np.ndarray) -> np.ndarray:
    """A quadrature-point field (E, Q, ...) averaged over each element of ``basis`` (with the
    Gauss weights)."""
    w = basis.dx / basis.dx.sum(1, keepdims=True)
    return np.einsum("eq...,eq->e...", q, w)


def von_mises(s: np.ndarray) -> np.ndarray:
    """The in-plane von Mises stress of Voigt stresses (..., 3) (xx, yy, xy)."""
    return np.sqrt(s[..., 0] ** 2 - s[..., 0] * s[..., 1] + s[..., 1] ** 2 + 3 * s[..., 2] ** 2)


def write_rve(rve: RVE, result: dict, path, extra_cells: dict | None = None) -> Path:
    """The RVE fields of one solve as ``.vtu`` on the mesh's quadrilaterals (corner nodes): point
    data ``displacement`` (ε̄x + ũ) and ``fluctuation`` (ũ), and ``equilibrium_residual`` (the
    periodic-reduced nodal force residual, spread to every copy of a node); cell data, averaged
    over each element's Gauss points, ``stress`` and ``strain`` (Voigt xx, yy, xy; strain with
    engineering shear), ``von_mises`` (in-plane), ``phase`` (1: inclusion) and any
    ``extra_cells`` (name -> (E, ...) arrays)."""
    from pdeml.export.vtk import write_mesh

    fe = rve._fe
    mesh, basis = fe.mesh, fe.basis
    e_bar = from_voigt_strain(result["macro_strain"])
    node_dofs = basis.nodal_dofs  # (2, nodes)
    pts = mesh.p.T
    fluct = result["u"][node_dofs].T
    resid = (fe.P @ (fe.P.T @ fe.internal_force(result["stress_qp"])))[node_dofs].T
    sig = voigt(cell_average(basis, result["stress_qp"]))
    eng = voigt(cell_average(basis, result["strain_qp"])) * np.array([1, 1, 2])
    return write_mesh(
        path,
        pts,
        "quad",
        mesh.t.T,
        {
            "displacement": pts @ e_bar.T + fluct,
            "fluctuation": fluct,
            "equilibrium_residual": resid,
        },
        {
            "stress": sig,
            "strain": eng,
            "von_mises": von_mises(sig),
            "phase": fe.phase.astype(float),
            **(extra_cells or {}),
        },
    )


class _Discretization:
    """Mesh, basis, periodic reduction and assembly of one RVE."""

    def __init__(self, rve: RVE):
        from skfem import Basis, ElementQuadS2, ElementVector, MeshQuad

        self.rve = rve
        p, t, inside = o_grid(rve.n, rve.radius)
        self.mesh = MeshQuad(p, t)
        self.phase = inside
        self.basis = Basis(self.mesh, ElementVector(ElementQuadS2()), intorder=4)
        self.P = self._periodic()
        self.area = float(self.basis.dx.sum())

    def _periodic(self):
        """P (N, N_r): every DOF on x = 1/2 (y = 1/2) equals its twin on x = -1/2 (y = -1/2);
        one corner DOF pair is dropped (pinned)."""
        loc = self.basis.doflocs
        N = loc.shape[1]
        comp = np.zeros(N, int)
        comp[self.basis.nodal_dofs[1]] = 1
        if self.basis.facet_dofs.size:
            comp[self.basis.facet_dofs[1]] = 1
        target = np.arange(N)
        key = {
            (round(x, 9), round(y, 9), c): i
            for i, (x, y, c) in enumerate(zip(loc[0], loc[1], comp))
        }

        def twin(i):
            x, y = loc[0, i], loc[1, i]
            x = -0.5 if abs(x - 0.5) < 1e-9 else x
            y = -0.5 if abs(y - 0.5) < 1e-9 else y
            return key[(round(x, 9), round(y, 9), comp[i])]

        for i in range(N):
            target[i] = twin(i)
        corner = [key[(-0.5, -0.5, 0)], key[(-0.5, -0.5, 1)]]
        masters = np.setdiff1d(np.unique(target), corner)
        col = {m: j for j, m in enumerate(masters)}
        rows = [i for i in range(N) if target[i] in col]
        return sp.csr_matrix(
            (np.ones(len(rows)), (rows, [col[target[i]] for i in rows])), shape=(N, len(masters))
        )

    def strains(self, u: np.ndarray, eps_bar: np.ndarray) -> np.ndarray:
        """ε̄ + ∇ˢũ at the quadrature points, (E, Q, 2, 2)."""
        g = self.basis.interpolate(u).grad  # (2, 2, E, Q): d u_i / d x_j
        sym = 0.5 * (g + g.transpose(1, 0, 2, 3))
        return np.moveaxis(sym, (0, 1), (2, 3)) + eps_bar

    def internal_force(self, sig) -> np.ndarray:
        r""":math:`\int B^\top\sigma` for stresses (E, Q, 2, 2) at the quadrature points."""
        from skfem import LinearForm, asm
        from skfem.helpers import sym_grad

        S = np.moveaxis(sig, (2, 3), (0, 1))

        @LinearForm
        def internal(v, w):
            return np.einsum("ij...,ij...->...", S, sym_grad(v))

        return asm(internal, self.basis)

    def _assemble(self, sig, C):
        from skfem import BilinearForm, asm
        from skfem.helpers import sym_grad

        T = np.moveaxis(C, (2, 3, 4, 5), (0, 1, 2, 3))  # (2, 2, 2, 2, E, Q)

        @BilinearForm
        def tangent(u, v, w):
            return np.einsum("ijkl...,kl...,ij...->...", T, sym_grad(u), sym_grad(v))

        return asm(tangent, self.basis), self.internal_force(sig)

    def average(self, q: np.ndarray) -> np.ndarray:
        """The volume average of a field at the quadrature points (E, Q, ...)."""
        return np.einsum("eq...,eq->...", q, self.basis.dx) / self.area

    def macro_tangent(self, C: np.ndarray, K) -> np.ndarray:
        """dσ̄/dε̄ (3, 3, Voigt with engineering shear) at a converged state with tangent moduli C
        (E, Q, 2, 2, 2, 2) and stiffness K (see :meth:`RVE.solve`)."""
        P = self.P
        lu = spla.splu((P.T @ K @ P).tocsc())
        out = np.empty((3, 3))
        for k in range(3):
            E = from_voigt_strain(np.eye(3)[k])
            du = P @ lu.solve(-(P.T @ self.internal_force(np.einsum("eqijkl,kl->eqij", C, E))))
            d_eps = self.strains(du, E)
            out[:, k] = voigt(self.average(np.einsum("eqijkl,eqkl->eqij", C, d_eps)))
        return out

    def newton(self, eps_bar, u0=None, tangent: bool = False) -> dict:
        rve, P = self.rve, self.P
        u = np.zeros(self.basis.N) if u0 is None else np.asarray(u0, float).copy()
        first, it, norm = None, 0, 0.0
        for it in range(rve.max_iter + 1):
            eps = self.strains(u, eps_bar)
            sig, C = rve.law(eps, self.phase)
            K, f = self._assemble(sig, C)
            r = P.T @ f
            norm = float(np.linalg.norm(r))
            scale = max(float(np.abs(sig).max()) * math.sqrt(self.area), 1e-300)
            first = norm if first is None else first
            if norm <= rve.tol * scale or it == rve.max_iter:
                break
            du = spla.spsolve((P.T @ K @ P).tocsc(), -r)
            u = u + P @ du
        if norm > rve.tol * scale:
            raise RuntimeError(
                f"RVE Newton: residual {norm:.3e} after {it} iterations (strain {voigt(eps_bar)}); "
                "lower the strain or raise max_iter"
            )
        out = {
            "stress": voigt(self.average(sig)),
            "u": u,
            "strain_qp": eps,
            "stress_qp": sig,
            "iterations": it,
            "residual": norm / scale,
            "macro_strain": voigt(eps_bar) * np.array([1, 1, 2]),
        }
        if tangent:
            out["tangent"] = self.macro_tangent(C, K)
        return out


__all__ = [
    "RVE",
    "write_rve",
    "cell_average",
    "von_mises",
    "matrix_stress",
    "linear_stress",
    "stress_and_tangent",
    "o_grid",
    "voigt",
    "from_voigt_strain",
    "MATRIX",
    "INCLUSION",
    "LAWS",
]
