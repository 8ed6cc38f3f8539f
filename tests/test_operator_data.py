"""The Navier-Stokes family's pieces: our pseudo-spectral reference solver (exact Taylor-Green
decay, second order in time, spectral in space), the Gaussian random field of its initial
vorticities, and datasets on disk (chunked HDF5, lazy, spectral truncation)."""

import math

import numpy as np
import pytest
import torch

from pdeml.datasets import Dataset, truncate, write
from pdeml.families.navier_stokes import kolmogorov_forcing, solve, velocity
from pdeml.random_fields import gaussian_random_field, grf_spectrum

D64 = torch.float64


def _grid(n):
    x = torch.arange(n, dtype=D64) / n
    return torch.meshgrid(x, x, indexing="ij")


def _smooth(n):
    X, Y = _grid(n)
    return (
        5 * torch.sin(2 * math.pi * (X + 2 * Y))
        + 3 * torch.cos(2 * math.pi * (3 * X - Y))
        + 2 * torch.sin(4 * math.pi * X) * torch.cos(2 * math.pi * Y)
    )


def test_taylor_green_vortex_decays_exactly_and_its_velocity_is_the_perp_gradient():
    X, Y = _grid(32)
    psi = torch.sin(2 * math.pi * X) * torch.sin(2 * math.pi * Y)
    w0 = 8 * math.pi**2 * psi  # -Δψ
    u, v = velocity(w0)
    assert torch.allclose(
        u, 2 * math.pi * torch.sin(2 * math.pi * X) * torch.cos(2 * math.pi * Y), atol=1e-12
    )
    assert torch.allclose(
        v, -2 * math.pi * torch.cos(2 * math.pi * X) * torch.sin(2 * math.pi * Y), atol=1e-12
    )
    w = solve(w0, nu=1e-3, dt=1e-3, steps=1000, record_every=500)
    assert w.shape == (3, 32, 32)
    for k, t in enumerate((0.0, 0.5, 1.0)):
        exact = w0 * math.exp(-8 * math.pi**2 * 1e-3 * t)
        assert float((w[k] - exact).abs().max() / w0.abs().max()) < 1e-9


def test_second_order_in_time():
    f = kolmogorov_forcing(32)
    ref = solve(_smooth(32), nu=1e-3, forcing=f, dt=0.5 / 400, steps=400)[-1]
    errs = [
        float((solve(_smooth(32), nu=1e-3, forcing=f, dt=0.5 / k, steps=k)[-1] - ref).abs().max())
        for k in (25, 50, 100)
    ]
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(1.85 < p < 2.3 for p in orders), orders


def test_spectral_convergence_in_space_and_batching():
    sols = {
        n: solve(_smooth(n), nu=1e-3, forcing=kolmogorov_forcing(n), dt=0.5 / 200, steps=200)[-1]
        for n in (16, 32, 64, 128)
    }
    err = {
        n: float((truncate(sols[n], 16) - truncate(sols[128], 16)).abs().max())
        for n in (16, 32, 64)
    }
    assert err[32] < err[16] / 10 and err[64] < err[32] / 1e4  # 0.79, 0.031, 2.5e-7
    both = solve(
        torch.stack([_smooth(32), -_smooth(32)]),
        nu=1e-3,
        forcing=kolmogorov_forcing(32),
        dt=0.5 / 200,
        steps=200,
    )
    assert torch.allclose(both[0, -1], sols[32], atol=1e-12)  # a batch solves each alone
    with pytest.raises(ValueError, match="CFL"):
        solve(100 * _smooth(32), nu=1e-3, dt=0.1, steps=1)


def test_gaussian_random_field_has_its_spectrum_and_zero_mean():
    n, count = 32, 4000
    w = gaussian_random_field(
        n, count, alpha=2.5, tau=7.0, generator=torch.Generator().manual_seed(0)
    )
    assert w.shape == (count, n, n) and float(w.mean(dim=(1, 2)).abs().max()) < 1e-12
    lam = grf_spectrum(n, 2.5, 7.0, 7.0**1.5)
    power = (torch.fft.fft2(w).abs() ** 2).mean(0) / n**4
    for m in [(1, 0), (0, 1), (1, 1), (2, 3), (5, 1), (-3, 2)]:
        assert float(power[m] / lam[m]) == pytest.approx(1.0, abs=0.08), (
            m
        )  # 4000 samples: ~2% noise
    again = gaussian_random_field(n, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, w[:2])


def test_truncation_is_exact_for_band_limited_fields():
    assert torch.allclose(truncate(_smooth(64), 16), _smooth(16), atol=1e-12)
    assert torch.allclose(truncate(_smooth(64), 64), _smooth(64))
    with pytest.raises(ValueError, match="resolution"):
        truncate(_smooth(16), 32)


