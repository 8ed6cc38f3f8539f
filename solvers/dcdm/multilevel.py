r"""Multilevel DCDM directions: the network as the coarse solver of a multigrid cycle (ours, not the
paper's).

A network trained on an :math:`n^d` grid and run on a finer one keeps the receptive field it
learned in cells, so it sees a piece of the finer domain as if it were the whole one. Run
directly, the 64² network of the benchmark needs 9 → 27 → 99 iterations for the bump at
64² → 128² → 256². The paper trains a network per resolution instead.

:class:`Cycle` keeps the network at the resolution it was trained on and lets a geometric
multigrid cycle carry the residual there and back. On level :math:`l` (level 0 is the grid of
A, each next level halves every side) with operator :math:`A_l`, for a residual :math:`r`:

1. pre-smoothing, ``sweeps`` damped-Jacobi steps from :math:`x = 0`:
   :math:`x \leftarrow x + \omega D_l^{-1}(r - A_l x)`, with :math:`\omega = 2d/(2d+1)` (4/5 in
   2-D, 6/7 in 3-D: the smoothing-optimal damping of the 5- and 7-point Laplacians);
2. ``corrections`` times: :math:`r_c = R(r - A_l x)` (the mean over each 2^d block, zero in
   coarse solid cells); :math:`e_c` = the cycle on level :math:`l+1`, or on the coarsest level
   the network :math:`f_\theta(r_c/\lVert r_c\rVert)`; :math:`p = P e_c` (nearest-neighbour
   prolongation, zero in solid cells); an exact line search along it,
   :math:`x \leftarrow x + \frac{p^\top(r - A_l x)}{p^\top A_l p}\,p`. The network's output has
   no scale, so the step length has to come from A;
3. post-smoothing, ``sweeps`` more Jacobi steps.

``corrections=1`` is a V-cycle, 2 (the default) a W-cycle. With piecewise-constant
prolongation and block-mean restriction (orders 1 + 1, not more than the order 2 of the
Laplacian) a V-cycle's contraction degrades with every level, a W-cycle's does not
(Trottenberg, Oosterlee, Schüller, *Multigrid*, Academic Press 2001, on the orders of
transfer operators). Measured with an exact coarse solve on 16² (tests/test_dcdm_multilevel.py):
11, 14, 17, 21 iterations to 1e-8 at 32² to 256² with the V-cycle, 11, 12, 12, 12 with the
W-cycle. In 2-D a W-cycle costs at most twice the finest level's smoothing; the network runs
2^L times per cycle on its own grid, L levels below.

The result x (an approximation of :math:`A^{-1}r`) is the search direction q of the DCDM
iteration in :func:`pdeml.solvers.dcdm.solve`, which A-orthogonalizes it and line-searches as usual.
Coarse operators are the same Poisson stencil rediscretized on the coarse fluid mask (a coarse
cell is fluid when at least half of its children are; pockets cut off from the wall are made
solid). Coarsening stops once every side is at most ``coarsest`` (the training grid's side).

Benchmark (tests/benchmarks/bench_dcdm.py, bump to 1e-4): the 64² network in the cycle takes
9 → 8 → 9 → 9 iterations at 64² → 128² → 256² → 512² (CG 161 → 326 → 662 → 1344); the 16³
network 7 → 7 → 8 → 8 at 16³ → 128³.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pdeml._validate import fail, positive_int

from .poisson import GridPoisson, batch_dot, wall_connected


def propose(net, r: torch.Tensor, fluid: torch.Tensor) -> torch.Tensor:
    """The network's direction for residuals r (B, *grid): f(r/||r||) in the net's dtype,
    returned as float64."""
    dtype = next(iter(net.parameters()), r.float()).dtype
    norm = r.flatten(1).norm(dim=1).clamp_min(torch.finfo(r.dtype).tiny)
    return net((r / norm.view(-1, *[1] * fluid.ndim)).to(dtype), fluid).to(torch.float64)


def block_mean(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B, *grid) -> (B, *ceil(grid/2)): the mean over each 2^d block."""
    pool = F.avg_pool2d if ndim == 2 else F.avg_pool3d
    return pool(x[:, None], 2, ceil_mode=True)[:, 0]


