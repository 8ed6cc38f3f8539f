"""A rank of the distributed tests (tests/test_distributed.py), launched by torchrun:

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/dist_worker.py OUT.json
        [--scenarios adam,lbfgs] [--die-at K | --resume-only | --die-once-at K]

It trains small PINNs through ``fit`` with the world torchrun describes and, on rank 0, writes
each scenario's per-step losses to OUT.json. ``run(name, World())`` is what the test runs in
one process, for the reference. The "resume" scenario checkpoints every 2 steps next to OUT:
``--die-at K`` makes rank 1 exit abruptly at step K (a killed rank), ``--resume-only`` resumes
from the checkpoint, and ``--die-once-at K`` resumes (from nothing, at first) and kills rank 1
at step K on torchrun's first attempt only (``World.restart`` = 0): an elastic
restart then finishes the run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import pdeml as pl
from pdeml.distributed import World, all_gather_object, joined

D64 = torch.float64


class Record(pl.AbstractCallback):
    def __init__(self):
        self.losses, self.rows = [], []

    def on_step(self, state):
        self.losses.append({"step": state.step, **state.losses})
        # the rows of each term this rank trained on (its shard)
        self.rows.append({k: len(next(iter(v.values()))) for k, v in state.points.items() if v})


#: each scenario's rows per step on this process (Record.rows), for the test
ROWS: dict = {}


class DieAt(pl.AbstractCallback):
    def __init__(self, step):
        self.step = step

    def on_step(self, state):
        if state.step == self.step:
            os._exit(3)  # a killed rank: no cleanup, no goodbye


def backend(name=""):
    if name == "equino":  # an operator: minibatches of items (strains), L-BFGS on all of them
        from pdeml.families.rve import RVEFamily
        from pdeml.operators.equino import EquiNO

        return EquiNO(modes=6, snapshots=12, strains=40, batch_size=10, test=4).build(
            RVEFamily(n=1), seed=0
        )
    if name == "hard":  # a hard constraint with 2 experts: a joint solve per expert
        from pdeml.run import apply_overrides, build, load_case

        case, _ = load_case("fisher_kpp_1d")
        return build(
            apply_overrides(case, {"constraint": "moe:2"}).replace(dtype="float64"),
            seed=0,
            device="cpu",
        )
    if name == "wosno":  # walk-on-spheres targets: each rank walks its own domains of a batch
        from pdeml.families.star_poisson import StarFamily
        from pdeml.operators import WoSNO

        return WoSNO(
            domains=4, batch_size=2, walks=4, modes=4, width=8, layers=2, test_domains=2
        ).build(StarFamily(16), seed=0, dtype=D64)
    if name in ("fno", "odd_fno"):  # a dataset read from disk: each rank reads its own samples
        from pdeml.operators import FNO3d

        return FNO3d(t_in=3, t_out=3, modes=(4, 4, 2), width=4, layers=2, padding=2).build(
            six_frames(), seed=0, dtype=D64
        )
    from pdeml.cases.poisson_sin_2d import case
    from pdeml.solvers import PINNBackend

    return PINNBackend(case.problem, pl.nn.MLP(16, 2), seed=0, dtype=D64)


def phases(name):
    adam = pl.FirstOrder(pl.Adam(1e-2))
    return {
        "adam": [(6, adam)],
        "config": [(6, pl.FirstOrder(pl.Adam(1e-2), pl.ConFIG()))],
        "pcgrad": [(4, pl.FirstOrder(pl.Adam(1e-2), pl.PCGrad()))],
        "lbfgs": [(3, adam), (5, pl.LBFGS())],
        "engd": [(4, pl.ENGD())],
        "engd_cg": [(3, pl.ENGD(solver="cg", damping=1e-3))],
        "r3": [(8, adam)],
        "equino": [(4, pl.FirstOrder(pl.Adam(3e-3))), (3, pl.LBFGS())],
        "hard": [(4, pl.FirstOrder(pl.Adam(1e-3)))],
        "wosno": [(5, pl.FirstOrder(pl.Adam(3e-3)))],
        "fno": [(5, pl.FirstOrder(pl.Adam(3e-3))), (2, pl.LBFGS())],
        "resume": [(6, adam), (4, pl.LBFGS())],
        # 301 domain and 15 boundary points: uneven shards (151/150 and 8/7 rows on 2 ranks)
        "odd_config": [(4, pl.FirstOrder(pl.Adam(1e-2), pl.ConFIG()))],
        "odd_lbfgs": [(2, adam), (3, pl.LBFGS())],
        "odd_engd": [(2, pl.ENGD())],
        "odd_r3": [(6, adam)],
        "odd_fno": [(3, pl.FirstOrder(pl.Adam(3e-3)))],  # minibatches of 3 samples
    }[name]


def sampler(name):
    from pdeml.datasets import Minibatches
    from pdeml.samplers import R3, Uniform

    if name in ("equino", "hard", "wosno"):
        return None  # the backend's own (StrainDraws, ConstraintPoints, DomainDraws)
    if name == "r3":
        return R3(64, 16, every=2)
    if name == "fno":
        return Minibatches(dataset(), 4)
    if name == "odd_r3":
        return R3(301, 15, every=2)
    if name == "odd_fno":
        return Minibatches(dataset(), 3)
    if name.startswith("odd"):
        return Uniform(301, 15, every=2)
    return Uniform(64, 16, every=3)


def six_frames():
    """The Navier-Stokes family of the dataset below: 6 frames at 16 x 16."""
    from pdeml.families.navier_stokes import NavierStokesFamily

    return NavierStokesFamily(n=16, frames=6)


def dataset() -> Path:
    """8 training and 2 test trajectories of 6 random 16 x 16 frames (the same in every process),
    in a directory of this process's own."""
    from pdeml.datasets import write
    from pdeml.settings import describe

    w = torch.randn(10, 6, 16, 16, generator=torch.Generator().manual_seed(0), dtype=D64).numpy()
    settings = {"family": describe(six_frames())}  # random frames, recorded as that family's
    return write(Path(_TMP.name) / "trajectories.h5", {"w": w}, settings=settings, n_train=8)


