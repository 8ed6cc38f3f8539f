"""EquiNO's core (issue 18, in progress): stress modes and every network's stress are
equilibrated to round-off, the macro tangent is the derivative of σ̄, and unsupervised training
brings σ̄ toward the RVE's on held-out strains."""

import numpy as np
import pytest
import torch

from pdeml.operators.equino import (
    EquiNONet,
    fit_strains,
    latin_hypercube,
    pod,
    snapshots,
)
from pdeml.solvers.rve import RVE, from_voigt_strain


@pytest.fixture(scope="module")
def setup():
    rve = RVE(n=2)
    return rve, snapshots(rve, latin_hypercube(40, seed=0))


def test_stress_modes_and_any_network_stress_are_equilibrated(setup):
    rve, snaps = setup
    net = EquiNONet(rve, snaps, modes=12)
    modes = net.phi_sig.numpy()
    assert max(rve.equilibrium_residual(m) for m in modes) < 1e-10
    _, sig_c, sig_eq = net.fields(torch.as_tensor(latin_hypercube(4, seed=5)))
    assert max(rve.equilibrium_residual(s) for s in sig_eq.detach().numpy()) < 1e-10
    assert (
        min(rve.equilibrium_residual(s) for s in sig_c.detach().numpy()) > 1e-4
    )  # the law's stress is not
    # the POD is a truncated SVD: the modes are orthonormal and reproduce the snapshots they came
    # from
    U, s = pod(snaps["u"].T, 40)
    np.testing.assert_allclose(U.T @ U, np.eye(40), atol=1e-10)
    np.testing.assert_allclose(
        U @ (U.T @ snaps["u"].T), snaps["u"].T, atol=1e-10 * np.abs(snaps["u"]).max()
    )


def test_macro_tangent_is_the_derivative_of_the_macro_stress(setup):
    rve, snaps = setup
    net = EquiNONet(rve, snaps, modes=8)
    e = torch.as_tensor(latin_hypercube(3, seed=7))
    T = net.tangent(e)
    h = 1e-6
    for j in range(3):
        d = torch.zeros(3, dtype=torch.float64)
        d[j] = h
        fd = (net(e + d) - net(e - d)) / (2 * h)
        torch.testing.assert_close(T[:, :, j], fd, rtol=1e-6, atol=1e-6)


def test_unsupervised_training_approaches_the_rve_stress(setup):
    """The loss never sees an RVE stress; σ̄ on 10 held-out strains improves from the untrained
    network's (measured: 1.0 -> 0.033 mean relative error with 40 snapshots on the coarsest mesh,
    0.11 with the paper's Euclidean loss; the accuracy targets are the benchmark's)."""
    rve, snaps = setup
    torch.manual_seed(0)
    net = EquiNONet(rve, snaps, modes=12)
    test = latin_hypercube(10, seed=99)
    truth = snapshots(rve, test)["stress"]

    def error():
        p = net(torch.as_tensor(test)).detach().numpy()
        return float(np.mean(np.linalg.norm(p - truth, axis=1) / np.linalg.norm(truth, axis=1)))

    before = error()
    hist = [
        r["constitutive"]
        for r in fit_strains(
            net, latin_hypercube(100, seed=1), steps=400, lbfgs=100, lr=3e-3
        ).history
    ]
    after = error()
    assert hist[-1] < 1e-4 * hist[0] and after < 0.15 and after < before / 5, (
        before,
        after,
        hist[0],
        hist[-1],
    )
    eps, _, _ = net.fields(torch.as_tensor(test[:1]))
    avg = (eps[0].detach().numpy() * rve._fe.basis.dx[..., None, None]).sum(
        (0, 1)
    )  # <ε> = ε̄: periodic
    np.testing.assert_allclose(avg, from_voigt_strain(test[0]), atol=1e-12)


def test_trains_through_fit_with_lbfgs_on_every_strain_and_exports(tmp_path):
    import meshio

    import pdeml as pl
    from pdeml.families.rve import RVEFamily
    from pdeml.operators.equino import EquiNO

    backend = EquiNO(modes=8, snapshots=30, strains=40, batch_size=10, test=6).build(
        RVEFamily(n=2), seed=0
    )
    sizes = []
    losses = backend.losses
    backend.losses = lambda batch, residuals=None: (
        sizes.append(len(batch["data"]["strain"])),
        losses(batch),
    )[1]
    before = backend.errors().mean()
    pl.fit(backend, [(400, pl.FirstOrder(pl.Adam(3e-3))), (100, pl.LBFGS())], seed=0)
    after = backend.errors().mean()
    assert set(sizes[:400]) == {10} and set(sizes[400:]) == {
        40
    }  # Adam: batches; L-BFGS: all strains
    assert after < before / 3, (before, after)
    files = backend.export(tmp_path, 0, sample=2)
    m = meshio.read(files[0])
    assert {"stress", "stress_rve", "mismatch", "phase"} <= set(m.cell_data)
    areas = backend.problem.rve._fe.basis.dx.sum(1)
    avg = (m.cell_data["stress"][0] * areas[:, None]).sum(0) / areas.sum()
    np.testing.assert_allclose(
        avg, backend.predict(backend.test_set()["strain"][2:3])[0], rtol=1e-10
    )
    assert (
        np.abs(m.point_data["equilibrium_residual"]).max()
        < 1e-9 * np.abs(m.cell_data["stress"][0]).max()
    )


