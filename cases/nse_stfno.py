r"""Navier-Stokes operator (2-D vorticity, periodic unit square, ν = 1e-3): ST-FNO maps 10 frames to
the next 40.

The family and its data are ``nse_fno3d``'s (``cases/_navier_stokes.py``; one dataset serves
both). The method: Spectral-Refiner's spatiotemporal FNO with the paper's settings (spatial modes
12, temporal modes 5, width 20, 4 layers, 10 -> 40 steps; Adam with a one-cycle schedule, peaking
at 2e-2 where the paper's code has 1e-2: see make()):

    pdeml data nse_stfno --samples 512 --out data/nse.h5
    pdeml train nse_stfno --data data/nse.h5 --out runs/nse-stfno
"""

import pdeml as pl
from pdeml.datasets import Minibatches
from pdeml.families.navier_stokes import family
from pdeml.operators.backend import STFNO


def make(n: int = 64, data: str = "data/nse.h5", batch: int = 20):
    method = STFNO(
        t_in=10,
        t_out=40,
        modes=min(12, n // 2),
        modes_t=5,
        width=20,
        layers=4,
        latent_steps=10,
        data=Minibatches(data, batch),
    )
    # peak 2e-2, not the paper's 1e-2: on the 32² benchmark (docs/operators.md) ST-FNO reached
    # 3.0e-2 at
    # 2e-2 against 4.3e-2 at 1e-2 and 5.3e-2 at 5e-3
    return pl.Case(
        family(n),
        method,
        steps=5000,
        optimizer=pl.Adam(2e-2, schedule=pl.OneCycle()),
        eval_every=100,
        checkpoint_every=500,
        options={"n": n, "data": data, "batch": batch},
    )


case = make()
