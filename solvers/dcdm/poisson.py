r"""Pressure-Poisson matrices on a grid with solid obstacles: scipy sparse and matrix-free torch.

Cells of an n^d grid are fluid or solid (``fluid`` boolean array). Unknowns live on fluid
cells. For a fluid cell :math:`i` with neighbours :math:`N(i)` (4 in 2-D, 6 in 3-D):

.. math:: (Ax)_i = \Big(2d - \#\{j \in N(i) \text{ solid}\}\Big) x_i - \sum_{j\in N(i)\text{ fluid}}
          x_j

A neighbour outside the grid is a Dirichlet wall (x = 0 there: it stays in the diagonal); a
solid neighbour is a Neumann face (no flux: it leaves the diagonal). A is symmetric positive
definite on the fluid cells whenever every fluid region touches the outer wall. Vectors are
kept on the whole grid with zeros in solid cells; the scipy matrix acts on the fluid cells only
(:func:`restrict` / :func:`prolong` move between the two).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from pdeml._validate import fail


def check_fluid(fluid) -> np.ndarray:
    fluid = np.asarray(fluid)
    if fluid.ndim not in (2, 3) or fluid.dtype != bool:
        fail(
            "fluid",
            f"array {fluid.shape} {fluid.dtype}",
            "must be a 2-D or 3-D boolean grid",
            "pass e.g. np.ones((64, 64), bool) (True = fluid cell)",
        )
    if not fluid.any():
        fail("fluid", f"array {fluid.shape}", "has no fluid cell", "mark some cells True")
    enclosed = int((fluid & ~wall_connected(fluid)).sum())
    if enclosed:
        fail(
            "fluid",
            f"array {fluid.shape}",
            f"has {enclosed} fluid cells enclosed by solid cells, "
            "where the pure-Neumann problem is singular",
            "mark them solid, e.g. fluid = wall_connected(fluid) (obstacles() does so)",
        )
    return fluid


def wall_connected(fluid: np.ndarray) -> np.ndarray:
    """The fluid cells whose region touches the outer (Dirichlet) wall."""
    from scipy import ndimage

    labels, _ = ndimage.label(fluid)
    border = np.zeros_like(fluid)
    for axis in range(fluid.ndim):
        border[(slice(None),) * axis + (0,)] = border[(slice(None),) * axis + (-1,)] = True
    keep = np.unique(labels[border & fluid])
    return np.isin(labels, keep[keep > 0])


def _shifts(ndim):
    for axis in range(ndim):
        for step in (-1, 1):
            yield axis, step


def _neighbour(a: np.ndarray, axis: int, step: int, fill) -> np.ndarray:
    """a shifted so that out[i] = a[i + step e_axis], ``fill`` outside the grid."""
    out = np.full_like(a, fill)
    src = [slice(None)] * a.ndim
    dst = [slice(None)] * a.ndim
    if step > 0:
        src[axis], dst[axis] = slice(1, None), slice(None, -1)
    else:
        src[axis], dst[axis] = slice(None, -1), slice(1, None)
    out[tuple(dst)] = a[tuple(src)]
    return out


def diagonal(fluid: np.ndarray) -> np.ndarray:
    """2d minus the number of solid neighbours (walls count as Dirichlet neighbours)."""
    fluid = check_fluid(fluid)
    solid_nb = sum((~_neighbour(fluid, a, s, True)).astype(int) for a, s in _shifts(fluid.ndim))
    return np.where(fluid, 2 * fluid.ndim - solid_nb, 0)


def assemble(fluid) -> sp.csr_matrix:
    """The matrix on the fluid cells (in C order of the grid), as scipy CSR (float64)."""
    fluid = check_fluid(fluid)
    index = np.full(fluid.shape, -1)
    index[fluid] = np.arange(fluid.sum())
    rows, cols, vals = [index[fluid]], [index[fluid]], [diagonal(fluid)[fluid].astype(float)]
    for axis, step in _shifts(fluid.ndim):
        nb = _neighbour(index, axis, step, -1)
        ok = fluid & (nb >= 0)
        rows.append(index[ok]), cols.append(nb[ok]), vals.append(-np.ones(ok.sum()))
    n = int(fluid.sum())
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )


def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, *grid) x (B, *grid) -> (B,): one inner product per batch entry."""
    return (a * b).flatten(1).sum(1)


def restrict(fluid, grid_vectors: np.ndarray) -> np.ndarray:
    """(..., *grid) -> (..., n_fluid)."""
    return np.asarray(grid_vectors)[..., fluid]