def test_dataset_round_trip_is_lazy_and_reads_at_lower_resolution(tmp_path):
    import h5py

    w = (
        torch.stack([_smooth(32) * s for s in range(1, 6)])[:, None].repeat(1, 3, 1, 1).numpy()
    )  # (5, 3, 32, 32)
    settings = {"nu": 1e-3, "alpha": 2.5, "tau": 7.0, "seed": 4}
    path = write(tmp_path / "d.h5", {"w": w}, settings=settings, n_train=4)
    with h5py.File(path) as f:
        assert f["w"].chunks == (1, 3, 32, 32)  # one sample per chunk
    ds = Dataset(path)
    assert isinstance(ds.fields["w"], h5py.Dataset)  # nothing loaded yet
    assert len(ds) == 5 and list(ds.train) == [0, 1, 2, 3] and list(ds.test) == [4]
    assert ds.settings == settings
    np.testing.assert_array_equal(ds[2]["w"].numpy(), w[2])
    np.testing.assert_array_equal(
        ds[[3, 0, 2]]["w"].numpy(), w[[3, 0, 2]]
    )  # a list, in its own order
    low = Dataset(path, resolution=16)
    assert low[1:3]["w"].shape == (2, 3, 16, 16)
    assert torch.allclose(low[1]["w"][0], 2 * _smooth(16), atol=1e-12)
    ds.close()
    low.close()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Dataset(tmp_path / "none.h5")
    with pytest.raises(ValueError, match="n_train"):
        write(tmp_path / "e.h5", {"w": w}, settings={}, n_train=5)


def test_h_minus_one_norm_is_parseval_with_the_h_minus_one_weight():
    from pdeml.operators.losses import ALPHA, h_minus_one_squared

    X, Y = _grid(16)
    R = (
        0.5
        + torch.cos(2 * math.pi * (2 * X + Y))
        + torch.sin(2 * math.pi * 3 * X)
        + 0.25 * torch.cos(2 * math.pi * 8 * Y)
    )
    frames = R.expand(1, 7, 16, 16)
    expected = (
        7
        * 0.1
        * (
            0.25 / ALPHA
            + 0.5 / (ALPHA + 4 * math.pi**2 * 5)
            + 0.5 / (ALPHA + 4 * math.pi**2 * 9)
            + 0.0625 / (ALPHA + 4 * math.pi**2 * 64)
        )
    )
    assert float(h_minus_one_squared(frames, 0.1)[0]) == pytest.approx(expected, rel=1e-12)
    # H^-1, not H^-1/2: a mode's weight falls like 1/|k|^2
    X, _ = _grid(32)
    one = h_minus_one_squared(torch.cos(2 * math.pi * 4 * X).expand(1, 1, 32, 32), 1.0)
    two = h_minus_one_squared(torch.cos(2 * math.pi * 8 * X).expand(1, 1, 32, 32), 1.0)
    assert float(one / two) == pytest.approx(
        (ALPHA + 4 * math.pi**2 * 64) / (ALPHA + 4 * math.pi**2 * 16)
    )


def test_residual_vanishes_on_the_solvers_trajectories_and_grows_linearly_with_errors():
    from pdeml.families.navier_stokes import NavierStokesFamily
    from pdeml.operators.losses import h_minus_one_squared

    n = 64
    f = kolmogorov_forcing(n)
    traj = solve(
        gaussian_random_field(n, 2, generator=torch.Generator().manual_seed(0)),
        nu=1e-3,
        forcing=f,
        dt=1e-3,
        steps=400,
        record_every=10,
    )  # frames every 0.01
    family = NavierStokesFamily(n, frames=41, frame_dt=0.01, dt=1e-3)
    norm = lambda w: h_minus_one_squared(family.residual(w), 0.01).sqrt()
    scale = h_minus_one_squared((traj[:, 2:] - traj[:, :-2]) / 0.02, 0.01).sqrt()
    assert float((norm(traj) / scale).max()) < 1e-3  # 1e-4 measured
    eta = gaussian_random_field(n, 2 * 41, generator=torch.Generator().manual_seed(5)).reshape(
        2, 41, n, n
    )
    grown = [norm(traj + eps * eta) for eps in (1e-3, 1e-2, 1e-1)]
    for small, large in zip(grown, grown[1:]):
        assert torch.allclose(large / small, torch.full_like(small, 10.0), rtol=0.1)


