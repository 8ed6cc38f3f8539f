r"""The macroscopic half of FE² (issue 18): a plate with a hole, in plane strain and small strain,
whose stress at every Gauss point comes from a *material*: a constitutive law, an RVE solve per
point (:mod:`pdeml.solvers.rve`, classical FE²) or a surrogate such as EquiNO
(:mod:`pdeml.operators.equino`).

**The problem.** A quarter of a square plate of side 2L with a central hole of radius a, by
symmetry: :math:`u_x = 0` on x = 0, :math:`u_y = 0` on y = 0, :math:`u_x = \bar\varepsilon_0 L` on
x = L (displacement control, a mean strain :math:`\bar\varepsilon_0` in x) and traction-free
elsewhere. The weak equilibrium

.. math:: r(u) = \int_\Omega B^\top \bar\sigma(\bar\varepsilon(u))\, d\Omega = 0
          \text{ at the free DOFs}

is solved by Newton's method, :math:`K\,\delta u = -r` with
:math:`K = \int B^\top \bar C B`, :math:`\bar C = \partial\bar\sigma/\partial\bar\varepsilon` the
material's (consistent) tangent at each Gauss point. Strains and stresses are Voigt vectors
(xx, yy, xy; engineering shear in the strain), as :mod:`pdeml.solvers.rve` returns them.

**Discretization** (scikit-fem): bilinear quadrilaterals with 2 x 2 Gauss points on a structured
grid that follows the hole (:func:`plate_mesh`), so every macro Gauss point is one material call;
with an RVE material, one RVE solve.

**A material** is any callable ``material(strain (P, 3)) -> (stress (P, 3), tangent (P, 3, 3))``
over all P Gauss points of the mesh at once, in a fixed order (an RVE material keeps each point's
fluctuation to warm-start the next Newton iteration):

- :class:`LawMaterial`: a pointwise law of :mod:`pdeml.solvers.rve` (linear or the nonlinear
  matrix);
- :class:`RVEMaterial`: one periodic RVE solve per point with its homogenized consistent tangent;
- ``operators.equino.EquiNOMaterial``: σ̄ and its tangent from a trained EquiNO.

Example:
    >>> from pdeml.solvers.fe2 import LawMaterial, Plate
    >>> plate = Plate(m=2, k=1)
    >>> out = plate.solve(LawMaterial("linear", {"K": 4780.0, "G": 416.7}), strain=0.01)
    >>> out["iterations"], round(out["reaction"], 3)     # one Newton step for a linear law
    (1, 13.567)
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as spla

from pdeml._validate import fail, finite_scalar, positive_int

from .rve import RVE, cell_average, from_voigt_strain, stress_and_tangent, voigt, von_mises


def plate_mesh(m: int, k: int, length: float = 1.0, radius: float = 0.3, grading: float = 1.5):
    """The quarter plate [0, L]² minus the disc of ``radius`` at the origin as a structured
    quadrilateral grid: 2m elements along the quarter circle (angles θ uniform), k from the hole
    out to the edges x = L and y = L (the outer point of ray θ is where the ray meets the square),
    spaced as η^grading toward the hole. Returns ``(points (2, N), quads (4, E))``."""
    positive_int("m", m)
    positive_int("k", k)
    if not 0 < finite_scalar("radius", radius) < finite_scalar("length", length):
        fail(
            "radius",
            radius,
            f"is not inside the plate (0 < radius < length = {length})",
            "pass e.g. radius=0.3",
        )
    theta = np.linspace(0, math.pi / 2, 2 * m + 1)
    inner = radius * np.stack([np.cos(theta), np.sin(theta)], -1)
    outer = np.where(
        (theta <= math.pi / 4)[:, None],
        np.stack(
            [np.full_like(theta, length), length * np.tan(np.minimum(theta, math.pi / 4))], -1
        ),
        np.stack(
            [length / np.tan(np.maximum(theta, math.pi / 4)), np.full_like(theta, length)], -1
        ),
    )
    eta = np.linspace(0, 1, k + 1) ** grading
    P = (
        inner[:, None] * (1 - eta[None, :, None]) + outer[:, None] * eta[None, :, None]
    )  # (2m+1, k+1, 2)
    idx = np.arange(P.shape[0] * P.shape[1]).reshape(P.shape[:2])
    quads = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]]).reshape(4, -1)
    pts = P.reshape(-1, 2)
    x, y = pts[quads, 0], pts[quads, 1]
    area = 0.5 * ((x * np.roll(y, -1, 0)).sum(0) - (np.roll(x, -1, 0) * y).sum(0))
    quads[:, area < 0] = quads[::-1, area < 0]  # counterclockwise
    return pts.T.copy(), quads


# ---------------------------------------------------------------------------------- materials
def voigt_tangent(C: np.ndarray) -> np.ndarray:
    """A tensor tangent dσ_ij/dε_kl (..., 2, 2, 2, 2) as the Voigt matrix dσ_I/dε_J (..., 3, 3)
    with engineering shear: column xy is ½(C_ij01 + C_ij10)."""
    cols = [C[..., 0, 0], C[..., 1, 1], 0.5 * (C[..., 0, 1] + C[..., 1, 0])]
    return np.stack([voigt(c) for c in cols], -1)


@dataclasses.dataclass(frozen=True)
class LawMaterial:
    """A pointwise constitutive law of :mod:`pdeml.solvers.rve`: ``("linear", {"K", "G"})`` or
    ``("nonlinear", {"K", "c1", "c2"})``; the tangent by autodiff."""

    kind: str
    params: dict

    def __call__(self, strain: np.ndarray):
        sig, C = stress_and_tangent(from_voigt_strain(strain), self.kind, self.params)
        return voigt(sig), voigt_tangent(C)


class RVEMaterial:
    """Classical FE²: one periodic RVE solve per macro Gauss point, σ̄ and the homogenized
    consistent tangent (:meth:`pdeml.solvers.rve.RVE.solve`). Each point's fluctuation warm-starts
    its
    next solve. ``solves`` counts the RVE solves so far."""

    def __init__(self, rve: RVE, progress: bool = False):
        self.rve, self.progress = rve, progress
        self._u: dict[int, np.ndarray] = {}
        self.solves = 0

    def __call__(self, strain: np.ndarray):
        from pdeml.callbacks import progress as shown

        sig, C = np.empty((len(strain), 3)), np.empty((len(strain), 3, 3))
        for i, e in enumerate(
            shown(strain, desc="RVE solves", enabled=self.progress, leave=False, unit="solves")
        ):
            r = self.rve.solve(e, u0=self._u.get(i), tangent=True)
            self._u[i] = r["u"]
            sig[i], C[i] = r["stress"], r["tangent"]
        self.solves += len(strain)
        return sig, C


# ------------------------------------------------------------------------------------ the plate
@dataclasses.dataclass(frozen=True)
class Plate:
    """The quarter plate with a hole (see the module docstring).

    Args:
        m, k: mesh density (2m elements around the hole, k out to the edges; 2mk elements, 4 Gauss
            points each).
        length, radius: L and a.
        tol: Newton stops when the free DOFs' residual is ``tol`` times the reaction force.
        max_iter: its cap.
    """

    m: int = 4
    k: int = 4
    length: float = 1.0
    radius: float = 0.3
    tol: float = 1e-9
    max_iter: int = 25

    def __post_init__(self):
        from skfem import Basis, ElementQuad1, ElementVector, MeshQuad

        positive_int("max_iter", self.max_iter)
        if not 0 < finite_scalar("tol", self.tol) < 1:
            fail("tol", self.tol, "is not a relative tolerance in (0, 1)", "pass e.g. 1e-9")
        p, t = plate_mesh(self.m, self.k, self.length, self.radius)
        mesh = MeshQuad(p, t)
        basis = Basis(mesh, ElementVector(ElementQuad1()), intorder=2)
        loc = basis.doflocs
        comp = np.zeros(basis.N, int)
        comp[basis.nodal_dofs[1]] = 1
        tol = 1e-9 * self.length
        fixed = ((np.abs(loc[0]) < tol) & (comp == 0)) | ((np.abs(loc[1]) < tol) & (comp == 1))
        pulled = (np.abs(loc[0] - self.length) < tol) & (comp == 0)
        object.__setattr__(self, "_fe", (mesh, basis, fixed, pulled))

    @property
    def mesh(self):
        return self._fe[0]

    @property
    def basis(self):
        return self._fe[1]

    @property
    def points(self) -> int:
        """The number of macro Gauss points (material calls per Newton iteration)."""
        return int(self.basis.dx.size)

    def strains(self, u: np.ndarray) -> np.ndarray:
        """Voigt strains (E, Q, 3) (engineering shear) at the Gauss points."""
        g = self.basis.interpolate(u).grad  # (2, 2, E, Q)
        return np.stack([g[0, 0], g[1, 1], g[0, 1] + g[1, 0]], -1)

    def assemble(self, sig: np.ndarray, C: np.ndarray):
        """Tangent stiffness ∫BᵀC̄B and internal force ∫Bᵀσ̄ from Voigt σ̄ (E, Q, 3), C̄ (E, Q,
        3, 3)."""
        from skfem import BilinearForm, LinearForm, asm

        S, T = np.moveaxis(sig, -1, 0), np.moveaxis(C, (-2, -1), (0, 1))

        def gamma(v):
            g = v.grad
            return np.stack([g[0, 0], g[1, 1], g[0, 1] + g[1, 0]])

        @BilinearForm
        def stiffness(u, v, w):
            return np.einsum("i...,ij...,j...->...", gamma(v), T, gamma(u))

        @LinearForm
        def internal(v, w):
            return np.einsum("i...,i...->...", S, gamma(v))

        return asm(stiffness, self.basis), asm(internal, self.basis)

    def solve(self, material, strain: float = 0.01, progress: bool = False) -> dict:
        """Newton's method for the plate pulled to a mean strain ``strain`` in x. Returns ``{"u",
        "strain_qp", "stress_qp" (E, Q, 3), "tangent_qp", "iterations", "residuals" (relative,
        per iteration), "reaction" (the x-force on x = L per unit thickness), "wall_s",
        "material_s" (time inside the material)}``. Raises if Newton does not converge."""
        from .rve import warn_large_strain

        warn_large_strain("strain", [strain, 0.0, 0.0])
        strain = finite_scalar("strain", strain)
        mesh, basis, fixed, pulled = self._fe
        free = ~fixed & ~pulled
        u = np.zeros(basis.N)
        x = basis.doflocs[0]
        u[basis.nodal_dofs[0]] = strain * x[basis.nodal_dofs[0]]  # the homogeneous guess
        shape = basis.dx.shape
        residuals, t_mat, t0 = [], 0.0, time.perf_counter()
        for it in range(self.max_iter + 1):
            eps = self.strains(u)
            t1 = time.perf_counter()
            sig, C = material(eps.reshape(-1, 3))
            t_mat += time.perf_counter() - t1
            sig, C = sig.reshape(*shape, 3), C.reshape(*shape, 3, 3)
            if not (np.isfinite(sig).all() and np.isfinite(C).all()):
                raise FloatingPointError(
                    f"FE² Newton: the material returned non-finite stress at iteration {it}; "
                    "lower the strain"
                )
            K, f = self.assemble(sig, C)
            reaction = float(f[pulled].sum())
            res = float(np.linalg.norm(f[free])) / max(abs(reaction), 1e-300)
            residuals.append(res)
            if progress:
                print(f"  macro Newton {it}: relative residual {res:.3e}", flush=True)
            if res <= self.tol or it == self.max_iter:
                break
            Kff = K[free][:, free].tocsc()
            u[free] -= spla.spsolve(Kff, f[free])
        if residuals[-1] > self.tol:
            raise RuntimeError(
                f"FE² Newton: relative residual {residuals[-1]:.3e} after {self.max_iter} "
                "iterations; "
                "lower the strain or raise max_iter"
            )
        return {
            "u": u,
            "strain_qp": eps,
            "stress_qp": sig,
            "tangent_qp": C,
            "iterations": it,
            "residuals": residuals,
            "reaction": reaction,
            "wall_s": time.perf_counter() - t0,
            "material_s": t_mat,
            "applied_strain": strain,
        }

    def cell_average(self, q: np.ndarray) -> np.ndarray:
        """A Gauss-point field (E, Q, ...) averaged over each element."""
        return cell_average(self.basis, q)

    def write(self, result: dict, path, extra_cells: dict | None = None) -> Path:
        """The macro solution as ``.vtu``: point data ``displacement``; cell data (averaged over
        each
        element's Gauss points) ``stress`` σ̄ and ``strain`` ε̄ (Voigt xx, yy, xy; engineering
        shear), ``von_mises`` (in-plane) and any ``extra_cells`` (name -> (E, ...))."""
        from pdeml.export.vtk import write_mesh

        sig = self.cell_average(result["stress_qp"])
        return write_mesh(
            path,
            self.mesh.p.T,
            "quad",
            self.mesh.t.T,
            {"displacement": result["u"][self.basis.nodal_dofs].T},
            {
                "stress": sig,
                "strain": self.cell_average(result["strain_qp"]),
                "von_mises": von_mises(sig),
                **(extra_cells or {}),
            },
        )


def outside_box(strain_qp: np.ndarray, box: float) -> float:
    """The fraction of Gauss points whose Voigt strain leaves [-box, box]³ (a surrogate trained
    on that box extrapolates there)."""
    s = np.asarray(strain_qp).reshape(-1, 3)
    return float((np.abs(s) > box).any(1).mean())


__all__ = ["Plate", "LawMaterial", "RVEMaterial", "plate_mesh", "voigt_tangent", "outside_box"]