def test_case_options_reach_the_method_and_float32_is_refused():
    from pdeml.run import load_case

    case, _ = load_case("equino_rve", {"n": 2, "solves": 12, "modes": 6})
    assert case.problem.rve.n == 2 and case.method.snapshots == 12 and case.method.modes == 6
    assert case.dtype == "float64"
    with pytest.raises(ValueError, match="dtype"):
        case.method.build(case.problem, dtype=torch.float32)


def test_weak_form_baseline_operator_and_training(setup):
    """The PI baseline's weak-form operator is the assembled periodic internal force (random σ to
    round-off), vanishes on converged stresses, and unsupervised training on it lowers σ̄'s error;
    its stress is equilibrated only as well as it trained (unlike EquiNO's)."""
    from pdeml.operators.equino import WeakFormNet, weak_form_operator

    rve, snaps = setup
    fe = rve._fe
    G = weak_form_operator(rve)
    sig = np.random.default_rng(1).normal(size=fe.basis.dx.shape + (2, 2))
    sig = sig + sig.transpose(0, 1, 3, 2)
    ref = fe.P.T @ fe.internal_force(sig)
    np.testing.assert_allclose(G @ sig.ravel(), ref, atol=1e-13 * np.abs(ref).max())
    assert (
        np.abs(G @ snaps["stress_qp"][5].ravel()).max()
        < 1e-10 * np.abs(snaps["stress_qp"][5]).max()
    )
    torch.manual_seed(0)
    net = WeakFormNet(rve, snaps, modes=8)
    test = latin_hypercube(10, seed=3)
    truth = snapshots(rve, test)["stress"]
    x = torch.as_tensor(test)
    err = lambda: np.linalg.norm(net(x).detach().numpy() - truth) / np.linalg.norm(truth)
    before = err()
    fit_strains(net, latin_hypercube(40, seed=1), steps=200, lbfgs=50)
    after = err()
    assert after < before / 3, (before, after)
    with torch.no_grad():
        _, sig_c = net.constitutive(x, net.displacement_coefficients(x))
    assert min(rve.equilibrium_residual(s) for s in sig_c.numpy()) > 1e-8


def test_energy_norm_weighs_the_phases_by_compliance_and_learns_the_deviatoric_response(setup):
    """The mismatch norm: a pure pressure difference p·I costs p²/κ₀ and a deviatoric one ‖d‖²/2G₀
    of the element's phase (Euclidean: ‖d‖²). Trained with it, EquiNO predicts σ̄ at isochoric
    strains (ε_yy = -ε_xx, what the plate with a hole loads) better than with the paper's
    Euclidean loss, which the stiff inclusion's stresses dominate."""
    from pdeml.operators.equino import small_strain_moduli
    from pdeml.solvers.rve import INCLUSION, MATRIX

    rve, snaps = setup
    net = EquiNONet(rve, snaps, modes=4)
    E, Q = rve._fe.basis.dx.shape
    pI = torch.zeros(1, E, Q, 2, 2, dtype=torch.float64)
    pI[..., 0, 0] = pI[..., 1, 1] = 3.0
    dev = torch.zeros_like(pI)
    dev[..., 0, 1] = dev[..., 1, 0] = 2.0
    inc = rve._fe.phase
    kappa, two_g = (
        np.where(inc, a, b)
        for a, b in zip(
            small_strain_moduli(("linear", INCLUSION)), small_strain_moduli(("nonlinear", MATRIX))
        )
    )
    np.testing.assert_allclose(
        net.mismatch(pI)[0].numpy(), np.repeat((9 / kappa)[:, None], Q, 1), rtol=1e-14
    )
    np.testing.assert_allclose(
        net.mismatch(dev)[0].numpy(), np.repeat((8 / two_g)[:, None], Q, 1), rtol=1e-14
    )
    assert two_g[~inc][0] == pytest.approx(MATRIX["c1"] / MATRIX["c2"])
    rng = np.random.default_rng(4)
    iso = np.stack([e := rng.uniform(-0.03, 0.03, 8), -e, rng.uniform(-0.01, 0.01, 8)], 1)
    truth = snapshots(rve, iso)["stress"]
    err = {}
    for norm in ("energy", "euclidean"):
        torch.manual_seed(0)
        net = EquiNONet(rve, snaps, modes=12, norm=norm)
        fit_strains(net, latin_hypercube(100, seed=1), steps=400, lbfgs=100, lr=3e-3)
        p = net(torch.as_tensor(iso)).detach().numpy()
        err[norm] = float(
            np.mean(np.linalg.norm(p - truth, axis=1) / np.linalg.norm(truth, axis=1))
        )
    assert err["energy"] < 0.7 * err["euclidean"], err  # measured 0.17 against 0.36
    with pytest.raises(ValueError, match="norm"):
        EquiNONet(rve, snaps, modes=4, norm="l1")
