r"""Baselines DCDM is measured against: CG, IC(0)-preconditioned CG, AMG-preconditioned CG.

IC(0): the incomplete Cholesky factor :math:`L` with the sparsity of :math:`\mathrm{tril}(A)`,
:math:`L_{ij} = (A_{ij} - \sum_{k<j} L_{ik}L_{jk}) / L_{jj}`, :math:`L_{ii} = (A_{ii} - \sum_{k<i}
L_{ik}^2)^{1/2}`
(sums over the pattern only); :math:`M^{-1} r = L^{-\top} L^{-1} r` by two sparse triangular
solves. AMG: pyamg's smoothed aggregation, one V-cycle per application.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def ic0(A: sp.spmatrix) -> sp.csr_matrix:
    """Zero fill-in incomplete Cholesky factor (lower triangular, CSR) of an SPD matrix."""
    low = sp.tril(sp.csr_matrix(A)).tocsr()
    low.sort_indices()
    rows: list[dict] = []
    for i in range(low.shape[0]):
        cols = low.indices[low.indptr[i] : low.indptr[i + 1]]
        vals = low.data[low.indptr[i] : low.indptr[i + 1]]
        row: dict = {}
        for j, a in zip(cols[:-1], vals[:-1]):  # off-diagonal, ascending
            rj = rows[j]
            s = sum(v * rj[k] for k, v in row.items() if k in rj and k < j)
            row[j] = (a - s) / rj[j]
        d = vals[-1] - sum(v * v for v in row.values())
        if d <= 0:
            raise ValueError(
                f"IC(0) broke down at row {i} (pivot {d:.3g}). Fix: the matrix must be "
                "SPD (an M-matrix never breaks down)."
            )
        row[i] = np.sqrt(d)
        rows.append(row)
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.concatenate([np.fromiter(r.keys(), int, len(r)) for r in rows])
    data = np.concatenate([np.fromiter(r.values(), float, len(r)) for r in rows])
    return sp.csr_matrix((data, indices, indptr), shape=A.shape)


def ic0_preconditioner(A) -> spla.LinearOperator:
    L = ic0(A)
    Lt = L.T.tocsr()

    def apply(r):
        y = spla.spsolve_triangular(L, r, lower=True)
        return spla.spsolve_triangular(Lt, y, lower=False)

    return spla.LinearOperator(A.shape, matvec=apply, dtype=float)


def amg_preconditioner(A) -> spla.LinearOperator:
    import pyamg

    return pyamg.smoothed_aggregation_solver(sp.csr_matrix(A)).aspreconditioner(cycle="V")


def pcg(A, b, M=None, tol: float = 1e-6, maxiter: int = 10000) -> dict:
    """scipy CG to ||r|| <= tol ||b||; returns iterations, seconds, final relative residual."""
    count = [0]
    t = time.perf_counter()
    x, info = spla.cg(
        A,
        b,
        rtol=tol,
        atol=0.0,
        maxiter=maxiter,
        M=M,
        callback=lambda _: count.__setitem__(0, count[0] + 1),
    )
    seconds = time.perf_counter() - t
    res = float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))
    return {"iterations": count[0], "seconds": seconds, "residual": res, "converged": info == 0}
