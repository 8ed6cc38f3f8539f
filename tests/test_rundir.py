"""The run directory against a hostile user: corrupt checkpoints, foreign resumes, two runs at
once, interrupted writes, a full disk, bad paths and bad values all end in a clear message."""

import errno
import io
import json
import os
import pickle
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import pdeml as pl
from pdeml import run as R
from pdeml import rundir
from pdeml.cli import main

FAST = ["--steps", "4", "--lbfgs-steps", "0", "--no-progress"]


def _train(out, *extra, case="heat_1d"):
    return main(["train", case, "--out", str(out), *FAST, *extra])


def _error(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("kind", ["empty", "truncated", "random", "pickle"])
def test_a_corrupt_checkpoint_is_a_clear_error_on_resume_and_export(
    tmp_path, capsys, kind, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert _train(out) == 0
    path = out / "checkpoint.pt"
    good = path.read_bytes()
    path.write_bytes(
        {
            "empty": b"",
            "truncated": good[: len(good) // 2],
            "random": np.random.default_rng(0).bytes(4096),
            "pickle": pickle.dumps(_Payload()),
        }[kind]
    )
    info = (out / "run.json").read_text()
    for argv in (
        ["train", "heat_1d", "--out", str(out), *FAST, "--resume"],
        ["export", str(out), "--overwrite"],
    ):
        assert main(argv) == 2
        err = _error(capsys)
        assert "checkpoint.pt" in err and "cannot be read" in err and "Fix:" in err
    assert (out / "run.json").read_text() == info  # nothing rewritten
    assert not (tmp_path / "PWNED").exists()  # the payload never ran


def test_resume_into_another_cases_run_fails_before_rewriting_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out) == 0
    info = (out / "run.json").read_text()
    assert main(["train", "inverse_diffusion", "--out", str(out), *FAST, "--resume"]) == 2
    assert "another case" in _error(capsys)
    assert (out / "run.json").read_text() == info
    assert main(["export", str(out), "--resolution", "8", "--overwrite"]) == 0  # still exports


def test_resume_without_a_checkpoint_says_so(tmp_path, capsys):
    assert _train(tmp_path / "new", "--resume") == 0
    assert "holds no checkpoint.pt; starting from step 0" in capsys.readouterr().err


def test_a_second_run_into_a_locked_directory_is_refused(tmp_path, capsys):
    out = rundir.prepare(tmp_path / "run")
    with rundir.lock(out):  # another process holds it (flock is per open file)
        assert _train(out) == 2
        assert "in use by another pdeml run" in _error(capsys)
    assert _train(out) == 0  # released


def test_interrupted_checkpoint_writes_are_cleaned_up(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".ckpt-stale123").write_bytes(b"half a checkpoint")
    assert _train(out) == 0
    assert not list(out.glob(".ckpt-*"))


def test_a_full_disk_keeps_the_metrics_and_says_so(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "field.png")

    monkeypatch.setattr(R, "export_backend", full)
    out = tmp_path / "run"
    assert _train(out) == 2
    err = _error(capsys)
    assert "disk holding" in err and "is full" in err and "pdeml export" in err
    assert json.loads((out / "metrics.json").read_text())["status"] == "finished"


def test_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert _train(f) == 2
    assert "is a file, not a directory" in _error(capsys)


def test_a_run_directory_named_like_its_case(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "heat_1d", "--out", "heat_1d", *FAST]) == 0
    assert (
        main(
            [
                "train",
                "heat_1d",
                "--out",
                "heat_1d",
                "--steps",
                "6",
                "--lbfgs-steps",
                "0",
                "--no-progress",
                "--resume",
            ]
        )
        == 0
    )
    assert json.loads(open("heat_1d/metrics.json").read())["steps"] == 6
    assert main(["export", "heat_1d", "--resolution", "8", "--overwrite"]) == 0


def test_checkpoint_interval_options_reach_the_run(tmp_path):
    saves = []

    class Count(pl.AbstractCallback):
        def on_checkpoint(self, state):
            saves.append(state.step)

    R.train_case(
        "heat_1d",
        tmp_path / "a",
        steps=6,
        lbfgs_steps=0,
        checkpoint_every=2,
        progress=False,
        export=False,
        callbacks=[Count()],
    )
    assert saves == [2, 4, 6, 6]
    saves.clear()
    R.train_case(
        "heat_1d",
        tmp_path / "b",
        steps=3,
        lbfgs_steps=2,
        checkpoint_minutes=1e-9,
        progress=False,
        export=False,
        callbacks=[Count()],
    )
    assert saves == [1, 2, 3, 4, 5, 5]  # every step (L-BFGS too), and at the end
    assert (
        main(["train", "heat_1d", "--out", str(tmp_path / "c"), *FAST, "--checkpoint-every", "0"])
        == 2
    )


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "heat_1d", "--seed", "-1"], ["--seed=-1", "non-negative"]),
        (["train", "heat_1d", "--snapshots", "-1"], ["--snapshots=-1"]),
        (["train", "heat_1d", "--threads", "0"], ["--threads='0'"]),
        (["train", "heat_1d", "--lr", "-1"], ["lr=-1.0", "positive"]),
    ],
)
def test_bad_values_name_the_option(argv, words, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path / "r"), *FAST]) == 2
    err = _error(capsys)
    assert "Fix:" in err
    for w in words:
        assert w in err


