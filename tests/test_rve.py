"""The periodic RVE solver (issue 18's truth): the consistent tangent, the patch test, bounds on
the linear composite, mesh convergence of the homogenized stress, Newton's convergence and
periodicity."""
import numpy as np
import pytest

from solvers.rve import MATRIX, RVE, from_voigt_strain, linear_law, matrix_law, voigt

SOFT = {"K": MATRIX["K"], "G": MATRIX["c1"] / MATRIX["c2"] / 2}     # the matrix's small-strain moduli


def test_matrix_tangent_is_the_derivative_of_its_stress():
    rng = np.random.default_rng(0)
    eps = from_voigt_strain(rng.uniform(-0.04, 0.04, (5, 3)))
    _, C = matrix_law(eps)
    h = 1e-7
    for k, l in ((0, 0), (1, 1), (0, 1)):
        d = np.zeros((2, 2))
        d[k, l] = d[l, k] = h / (2 if k != l else 1)
        fd = (matrix_law(eps + d)[0] - matrix_law(eps - d)[0]) / (2 * h)
        an = np.einsum("...ijkl,kl->...ij", C, d / h)
        np.testing.assert_allclose(an, fd, rtol=1e-6, atol=1e-4)
    sig, C = linear_law(eps, 10.0, 3.0)                          # and the linear law is its own tangent
    np.testing.assert_allclose(np.einsum("...ijkl,...kl->...ij", C, eps), sig, rtol=1e-12)


@pytest.mark.parametrize("law", [("linear", SOFT), ("nonlinear", MATRIX)])
def test_patch_test_homogeneous_cell_gives_the_material_law(law):
    rve = RVE(n=2, matrix=law, inclusion=law)
    strain = np.array([0.012, -0.007, 0.01])
    out = rve.solve(strain)
    fn = linear_law if law[0] == "linear" else matrix_law
    expect = voigt(fn(from_voigt_strain(strain), **law[1])[0])
    np.testing.assert_allclose(out["stress"], expect, rtol=1e-10)
    assert np.abs(out["u"]).max() < 1e-12
    np.testing.assert_allclose(out["strain_qp"], np.broadcast_to(from_voigt_strain(strain), out["strain_qp"].shape),
                               atol=1e-12)


def test_linear_composite_bulk_modulus_lies_between_hashin_shtrikman_bounds():
    """In-plane hydrostatic strain: k = σ̄_xx / 2e, against the bounds for the mesh's own inclusion
    fraction (a polygon inside the circle). Measured: 1.4e-4 above the lower bound (a square
    array is barely stiffer than the composite-cylinder assemblage, which attains it)."""
    K1, G1 = SOFT["K"], SOFT["G"]
    K2, G2 = 43452.0, 29918.0
    k1, k2 = K1 + G1 / 3, K2 + G2 / 3
    for n in (2, 4):
        rve = RVE(n=n, matrix=("linear", SOFT))
        fe = rve._fe
        f = float(fe.basis.dx[fe.phase].sum())
        out = rve.solve([0.01, 0.01, 0.0])
        k = out["stress"][0] / 0.02
        lower = k1 + f / (1 / (k2 - k1) + (1 - f) / (k1 + G1))
        upper = k2 + (1 - f) / (1 / (k1 - k2) + f / (k2 + G2))
        assert lower < k < min(upper, (1 - f) * k1 + f * k2) and (k - lower) / lower < 1e-3, (n, k, lower, upper)
        assert abs(out["stress"][0] - out["stress"][1]) < 1e-9 * k and abs(out["stress"][2]) < 1e-9 * k


def test_homogenized_stress_converges_under_refinement():
    strain = [0.02, -0.01, 0.015]
    s = {n: RVE(n=n).solve(strain)["stress"] for n in (2, 4, 8)}
    d1, d2 = np.linalg.norm(s[2] - s[4]), np.linalg.norm(s[4] - s[8])
    assert d1 / d2 > 3 and d2 / np.linalg.norm(s[8]) < 5e-3, (d1, d2)      # measured ~4.4 (second order)


def test_newton_converges_fast_at_the_largest_strains_and_u_is_periodic():
    rve = RVE(n=2)
    out = rve.solve([0.04, -0.04, 0.04])
    assert out["iterations"] <= 6 and out["residual"] < 1e-10
    fe = rve._fe
    loc, u = fe.basis.doflocs, out["u"]
    right = np.flatnonzero(np.abs(loc[0] - 0.5) < 1e-12)
    for i in right:                                          # each right DOF equals its twin on the left
        j = np.flatnonzero((np.abs(loc[0] + 0.5) < 1e-12) & (np.abs(loc[1] - loc[1, i]) < 1e-12))
        assert np.isclose(u[i], u[j]).any()
    assert np.abs(u).max() > 1e-4                            # a real fluctuation, not zero


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="strain"):
        RVE(n=2).solve([0.1, 0.2])
    with pytest.raises(ValueError, match="fraction"):
        RVE(fraction=0.9)
    with pytest.raises(ValueError, match="matrix"):
        RVE(matrix="rubber")


def test_solved_stresses_and_their_combinations_are_equilibrated_to_round_off():
    rve = RVE(n=2)
    rng = np.random.default_rng(1)
    snaps = [rve.solve(e)["stress_qp"] for e in rng.uniform(-0.04, 0.04, (4, 3))]
    assert max(rve.equilibrium_residual(s) for s in snaps) < 1e-10
    mix = sum(c * s for c, s in zip(rng.normal(size=4), snaps))
    assert rve.equilibrium_residual(mix) < 1e-10
    strain = rve.solve([0.03, 0.0, 0.0])["strain_qp"]
    assert rve.equilibrium_residual(rve.law(strain * 1.1, rve._fe.phase)[0]) > 1e-3   # a non-solution is not
