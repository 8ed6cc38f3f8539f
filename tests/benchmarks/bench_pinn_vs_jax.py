"""pdeml's training step against a jit-compiled JAX step, on one CPU thread (issue 20).

Two problems, each implemented in pdeml (through ``pl.fit``) and in JAX written here:

* **L-shape Poisson** (the problem of ``bench_pinn_vs_deepxde.py``): -Δu = 1 on the L-shape,
  u = 0 on its boundary, 2-50x4-1 tanh, 1200 interior + 120 boundary points (fixed), Adam 1e-3,
  float32. JAX: ``jax.jit`` of loss, gradient and the optax Adam update, with a hand-written
  forward Laplacian (value, gradient and Laplacian pushed through each layer: the same
  algorithm as pdeml's collapsed Taylor mode).
* **STDE at D = 1000** (the STDE paper's setup: width 128, depth 4, 100 points per step, 16
  sampled dimensions): Allen-Cahn Δu + u - u³ = f on the unit ball, u = (1 - |x|²) MLP(x)
  (``cases/allen_cahn_highdim.py``). JAX: the STDE paper's estimator as its reference code
  computes it, ``jax.experimental.jet`` 2-jets along the 16 sampled coordinate directions,
  vmapped over directions and points, new points drawn in the jitted step.

pdeml is timed eager, with the losses compiled (``compile="losses"``), and with the whole step
compiled (``compile=True``: forward, backward and Adam in one graph); on the CPU the whole step
with its products' library chosen by ``--gemm auto`` (``pdeml.device.gemm``: per product, by
this machine's measurements) and once more with each fixed choice, MKL and oneDNN
(``pdeml/gemm.py``), so the automatic choice is measured against the better of the two. With
``--stde-official PYTHON CHECKOUT`` the STDE table also runs the paper's own code
(github.com/sail-sg/stde, in an environment of its own: jax 0.4.30, dm-haiku 0.0.12, folx 0.2.5,
ml_collections 0.1.1, pydantic<2, numpy<2, and an empty ``wandb`` module), in the same
interleaved blocks. Each implementation runs ``--blocks`` blocks of ``--block-steps`` steps,
interleaved (block 1 of each, then block 2 of each, ...), after a warm-up that includes any
compile; the table gives the median s/step, the spread (min-max over blocks) and the ratio to
JAX. The process pins itself to one core (``taskset``) and runs torch and XLA single-threaded:
JAX's thread flags alone do not keep it on one thread.

Needs ``pip install jax optax`` (the benchmark's own dependencies, not pdeml's):

    python tests/benchmarks/bench_pinn_vs_jax.py                       # both problems
    python tests/benchmarks/bench_pinn_vs_jax.py --problems lshape --blocks 9
    python tests/benchmarks/bench_pinn_vs_jax.py --device cuda --problems lshape   # GPU: + CUDA
    graphs
    python tests/benchmarks/bench_pinn_vs_jax.py --problems options     # the ways of compiling the
    step
    python tests/benchmarks/bench_pinn_vs_jax.py --problems calibrate   # compile="auto"'s measured
    sizes
    python tests/benchmarks/bench_pinn_vs_jax.py --problems gemm        # MKL against oneDNN, per
    product
    python tests/benchmarks/bench_pinn_vs_jax.py --problems stde --stde-official
    ~/stde-env/bin/python ~/stde
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pin_to_one_core():
    """Re-run this script under ``taskset -c 0`` (once), with single-threaded XLA."""
    if os.environ.get("PDEML_BENCH_PINNED") or shutil.which("taskset") is None:
        return
    env = {
        **os.environ,
        "PDEML_BENCH_PINNED": "1",
        "OMP_NUM_THREADS": "1",
        "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    }
    os.execvpe("taskset", ["taskset", "-c", "0", sys.executable, *sys.argv], env)


# ----------------------------------------------------------------------------------- pdeml
class PdemlRun:
    """A pdeml backend trained in blocks through ``pl.fit`` (each block continues the last)."""

    def __init__(self, name, backend, make_phase, batches=None):
        self.name, self.backend, self.make_phase, self.sampler = name, backend, make_phase, batches
        self.seed = 0

    def block(self, steps: int) -> float:
        import pdeml as pl

        self.seed += 1
        t = time.perf_counter()
        r = pl.fit(
            self.backend,
            [(steps, self.make_phase())],
            sampler=self.sampler,
            seed=self.seed,
            eval_every=10**9,
        )
        dt = time.perf_counter() - t
        self.loss = r.history[-1]["loss"]
        return dt / steps


def _gemm_tail(mode, device, gemm) -> str:
    """The label of a CPU compiled run's product library: what ``gemm`` asked and what ran."""
    if mode is False or str(device).startswith("cuda"):
        return ""
    return f", gemm {gemm}" + (" (per product, measured)" if gemm == "auto" else "")