@pytest.mark.parametrize("resolution", ["-4", "0"])
def test_export_resolution_is_checked(tmp_path, capsys, resolution):
    assert _train(tmp_path / "run") == 0
    assert main(["export", str(tmp_path / "run"), "--resolution", resolution]) == 2
    assert f"--resolution={resolution}" in _error(capsys)


def test_a_case_file_with_a_syntax_error(tmp_path, capsys):
    f = tmp_path / "broken.py"
    f.write_text("import pdeml as pl\ncase = pl.Case(\n")
    assert main(["train", str(f), "--out", str(tmp_path / "r"), *FAST]) == 2
    err = _error(capsys)
    assert "broken.py" in err and "syntax error at line" in err


def test_log_lines_when_not_on_a_terminal():
    stream = io.StringIO()
    bar = pl.ProgressBar(True, log_every_s=0.0, stream=stream)
    state = type("S", (), {"total_steps": 10, "step": 0, "term_names": ["pde"]})()
    bar.on_start(state)
    for s in (5, 10):
        bar.on_log(
            state,
            {
                "step": s,
                "phase": "adam",
                "loss": 1.0 / s,
                "pde": 0.5 / s,
                "wall_time_s": 0.1 * s,
                "l2_relative_error": None,
            },
        )
    bar.on_end(state)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[pdeml] step 5/10 (50%) adam loss 2.00e-01 pde 1.00e-01")
    assert len(lines) == 3 and "\r" not in stream.getvalue()


def test_empty_geometry_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="Intersection.*is empty"):
        pl.geometry.Rectangle([0, 0], [1, 1]) & pl.geometry.Rectangle([2, 2], [3, 3])
    with pytest.raises(ValueError, match="Difference.*is empty"):
        pl.geometry.Disk([0, 0], 1) - pl.geometry.Rectangle([-2, -2], [2, 2])


