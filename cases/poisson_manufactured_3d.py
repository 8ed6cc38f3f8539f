r"""Poisson -Δu = f in the unit cube with a spherical hole; Dirichlet outside, Neumann on the hole.

Domain: [0, 1]^3 minus the ball of radius 0.25 at (½, ½, ½) (CSG difference). Manufactured
solution u = sin(πx) sin(πy) sin(πz) + xyz, so f = 3π² sin(πx) sin(πy) sin(πz). Dirichlet
u = u_exact on the cube faces; Neumann ∂u/∂n = ∇u_exact·n on the sphere, n pointing out of
the domain (into the hole).
"""

import math

import torch

import pdeml as pl

C, R = (0.5, 0.5, 0.5), 0.25
PI = math.pi


def exact(x):
    s = torch.sin(PI * x)
    return s.prod(dim=1, keepdim=True) + x.prod(dim=1, keepdim=True)


def exact_grad(x):
    s, c = torch.sin(PI * x), torch.cos(PI * x)
    cols = []
    for i in range(3):
        others = [j for j in range(3) if j != i]
        cols.append(
            PI * c[:, i] * s[:, others[0]] * s[:, others[1]] + x[:, others[0]] * x[:, others[1]]
        )
    return torch.stack(cols, dim=1)


def on_sphere(x):
    return (x - torch.tensor(C, dtype=x.dtype)).norm(dim=1) < R + 1e-4


def on_cube(x):
    return ~on_sphere(x)


def hole_flux(x):
    n = -(x - torch.tensor(C, dtype=x.dtype))
    n = n / n.norm(dim=1, keepdim=True)
    return (exact_grad(x) * n).sum(dim=1, keepdim=True)


pde = pl.pde.Poisson(source=lambda x: 3 * PI**2 * torch.sin(PI * x).prod(dim=1, keepdim=True))


geometry = pl.geometry.Cuboid([0, 0, 0], [1, 1, 1]) - pl.geometry.Sphere(C, R)
problem = pl.Problem(
    geometry=geometry,
    pde=pde,
    exact=exact,
    conditions=[pl.Dirichlet(exact, on=on_cube), pl.Neumann(hole_flux, on=on_sphere)],
)
case = pl.Case(
    problem,
    pl.PINN(pl.nn.MLP(width=48, depth=3), sampler=pl.samplers.Uniform(2000, 500, every=100)),
    steps=2500,
    optimizer=pl.Adam(2e-3, decay=0.5, decay_every=1000),
    lbfgs_steps=1500,
    weights={"dirichlet": 10.0, "neumann": 10.0},
    export_resolution=32,
)