def coarsen(fluid: torch.Tensor) -> torch.Tensor | None:
    """The fluid mask one level down (halved sides, rounded up): a coarse cell is fluid when at
    least half of its 2^d children are, pockets cut off from the wall made solid; ``None`` if
    no fluid cell is left."""
    coarse = block_mean(fluid.to(torch.float64)[None], fluid.ndim)[0] >= 0.5
    coarse = torch.as_tensor(wall_connected(coarse.cpu().numpy()), device=fluid.device)
    return coarse if bool(coarse.any()) else None


class Cycle:
    """q = cycle(r) with the network as the coarsest-level solver (see the module docstring).
    On a grid no finer than ``coarsest`` there is one level and q is the network's direction.

    Args:
        A: the operator on the finest grid.
        net: a :class:`~pdeml.solvers.dcdm.net.DirectionNet` (or any ``net(r, fluid)`` callable).
        coarsest: coarsen while a side is longer than this (the side the net was trained on;
            ``"auto"`` reads it from ``net.trained_on``, which :func:`~pdeml.solvers.dcdm.train` and
            :func:`~pdeml.solvers.dcdm.load` set).
        sweeps: damped-Jacobi sweeps before and after the coarse corrections.
        corrections: coarse corrections per level (1: V-cycle, 2: W-cycle).
    """

    def __init__(
        self, A: GridPoisson, net, coarsest: int | str, sweeps: int = 2, corrections: int = 2
    ):
        if net is None:
            fail(
                "net",
                None,
                "is required by the multilevel cycle (it is the coarse solver)",
                "pass a trained DirectionNet, or multilevel=None",
            )
        if coarsest == "auto":
            grid = getattr(net, "trained_on", None)
            if not grid:
                fail(
                    "multilevel",
                    "auto",
                    "needs the network's training grid, which this network does not carry",
                    "pass the training grid's side, e.g. multilevel=64",
                )
            coarsest = max(grid)
        self.coarsest = positive_int("multilevel", coarsest)
        self.sweeps = positive_int("sweeps", sweeps)
        self.corrections = positive_int("corrections", corrections)
        self.net = net
        self.omega = 2 * A.fluid.ndim / (2 * A.fluid.ndim + 1)
        self.levels = [A]
        while max(self.levels[-1].shape) > self.coarsest:
            coarse = coarsen(self.levels[-1].fluid)
            if coarse is None:
                break
            self.levels.append(GridPoisson(coarse.cpu().numpy()).to(A.fluid.device))

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        """r: (B, *grid) float64 on the finest grid -> (B, *grid) float64."""
        return self._cycle(0, r)

    def _cycle(self, level: int, r: torch.Tensor) -> torch.Tensor:
        A = self.levels[level]
        if level == len(self.levels) - 1:
            return propose(self.net, r, A.fluid)
        shape = [-1] + [1] * A.fluid.ndim
        inv_d = self.omega / torch.where(A.fluid, A.diag.to(r.dtype), 1)
        x = inv_d * r
        for _ in range(self.sweeps - 1):
            x = x + inv_d * (r - A(x))
        coarse = self.levels[level + 1]
        for _ in range(self.corrections):
            res = r - A(x)
            rc = (
                block_mean(res, A.fluid.ndim) * coarse.fluid
            )  # no host sync: a zero rc gives alpha 0
            p = (
                F.interpolate(self._cycle(level + 1, rc)[:, None], size=A.shape, mode="nearest")[
                    :, 0
                ]
                * A.fluid
            )
            Ap = A(p)
            pAp = batch_dot(p, Ap)
            alpha = torch.where(pAp > 0, batch_dot(p, res) / torch.where(pAp > 0, pAp, 1), 0)
            x = x + alpha.view(shape) * p
        for _ in range(self.sweeps):
            x = x + inv_d * (r - A(x))
        return x
