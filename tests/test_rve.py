"""The periodic RVE solver (issue 18's truth): the consistent tangent, the patch test, bounds on
the linear composite, mesh convergence of the homogenized stress, Newton's convergence and
periodicity."""

import numpy as np
import pytest

from pdeml.solvers.rve import MATRIX, RVE, from_voigt_strain, stress_and_tangent, voigt

SOFT = {"K": MATRIX["K"], "G": MATRIX["c1"] / MATRIX["c2"] / 2}  # the matrix's small-strain moduli


def test_tangents_are_the_derivatives_of_the_laws():
    """The matrix's tangent against central differences of its stress, and its closed form
    K I⊗I + g P^D + (g'/s) e⊗e; the linear law's tangent is the isotropic C."""
    rng = np.random.default_rng(0)
    eps = from_voigt_strain(rng.uniform(-0.04, 0.04, (5, 3)))
    sig, C = stress_and_tangent(eps, "nonlinear", MATRIX)
    h = 1e-7
    for k, l in ((0, 0), (1, 1), (0, 1)):
        d = np.zeros((2, 2))
        d[k, l] = d[l, k] = h / (2 if k != l else 1)
        fd = (
            stress_and_tangent(eps + d, "nonlinear", MATRIX)[0]
            - stress_and_tangent(eps - d, "nonlinear", MATRIX)[0]
        )
        np.testing.assert_allclose(
            np.einsum("...ijkl,kl->...ij", C, d), fd / 2, rtol=1e-6, atol=1e-10
        )
    I = np.eye(2)
    tr = eps[..., 0, 0] + eps[..., 1, 1]
    dev2 = eps - tr[:, None, None] / 3 * I
    s = np.sqrt((dev2**2).sum((1, 2)) + (tr / 3) ** 2)
    K, c1, c2 = MATRIX["K"], MATRIX["c1"], MATRIX["c2"]
    g, dg = c1 / (c2 + s), -c1 / (c2 + s) ** 2
    II = np.einsum("ij,kl->ijkl", I, I)
    Pd = 0.5 * (np.einsum("ik,jl->ijkl", I, I) + np.einsum("il,jk->ijkl", I, I)) - II / 3
    closed = (
        K * II
        + g[:, None, None, None, None] * Pd
        + (dg / s)[:, None, None, None, None] * np.einsum("nij,nkl->nijkl", dev2, dev2)
    )
    sym = 0.5 * (C + C.transpose(0, 1, 2, 4, 3))  # autodiff sees ε_xy, ε_yx apart
    np.testing.assert_allclose(sym, closed, rtol=1e-10, atol=1e-8)
    sig, C = stress_and_tangent(eps, "linear", SOFT)
    np.testing.assert_allclose(np.einsum("...ijkl,...kl->...ij", C, eps), sig, rtol=1e-12)
    iso = (SOFT["K"] - 2 * SOFT["G"] / 3) * II + 2 * SOFT["G"] * 0.5 * (
        np.einsum("ik,jl->ijkl", I, I) + np.einsum("il,jk->ijkl", I, I)
    )
    np.testing.assert_allclose(
        0.5 * (C + C.transpose(0, 1, 2, 4, 3)), np.broadcast_to(iso, C.shape), rtol=1e-12
    )


@pytest.mark.parametrize("law", [("linear", SOFT), ("nonlinear", MATRIX)])
def test_patch_test_homogeneous_cell_gives_the_material_law(law):
    rve = RVE(n=2, matrix=law, inclusion=law)
    strain = np.array([0.012, -0.007, 0.01])
    out = rve.solve(strain)
    expect = voigt(stress_and_tangent(from_voigt_strain(strain), *law)[0])
    np.testing.assert_allclose(out["stress"], expect, rtol=1e-10)
    assert np.abs(out["u"]).max() < 1e-12
    np.testing.assert_allclose(
        out["strain_qp"],
        np.broadcast_to(from_voigt_strain(strain), out["strain_qp"].shape),
        atol=1e-12,
    )


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
        assert lower < k < min(upper, (1 - f) * k1 + f * k2) and (k - lower) / lower < 1e-3, (
            n,
            k,
            lower,
            upper,
        )
        assert (
            abs(out["stress"][0] - out["stress"][1]) < 1e-9 * k and abs(out["stress"][2]) < 1e-9 * k
        )


