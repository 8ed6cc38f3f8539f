"""The operator path end to end on a tiny grid: ``pdeml data`` writes a family's dataset,
``pdeml train --data`` trains FNO-3d on it (resumable), ``pdeml export`` writes the .pvd series."""

import json

import pytest

from pdeml.cli import main
from pdeml.datasets import Dataset
from pdeml.export.image import read_image_data


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "nse16.h5"
    assert (
        main(
            [
                "data",
                "nse_fno3d",
                "--n",
                "16",
                "--samples",
                "16",
                "--test",
                "4",
                "--out",
                str(path),
                "--no-progress",
            ]
        )
        == 0
    )
    return path


def test_data_records_its_family_and_split(dataset):
    with Dataset(dataset) as ds:
        assert ds.fields["w"].shape == (16, 50, 16, 16) and list(ds.test) == [12, 13, 14, 15]
        fam = ds.settings["family"]
        assert fam["type"] == "NavierStokesFamily" and fam["n"] == 16 and fam["nu"] == 1e-3
        assert ds.settings["seed"] == 0


@pytest.mark.parametrize("case", ["nse_fno3d", "nse_stfno"])
def test_train_resume_and_export_an_operator(dataset, tmp_path, capsys, case):
    out = tmp_path / "run"
    args = [
        "train",
        case,
        "--n",
        "16",
        "--batch",
        "4",
        "--data",
        str(dataset),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args + ["--steps", "12"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 12 and 0 < m["l2_relative_error"] < 2
    assert main(args + ["--steps", "16", "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 16
    info = json.loads((out / "run.json").read_text())
    assert info["overrides"]["data"] == str(dataset) and info["method"] == case.split("_")[1]
    pvd = (out / "test_000.pvd").read_text()
    assert pvd.count("<DataSet") == 40 and 'timestep="1"' in pvd
    frame = read_image_data(out / "test_000" / "t0000.vti")
    assert set(frame) == {"prediction", "truth", "error"} and frame["truth"].shape == (16, 16)
    assert abs(frame["error"] - (frame["prediction"] - frame["truth"])).max() < 1e-12
    assert (out / "field.png").exists() and (out / "loss.png").exists()
    assert main(["export", str(out), "--sample", "3", "--overwrite"]) == 0
    assert (out / "test_003.pvd").exists()
    assert main(["export", str(out), "--sample", "7", "--overwrite"]) == 2
    assert "--sample=7 is not a test sample" in capsys.readouterr().err


def test_data_of_a_single_problem_case_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "heat_1d", "--samples", "4", "--out", str(tmp_path / "x.h5")]) == 2
    assert "not a family" in capsys.readouterr().err


def test_finetune_refines_one_test_trajectory_of_an_stfno_run(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "nse_stfno",
                "--n",
                "16",
                "--batch",
                "4",
                "--data",
                str(dataset),
                "--out",
                str(out),
                "--steps",
                "20",
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["finetune", str(out), "--sample", "1", "--iterations", "30"]) == 0
    rep = json.loads((out / "finetune_001" / "finetune.json").read_text())
    assert rep["resolution"] == 32 and rep["modes"] == [10, 10, 10]  # 32 // 3 and twice the trained
    assert rep["after"]["h_minus_one"] < rep["before"]["h_minus_one"] / 3  # ~10x measured
    assert rep["after"]["relative_l2"] < rep["before"]["relative_l2"]
    assert (out / "finetune_001" / "refined.pvd").read_text().count("<DataSet") == 40
    assert main(["finetune", str(out), "--sample", "9"]) == 2
    assert "--sample=9 is not a test sample" in capsys.readouterr().err
