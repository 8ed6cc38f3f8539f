r"""Navier-Stokes operator (2-D vorticity, periodic unit square, ν = 1e-3): FNO-3d maps 10 frames to
the next 40.

The family: initial vorticities from a Gaussian random field with covariance
:math:`7^3(-\Delta + 49)^{-2.5}`, forcing :math:`f = 0.1(\sin 2\pi(x+y) + \cos 2\pi(x+y))`, 50
frames every 0.1 time units, solved by our pseudo-spectral solver (``cases/_navier_stokes.py``:
its order and Taylor-Green tests are the truth's). The method: Li et al.'s FNO-3d baseline over
(x, y, t). Make the data first, then train on it:

    pdeml data nse_fno3d --samples 512 --out data/nse.h5       # ~4.5 min at 64² on 2 CPU cores
    pdeml train nse_fno3d --data data/nse.h5 --out runs/nse

``--n 32`` (and ``--data`` written with the same ``--n``) makes everything 4x cheaper.
"""

import pdeml as pl
from pdeml.datasets import Minibatches
from pdeml.families.navier_stokes import family
from pdeml.operators.backend import FNO3d


def make(n: int = 64, data: str = "data/nse.h5", batch: int = 20):
    modes = min(12, n // 2)
    method = FNO3d(
        t_in=10,
        t_out=40,
        modes=(modes, modes, 12),
        width=20,
        layers=4,
        padding=6,
        data=Minibatches(data, batch),
    )
    return pl.Case(
        family(n),
        method,
        steps=5000,
        optimizer=pl.Adam(1e-3, decay=0.5, decay_every=1000),
        eval_every=100,
        checkpoint_every=500,
        options={"n": n, "data": data, "batch": batch},
    )


case = make()
