"""A run directory is data: no command that reads one imports code the directory names.

run.json records the case it was trained from. A built-in case loads by its name; a case file
loads only when the user names it (``--case FILE``), outside the run directory, with the sha256
that run.json recorded. A payload planted in a run directory (and named by its run.json, by a
relative or an absolute path) never runs, whichever command reads the directory."""

import json
import os
import shutil

import pytest
from case_text import tiny_case

from pdeml import cli

CASE = tiny_case()

#: a case that also writes a marker file when imported
PAYLOAD = CASE + '\nimport pathlib\npathlib.Path(__file__).with_name("PWNED").write_text("ran")\n'


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained from a case file (kept outside the run directory)."""
    root = tmp_path_factory.mktemp("security")
    source = root / "mycase.py"
    source.write_text(CASE)
    run = root / "run"
    args = ["train", str(source), "--out", str(run), "--no-progress", "--threads", "1"]
    assert cli.main(args) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["source"] == str(source.resolve()) and len(info["source_sha256"]) == 64
    return source, run


def _evil(trained, tmp_path, how):
    """A copy of the run whose run.json names a payload inside it (``how``: relative to the
    directory's parent, or absolute)."""
    _, run = trained
    evil = tmp_path / "evil_run"
    shutil.copytree(run, evil)
    (evil / "case.py").write_text(PAYLOAD)
    info = json.loads((evil / "run.json").read_text())
    info["source"] = "evil_run/case.py" if how == "relative" else str(evil / "case.py")
    info.pop("source_sha256")
    (evil / "run.json").write_text(json.dumps(info))
    return evil


COMMANDS = {
    "export": lambda d: ["export", d, "--overwrite"],
    "export --sample": lambda d: ["export", d, "--sample", "0", "--overwrite"],
    "condition": lambda d: ["condition", d],
    "finetune": lambda d: ["finetune", d, "--no-progress"],
    "fe2": lambda d: ["fe2", "--material", "equino", "--run", d, "--out", d + "-fe2"],
}


@pytest.mark.parametrize("how", ["relative", "absolute"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_payload_named_by_run_json_never_runs(
    trained, tmp_path, monkeypatch, capsys, command, how
):
    evil = _evil(trained, tmp_path, how)
    monkeypatch.chdir(tmp_path)  # "pdeml export evil_run" from its parent
    assert cli.main(COMMANDS[command]("evil_run")) == 2
    err = capsys.readouterr().err
    assert "does not import code" in err and "--case" in err
    assert not (evil / "PWNED").exists()


def test_a_case_file_inside_the_run_directory_is_refused_even_when_named(
    trained, tmp_path, monkeypatch, capsys
):
    evil = _evil(trained, tmp_path, "relative")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["export", "evil_run", "--case", "evil_run/case.py", "--overwrite"]) == 2
    assert "inside the run directory" in capsys.readouterr().err
    assert not (evil / "PWNED").exists()


def test_the_named_case_file_exports_and_a_changed_one_is_refused(trained, tmp_path, capsys):
    source, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = (copy / "solution.vtu").stat().st_mtime_ns
    assert cli.main(["export", str(copy), "--overwrite"]) == 2  # never imported unnamed
    assert cli.main(["export", str(copy), "--case", str(source), "--overwrite"]) == 0
    assert (copy / "solution.vtu").stat().st_mtime_ns >= before
    changed = tmp_path / "changed.py"
    changed.write_text(CASE.replace("MLP(8, 2)", "MLP(8, 3)"))
    capsys.readouterr()
    assert cli.main(["export", str(copy), "--case", str(changed), "--overwrite"]) == 2
    assert "is not the file this run was trained from" in capsys.readouterr().err


def test_a_built_in_case_loads_by_name(tmp_path):
    run = tmp_path / "heat"
    args = ["train", "heat_1d", "--steps", "2", "--lbfgs-steps", "0", "--out", str(run)]
    assert cli.main([*args, "--no-progress", "--threads", "1"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["source"] == "heat_1d" and info["source_sha256"] is None
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert cli.main(["export", "heat", "--resolution", "8", "--overwrite"]) == 0
    finally:
        os.chdir(cwd)
