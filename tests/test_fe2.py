"""The macroscopic half of FE² (issue 18): the plate with a hole against scikit-fem's linear
elasticity, the RVE's homogenized tangent against finite differences, FE² with a homogeneous RVE
against the single-scale solve, quadratic Newton convergence with RVE and EquiNO materials, and
the plate's VTK read back."""

import json
import math

import meshio
import numpy as np
import pytest
import torch

from pdeml.solvers.fe2 import LawMaterial, Plate, RVEMaterial, plate_mesh
from pdeml.solvers.rve import MATRIX, RVE

SOFT = {"K": MATRIX["K"], "G": MATRIX["c1"] / MATRIX["c2"] / 2}


def quadratic(res, floor=1e-12):
    """Newton's residuals fall quadratically: r_{k+1} <= r_k² / r_0 until round-off."""
    pairs = [(a, b) for a, b in zip(res[1:], res[2:]) if b > floor]
    return all(b <= a**2 / res[0] for a, b in pairs) and len(res) >= 3


def test_plate_mesh_area_converges_and_conditions_select_the_right_dofs():
    exact = 1.0 - math.pi * 0.3**2 / 4
    err = []
    for m in (4, 8):
        p, t = plate_mesh(m, 4)
        x, y = p[0][t], p[1][t]
        area = 0.5 * ((x * np.roll(y, -1, 0)).sum(0) - (np.roll(x, -1, 0) * y).sum(0))
        assert (area > 0).all()
        err.append(abs(area.sum() - exact))
    assert err[0] / err[1] > 3.5 and err[1] < 1e-3 * exact, err  # the polygonal hole, O(h²)
    plate = Plate(m=2, k=2)
    _, basis, fixed, pulled = plate._fe
    loc = basis.doflocs
    comp = np.zeros(basis.N, int)
    comp[basis.nodal_dofs[1]] = 1
    assert np.all(loc[0, fixed & (comp == 0)] < 1e-12) and np.all(
        loc[1, fixed & (comp == 1)] < 1e-12
    )
    assert (
        (fixed & (comp == 0)).sum() == 2 + 1 == (fixed & (comp == 1)).sum()
    )  # k + 1 nodes per symmetry edge
    assert (
        np.all(np.abs(loc[0, pulled] - 1) < 1e-12)
        and np.all(comp[pulled] == 0)
        and pulled.sum() == 2 + 1
    )


def test_linear_plate_matches_scikit_fem_linear_elasticity():
    from skfem import asm, condense, solve
    from skfem.models.elasticity import linear_elasticity

    plate = Plate(m=3, k=3)
    out = plate.solve(LawMaterial("linear", SOFT), strain=0.01)
    assert out["iterations"] == 1 and out["residuals"][-1] < 1e-12  # linear: one Newton step
    _, basis, fixed, pulled = plate._fe
    A = asm(linear_elasticity(SOFT["K"] - 2 * SOFT["G"] / 3, SOFT["G"]), basis)
    x = np.where(pulled, 0.01, 0.0)
    u = solve(*condense(A, np.zeros(basis.N), x=x, D=np.flatnonzero(fixed | pulled)))
    np.testing.assert_allclose(out["u"], u, atol=1e-12 * np.abs(u).max())
    assert out["reaction"] == pytest.approx((A @ u)[pulled].sum(), rel=1e-12)
    # the hole concentrates stress: σ_xx at the hole's top exceeds the mean pull
    sig = plate.cell_average(out["stress_qp"])
    assert sig[:, 0].max() > 2 * out["reaction"] / 1.0


def test_rve_homogenized_tangent_is_the_derivative_of_the_homogenized_stress():
    rve = RVE(n=2)
    e = np.array([0.02, -0.01, 0.015])
    T = rve.solve(e, tangent=True)["tangent"]
    h = 1e-6
    fd = np.stack(
        [
            (rve.solve(e + h * d)["stress"] - rve.solve(e - h * d)["stress"]) / (2 * h)
            for d in np.eye(3)
        ],
        1,
    )
    np.testing.assert_allclose(T, fd, rtol=1e-7, atol=1e-7 * np.abs(fd).max())
    assert np.abs(T - T.T).max() < 1e-8 * np.abs(T).max()  # hyperelastic-like: symmetric here