def lshape_pdeml(mode, device, cuda_graphs=True, gemm="auto", stack=False):
    import pdeml as pl
    from pdeml.cases.poisson_lshape import VERTICES
    from pdeml.samplers import Uniform
    from pdeml.solvers import PINN

    prob = pl.Problem(
        pl.geometry.Polygon(VERTICES), lambda x, u: -u.laplacian() - 1.0, [pl.Dirichlet(0.0)]
    )
    from pdeml.derivatives import Taylor

    be = PINN(
        pl.nn.MLP(50, 4), estimator=Taylor(stack=stack), sampler=Uniform(1200, 120), compile=mode
    ).build(prob, seed=0, device=device)
    be.cuda_graphs, be.gemm = cuda_graphs, gemm
    tail = "" if cuda_graphs or not str(device).startswith("cuda") else ", no CUDA graphs"
    tail += _gemm_tail(mode, device, gemm) + (", stacked rows" if stack else "")
    return PdemlRun(f"pdeml compile={mode}{tail}", be, lambda: pl.FirstOrder(pl.Adam(1e-3)))


def stde_pdeml(mode, device, dim, gemm="auto"):
    from pdeml.families.highdim import make_case
    from pdeml.run import build
    from pdeml.settings import replace

    case = make_case("allen_cahn", dim, 0)
    case = case.replace(method=replace(case.method, compile=mode))
    be = build(case, seed=0, device=device)
    be.gemm = gemm
    import pdeml as pl

    return PdemlRun(
        f"pdeml STDE compile={mode}" + _gemm_tail(mode, device, gemm),
        be,
        lambda: pl.FirstOrder(pl.Adam(1e-3)),
    )


# ----------------------------------------------------------- the compile options, measured
class StepRun:
    """One way to take the L-shape's Adam step, timed without ``fit`` (which offers only the
    eager, the compiled-losses and the whole-step paths): ``step()`` takes one."""

    def __init__(self, name, step):
        self.name, self.step = name, step

    def block(self, steps: int) -> float:
        t = time.perf_counter()
        for _ in range(steps):
            loss = self.step()
        self.loss = float(loss)
        return (time.perf_counter() - t) / steps


