"""Spectral convolution against a direct DFT, and the layer as a map of functions."""

import itertools
import math

import numpy as np
import pytest
import torch

from pdeml.operators.fno import SpectralConv


def _direct(x, weight, modes):
    """The layer written out: coefficients by the DFT sum, each kept mode multiplied by its
    matrix, the real field summed back (rfft's half spectrum: ky > 0 counts twice)."""
    B, C, nx, ny = x.shape
    X = np.arange(nx)[:, None] / nx
    Y = np.arange(ny)[None, :] / ny
    out = np.zeros((B, weight.shape[2], nx, ny))
    mx, my = modes
    for corner, kxs in ((0, range(0, mx)), (1, range(-mx, 0))):
        for kx, ky in itertools.product(kxs, range(0, my)):
            phase = np.exp(-2j * math.pi * (kx * X + ky * Y))
            coef = (x * phase).sum(axis=(-2, -1)) / (nx * ny)  # (B, C)
            col = kx if kx >= 0 else kx + mx  # index inside the corner block
            yk = coef @ weight[corner, :, :, col, ky]  # (B, C_out)
            wave = np.exp(2j * math.pi * (kx * X + ky * Y))
            out += (1 if ky == 0 else 2) * np.real(yk[:, :, None, None] * wave)
    return out


def test_spectral_convolution_matches_the_direct_dft():
    torch.manual_seed(0)
    conv = SpectralConv(2, 3, (3, 2)).double()
    x = torch.randn(2, 2, 8, 6, dtype=torch.float64)
    ours = conv(x).detach().numpy()
    ref = _direct(x.numpy(), conv.weight.detach().numpy().astype(np.complex128), (3, 2))
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_a_band_limited_function_is_mapped_to_the_same_function_on_any_grid():
    torch.manual_seed(1)
    conv = SpectralConv(1, 1, (4, 4, 3)).double()

    def field(n, nt):
        s, st = torch.arange(n, dtype=torch.float64) / n, torch.arange(nt, dtype=torch.float64) / nt
        x, y, t = torch.meshgrid(s, s, st, indexing="ij")
        return (
            torch.sin(2 * math.pi * (x + 2 * y)) * torch.cos(2 * math.pi * t)
            + torch.cos(2 * math.pi * 3 * y)
        )[None, None]

    coarse = conv(field(16, 8))
    fine = conv(field(32, 16))
    on_fine = conv(field(16, 8), out_shape=(32, 32, 16))  # coarse input, fine output
    assert torch.allclose(fine[..., ::2, ::2, ::2], coarse, atol=1e-12)
    assert torch.allclose(on_fine, fine, atol=1e-12)
    with pytest.raises(ValueError, match="modes"):
        conv(field(6, 8))


def test_a_trained_fno_is_resolution_invariant():
    """Learn the heat semigroup e^{tΔ} on periodic fields at 16², evaluate at 32²: the fine-grid
    output matches the coarse one interpolated (1.5% measured) and the truth as well as the
    coarse grid does (4%)."""
    from pdeml.datasets import interpolate, truncate
    from pdeml.operators.fno import FNO
    from pdeml.random_fields import gaussian_random_field

    def heat(a, t=2e-3):
        n = a.shape[-1]
        m = torch.fft.fftfreq(n, d=1.0 / n, dtype=a.dtype)
        k2 = 4 * math.pi**2 * (m[:, None] ** 2 + m[None, :] ** 2)
        return torch.fft.ifft2(torch.fft.fft2(a) * torch.exp(-k2 * t)).real

    def rel(p, q):
        return float(((p - q).flatten(1).norm(dim=1) / q.flatten(1).norm(dim=1)).mean())

    torch.manual_seed(0)
    a32 = gaussian_random_field(32, 160, generator=torch.Generator().manual_seed(0)).float()
    a16 = truncate(a32, 16)
    u16 = heat(a16)
    model = FNO(1, 1, (8, 8), width=16, layers=2)
    opt = torch.optim.Adam(model.parameters(), 5e-3)
    for _ in range(300):
        idx = torch.randint(0, 128, (16,))
        pred = model(a16[idx, None])[:, 0]
        loss = ((pred - u16[idx]).flatten(1).norm(dim=1) / u16[idx].flatten(1).norm(dim=1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        coarse, fine = model(a16[128:, None])[:, 0], model(a32[128:, None])[:, 0]
    interpolated = interpolate(coarse, 32)
    err16, err32 = rel(coarse, heat(a16[128:])), rel(fine, heat(a32[128:]))
    assert err16 < 0.08 and err32 < 1.5 * err16
    assert rel(fine, interpolated) < 0.04


def test_an_operator_trains_under_fit_on_minibatches_and_resumes_bit_for_bit(tmp_path):
    """The backend contract carries operators too: a minimal trainable backend (an FNO mapping
    one vorticity frame to the next) trains under ``fit`` on dataset minibatches, and an
    interrupted run resumed from its checkpoint ends with the uninterrupted run's weights."""
    import numpy as np
    from test_training import StopAt

    import pdeml as pl
    from pdeml.datasets import Minibatches, write
    from pdeml.families.navier_stokes import kolmogorov_forcing, solve
    from pdeml.operators.fno import FNO
    from pdeml.operators.losses import relative_l2
    from pdeml.random_fields import gaussian_random_field

    w0 = gaussian_random_field(16, 24, generator=torch.Generator().manual_seed(0))
    traj = solve(w0, nu=1e-3, forcing=kolmogorov_forcing(16), dt=1e-3, steps=40, record_every=20)
    path = write(tmp_path / "d.h5", {"w": traj.float().numpy()}, settings={"n": 16}, n_train=20)

    class NextFrame(pl.AbstractTrainable):
        def __init__(self, seed):
            super().__init__()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = FNO(1, 1, (6, 6), width=8, layers=2)

        term_names = ["data"]

        def forward(self, a):
            return self.model(a[:, None])[:, 0]

        def losses(self, batch, residuals=None):
            w = batch["data"]["w"]
            return {"data": relative_l2(self(w[:, 0]), w[:, 1])}

        def batches(self, sampler, rng):
            return sampler.init(None, rng)

        def predict(self, x):
            with torch.no_grad():
                return self(torch.as_tensor(x, dtype=torch.float32)).numpy()

    def run(out, stop=None, resume=False):
        be = NextFrame(seed=3)
        r = pl.fit(
            be,
            [(12, pl.FirstOrder(pl.Adam(3e-3)))],
            sampler=Minibatches(path, 4),
            seed=1,
            checkpoint=out / "checkpoint.pt",
            eval_every=1,
            resume=resume,
            callbacks=[StopAt(stop)] if stop else [],
        )
        return be, r

    ref, ref_r = run(tmp_path / "a")
    assert ref_r.history[-1]["loss"] < ref_r.history[0]["loss"]
    run(tmp_path / "b", stop=7)
    again, again_r = run(tmp_path / "b", resume=True)
    for p, q in zip(ref.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p, q)
    assert [h["loss"] for h in again_r.history] == [h["loss"] for h in ref_r.history]
    assert np.isfinite(again.predict(traj[20:, 0].float().numpy())).all()
