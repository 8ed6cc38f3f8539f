r"""Diffusion–sorption over initial conditions: one hard-constrained FNO (PI-HC-MoE's operator
setting).

The FNO's bases are constrained per input to the PDE at sampled nodes
(``cases/_sorption_family.py``, ``operators/hard.py``).

    pdeml train diffusion_sorption_family --out runs/ds-moe                        # 4 experts
    pdeml train diffusion_sorption_family --constraint hc --out runs/ds-hc         # one expert
    pdeml train diffusion_sorption_family --constraint soft --out runs/ds-soft     # PI-SC baseline

``--nx``/``--nt`` set the node grid (64 x 32), ``--draws`` the training inputs, ``--points``
the constraint nodes per expert and input; ``--steps`` and ``--lr`` as for any case. The error is
against the method of lines on 8 fixed test inputs, with the constraint solved for each.
"""

import pdeml as pl
from pdeml.families.sorption import SorptionFamily
from pdeml.operators.hard import HardConstraintFNO


def make(nx: int = 64, nt: int = 32, draws: int = 64, points: int = 128, batch: int = 4):
    method = HardConstraintFNO(
        "moe:4",
        points=points,
        draws=draws,
        batch_size=batch,
        modes=(min(16, nx // 2), min(8, nt // 2)),
    )
    return pl.Case(
        SorptionFamily(nx, nt),
        method,
        steps=500,
        optimizer=pl.Adam(1e-3, schedule=pl.OneCycle()),
        eval_every=50,
        checkpoint_every=100,
        options={"nx": nx, "nt": nt, "draws": draws, "points": points, "batch": batch},
    )


case = make()