def option_runs(device):
    """Eager; the losses compiled; + ``torch.compile(opt.step)``; the whole Python step under
    torch.compile with compiled autograd capturing its backward; the whole step of ``fit``. Every
    compiled graph gets fit's oneDNN pass (:mod:`pdeml.gemm`), so the rows differ in what is
    compiled, not in the matrix products."""
    import numpy as np
    import torch

    import pdeml as pl
    from pdeml.gemm import compile_options
    from pdeml.sampling import to_torch

    def backend(mode):
        be = lshape_pdeml(mode, device).backend
        raw = be.batches(None, np.random.default_rng(0)).current()
        return (
            be,
            to_torch(raw, be.dtype, be.device),
            torch.optim.Adam(be.parameters(), lr=1e-3, fused=True),
        )

    def loop(losses, step_opt, opt):
        def step():
            opt.zero_grad(set_to_none=True)
            total = sum(losses().values())
            total.backward()
            step_opt()
            return total.detach()

        return step

    runs = []
    be, batch, opt = backend(False)
    runs.append(StepRun("eager", loop(lambda: be._losses(batch), opt.step, opt)))
    be2, batch2, opt2 = backend(False)
    compiled = torch.compile(be2._losses, **compile_options(be2, be2.device))
    runs.append(StepRun("compiled losses", loop(lambda: compiled(batch2), opt2.step, opt2)))
    be3, batch3, opt3 = backend(False)
    compiled3 = torch.compile(be3._losses, **compile_options(be3, be3.device))
    runs.append(
        StepRun(
            "compiled losses + compiled opt.step",
            loop(lambda: compiled3(batch3), torch.compile(opt3.step), opt3),
        )
    )
    be4, batch4, opt4 = backend(False)
    torch._dynamo.config.compiled_autograd = True  # torch.compile keeps the config it was made
    try:  # under: on for this step only
        inner = torch.compile(
            loop(lambda: be4._losses(batch4), opt4.step, opt4), **compile_options(be4, be4.device)
        )
    finally:
        torch._dynamo.config.compiled_autograd = False
    runs.append(StepRun("step under torch.compile, compiled autograd", inner))
    be5, batch5, _ = backend(True)
    whole = pl.FirstOrder(pl.Adam(1e-3)).init(be5, {}, 10**6)
    counter = iter(range(10**9))
    runs.append(
        StepRun(
            "whole step (grad_and_value + Adam in one graph)",
            lambda: whole.step(batch5, next(counter)).total,
        )
    )
    for mode in (False, True):  # ConFIG, the one per-term combiner in the graph
        run = lshape_pdeml(mode, device)
        runs.append(
            PdemlRun(
                f"ConFIG, fit, compile={mode}",
                run.backend,
                lambda: pl.FirstOrder(pl.Adam(1e-3), pl.ConFIG()),
            )
        )
    return runs


def calibrate(device, blocks: int, block_steps: int):
    """What the whole step saves per step at five sizes, against the lower bound a + b N H of
    ``compile="auto"``, and what it costs to compile (the warm-up)."""
    import pdeml as pl
    from pdeml.cases.poisson_lshape import VERTICES
    from pdeml.samplers import Uniform
    from pdeml.solvers import PINN
    from pdeml.solvers.pinn import AUTO_SAVING_S, hidden_units

    prob = pl.Problem(
        pl.geometry.Polygon(VERTICES), lambda x, u: -u.laplacian() - 1.0, [pl.Dirichlet(0.0)]
    )
    print(
        "\n| N, network | eager | compiled | saved per step | bound a + bNH | warm-up (compile) |"
    )
    print("|---|---|---|---|---|---|")
    for nd, nb, w, d in [
        (200, 40, 20, 3),
        (1200, 120, 50, 4),
        (4000, 400, 50, 4),
        (1000, 100, 128, 4),
        (4000, 400, 100, 4),
    ]:
        runs = [
            PdemlRun(
                f"compile={m}",
                PINN(pl.nn.MLP(w, d), sampler=Uniform(nd, nb), compile=m).build(
                    prob, seed=0, device=device
                ),
                lambda: pl.FirstOrder(pl.Adam(1e-3)),
            )
            for m in (False, True)
        ]
        rows = measure(runs, blocks, block_steps, 3)
        a, b = AUTO_SAVING_S
        bound = a + b * (nd + nb) * hidden_units(runs[0].backend.net)
        e, c = rows[0]["median"], rows[1]["median"]
        print(
            f"| {nd + nb}, {w}x{d} | {e * 1e3:.2f} ms | {c * 1e3:.2f} ms | {(e - c) * 1e3:.2f} ms "
            f"| {bound * 1e3:.2f} ms | {rows[1]['warm_s']:.1f} s |"
        )