def test_minibatches_cover_each_epoch_once_and_resume_exactly(tmp_path):
    from pdeml.datasets import Minibatches

    w = np.arange(12, dtype=float)[:, None, None, None] * np.ones((12, 2, 8, 8))  # sample i holds i
    path = write(tmp_path / "d.h5", {"w": w}, settings={}, n_train=10)
    settings = Minibatches(path, 3)
    run = settings.init(None, np.random.default_rng(0))
    seen = [sorted(run.batch(s)["data"]["w"][:, 0, 0, 0].astype(int)) for s in range(6)]
    epoch1 = sorted(i for b in seen[:3] for i in b)
    assert len(set(epoch1)) == 9 and max(epoch1) < 10  # no repeats, never a test sample
    assert run.epoch == 1 and not hasattr(settings, "order")
    state = run.state_dict()
    more = [run.batch(s)["data"]["w"][:, 0, 0, 0] for s in range(6, 10)]
    again = Minibatches(path, 3).init(None, np.random.default_rng(99))
    again.load_state_dict(state)
    assert all(
        np.array_equal(a, again.batch(s)["data"]["w"][:, 0, 0, 0])
        for s, a in zip(range(6, 10), more)
    )
    low = Minibatches(path, 2, resolution=4).init(None, np.random.default_rng(0))
    assert low.current()["data"]["w"].shape == (2, 2, 4, 4)
    with pytest.raises(ValueError, match="batch_size"):
        Minibatches(path, 11).init(None, np.random.default_rng(0))