def test_homogenized_stress_converges_under_refinement():
    strain = [0.02, -0.01, 0.015]
    s = {n: RVE(n=n).solve(strain)["stress"] for n in (2, 4, 8)}
    d1, d2 = np.linalg.norm(s[2] - s[4]), np.linalg.norm(s[4] - s[8])
    assert d1 / d2 > 3 and d2 / np.linalg.norm(s[8]) < 5e-3, (
        d1,
        d2,
    )  # measured ~4.4 (second order)


def test_newton_converges_fast_at_the_largest_strains_and_u_is_periodic():
    rve = RVE(n=2)
    out = rve.solve([0.04, -0.04, 0.04])
    assert out["iterations"] <= 6 and out["residual"] < 1e-10
    fe = rve._fe
    loc, u = fe.basis.doflocs, out["u"]
    right = np.flatnonzero(np.abs(loc[0] - 0.5) < 1e-12)
    for i in right:  # each right DOF equals its twin on the left
        j = np.flatnonzero((np.abs(loc[0] + 0.5) < 1e-12) & (np.abs(loc[1] - loc[1, i]) < 1e-12))
        assert np.isclose(u[i], u[j]).any()
    assert np.abs(u).max() > 1e-4  # a real fluctuation, not zero


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
    assert (
        rve.equilibrium_residual(rve.law(strain * 1.1, rve._fe.phase)[0]) > 1e-3
    )  # a non-solution is not


def test_rve_vtk_reads_back_and_the_cli_writes_it(tmp_path):
    import json

    import meshio

    from pdeml.cli import main
    from pdeml.solvers.rve import write_rve

    rve = RVE(n=2)
    strain = np.array([0.02, -0.01, 0.015])
    r = rve.solve(strain)
    m = meshio.read(write_rve(rve, r, tmp_path / "rve.vtu"))
    areas = rve._fe.basis.dx.sum(1)
    np.testing.assert_allclose(
        (m.cell_data["stress"][0] * areas[:, None]).sum(0) / areas.sum(), r["stress"], rtol=1e-10
    )
    np.testing.assert_allclose(
        (m.cell_data["strain"][0] * areas[:, None]).sum(0), strain, atol=1e-12
    )  # <ε> = ε̄
    x = m.points[:, :2]
    np.testing.assert_allclose(
        m.point_data["displacement"] - m.point_data["fluctuation"],
        x @ from_voigt_strain(strain).T,
        atol=1e-14,
    )
    assert np.abs(m.point_data["equilibrium_residual"]).max() < 1e-10 * np.abs(r["stress_qp"]).max()
    assert m.cell_data["phase"][0].sum() == rve._fe.phase.sum() > 0
    assert (
        main(
            [
                "rve",
                "--strain",
                "0.02",
                "-0.01",
                "0.015",
                "--n",
                "2",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    got = json.loads((tmp_path / "run" / "metrics.json").read_text())
    np.testing.assert_allclose(got["stress"], r["stress"], rtol=1e-12)
    assert (tmp_path / "run" / "rve.vtu").exists()


@pytest.mark.parametrize("n", [1, 2])
def test_the_mesh_has_the_element_count_the_help_states(n):
    """``pdeml rve --help`` and the docs say 20 n² Q8 elements (they said 12 n²)."""
    import argparse

    from pdeml.solvers.rve import RVE
    from pdeml.solvers.rve_cli import add_parser

    assert RVE(n=n)._fe.basis.mesh.t.shape[1] == 20 * n * n
    sub = argparse.ArgumentParser().add_subparsers()
    add_parser(sub)
    helps = [a.help for a in sub.choices["rve"]._actions if "--n" in a.option_strings]
    assert helps == ["mesh density (20 n² Q8 elements)"]