def prolong(fluid, vectors: np.ndarray) -> np.ndarray:
    """(..., n_fluid) -> (..., *grid) with zeros in solid cells."""
    vectors = np.asarray(vectors)
    out = np.zeros(vectors.shape[:-1] + fluid.shape, dtype=vectors.dtype)
    out[..., fluid] = vectors
    return out


class GridOperator(torch.nn.Module):
    """An SPD operator on batches of grid vectors (B, *grid) with zeros off the unknown cells.

    Subclasses register the buffers ``fluid`` (bool grid: the cells that carry unknowns) and
    ``diag`` (the diagonal on the grid, float64) and implement :meth:`matvec`; ``forward``
    checks the input's shape, then calls it."""

    @property
    def shape(self):
        return tuple(self.fluid.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-self.fluid.ndim :] != self.fluid.shape:
            fail(
                "x",
                f"tensor {tuple(x.shape)}",
                f"does not end in the grid shape {self.shape}",
                "pass (B, *grid) vectors",
            )
        return self.matvec(x)

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def on_grid(self, v, name: str = "b") -> torch.Tensor:
        """(1, *grid) float64 on this operator's device, zeros off the unknowns, from a (*grid) or
        (1, *grid) array or a vector over the unknowns (C order); ``name`` is for the error."""
        v = torch.as_tensor(v, dtype=torch.float64, device=self.fluid.device)
        if v.ndim == 1 and v.numel() == int(self.fluid.sum()):
            grid = torch.zeros((1, *self.shape), dtype=v.dtype, device=v.device)
            grid[0][self.fluid] = v
            return grid
        if v.numel() != self.fluid.numel():
            fail(
                name,
                f"array {tuple(v.shape)}",
                f"fits neither the grid {self.shape} nor its {int(self.fluid.sum())} unknowns",
                "pass a grid array or a vector over the unknown cells",
            )
        return v.reshape(1, *self.shape) * self.fluid


class GridPoisson(GridOperator):
    """Matrix-free A on batches of grid vectors (B, *grid), any device and dtype.

    Example:
        >>> A = GridPoisson(obstacles(16, 2, seed=0))            # fluid: (n, n) bool
        >>> A(torch.zeros(2, 16, 16, dtype=torch.float64)).shape   # x: (B, n, n), zeros in solids
        torch.Size([2, 16, 16])
    """

    def __init__(self, fluid):
        super().__init__()
        fluid = check_fluid(fluid)
        self.register_buffer("fluid", torch.as_tensor(fluid))
        self.register_buffer("diag", torch.as_tensor(diagonal(fluid), dtype=torch.float64))

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        m = self.fluid.to(x.dtype)
        xm = x * m
        d = self.fluid.ndim
        xp = torch.nn.functional.pad(xm, [1, 1] * d)  # Dirichlet: zeros outside
        nb = _neighbour_sum(xp, x.ndim, d)
        return m * (self.diag.to(x.dtype) * xm - nb)


def _neighbour_sum(xp: torch.Tensor, ndim: int, d: int) -> torch.Tensor:
    """Sum of the 2d axis neighbours of the interior of a 1-padded tensor."""
    total = 0
    for axis in range(d):
        for start in (0, 2):
            sl = [slice(None)] * ndim
            for other in range(d):
                od = ndim - d + other
                sl[od] = slice(start, start + xp.shape[od] - 2) if other == axis else slice(1, -1)
            total = total + xp[tuple(sl)]
    return total


def obstacles(
    n: int, dim: int = 2, count: int = 6, size: float = 0.12, seed: int = 0
) -> np.ndarray:
    """A fluid mask (n,)*dim with ``count`` random solid boxes of about ``size`` x n cells per side;
    fluid pockets that the boxes cut off from the outer wall are made solid too."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 4:
        fail("--n", n, "must be an integer >= 4 (cells per side)", "pass e.g. --n 64")
    if dim not in (2, 3):
        fail("--dim", dim, "must be 2 or 3", "pass --dim 2 or --dim 3")
    rng = np.random.default_rng(seed)
    fluid = np.ones((n,) * dim, bool)
    for _ in range(count):
        side = np.maximum(1, (rng.uniform(0.5, 1.5, dim) * size * n).astype(int))
        lo = rng.integers(1, np.maximum(2, n - side - 1))
        fluid[tuple(slice(a, a + s) for a, s in zip(lo, side))] = False
    return wall_connected(fluid)
