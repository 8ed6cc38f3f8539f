"""Training on several processes (issue 19), on the CPU with gloo: ranks launched by torchrun
(``tests/dist_worker.py``) against one process with the same global batch; a killed rank ends
the job instead of hanging, and the run resumes exactly from rank 0's checkpoint; under
``torchrun -m pdeml train`` only rank 0 writes the run directory."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pdeml.distributed import World, shard_rows

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "dist_worker.py"


def torchrun(*args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            *map(str, args),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def worst(got: list, ref: list) -> float:
    """The largest relative difference of any loss term at any step."""
    assert [r.get("step") for r in got] == [r.get("step") for r in ref]
    return max(abs(a[k] - b[k]) / abs(b[k]) for a, b in zip(got, ref) for k in b if k != "step")


def test_world_comes_from_the_launcher_environment_and_is_checked():
    assert World.from_env({}) == World() and not World().active and World().main
    w = World.from_env({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (w.rank, w.size, w.local_rank, w.active, w.main) == (1, 4, 1, True, False)
    w = World.from_env(
        {
            "RANK": "0",
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "h",
            "MASTER_PORT": "29500",
            "TORCHELASTIC_RESTART_COUNT": "2",
            "TORCHELASTIC_USE_AGENT_STORE": "True",
        }
    )
    assert w.restart == 2 and w.rendezvous == ("h", 29500, True)
    with pytest.raises(ValueError, match="rank"):
        World.from_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        World.from_env({"WORLD_SIZE": "two"})


def test_rows_split_into_contiguous_blocks_or_stay_replicated():
    w = World(rank=1, size=2)
    assert shard_rows(64, w) == slice(32, 64) and shard_rows(64, World(rank=0, size=2)) == slice(
        0, 32
    )
    # uneven: the first n mod size ranks take one row more; the blocks tile 0..n in rank order
    for n, size in [(301, 2), (7, 3), (10, 4), (5, 5)]:
        blocks = [shard_rows(n, World(rank=r, size=size)) for r in range(size)]
        assert [b.start for b in blocks] == [0] + [b.stop for b in blocks[:-1]]
        assert blocks[-1].stop == n
        assert {b.stop - b.start for b in blocks} <= {n // size, -(-n // size)}
    assert shard_rows(1, w) is None and shard_rows(3, World(rank=0, size=4)) is None  # replicated
    assert shard_rows(64, World()) is None


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "two.json"
    proc = torchrun(WORKER, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["world_size"] == 2
    return data


@pytest.mark.parametrize(
    "name, tol",
    [
        ("adam", 1e-12),
        ("config", 1e-12),
        ("pcgrad", 1e-12),
        ("r3", 1e-12),
        ("lbfgs", 1e-10),
        ("engd", 1e-5),
        ("engd_cg", 1e-6),
        ("equino", 1e-10),
        ("hard", 1e-6),
        ("wosno", 1e-12),
        ("fno", 1e-12),
        ("odd_config", 1e-12),
        ("odd_lbfgs", 1e-10),
        ("odd_engd", 1e-5),
        ("odd_r3", 1e-12),
        ("odd_fno", 1e-12),
    ],
)
def test_two_ranks_take_the_steps_of_one_process_with_the_global_batch(two_ranks, name, tol):
    """Per-term gradients averaged before the combiner (ConFIG, PCGrad), L-BFGS's loss and
    gradient averaged inside its line search, ENGD's normal equations averaged, R3's residuals
    gathered, an operator's minibatches of items split (EquiNO: Adam on 10 strains, L-BFGS on
    all 40), a hard constraint's joint solve fed every constraint and condition point on every
    rank (PI-HC-MoE, 2 experts; 1e-8: the LM solve's tolerance), WoS-NO's walks and a dataset's
    samples read per rank: the losses match one process (measured: 1e-14 and below; ENGD 2e-6
    dense, where two ranks solve the normal equations instead of the SVD, and 2e-8 with CG)."""
    assert worst(two_ranks["losses"][name], reference(name)) < tol


def test_a_term_of_301_points_is_split_151_150_and_equals_one_process(two_ranks):
    """Uneven terms (301 PDE points, 15 boundary points; a minibatch of 3 samples) are sharded,
    not replicated: rank 0 trains on 151 and 8 rows, rank 1 on 150 and 7 (2 and 1 samples), and
    each rank's term is weighted by its share of the rows, so the losses are one process's
    (the test above: odd_config, odd_lbfgs, odd_engd, odd_r3, odd_fno)."""
    rows = two_ranks["rows"]
    for name in ("odd_config", "odd_lbfgs", "odd_engd", "odd_r3"):
        assert {tuple(sorted(r.items())) for r in rows[0][name]} == {
            (("dirichlet", 8), ("domain", 151))
        }, name
        assert {tuple(sorted(r.items())) for r in rows[1][name]} == {
            (("dirichlet", 7), ("domain", 150))
        }, name
    # the first batch is read whole (before the run learns the world), then 2 and 1 samples
    assert [r["data"] for r in rows[0]["odd_fno"]] == [2, 2, 2]
    assert [r["data"] for r in rows[1]["odd_fno"]] == [1, 1, 1]
    assert worst(two_ranks["losses"]["odd_config"], reference("odd_config")) < 1e-12


def test_each_rank_walks_and_reads_only_its_share_of_an_operator_batch(two_ranks):
    """WoS-NO (2 domains per step, 5 steps) and FNO-3d on a dataset (4 samples per step, 5 Adam
    steps, then L-BFGS on the last batch). The first batch is read whole by every rank, before the
    run learns the world; from then on each rank takes its half. One process walks 2 + 4 x 2 = 10
    domains and reads 4 + 4 x 4 = 20 samples; each of two ranks walks 2 + 4 = 6 domains and
    reads 4 + 2 (the first batch again, its own half) + 4 x 2 = 14 samples. With minibatches of
    3 (odd_fno, 3 steps) rank 0 then reads 3 + 2 + 2 x 2 = 9 more samples and rank 1
    3 + 1 + 2 x 1 = 6: uneven shards, not the whole batch on both."""
    assert two_ranks["per_rank"] == [{"walked": 6, "read": 14 + 9}, {"walked": 6, "read": 14 + 6}]


def reference(name, since=0):
    """The scenario on one process (the test's), from step ``since`` on."""
    sys.path.insert(0, str(ROOT / "tests"))
    import dist_worker
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [r for r in dist_worker.run(name, World()) if r["step"] >= since]
    finally:
        torch.set_num_threads(threads)


def test_a_killed_rank_ends_the_job_and_the_run_resumes_exactly_on_any_world_size(tmp_path):
    import shutil

    out = tmp_path / "k.json"
    died = torchrun(WORKER, out, "--die-at", 5, timeout=120)  # no hang: torchrun ends the job
    assert died.returncode != 0 and re.search(r"exitcode\s*:\s*3\b", died.stderr), died.stderr[
        -2000:
    ]
    assert out.with_suffix(".pt").exists() and not out.exists()
    shutil.copy(out.with_suffix(".pt"), tmp_path / "one.pt")
    proc = torchrun(WORKER, out, "--resume-only")
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads(out.read_text())["losses"]["resume"]
    assert resumed[0]["step"] == 5  # from the step-4 checkpoint
    ref = reference("resume", since=5)
    assert worst(resumed, ref) < 1e-12
    # the 2-rank checkpoint resumed on one process: the same steps (the batch is global)
    sys.path.insert(0, str(ROOT / "tests"))
    import dist_worker

    alone = dist_worker.run("resume", World(), checkpoint=tmp_path / "one.pt", resume=True)
    assert worst(alone, ref) < 1e-12


def test_an_elastic_restart_resumes_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "e.json"
    proc = torchrun("--max-restarts", 1, WORKER, out, "--die-once-at", 7)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads(out.read_text())["losses"]["resume"]
    assert resumed[0]["step"] == 7  # the restart began at step 6
    assert worst(resumed, reference("resume", since=7)) < 1e-12


def test_two_nodes_on_one_machine_rendezvous_and_match_one_process(tmp_path):
    """``--nnodes 2`` with a c10d rendezvous, the multi-node launch, as two launchers here."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "n.json"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        "pdeml-test",
        str(WORKER),
        str(out),
        "--scenarios",
        "adam,lbfgs",
    ]
    nodes = [
        subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for p in nodes:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    got = json.loads(out.read_text())
    assert got["world_size"] == 2
    for name in ("adam", "lbfgs"):
        assert worst(got["losses"][name], reference(name)) < 1e-10


def test_pdeml_train_under_torchrun_writes_once_and_matches_one_process(tmp_path, capsys):
    from pdeml.cli import main

    args = [
        "poisson_sin_2d",
        "--optimizer",
        "adam",
        "--steps",
        "12",
        "--lbfgs-steps",
        "4",
        "--no-progress",
        "--threads",
        "1",
    ]
    proc = torchrun("-m", "pdeml", "train", *args, "--out", tmp_path / "two")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run directory:") == 1  # rank 0 alone prints
    assert main(["train", *args, "--out", str(tmp_path / "one")]) == 0
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert two["world_size"] == 2 and "world_size" not in one
    for k, v in one["final_losses"].items():
        assert two["final_losses"][k] == pytest.approx(v, rel=1e-10)
    assert two["l2_relative_error"] == pytest.approx(one["l2_relative_error"], rel=1e-10)
    names = lambda d: sorted(p.name for p in d.iterdir())
    assert names(tmp_path / "two") == names(tmp_path / "one")
    assert json.loads((tmp_path / "two" / "run.json").read_text())["world_size"] == 2
    # `pdeml train --nproc 2` is the same torchrun job
    assert main(["train", *args, "--nproc", "2", "--out", str(tmp_path / "nproc")]) == 0
    assert (
        json.loads((tmp_path / "nproc" / "metrics.json").read_text())["final_losses"]
        == two["final_losses"]
    )
    assert main(["train", *args, "--nproc", "0"]) == 2
    assert "--nproc=0 is not a process count" in capsys.readouterr().err


def test_walk_on_spheres_splits_every_points_walks_over_the_ranks(tmp_path):
    """`torchrun -m pdeml solve`: each rank runs its share of every point's walks (the numba
    kernel seeds walk k of point i alike on any rank), means and standard errors are reduced:
    the same estimates as one process, rank 0 writing."""
    import meshio
    import numpy as np

    from pdeml.cli import main

    args = [
        "poisson_sin_2d",
        "--method",
        "wos",
        "--walks",
        "64",
        "--points",
        "40",
        "--resolution",
        "8",
    ]
    proc = torchrun("-m", "pdeml", "solve", *args, "--out", tmp_path / "two")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main(["solve", *args, "--out", str(tmp_path / "one")]) == 0
    one, two = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert two["world_size"] == 2
    for k in ("l2_relative_error", "std_error_mean", "steps_per_walk", "within_4_std_errors"):
        assert two[k] == pytest.approx(one[k], rel=1e-12), k
    a, b = (meshio.read(tmp_path / d / "solution.vtu") for d in ("one", "two"))
    for k in a.point_data:
        np.testing.assert_allclose(b.point_data[k], a.point_data[k], rtol=1e-12, atol=1e-14)


def test_dcdm_training_splits_each_batch_of_right_hand_sides(tmp_path):
    """`torchrun -m pdeml -- dcdm train`: each rank takes its half of every batch of right-hand
    sides; the loss history is one process's (float32: to round-off). The `--` keeps torchrun's
    parser from reading `--n` as an abbreviation of its own options."""
    from pdeml.cli import main

    args = [
        "dcdm",
        "train",
        "--n",
        "16",
        "--epochs",
        "2",
        "--count",
        "32",
        "--ritz",
        "50",
        "--no-progress",
    ]
    proc = torchrun("-m", "pdeml", "--", *args, "--out", tmp_path / "two")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one, two = (json.loads((tmp_path / d / "train.json").read_text()) for d in ("one", "two"))
    assert two["world_size"] == 2 and (tmp_path / "two" / "dcdm.pt").exists()
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)


def test_a_rank_solves_only_its_experts():
    """PI-HC-MoE on several ranks: rank r takes experts r, r + size, ... (spread over its own
    devices in turn); the weights of the others come from their ranks (the 2-rank run above)."""
    import numpy as np

    from pdeml.run import apply_overrides, build, load_case
    from pdeml.sampling import to_torch

    case, _ = load_case("fisher_kpp_1d")
    backend = build(apply_overrides(case, {"constraint": "moe:4"}), seed=0, device="cpu")
    batch = to_torch(
        backend.batches(None, np.random.default_rng(0)).current(), backend.dtype, backend.device
    )
    xc, bc, conds = backend._constraint_bases(batch)
    backend._rows(backend.omega, xc, bc, conds)  # the bases' columns, as _solve
    flat = (bc.detached(), [(c, xb, b.detached(), d) for c, xb, b, d in conds])
    assert backend._parts(xc, *flat) is None  # one process, one device
    parts = backend._parts(xc, *flat, world=World(rank=1, size=2))
    assert [p[0].tolist() for p in parts] == [[1, 3]]
    w = backend.omega.clone()
    assert parts[0][2](w[parts[0][0]]).shape[0] == 2  # its rows only
    assert [p[0].tolist() for p in backend._parts(xc, *flat, world=World(rank=0, size=3))] == [
        [0, 3]
    ]


def test_a_dataset_run_reads_its_block_of_the_global_batch(tmp_path):
    """Rank 1 of 2 reads the second half of every batch one process reads, through epochs and a
    resume; a batch that does not split evenly is split unevenly (3 samples: 2 and 1)."""
    import numpy as np

    from pdeml.datasets import Minibatches, write

    w = np.random.default_rng(0).standard_normal((12, 2, 4, 4))
    path = write(tmp_path / "d.h5", {"w": w}, settings={}, n_train=10)
    one = Minibatches(path, 4).init(None, np.random.default_rng(0))
    rank1 = Minibatches(path, 4).init(None, np.random.default_rng(0))
    assert rank1.distribute(World(rank=1, size=2)) == ("data",)
    for step in range(6):  # 2 batches per epoch: 3 epochs
        whole = one.batch(step)["data"]["w"]
        np.testing.assert_array_equal(rank1.batch(step)["data"]["w"], whole[2:])
    again = Minibatches(path, 4).init(None, np.random.default_rng(5))
    again.distribute(World(rank=1, size=2))
    again.load_state_dict(one.state_dict())
    np.testing.assert_array_equal(again.current()["data"]["w"], one.current()["data"]["w"][2:])
    odd = Minibatches(path, 3).init(None, np.random.default_rng(0))
    whole = odd.current()["data"]["w"]
    odd.distribute(World(rank=1, size=2))
    np.testing.assert_array_equal(odd.current()["data"]["w"], whole[2:])
