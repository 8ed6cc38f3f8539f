"""SIGTERM (what a scheduler sends before it stops a job) and Ctrl-C stop a run at a step
boundary: the checkpoint holds that step, the message says how to continue, and ``--resume``
finishes bit-identically to a run that was never stopped. A dataset being generated leaves no
temporary file behind."""

import os
import signal
import subprocess
import sys
import time

import torch
from case_text import tiny_case

from pdeml import checkpoint as ckpt
from pdeml import cli

CASE = tiny_case(steps=4000, every=7)

FLAGS = ["--no-progress", "--threads", "1", "--checkpoint-every", "100000"]


def _started(path, proc, timeout=120.0):
    """Wait until ``path`` exists (the run has begun training) or the process ended."""
    t = time.time()
    while not path.exists() and proc.poll() is None and time.time() - t < timeout:
        time.sleep(0.05)


def test_sigterm_checkpoints_the_current_step_and_resume_is_bit_identical(tmp_path):
    case = tmp_path / "case.py"
    case.write_text(CASE)
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    cmd = [sys.executable, "-m", "pdeml", "train", str(case), "--out", str(stopped), *FLAGS]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    _started(stopped / "run.json", proc)
    time.sleep(1.5)  # some hundreds of steps in
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted: stopped at step" in err and "--resume" in err
    saved = ckpt.load(stopped / "checkpoint.pt")
    assert 0 < int(saved["step"]) < 4000  # mid-run, at the step it was stopped at
    assert cli.main(["train", str(case), "--out", str(stopped), "--resume", *FLAGS]) == 0
    assert cli.main(["train", str(case), "--out", str(whole), *FLAGS]) == 0
    a, b = ckpt.load(stopped / "checkpoint.pt"), ckpt.load(whole / "checkpoint.pt")
    assert int(a["step"]) == int(b["step"]) == 4000
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])


def test_sigterm_during_data_generation_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "nse.h5"
    cmd = [
        *[sys.executable, "-m", "pdeml", "data", "nse_stfno", "--n", "16"],
        *["--samples", "512", "--batch", "1", "--no-progress", "--out", str(out)],
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    _started(out.with_name(out.name + ".tmp"), proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither nse.h5 nor nse.h5.tmp
