"""The same training on every device torch sees: CPU always, CUDA where there is one
(``scripts/gpu_check.sh`` runs these on a GPU machine). Parameters, batches and checkpoints
follow the device; a CUDA checkpoint loads on the CPU."""

import numpy as np
import pytest
import torch

import pdeml as pl
from pdeml import checkpoint as ckpt
from pdeml.samplers import R3, Uniform
from pdeml.solvers import PINN

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _problem():
    exact = lambda x: torch.sin(np.pi * x[:, :1]) * torch.sin(np.pi * x[:, 1:2])
    return pl.Problem(
        pl.geometry.Rectangle([0, 0], [1, 1]),
        lambda x, u: -u.laplacian() - 2 * np.pi**2 * exact(x),
        [pl.Dirichlet(0.0)],
        exact=exact,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_stays_on_its_device_and_lowers_the_loss(device, dtype, tmp_path):
    problem = _problem()
    backend = PINN(pl.nn.MLP(16, 2), sampler=R3(256, 32)).build(
        problem, seed=0, dtype=dtype, device=device
    )
    assert backend.device.type == device and backend.dtype == dtype
    r = pl.fit(
        backend,
        [(60, pl.FirstOrder(pl.Adam(1e-2))), (5, pl.LBFGS())],
        checkpoint=tmp_path / "checkpoint.pt",
        eval_every=5,
        truth=problem.truth(500, np.random.default_rng(0)),
    )
    assert all(p.device.type == device and p.dtype == dtype for p in backend.parameters())
    assert r.history[-1]["loss"] < 0.5 * r.history[0]["loss"]
    saved = ckpt.load(tmp_path / "checkpoint.pt", map_location="cpu")  # loads anywhere
    cpu = PINN(pl.nn.MLP(16, 2)).build(problem, seed=0, dtype=dtype, device="cpu")
    cpu.load_state_dict(saved["model"])
    x = problem.domain.sample_interior(64, np.random.default_rng(1))
    np.testing.assert_allclose(cpu.predict(x), backend.predict(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_engd_and_dcdm_run_on_the_device(device):
    problem = _problem()
    backend = PINN(pl.nn.MLP(12, 1), sampler=Uniform(200, 40)).build(
        problem, seed=0, dtype=torch.float64, device=device
    )
    r = pl.fit(backend, [(5, pl.ENGD())], eval_every=1)
    assert r.history[-1]["loss"] < r.history[0]["loss"]
    from pdeml.solvers.dcdm import GridPoisson, solve
    from pdeml.solvers.dcdm.poisson import obstacles

    fluid = obstacles(16, 2, count=2, seed=0)
    A = GridPoisson(fluid).to(device)
    b = np.random.default_rng(0).standard_normal(fluid.shape) * fluid
    res = solve(A, b, None, tol=1e-8, maxiter=500)
    assert res.converged and res.x.device.type == device