def test_fe2_with_a_homogeneous_rve_is_the_single_scale_solve():
    """RVE solves of a cell made of the matrix alone give σ̄ = σ(ε̄) and C̄ = C(ε̄): the FE² plate is
    the plate with the matrix law, iteration for iteration."""
    law = ("nonlinear", MATRIX)
    plate = Plate(m=1, k=2)
    ref = plate.solve(LawMaterial(*law), strain=0.015)
    mat = RVEMaterial(RVE(n=1, matrix=law, inclusion=law))
    fe2 = plate.solve(mat, strain=0.015)
    np.testing.assert_allclose(fe2["u"], ref["u"], atol=1e-10 * np.abs(ref["u"]).max())
    assert fe2["iterations"] == ref["iterations"] and quadratic(ref["residuals"])
    assert mat.solves == plate.points * (fe2["iterations"] + 1)


def test_fe2_with_heterogeneous_rve_converges_quadratically(tmp_path):
    plate = Plate(m=1, k=1)
    out = plate.solve(RVEMaterial(RVE(n=1)), strain=0.01)
    assert quadratic(out["residuals"]) and out["residuals"][-1] < 1e-9, out["residuals"]
    soft = plate.solve(LawMaterial("nonlinear", MATRIX), strain=0.01)
    assert out["reaction"] > 1.3 * soft["reaction"]  # the stiff inclusions carry load