def test_dcdm_bad_systems_and_files_are_clear_errors(tmp_path, capsys):
    from pdeml.solvers.dcdm import MatrixOperator, solve

    A = sp.diags([2.0, 2.0, 2.0, 2.0])
    bad = A.tolil()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN/inf entries"):
        MatrixOperator(bad.tocsr(), (2, 2))
    with pytest.raises(ValueError, match="non-positive diagonal"):
        MatrixOperator(-A, (2, 2))
    indefinite = sp.csr_matrix(np.array([[1.0, 3, 0, 0], [3, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    with pytest.raises(ValueError, match="not symmetric positive definite"):
        solve(indefinite, np.array([1.0, -1.0, 0, 0]), grid=(2, 2))
    with pytest.raises(ValueError, match="b=.*finite"):
        solve(A, np.array([1.0, np.nan, 0, 0]), grid=(2, 2))
    assert main(["dcdm", "train", "--n", "0", "--out", str(tmp_path / "d")]) == 2
    assert "--n=0" in _error(capsys)
    np.savez(tmp_path / "m.npz", a=np.ones(3))
    assert main(["dcdm", "solve", str(tmp_path / "m.npz"), "--out", str(tmp_path / "s")]) == 2
    assert "cannot be read" in _error(capsys)
    assert (
        main(["dcdm", "solve", str(tmp_path / "none" / "dcdm.pt"), "--out", str(tmp_path / "s")])
        == 2
    )
    assert "pdeml dcdm train --out DIR" in _error(capsys)


def test_auto_threads_backs_off_when_the_cores_are_busy():
    from pdeml.threads import auto_threads, busy_elsewhere, resolve_threads

    assert auto_threads(load=0.0, cpus=2) == 2
    assert auto_threads(load=6.0, cpus=2) == 1  # six busy neighbours: one thread
    assert auto_threads(load=1.2, cpus=8) == 7
    assert busy_elsewhere() >= 0 and 1 <= resolve_threads("auto") <= os.cpu_count()
    assert resolve_threads("3") == 3


def test_threads_are_recorded_in_run_json(tmp_path):
    assert _train(tmp_path / "run", "--threads", "1") == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["threads"] == 1


def test_a_checkpoint_of_an_older_layout_is_refused_before_anything_is_rewritten(tmp_path, capsys):
    import torch

    out = tmp_path / "run"
    assert _train(out) == 0
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    torch.save({**saved, "format": 1}, out / "checkpoint.pt")
    info = (out / "run.json").read_text()
    assert _train(out, "--resume") == 2
    assert "has layout 1" in _error(capsys)
    assert (out / "run.json").read_text() == info


def test_export_sample_is_for_operator_runs_only(tmp_path, capsys):
    assert _train(tmp_path / "run") == 0
    assert main(["export", str(tmp_path / "run"), "--sample", "1", "--overwrite"]) == 2
    assert "--sample=1 applies to operator runs" in _error(capsys)


def test_log_lines_come_between_history_rows_and_a_resume_says_its_step(tmp_path):
    """Off a terminal a line comes every ``log_every_s`` of training even when history rows are
    rare (L-BFGS phases logged only every 100 steps used to be silent for minutes), and a resumed
    run says from which step it continues."""
    problem = pl.Problem(
        pl.geometry.Interval(0, 1), lambda x, u: -u.d2("x") - 1.0, [pl.Dirichlet(0.0)]
    )

    def run(steps, resume):
        stream = io.StringIO()
        backend = pl.PINN(pl.nn.MLP(4, 1), sampler=pl.samplers.Uniform(16, 2)).build(problem)
        pl.fit(
            backend,
            [(steps, pl.FirstOrder(pl.Adam(1e-3)))],
            eval_every=1000,  # no history row inside the run
            checkpoint=tmp_path / "checkpoint.pt",
            resume=resume,
            callbacks=[pl.ProgressBar(False, log_every_s=0.0, stream=stream)],
        )
        return stream.getvalue().splitlines()

    lines = run(5, False)
    assert [ln.split()[2] for ln in lines[:5]] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    assert "adam" in lines[0] and "pde" in lines[0]
    lines = run(8, True)
    assert lines[0] == "[pdeml] resuming at step 5/8"


class _Terminal(io.StringIO):
    """A stream that says it is a terminal (where tqdm draws its bars)."""

    def isatty(self):
        return True


def test_every_long_loop_shows_progress_as_training_does(monkeypatch):
    """:class:`pdeml.callbacks.progress`, the display of the long loops outside training (RVE
    snapshots and solves, dataset generation, WoS-NO truths, DCDM): a bar on a terminal; log
    lines off it, and on a terminal too under ``--no-progress`` (``bars(False)``), which used to
    draw the "RVE snapshots" bar anyway."""
    from pdeml.callbacks import bars, progress
    from pdeml.families.rve import RVEFamily
    from pdeml.operators.equino import latin_hypercube, snapshots

    off = io.StringIO()
    assert list(progress(range(3), desc="walks", log_every_s=0.0, stream=off)) == [0, 1, 2]
    lines = off.getvalue().splitlines()  # a line per update (log_every_s=0), and the last
    assert [ln.split()[:3] for ln in lines] == [
        ["[pdeml]", "walks", f"{k}/3"] for k in (1, 2, 3, 3)
    ]
    assert all(ln.endswith(" s") for ln in lines)
    on = _Terminal()
    with progress(total=2, desc="solves", log_every_s=0.0, stream=on) as bar:
        bar.update(2)
    assert "solves: 100%" in on.getvalue() and "[pdeml]" not in on.getvalue()
    quiet = _Terminal()
    with bars(False), progress(total=2, desc="solves", log_every_s=0.0, stream=quiet) as bar:
        bar.update(2)
    assert quiet.getvalue().startswith("[pdeml] solves 2/2 (100%)") and "%|" not in quiet.getvalue()
    # EquiNO's RVE snapshots on a terminal: a bar, none under --no-progress
    rve = RVEFamily(n=1).rve
    for allowed in (True, False):
        term = _Terminal()
        monkeypatch.setattr(sys, "stderr", term)
        with bars(allowed):
            snapshots(rve, latin_hypercube(2, seed=0), progress=True)
        assert ("RVE snapshots: 100%" in term.getvalue()) == allowed, term.getvalue()


def test_a_run_that_fails_before_writing_leaves_no_directory(tmp_path, capsys):
    """A run that stops with an error before it wrote anything (here ``pdeml solve`` of a case
    whose method trains, found once the directory is locked) leaves no directory holding only a
    ``.lock``; a directory that holds the user's files keeps them."""
    out = tmp_path / "solve"
    argv = ["solve", "heat_1d", "--out", str(out)]
    assert main(argv) == 2
    assert not out.exists()
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    assert main([*argv[:-1], str(keep)]) == 2
    assert sorted(p.name for p in keep.iterdir()) in (["notes.txt"], [".lock", "notes.txt"])


def test_a_case_file_that_raises_or_is_not_python_is_named_with_its_line(tmp_path, capsys):
    boom = tmp_path / "boom.py"
    boom.write_text("import pdeml as pl\n\n\nraise RuntimeError('boom at import')\n")
    assert main(["train", str(boom), "--out", str(tmp_path / "r"), *FAST]) == 2
    err = _error(capsys)
    assert "boom.py" in err and "raised RuntimeError at line 4" in err and "boom at import" in err
    text = tmp_path / "case.txt"
    text.write_text("case = 1\n")
    assert main(["train", str(text), "--out", str(tmp_path / "r2"), *FAST]) == 2
    assert "is not a Python file" in _error(capsys)


def test_a_misspelt_argument_in_a_case_file_gets_the_closest_name(tmp_path, capsys):
    case = tmp_path / "typo.py"
    case.write_text("import pdeml as pl\n\nsampler = pl.samplers.Uniform(100, n_boundry=10)\n")
    assert main(["train", str(case), "--out", str(tmp_path / "r"), *FAST]) == 2
    err = _error(capsys)
    assert "unexpected keyword argument 'n_boundry'" in err and "did you mean n_boundary=?" in err
