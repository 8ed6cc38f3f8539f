"""End to end through the CLI: train, files, resume, export, errors."""

import csv
import json

import meshio
import pytest
import torch

from pdeml.cli import main


def test_train_writes_the_run_directory_and_resumes(tmp_path, capsys):
    out = tmp_path / "heat"
    assert (
        main(
            [
                "train",
                "heat_1d",
                "--steps",
                "60",
                "--out",
                str(out),
                "--no-progress",
                "--seed",
                "1",
                "--lr",
                "1e-3",
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    for key in (
        "l2_relative_error",
        "final_losses",
        "steps",
        "wall_time_s",
        "device",
        "parameters",
    ):
        assert key in m
    assert m["steps"] == 60 + 200 and m["device"] == "cpu"
    assert set(m["final_losses"]) == {"pde", "dirichlet", "initial"}
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert rows[-1]["step"] == "260" and float(rows[-1]["lr"]) > 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 260
    assert (out / "solution.pvd").exists() and (out / "spacetime.vtu").exists()
    assert (out / "field.png").exists() and (out / "loss.png").exists()
    # resume a finished run with more steps: continues from 260, not from 0
    assert (
        main(
            [
                "train",
                "heat_1d",
                "--steps",
                "80",
                "--out",
                str(out),
                "--no-progress",
                "--seed",
                "1",
                "--lr",
                "1e-3",
                "--resume",
            ]
        )
        == 0
    )
    assert json.loads((out / "metrics.json").read_text())["steps"] == 280
    # re-export at another resolution
    assert main(["export", str(out), "--resolution", "8"]) == 2  # it would replace the export
    assert main(["export", str(out), "--resolution", "8", "--overwrite"]) == 0
    assert len(meshio.read(out / "spacetime.vtu").points) == 9 * 9


def test_case_from_a_file_path(tmp_path):
    f = tmp_path / "my_case.py"
    f.write_text(
        "import pdeml as pl, torch\n"
        "problem = pl.Problem(pl.geometry.Interval(0, 1), lambda x, u: -u.d2('x') - 2.0,\n"
        "                     [pl.Dirichlet(0.0)], exact=lambda x: x * (1 - x))\n"
        "case = pl.Case(problem, pl.PINN(pl.nn.MLP(16, 2)), steps=400, optimizer=pl.Adam(5e-3))\n"
    )
    out = tmp_path / "run"
    assert main(["train", str(f), "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["l2_relative_error"] < 0.05
    assert meshio.read(out / "solution.vtu").point_data["u"].shape[0] > 10


def test_cases_lists_the_builtins(capsys):
    assert main(["cases"]) == 0
    text = capsys.readouterr().out
    for name in (
        "poisson_lshape",
        "poisson_manufactured_3d",
        "heat_1d",
        "burgers_1d",
        "inverse_diffusion",
    ):
        assert name in text


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "no_such_case"], ["no_such_case", "poisson_lshape"]),
        (["train", "missing_file.py"], ["missing_file.py"]),
        (["export", "/nonexistent/run"], ["run.json"]),
    ],
)
def test_errors_are_messages_not_tracebacks(argv, words, capsys, tmp_path):
    assert (
        main(argv + (["--no-progress", "--out", str(tmp_path)] if argv[0] == "train" else [])) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("pdeml: error:") and "Traceback" not in err
    for w in words:
        assert w in err


def test_cuda_without_gpu_is_a_clear_cli_error(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert (
        main(["train", "heat_1d", "--device", "cuda", "--out", str(tmp_path), "--no-progress"]) == 2
    )
    assert "--device cpu" in capsys.readouterr().err


def test_more_processes_than_cores_warns(monkeypatch, capsys, tmp_path):
    """``--nproc 3`` on 2 cores oversubscribes them: said before the job starts."""
    import subprocess

    import pdeml.threads

    launched = []
    monkeypatch.setattr(pdeml.threads, "available_cpus", lambda: 2)
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda cmd, **kw: launched.append(cmd) or subprocess.CompletedProcess(cmd, 0),
    )
    argv = ["train", "heat_1d", "--out", str(tmp_path / "r"), "--nproc"]
    assert main([*argv, "3"]) == 0
    assert "--nproc=3 processes on 2 CPU cores" in capsys.readouterr().err
    assert launched and launched[-1][launched[-1].index("--nproc-per-node") + 1] == "3"
    assert main([*argv, "2"]) == 0
    assert "CPU cores" not in capsys.readouterr().err


def test_solve_without_export_writes_the_metrics_only(tmp_path):
    """``pdeml solve --no-export``: the error on the truth's points, no mesh export (whose
    walks on every node could cost far more than the solve)."""
    out = tmp_path / "wos"
    argv = [*"solve poisson_sin_2d --method wos --walks 8 --points 20 --no-export --out".split()]
    assert main([*argv, str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["l2_relative_error"] is not None
    assert not (out / "solution.vtu").exists() and not (out / "field.png").exists()