def test_equino_material_in_the_plate_and_its_vtk(tmp_path):
    """A briefly trained EquiNO as the material: its tangent is consistent (quadratic Newton), and
    the VTK's σ̄ per cell is the cell average of the network's σ̄ at the Gauss-point strains of the
    written displacement. (An untrained one is no material: its tangent need not be positive.)"""
    from pdeml.operators.equino import (
        EquiNOMaterial,
        EquiNONet,
        fit_strains,
        latin_hypercube,
        snapshots,
    )

    rve = RVE(n=1)
    torch.manual_seed(0)
    net = EquiNONet(rve, snapshots(rve, latin_hypercube(12, seed=0)), modes=6)
    fit_strains(net, latin_hypercube(40, seed=1), steps=300, lbfgs=100)
    plate = Plate(m=2, k=2)
    mat = EquiNOMaterial(net)
    out = plate.solve(mat, strain=0.01)
    assert quadratic(out["residuals"]), out["residuals"]
    assert 0 <= mat.outside < 0.5
    m = meshio.read(plate.write(out, tmp_path / "plate.vtu"))
    u = np.zeros(plate.basis.N)
    u[plate.basis.nodal_dofs] = m.point_data["displacement"][:, :2].T
    eps = plate.strains(u)
    with torch.no_grad():
        sig = net(torch.as_tensor(eps.reshape(-1, 3))).numpy().reshape(eps.shape)
    np.testing.assert_allclose(
        m.cell_data["stress"][0], plate.cell_average(sig), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(
        m.cell_data["strain"][0], plate.cell_average(eps), rtol=1e-9, atol=1e-12
    )


def test_fe2_cli_writes_the_plate_and_refuses_a_run_without_equino(tmp_path, capsys):
    from pdeml.cli import main

    assert (
        main(
            [
                "fe2",
                "--material",
                "matrix",
                "--m",
                "1",
                "--k",
                "2",
                "--strain",
                "0.012",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    ref = Plate(m=1, k=2).solve(LawMaterial("nonlinear", MATRIX), strain=0.012)
    assert (
        metrics["reaction_x"] == pytest.approx(ref["reaction"], rel=1e-12)
        and metrics["gauss_points"] == 16
    )
    assert meshio.read(tmp_path / "plate.vtu").cell_data["stress"][0].shape == (4, 3)
    assert main(["fe2", "--material", "linear", "--run", "x", "--out", str(tmp_path)]) == 2
    assert "--run" in capsys.readouterr().err


def test_fe2_cli_with_a_trained_equino_run(tmp_path, capsys):
    """`pdeml train equino_rve` writes the plate with the trained surrogate; `pdeml fe2 --material
    equino --run` loads that run and solves the same plate to the same answer."""
    from pdeml.cli import main

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "equino_rve",
                "--n",
                "1",
                "--solves",
                "12",
                "--modes",
                "6",
                "--steps",
                "300",
                "--lbfgs-steps",
                "100",
                "--no-progress",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    exported = meshio.read(run / "plate.vtu")
    assert "outside_training_box" in exported.cell_data
    assert (
        main(["fe2", "--material", "equino", "--run", str(run), "--out", str(tmp_path / "fe2")])
        == 0
    )
    metrics = json.loads((tmp_path / "fe2" / "metrics.json").read_text())
    assert metrics["relative_residuals"][-1] < 1e-9 and metrics["outside_training_box"] < 0.05
    solved = meshio.read(tmp_path / "fe2" / "plate.vtu")
    np.testing.assert_allclose(
        solved.cell_data["stress"][0], exported.cell_data["stress"][0], rtol=1e-9, atol=1e-9
    )
    # pulled to 8%, the plate's strains leave the surrogate's training box: refused, unless asked
    far = ["fe2", "--material", "equino", "--run", str(run), "--strain", "0.08"]
    capsys.readouterr()
    assert main([*far, "--out", str(tmp_path / "far")]) == 2
    assert "training box" in capsys.readouterr().err
    argv = [*far, "--allow-extrapolation", "--out", str(tmp_path / "far2")]
    assert main(argv) == 0
    assert json.loads((tmp_path / "far2" / "metrics.json").read_text())["outside_training_box"] > 0


def test_fe2_draws_no_progress_bars_into_a_log(tmp_path, capsys):
    """Off a terminal (a log file, a pipe) and under --no-progress, the RVE solves and the
    snapshots draw no tqdm bars: a log stays lines, not carriage-return bars."""
    from pdeml.cli import main

    argv = [*"fe2 --material rve --m 2 --k 1 --n 1 --strain 0.002 --out".split(), str(tmp_path)]
    assert main(argv) == 0  # stderr is captured: not a terminal
    err = capsys.readouterr().err
    assert "RVE solves" not in err and "\r" not in err
    assert main([*argv[:-2], "--no-progress", "--out", str(tmp_path / "b")]) == 0
    assert "RVE solves" not in capsys.readouterr().err


@pytest.mark.parametrize("which", ["rve", "plate"])
def test_a_strain_beyond_the_small_strain_range_warns(which):
    """``pdeml rve --strain 10 10 10`` (1000%: the user meant 10%) and ``fe2 --strain 5`` solved
    without a word; a strain over 10% now warns, naming the value and the fix."""
    from pdeml.solvers.fe2 import LawMaterial, Plate
    from pdeml.solvers.rve import MATRIX, RVE

    with pytest.warns(UserWarning, match=r"strain=.*500% strain.*as fractions"):
        if which == "rve":
            RVE(n=1).solve([5.0, 0.0, 0.0])
        else:
            material = LawMaterial("linear", {"K": MATRIX["K"], "G": 1.0})
            Plate(m=2, k=1).solve(material, strain=5.0)


def test_fe2_with_a_run_that_is_not_equino_says_so(tmp_path, capsys):
    """``fe2 --material equino --run`` given another method's run (here a PINN's) used to end in
    an AttributeError; now it names the run and what it holds."""
    from pdeml.cli import main

    run = tmp_path / "heat"
    assert (
        main(
            ["train", "heat_1d", *"--steps 2 --lbfgs-steps 0 --no-progress --out".split(), str(run)]
        )
        == 0
    )
    capsys.readouterr()
    argv = ["fe2", "--material", "equino", "--run", str(run), "--out", str(tmp_path / "p")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "not an EquiNO one" in err and "Traceback" not in err