_TMP = tempfile.TemporaryDirectory()
SCENARIOS = (
    "adam",
    "config",
    "pcgrad",
    "lbfgs",
    "engd",
    "engd_cg",
    "r3",
    "equino",
    "hard",
    "wosno",
    "fno",
    "odd_config",
    "odd_lbfgs",
    "odd_engd",
    "odd_r3",
    "odd_fno",
)


def run(name, world: World, checkpoint=None, resume=False, callbacks=()):
    rec = Record()
    pl.fit(
        backend(name),
        phases(name),
        sampler=sampler(name),
        seed=1,
        world=world,
        checkpoint=checkpoint,
        checkpoint_every=2,
        resume=resume,
        callbacks=[rec, *callbacks],
    )
    ROWS[name] = rec.rows
    return rec.losses


def counted() -> dict:
    """Count, in this process, the domains walked (WoS-NO) and the samples read from a dataset."""
    from pdeml.datasets import Dataset
    from pdeml.operators.wosno import DomainDraws

    seen = {"walked": 0, "read": 0}
    walk, read = DomainDraws._walk, Dataset._read

    def walk_counted(self, run, k, seed):
        seen["walked"] += 1
        return walk(self, run, k, seed)

    def read_counted(data, idx):
        seen["read"] += len(idx)
        return read(data, idx)

    DomainDraws._walk, Dataset._read = walk_counted, staticmethod(read_counted)
    return seen


def main():
    out = Path(sys.argv[1])

    def opt(flag):
        return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else None

    die_at = opt("--die-at")
    world = World.from_env(os.environ)
    if opt("--die-once-at") is not None and world.restart == 0:  # torchrun's first attempt
        die_at = opt("--die-once-at")
    torch.set_num_threads(1)
    with joined(world, torch.device("cpu")):
        if any(f in sys.argv for f in ("--die-at", "--resume-only", "--die-once-at")):
            cbs = [DieAt(int(die_at))] if die_at is not None and world.rank == 1 else []
            result = {
                "resume": run(
                    "resume",
                    world,
                    checkpoint=out.with_suffix(".pt"),
                    resume="--die-at" not in sys.argv,
                    callbacks=cbs,
                )
            }
        else:
            names = opt("--scenarios").split(",") if opt("--scenarios") else SCENARIOS
            seen = counted()
            result = {name: run(name, world) for name in names}
        per_rank = all_gather_object(seen, world) if "seen" in locals() else None
        rows = all_gather_object(ROWS, world)
        if world.main:
            out.write_text(
                json.dumps(
                    {
                        "world_size": world.size,
                        "losses": result,
                        "per_rank": per_rank,
                        "rows": rows,
                    }
                )
            )


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as pdeml's __main__: no interpreter teardown after the process group is gone
