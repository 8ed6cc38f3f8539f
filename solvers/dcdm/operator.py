"""A user's sparse SPD matrix as a grid operator, so that DCDM can solve systems it did not
assemble.

Unknown i of the matrix lives on the i-th ``True`` cell of ``fluid`` in C order (all cells when a
grid shape is given). Vectors travel as (B, *grid) tensors with zeros off the unknowns, as they do
for :class:`~pdeml.solvers.dcdm.poisson.GridPoisson`, so the network, the iteration and the
multigrid
cycle run unchanged. The product gathers the unknowns, multiplies each stored entry by its
column's value and sums them into their rows (``index_add``), on any device.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from pdeml._validate import fail

from .poisson import GridOperator


class MatrixOperator(GridOperator):
    """y = A x for a scipy sparse symmetric matrix A on the unknown cells of a grid.

    Args:
        matrix: (n, n) scipy sparse, symmetric (checked to 1e-12 relative), positive definite
            (not checked: CG-type methods need it).
        grid: the grid shape (then n = its number of cells) or a boolean mask with n ``True``
            cells (the unknowns, in C order; the others are solid and stay zero).

    Example:
        >>> from pdeml.solvers import dcdm
        >>> fluid = dcdm.obstacles(16, 2, seed=0)            # a layout's mask, and its matrix
        >>> A = MatrixOperator(dcdm.assemble(fluid), fluid)  # any scipy SPD matrix on the grid
        >>> b = np.random.default_rng(0).standard_normal(int(fluid.sum()))    # one per unknown
        >>> result = dcdm.solve(A, b, None, tol=1e-8)         # None: plain CG; a trained net: DCDM
        >>> result.converged
        True
    """

    def __init__(self, matrix, grid):
        super().__init__()
        if not sp.issparse(matrix) or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            fail(
                "matrix",
                f"{type(matrix).__name__} {getattr(matrix, 'shape', '')}",
                "is not a square scipy sparse matrix",
                "pass e.g. scipy.sparse.csr_matrix(A)",
            )
        mask = np.asarray(grid)
        if mask.dtype != bool:
            shape = tuple(int(s) for s in np.atleast_1d(mask))
            if len(shape) not in (2, 3) or min(shape) < 1:
                fail(
                    "grid",
                    grid,
                    "is not a 2-D or 3-D grid shape or mask",
                    "pass e.g. (64, 64) or a boolean array",
                )
            mask = np.ones(shape, bool)
        if mask.ndim not in (2, 3):
            fail(
                "grid", f"mask {mask.shape}", "is not 2-D or 3-D", "pass a 2-D or 3-D boolean array"
            )
        n = matrix.shape[0]
        if int(mask.sum()) != n:
            fail(
                "grid",
                f"{mask.shape} with {int(mask.sum())} unknown cells",
                f"does not match the {n} x {n} matrix",
                "pass the grid whose cells (or True cells) number the matrix's rows",
            )
        csr = sp.csr_matrix(matrix, dtype=np.float64)
        if not np.all(np.isfinite(csr.data)):
            fail(
                "matrix",
                f"{n} x {n}",
                f"has {int((~np.isfinite(csr.data)).sum())} NaN/inf entries",
                "pass a finite matrix",
            )
        if np.any(csr.diagonal() <= 0):
            fail(
                "matrix",
                f"{n} x {n}",
                f"has {int((csr.diagonal() <= 0).sum())} non-positive diagonal "
                "entries, so it is not positive definite",
                "DCDM needs an SPD matrix (negate a negative definite one)",
            )
        scale = abs(csr).max() if csr.nnz else 1.0
        if csr.nnz and abs(csr - csr.T).max() > 1e-12 * scale:
            fail(
                "matrix",
                f"{n} x {n}",
                "is not symmetric",
                "DCDM needs a symmetric positive definite matrix",
            )
        self.register_buffer("fluid", torch.as_tensor(mask))
        self.register_buffer("index", torch.as_tensor(np.flatnonzero(mask)))
        self.matrix = csr  # for Lanczos when training on it
        coo = csr.tocoo()
        self.register_buffer("row", torch.as_tensor(coo.row.astype(np.int64)))
        self.register_buffer("col", torch.as_tensor(coo.col.astype(np.int64)))
        self.register_buffer("val", torch.as_tensor(coo.data))
        diag = np.zeros(mask.shape)
        diag[mask] = csr.diagonal()
        self.register_buffer("diag", torch.as_tensor(diag))

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        v = x.reshape(-1, self.fluid.numel())[:, self.index]  # (B, n)
        av = torch.zeros_like(v).index_add_(1, self.row, v[:, self.col] * self.val.to(x.dtype))
        y = torch.zeros_like(x.reshape(-1, self.fluid.numel()))
        y[:, self.index] = av
        return y.reshape(x.shape)


def as_operator(A, grid=None) -> GridOperator:
    """``A`` if it already acts on grid vectors, else a :class:`MatrixOperator` of the scipy
    sparse matrix ``A`` on ``grid`` (required then)."""
    if sp.issparse(A):
        if grid is None:
            fail(
                "grid",
                None,
                "is required with a scipy sparse matrix",
                "pass grid=(nx, ny[, nz]) or a boolean mask of the unknown cells",
            )
        return MatrixOperator(A, grid)
    if grid is not None:
        fail("grid", grid, "is only for scipy sparse matrices", "leave it out for a grid operator")
    return A
