"""EquiNO: an equilibrium-preserving surrogate of the FE² unit cell (issue 18).

The RVE solver (``solvers/rve.py``) gives 100 snapshots that build the POD bases; the network
then trains unsupervised (the constitutive law against an equilibrated stress) on 200 strains:
2000 Adam steps on batches of 10, then 2000 L-BFGS iterations on all of them. The error is σ̄
against RVE solves at 50 held-out strains. The export writes the RVE fields at a test strain and
the macroscopic plate with a hole solved with the trained surrogate (``plate.vtu``).

    pdeml train equino_rve --out runs/equino
    pdeml train equino_rve --n 2 --solves 40 --steps 300 --lbfgs-steps 100 --out runs/equino-small

``--n`` sets the RVE mesh (20 n² Q8 elements), ``--solves`` the RVE snapshot solves for the bases
(``--snapshots`` is the CLI's point-cloud option), ``--norm energy|euclidean`` the loss's mismatch
norm (``euclidean`` is the paper's; see ``operators/equino.py``).
"""

import pdeml as pl
from pdeml.families.rve import RVEFamily
from pdeml.operators.equino import EquiNO


def make(n: int = 4, solves: int = 100, modes: int = 16, norm: str = "energy"):
    return pl.Case(
        RVEFamily(n),
        EquiNO(modes=modes, snapshots=solves, norm=norm),
        steps=2000,
        lbfgs_steps=2000,
        optimizer=pl.Adam(1e-3),
        dtype="float64",
        eval_every=100,
        checkpoint_every=500,
        options={"n": n, "solves": solves, "modes": modes, "norm": norm},
    )


case = make()