def test_interpolation_is_exact_for_band_limited_fields_and_inverts_truncation():
    from pdeml.datasets import interpolate

    assert torch.allclose(interpolate(_smooth(16), 64), _smooth(64), atol=1e-12)
    w = gaussian_random_field(32, 2, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(
        truncate(interpolate(truncate(w, 16), 32), 16), truncate(w, 16), atol=1e-12
    )
    with pytest.raises(ValueError, match="resolution"):
        interpolate(_smooth(16), 8)


def test_one_pde_definition_gives_the_same_residual_to_a_pinn_and_to_the_grid():
    """The family's ``pde`` is written once: evaluated by autograd at points (a PINN's Field) and
    spectrally on the grid (GridField), it gives the same residual. The field is quadratic in
    time (central differences are exact) and band-limited well inside the 2/3 rule."""
    import pdeml as pl
    from pdeml.families.navier_stokes import NavierStokesFamily
    from pdeml.grid import GridField

    fam, n, dt, two_pi = NavierStokesFamily(16, frames=5), 16, 0.1, 2 * math.pi

    def fields(x):  # w and psi with -lap psi = w, on (..., 3) points (x, y, t)
        X, Y, T = x[..., 0:1], x[..., 1:2], x[..., 2:3]
        a, b = 1 + 0.5 * T - 2 * T**2, 0.3 - T + T**2
        w = a * torch.sin(two_pi * X) * torch.cos(two_pi * Y) + b * torch.cos(two_pi * (X + 2 * Y))
        psi = a * torch.sin(two_pi * X) * torch.cos(two_pi * Y) / (8 * math.pi**2) + b * torch.cos(
            two_pi * (X + 2 * Y)
        ) / (20 * math.pi**2)
        return torch.cat([w, psi], -1)

    g = torch.arange(n, dtype=D64) / n
    T, X, Y = torch.meshgrid(dt * torch.arange(5, dtype=D64), g, g, indexing="ij")
    values = fields(torch.stack([X, Y, T], -1))  # (5, n, n, 2)
    grid = GridField({"w": values[None, ..., 0], "psi": values[None, ..., 1]}, dt)
    on_grid = fam.pde(grid.x, grid)[0, ..., 0]  # frames 1..3
    x = grid.x.reshape(-1, 3).clone().requires_grad_(True)
    field = pl.Field(
        x,
        fields(x),
        estimator=pl.derivatives.Autograd(),
        input_names=("x", "y", "t"),
        output_names=("w", "psi"),
        spatial_dims=(0, 1),
    )
    by_autograd = fam.pde(x, field).reshape(3, n, n).detach()
    assert float(by_autograd.abs().max()) > 0.1  # advection and forcing are there
    torch.testing.assert_close(on_grid, by_autograd, rtol=0, atol=1e-11)
    poisson = fam.pinn_pde(x, field)[1]
    assert float(poisson.detach().abs().max()) < 1e-12  # -lap psi = w holds
    # and the family's residual is that pde, dealiased
    torch.testing.assert_close(
        fam.residual(values[None, ..., 0], dt)[0], on_grid, rtol=0, atol=1e-11
    )


def test_the_physics_term_is_small_on_the_solvers_trajectories_and_grows_with_errors():
    from pdeml.families.navier_stokes import NavierStokesFamily
    from pdeml.operators.losses import relative_residual

    fam = NavierStokesFamily(32, frames=15, frame_dt=0.1, dt=2e-3)
    traj = fam.generate(2, torch.Generator().manual_seed(1))["w"]
    a, y = traj[:, :5], traj[:, 5:]
    clean = float(relative_residual(fam, a, y, y))
    assert clean < 1e-3  # 2e-4 measured: central differences
    g = torch.Generator().manual_seed(2)
    noisy = [
        float(
            relative_residual(
                fam, a, y + eps * y.std() * torch.randn(y.shape, generator=g, dtype=y.dtype), y
            )
        )
        for eps in (1e-2, 1e-1)
    ]
    assert noisy[0] > 50 * clean and noisy[1] == pytest.approx(
        10 * noisy[0], rel=0.3
    )  # linear in the error
    frozen = float(relative_residual(fam, a, a[:, -1:].expand_as(y), y))  # "nothing moves" is wrong
    assert frozen > 0.5


def _dataset(tmp_path, family, samples=6, n_train=4, name="d.h5"):
    from pdeml.datasets import write
    from pdeml.settings import describe

    w = np.zeros((samples, 3, family.n, family.n))
    return write(tmp_path / name, {"w": w}, settings={"family": describe(family)}, n_train=n_train)


@pytest.mark.parametrize(
    "attr, value, says",
    [
        ("format", 99, "has format 99"),
        ("n_train", 100, "n_train=100, not a split of its 6 samples"),
        ("n_train", 0, "n_train=0"),
        ("n_train", -1, "n_train=-1"),
        ("n_train", 6, "n_train=6"),
        ("settings", "{not json", "unreadable generator settings"),
    ],
)
def test_an_edited_dataset_is_refused_naming_what_is_wrong(tmp_path, attr, value, says):
    import h5py

    from pdeml.datasets import Dataset
    from pdeml.families.navier_stokes import NavierStokesFamily

    path = _dataset(tmp_path, NavierStokesFamily(n=8, frames=3))
    with h5py.File(path, "r+") as f:
        f.attrs[attr] = value
    with pytest.raises(ValueError, match=says):
        Dataset(path)


def test_data_of_another_family_or_other_settings_is_refused_before_training(tmp_path):
    """A file generated for another family, or with another viscosity or grid, used to train
    silently (or crash obscurely): the run's batches check the file's recorded generator
    settings against the case's family and name each one that differs."""
    from pdeml.datasets import Minibatches
    from pdeml.families.navier_stokes import NavierStokesFamily

    case = NavierStokesFamily(n=8, frames=3)
    ok = _dataset(tmp_path, case)
    run = Minibatches(str(ok), 2).init(case, np.random.default_rng(0))
    assert run.batch(0)["data"]["w"].shape == (2, 3, 8, 8)
    other = _dataset(tmp_path, NavierStokesFamily(n=8, frames=3, nu=1e-4), name="nu.h5")
    with pytest.raises(ValueError, match=r"nu: file 0.0001, case 0.001"):
        Minibatches(str(other), 2).init(case, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"n: file 8, case 16"):
        Minibatches(str(ok), 2).init(NavierStokesFamily(n=16, frames=3), np.random.default_rng(0))
    from pdeml.families.star_poisson import StarFamily

    with pytest.raises(ValueError, match="generated for 'NavierStokesFamily', not .*'StarFamily'"):
        Minibatches(str(ok), 2).init(StarFamily(n=8), np.random.default_rng(0))
    with pytest.raises(IsADirectoryError, match="is a directory"):
        Minibatches(str(tmp_path), 2).init(case, np.random.default_rng(0))


def test_a_dataset_with_nan_or_missing_fields_is_named_not_blamed_on_the_learning_rate(tmp_path):
    import h5py

    from pdeml.datasets import Minibatches
    from pdeml.families.navier_stokes import NavierStokesFamily

    fam = NavierStokesFamily(n=8, frames=3)
    path = _dataset(tmp_path, fam)
    with h5py.File(path, "r+") as f:
        f["w"][2, 1, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"holds NaN/inf in field 'w' \(samples \[2\]"):
        Minibatches(str(path), 4).init(fam, np.random.default_rng(0))  # all 4 training samples
    other = _dataset(tmp_path, NavierStokesFamily(n=8, frames=3), name="v.h5")
    with h5py.File(other, "r+") as f:
        f["v"] = f["w"][()]
        del f["w"]
    with pytest.raises(
        ValueError, match=r"holds the fields \{'v': \(3, 8, 8\)\}, not the family's"
    ):
        Minibatches(str(other), 2).init(fam, np.random.default_rng(0))
