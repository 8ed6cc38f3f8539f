"""Every subcommand that writes a run directory holds the same guarantees (pdeml.rundir): a
``--out`` that is a file, a directory locked by another run, a full disk and an interrupted
write end in a clear message, and its JSON files are written atomically; a command that reads a
checkpoint refuses a corrupt one before it writes anything."""

import errno
import json

import pytest

from pdeml import rundir
from pdeml.cli import main

#: command -> (argv writing into OUT, given the inputs' folder; the JSON file it writes there)
COMMANDS = {
    "train": (
        lambda r, out: [
            *"train heat_1d --steps 2 --lbfgs-steps 0 --no-progress".split(),
            "--out",
            out,
        ],
        "metrics.json",
    ),
    "solve": (
        lambda r, out: [
            *"solve poisson_sin_2d --method wos --walks 8 --points 20".split(),
            *"--resolution 6 --out".split(),
            out,
        ],
        "metrics.json",
    ),
    "rve": (lambda r, out: [*"rve --strain 0.01 0 0 --n 1 --out".split(), out], "metrics.json"),
    "fe2": (
        lambda r, out: [*"fe2 --material linear --m 2 --k 1 --out".split(), out],
        "metrics.json",
    ),
    "dcdm train": (
        lambda r, out: [
            *"dcdm train --n 16 --epochs 1 --count 8 --ritz 16".split(),
            "--no-progress",
            "--out",
            out,
        ],
        "train.json",
    ),
    "dcdm solve": (
        lambda r, out: [
            "dcdm",
            "solve",
            str(r / "dcdm" / "dcdm.pt"),
            *"--n 16 --maxiter 3 --no-progress --out".split(),
            out,
        ],
        "solve.json",
    ),
    "finetune": (
        lambda r, out: [
            "finetune",
            str(r / "stfno"),
            *"--iterations 2 --no-progress --out".split(),
            out,
        ],
        "finetune.json",
    ),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """What the commands read: a DCDM checkpoint and a short ST-FNO run."""
    root = tmp_path_factory.mktemp("inputs")
    assert main(COMMANDS["dcdm train"][0](root, str(root / "dcdm"))) == 0
    data = root / "nse.h5"
    assert (
        main([*"data nse_stfno --n 16 --samples 6 --test 2 --no-progress --out".split(), str(data)])
        == 0
    )
    assert (
        main(
            [
                *"train nse_stfno --n 16 --batch 2 --steps 2 --no-progress --data".split(),
                str(data),
                "--out",
                str(root / "stfno"),
            ]
        )
        == 0
    )
    return root


def _error(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_out_that_is_a_file(command, runs, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(COMMANDS[command][0](runs, str(f))) == 2
    assert "is a file, not a directory" in _error(capsys)
    assert f.read_text() == "x"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_locked_directory_is_refused(command, runs, tmp_path, capsys):
    out = rundir.prepare(tmp_path / "run")
    with rundir.lock(out):  # another run holds it (flock is per open file)
        assert main(COMMANDS[command][0](runs, str(out))) == 2
        assert "in use by another pdeml run" in _error(capsys)
    assert not (out / COMMANDS[command][1]).exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_json_is_written_atomically_and_stale_temp_files_go(command, runs, tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / f".{COMMANDS[command][1]}-k1ll3d"  # left by a kill during an atomic write
    stale.write_text('{"half": ')
    written = []
    real = rundir.write_json
    monkeypatch.setattr(
        rundir, "write_json", lambda path, data: (written.append(path.name), real(path, data))
    )
    rc = main(COMMANDS[command][0](runs, str(out)))
    assert rc in (0, 1)  # dcdm solve: 1 = not converged in 3 iterations
    assert COMMANDS[command][1] in written  # through the atomic writer, not write_text
    assert isinstance(json.loads((out / COMMANDS[command][1]).read_text()), dict)
    assert not stale.exists() and not list(out.glob(".*.json-*"))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_full_disk_is_said_to_be_one(command, runs, tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(
        rundir.tempfile, "mkstemp", full
    )  # every JSON file of a run goes through it
    assert main(COMMANDS[command][0](runs, str(tmp_path / "run"))) == 2
    err = _error(capsys)
    assert "disk holding" in err and "is full" in err


@pytest.mark.parametrize("command", ["train --resume", "export", "dcdm solve", "finetune"])
def test_a_corrupt_checkpoint_is_refused_before_anything_is_written(
    command, runs, tmp_path, capsys
):
    import shutil

    if command in ("train --resume", "export"):
        out = tmp_path / "run"
        assert main(COMMANDS["train"][0](runs, str(out))) == 0
        path, argv = (
            out / "checkpoint.pt",
            (
                COMMANDS["train"][0](runs, str(out)) + ["--resume"]
                if command == "train --resume"
                else ["export", str(out), "--overwrite"]
            ),
        )
    elif command == "dcdm solve":
        shutil.copytree(runs / "dcdm", tmp_path / "dcdm")
        path = tmp_path / "dcdm" / "dcdm.pt"
        argv = [
            "dcdm",
            "solve",
            str(path),
            "--n",
            "16",
            "--no-progress",
            "--out",
            str(tmp_path / "s"),
        ]
    else:
        shutil.copytree(runs / "stfno", tmp_path / "stfno")
        path = tmp_path / "stfno" / "checkpoint.pt"
        argv = [
            "finetune",
            str(tmp_path / "stfno"),
            "--iterations",
            "2",
            "--no-progress",
            "--out",
            str(tmp_path / "s"),
        ]
    path.write_bytes(path.read_bytes()[:100])

    def files():  # the lock file records its holder: not a result
        return {p.name: p.stat().st_mtime_ns for p in path.parent.iterdir() if p.name != ".lock"}

    before = files()
    assert main(argv) == 2
    assert "cannot be read" in _error(capsys)
    assert files() == before
    assert not (tmp_path / "s").exists()


def test_an_existing_dataset_is_refused_before_any_work_and_kept(runs, tmp_path, capsys):
    import shutil
    import time

    path = tmp_path / "nse.h5"
    shutil.copy(runs / "nse.h5", path)
    before = path.read_bytes()
    t = time.perf_counter()
    argv = [*"data nse_stfno --n 16 --samples 4 --test 1 --no-progress --out".split(), str(path)]
    assert main(argv) == 2
    assert time.perf_counter() - t < 5  # refused before solving anything
    err = _error(capsys)
    assert "exists" in err and "--overwrite" in err
    assert path.read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0
    assert path.read_bytes() != before


def test_a_second_finetune_or_export_does_not_replace_the_first(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "stfno"
    shutil.copytree(runs / "stfno", run)
    tune = ["finetune", str(run), *"--iterations 2 --no-progress".split()]
    assert main(tune) == 0
    first = (run / "finetune_000" / "finetune.json").read_bytes()
    assert main(tune) == 2
    assert "holds a fine-tuning already" in _error(capsys)
    assert (run / "finetune_000" / "finetune.json").read_bytes() == first
    assert main([*tune, "--overwrite"]) == 0
    picture = (run / "field.png").read_bytes()
    assert main(["export", str(run), "--sample", "1"]) == 2
    assert "holds an export already" in _error(capsys)
    assert (run / "field.png").read_bytes() == picture
    assert main(["export", str(run), "--sample", "1", "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "test_001.pvd").exists()
    assert (tmp_path / "again" / "loss.png").exists()  # from the run's own history
    assert (run / "field.png").read_bytes() == picture


def test_data_takes_threads(tmp_path, capsys):
    """``pdeml data`` follows ``--threads`` (the free-core rule by default), as train does."""
    import torch

    before = torch.get_num_threads()
    argv = [*"data nse_stfno --n 16 --samples 3 --test 1 --no-progress --out".split()]
    try:
        assert main([*argv, str(tmp_path / "a.h5"), "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert main([*argv, str(tmp_path / "b.h5"), "--threads", "0"]) == 2
        assert "--threads" in _error(capsys)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("where", ["under a file", "long name"])
def test_data_into_an_unwritable_out_says_why(where, tmp_path, capsys):
    """A --out that cannot be written (its folder is a file; a name the file system refuses)
    gave a raw errno; now the flag, the path and the reason."""
    if where == "under a file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "x.h5"
    else:
        out = tmp_path / ("x" * 300 + ".h5")
    argv = [*"data nse_stfno --n 16 --samples 3 --test 1 --no-progress --out".split(), str(out)]
    assert main(argv) == 2
    err = _error(capsys)
    assert "--out=" in err and ("cannot be written" in err or "cannot be used" in err)