def gemm_table(
    shapes=(
        (1600, 128, 128),
        (100, 1000, 128),
        (100, 128, 128),
        (1320, 50, 50),
        (2640, 50, 50),
        (100, 50, 50),
        (1024, 1024, 1024),
    ),
):
    """float32 products on one thread: torch's BLAS (MKL) against oneDNN (``pdeml.gemm``), for
    ``y = x @ w.T`` (x: M x K, w: N x K) and a weight gradient ``g.T @ x`` (both factors
    transposed), the two forms of a training step."""
    import torch

    from pdeml.gemm import MIN_MACS, onednn_linear

    def timed(f):
        for _ in range(3):
            f()
        reps = max(5, int(3e8 / (M * K * N)))
        t = time.perf_counter()
        for _ in range(reps):
            f()
        return (time.perf_counter() - t) / reps

    print(
        f"\nfloat32 products, one thread (oneDNN takes those of >= {MIN_MACS:.0e} multiply-adds in "
        "compiled graphs)"
    )
    print("| M x K x N | x @ w.T: MKL | oneDNN | GFLOP/s MKL / oneDNN | g.T @ x: MKL | oneDNN |")
    print("|---|---|---|---|---|---|")
    for M, K, N in shapes:
        x, w, g = torch.randn(M, K), torch.randn(N, K), torch.randn(M, N)
        f_mkl, f_dnn = timed(lambda: x @ w.T), timed(lambda: onednn_linear(x, w, None))
        b_mkl, b_dnn = timed(lambda: g.T @ x), timed(lambda: onednn_linear(g.T, x.T, None))
        gf = 2 * M * K * N / 1e9
        print(
            f"| {M}x{K}x{N} | {f_mkl * 1e6:.0f} us | {f_dnn * 1e6:.0f} us ({f_mkl / f_dnn:.2f}x) "
            f"| {gf / f_mkl:.0f} / {gf / f_dnn:.0f} | {b_mkl * 1e6:.0f} us | {b_dnn * 1e6:.0f} us "
            f"({b_mkl / b_dnn:.2f}x) |"
        )


