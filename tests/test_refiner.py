"""Spectral-Refiner: the grown output layer starts as the trained one, and fine-tuning on the
H⁻¹ residual at a finer grid lowers the residual without touching the trained network."""

import torch

from pdeml.datasets import interpolate
from pdeml.families.navier_stokes import family, kolmogorov_forcing, solve
from pdeml.operators.losses import relative_l2
from pdeml.operators.refiner import grow, refine
from pdeml.operators.stfno import STFNONet


def test_grow_keeps_the_trained_modes():
    torch.manual_seed(0)
    net = STFNONet(4, 3, width=4, layers=2, out_steps=6)
    with torch.no_grad():
        net.out_conv.bias.normal_()
    big = grow(net.out_conv, (8, 8, 5))
    assert big.weight.shape[-3:] == (8, 8, 5) and big.bias_scale == net.out_conv.bias_scale
    assert torch.equal(big.weight[0, :, :, :4, :4, :3], net.out_conv.weight[0])  # (+, +) corner
    assert torch.equal(big.weight[1, :, :, :4, -4:, :3], net.out_conv.weight[1])  # (+, -) corner
    assert torch.equal(big.bias[3, :, -4:, -4:, :3], net.out_conv.bias[3])  # (-, -) corner
    assert float(big.weight[0, :, :, 4:].abs().max()) <= 2e-6  # new modes ~ 0
    x = torch.randn(2, 1, 16, 16, 12)
    assert torch.allclose(big(x), net.out_conv(x), atol=1e-4)


def test_refining_at_a_finer_grid_lowers_the_residual_and_leaves_the_network_alone():
    torch.manual_seed(0)
    traj = family(16).generate(2, torch.Generator().manual_seed(0))["w"].float()  # (2, 50, 16, 16)
    net = STFNONet(6, 3, width=8, layers=3, latent_steps=10, out_steps=20)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(150):
        loss = relative_l2(net(traj[:, :10]), traj[:, 10:30])
        opt.zero_grad()
        loss.backward()
        opt.step()
    # the truth at 32²: the same initial vorticity (band-limited, so exact on the finer grid),
    # solved there
    fine = solve(
        interpolate(traj[:, 0].double(), 32),
        nu=1e-3,
        forcing=kolmogorov_forcing(32),
        dt=1e-3,
        steps=2900,
        record_every=100,
    ).float()
    inp, truth = fine[:, :10], fine[:, 10:30]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        err_before = float(relative_l2(net(inp), truth))
    errors, losses = [], []
    for b in range(2):  # one trajectory at a time: each gets its own layer
        pred, conv, hist = refine(
            net,
            inp[b : b + 1],
            lambda w, dt: family(32).residual(w.double(), dt).float(),
            frame_dt=0.1,
            modes=(10, 10, 8),
            out_steps=20,
            iterations=300,
        )
        errors.append(float(relative_l2(pred, truth[b : b + 1])))
        losses.append(hist[-1] / hist[0])
    assert max(losses) < 1e-2  # the squared H^-1 norm / 200 and / 6000 measured
    assert max(errors) < err_before / 6  # 2.2% -> 0.14%, 0.12% measured
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert conv.modes == (10, 10, 8)


def test_the_residual_on_a_finer_time_grid_is_the_same_prediction():
    """``substeps``: the head sampled between frames (exact trigonometric interpolation in time)
    returns the frames themselves at every ``substeps``-th time."""
    torch.manual_seed(0)
    net = STFNONet(4, 3, width=4, layers=2, out_steps=6)
    w = torch.randn(2, 10, 16, 16)
    latent = net.latent(w)
    coarse, fine = net.head(latent, w, 6), net.head(latent, w, 6, substeps=3)
    assert fine.shape == (2, 18, 16, 16)
    torch.testing.assert_close(fine[:, 2::3], coarse)
    assert not torch.allclose(fine[:, 0::3], coarse, atol=1e-3)  # in between: new times
