r"""WoS-NO: one operator for -Δu = f, u = g on random star-shaped domains, trained on
walk-on-spheres.

The family (``cases/_star_poisson.py``): domains r(θ) = 1 + c₁cos4θ + c₂cos8θ, Gaussian sources
and trigonometric boundary data. WoS-NO trains on walk-on-spheres estimates: no solver data, no
PDE residual. The error is measured
against P2 finite elements on 16 fixed test domains.

    pdeml train poisson_star_family --out runs/wosno                       # WoS-NO
    pdeml train poisson_star_family --targets residual --out runs/pino     # physics-informed
    baseline
    pdeml train poisson_star_family --targets truth --out runs/fem-fit     # supervised on FEM truth

``--n`` sets the grid (n x n cells over [-1.5, 1.5]²), ``--domains`` the training draws,
``--walks`` the fresh walks per point each time a domain is drawn, ``--batch`` the domains per step;
``--steps`` and ``--lr`` as for
any case (1000 steps of Adam, one-cycle, peak 3e-3).
"""

import pdeml as pl
from pdeml.families.star_poisson import StarFamily
from pdeml.operators.wosno import WoSNO


def make(
    n: int = 32,
    targets: str = "wos",
    domains: int = 64,
    walks: int = 10,
    weighting: str = "none",
    batch: int = 8,
):
    method = WoSNO(
        targets=targets,
        walks=walks,
        domains=domains,
        batch_size=batch,
        weighting=weighting,
        modes=min(12, n // 2),
        width=32,
        layers=4,
    )
    return pl.Case(
        StarFamily(n),
        method,
        steps=1000,
        optimizer=pl.Adam(3e-3, schedule=pl.OneCycle()),
        eval_every=50,
        checkpoint_every=200,
        options={
            "n": n,
            "targets": targets,
            "domains": domains,
            "walks": walks,
            "weighting": weighting,
            "batch": batch,
        },
    )


case = make()