class OfficialStde:
    """The STDE paper's own code (github.com/sail-sg/stde), run from its checkout ``root`` by the
    interpreter ``python`` of an environment made for it, on the benchmark's core with
    single-threaded XLA, with the paper's D = 1000 setup. Each block is one run of ``epochs``
    steps. Its s/step is read from the progress lines the code logs (absl's timestamps and tqdm's
    step counts) between 20% and 95% of the run: the jit compile before and the one evaluation at
    the end are not in it. (The "mean speed" the code prints is one tqdm line's rate, smoothed
    or overall depending on where the log ends.) The warm-up call runs nothing."""

    LINE = r"I\d{4} (\d\d):(\d\d):(\d\d\.\d+) .*?\|\s*(\d+)/(\d+) \["

    def __init__(self, python: str, root: str, dim: int, epochs: int = 600):
        self.python, self.root, self.dim, self.epochs = python, root, dim, epochs
        self.name, self.warm, self.loss = (
            "the STDE paper's code (JAX), same setup",
            False,
            float("nan"),
        )

    def block(self, steps: int) -> float:
        import re
        import subprocess

        if not self.warm:
            self.warm = True
            return float("nan")
        e = self.epochs
        args = [
            "--config.eqn_cfg.name",
            "AllenCahnTwobody",
            "--config.eqn_cfg.dim",
            str(self.dim),
            "--config.eqn_cfg.hess_diag_method",
            "sparse_stde",
            "--config.eqn_cfg.rand_batch_size",
            "16",
            "--config.eqn_cfg.batch_size",
            "100",
            "--config.eqn_cfg.enforce_boundary=True",
            "--config.eqn_cfg.boundary_weight",
            "0.0",
            "--config.test_cfg.show_stats=False",
            "--config.gd_cfg.epochs",
            str(e),
            "--config.test_cfg.eval_every",
            str(e),
            "--n_runs",
            "1",
        ]
        out = subprocess.run(
            [self.python, "main.py", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": self.root},
        )
        marks = [
            (3600 * int(h) + 60 * int(m) + float(sec), int(n))
            for h, m, sec, n, _ in re.findall(self.LINE, out.stdout + out.stderr)
        ]
        marks = [(t, n) for t, n in marks if 0.2 * e <= n <= 0.95 * e]
        if len(marks) < 2 or marks[-1][1] == marks[0][1]:
            raise RuntimeError(
                f"the STDE paper's code logged no progress:\n{(out.stdout + out.stderr)[-2000:]}"
            )
        (t0, n0), (t1, n1) = marks[0], marks[-1]
        return (t1 - t0) / (n1 - n0)


# ------------------------------------------------------------------------------------- JAX
class JaxRun:
    def __init__(self, name, step, state):
        self.name, self.step, self.state = name, step, state

    def block(self, steps: int) -> float:
        t = time.perf_counter()
        state = self.state
        for _ in range(steps):
            state = self.step(*state)
        state[-1].block_until_ready()
        self.state = state
        self.loss = float(state[-1])
        return (time.perf_counter() - t) / steps


def _glorot_mlp(key, sizes):
    import jax
    import numpy as np

    params = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        key, k = jax.random.split(key)
        params.append((jax.random.normal(k, (i, o)) * np.sqrt(2 / (i + o)), jax.numpy.zeros(o)))
    return params


def _lshape_jax_problem():
    """The L-shape's points (1200 domain, 120 boundary: the pdeml run's batch) and the initial
    2-50x4-1 weights, as JAX arrays."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import pdeml as pl
    from pdeml.cases.poisson_lshape import VERTICES
    from pdeml.samplers import Uniform

    prob = pl.Problem(
        pl.geometry.Polygon(VERTICES), lambda x, u: -u.laplacian() - 1.0, [pl.Dirichlet(0.0)]
    )
    batch = Uniform(1200, 120).init(prob, np.random.default_rng(0)).current()
    xd = jnp.asarray(batch["domain"]["x"], jnp.float32)
    xb = jnp.asarray(batch[prob.condition_names[0]]["x"], jnp.float32)
    return xd, xb, _glorot_mlp(jax.random.PRNGKey(0), [2, 50, 50, 50, 50, 1])


def _adam_run(name: str, loss, params):
    """A :class:`JaxRun` of ``jax.jit`` of loss, gradient and the optax Adam update (1e-3)."""
    import jax
    import jax.numpy as jnp
    import optax

    opt = optax.adam(1e-3)

    @jax.jit
    def step(p, s, _):
        value, g = jax.value_and_grad(loss)(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, value

    return JaxRun(name, step, (params, opt.init(params), jnp.zeros(())))


def lshape_jax():
    """jit(loss + grad + optax Adam) with a hand-written forward Laplacian."""
    import jax.numpy as jnp

    xd, xb, params = _lshape_jax_problem()

    def laplacian(p, x):
        h, g, lap = (
            x,
            jnp.broadcast_to(jnp.eye(2)[:, None, :], (2, x.shape[0], 2)),
            jnp.zeros_like(x),
        )
        for W, c in p[:-1]:
            z, gz, lz = h @ W + c, g @ W, lap @ W
            t = jnp.tanh(z)
            d1 = 1 - t * t
            h, lap, g = t, d1 * lz - 2 * t * d1 * (gz**2).sum(0), d1 * gz
        return lap @ p[-1][0]

    def mlp(p, x):
        for W, c in p[:-1]:
            x = jnp.tanh(x @ W + c)
        return x @ p[-1][0] + p[-1][1]

    def loss(p):
        return ((-laplacian(p, xd) - 1.0) ** 2).mean() + (mlp(p, xb) ** 2).mean()

    return _adam_run("JAX jit (forward Laplacian)", loss, params)


def lshape_jax_stacked():
    """The same step with the value, gradient and Laplacian rows of every layer stacked into one
    (rows x width) matrix, so each layer is one matrix product instead of 2 + d: the domain's
    and the boundary's values, then the domain's two gradient rows and its Laplacian (the
    variant that beat the forward-Laplacian one by 1.3x on an Intel Xeon)."""
    import jax.numpy as jnp

    xd, xb, params = _lshape_jax_problem()
    n, m = xd.shape[0], xd.shape[0] + xb.shape[0]
    x = jnp.concatenate([xd, xb])

    def rows(z, gz, lz):
        """tanh on stacked pre-activations: values of all m points, then the domain's jet."""
        t = jnp.tanh(z)
        td = t[:n]
        d1 = 1 - td * td
        lap = d1 * lz - 2 * td * d1 * (gz**2).sum(0)
        return jnp.concatenate([t, (d1 * gz).reshape(2 * n, -1), lap])

    def loss(p):
        W, c = p[0]  # the input tangents are unit vectors: row k of W, the Laplacian 0
        z = x @ W + c
        s = rows(z, jnp.broadcast_to(W[:, None, :], (2, n, W.shape[1])), jnp.zeros_like(z[:n]))
        for W, c in p[1:-1]:
            Z = s @ W  # one product per layer
            s = rows(Z[:m] + c, Z[m : m + 2 * n].reshape(2, n, -1), Z[m + 2 * n :])
        out = s @ p[-1][0]
        u_b, lap = out[n:m] + p[-1][1], out[m + 2 * n :]
        return ((-lap - 1.0) ** 2).mean() + (u_b**2).mean()

    return _adam_run("JAX jit (stacked rows)", loss, params)


def stde_jax(dim: int, width=128, depth=4, points=100, sampled=16):
    """The STDE estimator with jax.experimental.jet, as the paper's reference code computes it."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax.experimental.jet import jet

    from pdeml.families.highdim import coefficients

    c = jnp.asarray(coefficients(dim, 0).numpy(), jnp.float32)
    params = _glorot_mlp(jax.random.PRNGKey(0), [dim] + [width] * depth + [1])

    def u(p, x):  # one point (D,) -> scalar, (1 - |x|^2) MLP(x)
        h = x
        for W, b in p[:-1]:
            h = jnp.tanh(h @ W + b)
        return (1 - x @ x) * (h @ p[-1][0] + p[-1][1])[0]

    def forcing(x):  # Δu* + u* - u*^3 of the two-body solution
        a, b_ = x[:-1], x[1:]
        ca, cb, sa, sb = jnp.cos(a), jnp.cos(b_), jnp.sin(a), jnp.sin(b_)
        th = a + cb + b_ * ca
        s, co = jnp.sin(th), jnp.cos(th)
        da, db, daa, dbb = 1 - b_ * sa, ca - sb, -b_ * ca, -cb
        g = (c * s).sum()
        xg = (c * co * (a * da + b_ * db)).sum()
        lg = (c * (co * (daa + dbb) - s * (da**2 + db**2))).sum()
        bb = 1 - x @ x
        us = bb * g
        return -2 * dim * g - 4 * xg + bb * lg + us - us**3

    def second(p, x, v):  # v^T H v by a 2-jet along v
        _, (_, u2) = jet(lambda y: u(p, y), (x,), ((v, jnp.zeros_like(v)),))
        return u2

    def loss(p, key):
        k1, k2, k3 = jax.random.split(key, 3)
        z = jax.random.normal(k1, (points, dim))
        r = jax.random.uniform(k2, (points, 1)) ** (1 / dim)
        x = z / jnp.linalg.norm(z, axis=1, keepdims=True) * r
        idx = jax.random.choice(k3, dim, (sampled,), replace=False)
        vs = jax.nn.one_hot(idx, dim)
        lap = jax.vmap(lambda xi: jax.vmap(lambda v: second(p, xi, v))(vs).sum() * dim / sampled)(x)
        val = jax.vmap(lambda xi: u(p, xi))(x)
        res = lap + val - val**3 - jax.vmap(forcing)(x)
        return (res**2).mean()

    opt = optax.adam(1e-3)

    @jax.jit
    def step(p, s, key, _):
        key, sub = jax.random.split(key)
        value, g = jax.value_and_grad(loss)(p, sub)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, key, value

    return JaxRun(
        f"JAX jit STDE (jet), D={dim}",
        step,
        (params, opt.init(params), jax.random.PRNGKey(1), jnp.zeros(())),
    )


# ----------------------------------------------------------------------------------- main
def measure(runs, blocks: int, block_steps: int, warmup: int) -> list[dict]:
    rows = []
    for r in runs:  # warm-up: compiles and caches
        t = time.perf_counter()
        r.block(warmup)
        r.warm_s = time.perf_counter() - t
    times = {r.name: [] for r in runs}
    for _ in range(blocks):
        for r in runs:
            times[r.name].append(r.block(block_steps))
    for r in runs:
        t = times[r.name]
        rows.append(
            {
                "name": r.name,
                "median": statistics.median(t),
                "min": min(t),
                "max": max(t),
                "warm_s": r.warm_s,
                "loss": r.loss,
            }
        )
    return rows


def table(title, rows, ref_name):
    ref = next((r["median"] for r in rows if r["name"] == ref_name), None)
    print(f"\n{title}")
    print(
        f"| implementation | s/step (median) | spread (min-max) | vs {ref_name} | warm-up (incl. "
        "compile) |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['median'] / ref:.2f}x" if ref else "-"
        print(
            f"| {r['name']} | {r['median'] * 1e3:.2f} ms | "
            f"{r['min'] * 1e3:.2f}-{r['max'] * 1e3:.2f} ms | {ratio} "
            f"| {r['warm_s']:.1f} s |"
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--problems",
        nargs="+",
        default=["lshape", "stde"],
        choices=["lshape", "stde", "options", "calibrate", "gemm"],
        help="options: the ways of compiling the L-shape step; calibrate: the auto rule's sizes; "
        "gemm: float32 products through MKL and oneDNN",
    )
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--block-steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--dim", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-pin", action="store_true", help="do not pin to one core (GPU runs)")
    ap.add_argument(
        "--stde-official",
        nargs=2,
        metavar=("PYTHON", "CHECKOUT"),
        help="also run the STDE paper's code: its environment's python and its checkout",
    )
    args = ap.parse_args()
    if args.device == "cpu" and not args.no_pin:
        pin_to_one_core()
    sys.path.insert(0, str(ROOT))
    import torch

    if args.device == "cpu":
        torch.set_num_threads(1)
    try:
        import jax
    except ImportError:
        jax = None
        print("JAX is not installed (pip install jax optax): pdeml rows only")
    modes = [False, "losses", True]
    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}"
        + (f", jax {jax.__version__} on {jax.devices()[0].platform}" if jax else "")
    )
    same = jax is not None and jax.devices()[0].platform == args.device.split(":")[0]
    if jax is not None and not same:
        print(f"JAX runs on {jax.devices()[0].platform}, not {args.device}: pdeml rows only")
        jax = None
    if "lshape" in args.problems:
        runs = [lshape_pdeml(m, args.device) for m in modes]
        runs += [lshape_pdeml(m, args.device, stack=True) for m in (False, True)]
        if args.device.startswith("cuda"):
            runs.append(lshape_pdeml(True, args.device, cuda_graphs=False))
        else:  # the automatic choice against both fixed ones
            runs += [lshape_pdeml(True, args.device, gemm=g) for g in ("mkl", "onednn")]
        if jax is not None:  # the strongest JAX step we can write is the reference
            runs += [lshape_jax(), lshape_jax_stacked()]
        rows = measure(runs, args.blocks, args.block_steps, args.warmup)
        jax_rows = [r for r in rows if r["name"].startswith("JAX")]
        table(  # against the faster JAX variant on this machine
            "L-shape Poisson, 2-50x4-1 tanh, 1200 + 120 points, Adam, float32",
            rows,
            min(jax_rows, key=lambda r: r["median"])["name"] if jax_rows else "pdeml compile=False",
        )
    if "options" in args.problems:
        rows = measure(option_runs(args.device), args.blocks, args.block_steps, args.warmup)
        table(
            "L-shape Poisson: the ways of compiling the step (the first five without fit)",
            rows,
            "eager",
        )
    if "gemm" in args.problems:
        gemm_table()
    if "calibrate" in args.problems:
        calibrate(args.device, max(3, args.blocks // 3), args.block_steps // 2)
    if "stde" in args.problems:
        runs = [stde_pdeml(m, args.device, args.dim) for m in (False, True)]
        if args.device == "cpu":
            runs += [stde_pdeml(True, args.device, args.dim, gemm=g) for g in ("mkl", "onednn")]
        if jax is not None:
            runs.append(stde_jax(args.dim))
        if args.stde_official:
            runs.append(OfficialStde(*args.stde_official, args.dim))
        rows = measure(runs, max(3, args.blocks // 3), max(10, args.block_steps // 4), 5)
        ref = (
            runs[-1].name
            if args.stde_official
            else f"JAX jit STDE (jet), D={args.dim}"
            if jax
            else "pdeml STDE compile=False"
        )
        table(
            f"Allen-Cahn, D = {args.dim}, STDE 16 sampled dims, 128x4 tanh, 100 points, Adam, "
            "float32",
            rows,
            ref,
        )


if __name__ == "__main__":
    main()
