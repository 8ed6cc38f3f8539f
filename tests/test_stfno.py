"""ST-FNO: any number of frames in and out, and the last-frame skip."""

import torch

from pdeml.operators.stfno import STFNONet


def test_any_number_of_frames_in_and_out_on_any_grid():
    torch.manual_seed(0)
    net = STFNONet(6, 3, width=8, layers=3, latent_steps=10, out_steps=12)
    w = torch.randn(2, 10, 16, 16)
    assert net(w).shape == (2, 12, 16, 16)
    assert net(w, out_steps=30).shape == (2, 30, 16, 16)
    assert net(w[:, :7]).shape == (2, 12, 16, 16)  # fewer input frames
    assert net(torch.randn(2, 10, 32, 32)).shape == (2, 12, 32, 32)  # a finer grid


def test_the_output_is_the_last_frame_plus_what_the_out_layer_adds():
    torch.manual_seed(1)
    net = STFNONet(6, 3, width=8, layers=2, latent_steps=10, out_steps=5)
    w = torch.randn(3, 10, 16, 16)
    with torch.no_grad():
        net.out_conv.weight.zero_()
        net.out_conv.bias.zero_()
    out = net(w)
    assert torch.equal(out, w[:, -1:].expand(3, 5, 16, 16))
    with torch.no_grad():  # a spectral bias alone: a source term
        net.out_conv.bias[0, 0, 0, 0, 0] = 1.0
    moved = net(w) - w[:, -1:]
    assert float(moved.abs().max()) > 0 and torch.allclose(
        moved, moved[:, :, :1, :1].expand_as(moved), atol=1e-6
    )


def test_building_in_float32_or_float64_keeps_the_spectral_weights_complex():
    from pdeml.families.navier_stokes import family
    from pdeml.operators.backend import STFNO

    for dtype, cdtype in ((torch.float32, torch.complex64), (torch.float64, torch.complex128)):
        be = STFNO(t_in=4, t_out=4, modes=4, modes_t=2, width=4, layers=2).build(
            family(16), dtype=dtype
        )
        w = be.net.lift_conv.weight
        assert (
            w.dtype == cdtype and float(w.imag.abs().max()) > 0
        )  # Module.to(float) would zero them
        assert be.net.lift.weight.dtype == dtype


def test_a_float64_operator_predicts_in_float64():
    import numpy as np

    from pdeml.families.navier_stokes import family
    from pdeml.operators.backend import STFNO

    be = STFNO(t_in=4, t_out=3, modes=4, modes_t=2, width=4, layers=2).build(
        family(16), dtype=torch.float64
    )
    out = be.predict(np.random.default_rng(0).standard_normal((2, 4, 16, 16)))
    assert out.shape == (2, 3, 16, 16) and out.dtype == np.float64
