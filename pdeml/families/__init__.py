"""Problem families with their reference solvers: what operator cases train on, and public
problem builders that several cases share.

- :mod:`pdeml.families.navier_stokes`: 2-D incompressible Navier–Stokes in vorticity form on the
  periodic unit square, random initial vorticity, a pseudo-spectral reference solver (FNO-3d,
  ST-FNO).
- :mod:`pdeml.families.star_poisson`: Poisson problems on random star-shaped domains, solved by
  walk-on-spheres (WoS-NO).
- :mod:`pdeml.families.sorption`: diffusion–sorption (PDEBench) over initial conditions, the
  method of lines as truth (hard-constrained FNO, PI-HC-MoE); also the one problem of the
  ``diffusion_sorption_1d`` case.
- :mod:`pdeml.families.rve`: periodic representative volume elements under macroscopic strains,
  solved by the FE² RVE solver (EquiNO).
- :mod:`pdeml.families.highdim`: the high-dimensional PINN problems (Poisson, Allen–Cahn,
  sine-Gordon on the unit ball, with exact solutions) of the SDGD/STDE papers.

A family sits above the methods (it may use a method's solver for its truth) and below the
cases that train on it.

Example:
    >>> from pdeml.families.star_poisson import StarFamily
    >>> StarFamily.__name__
    'StarFamily'
"""
