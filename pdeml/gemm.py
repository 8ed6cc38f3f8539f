r"""The matrix products of compiled CPU graphs, in float32, through oneDNN (issue 20).

On the CPU, torch runs a float32 ``mm``/``addmm`` through its BLAS (MKL in the PyPI wheels).
MKL picks its kernels by CPU vendor: on an AMD CPU with AVX-512 it runs its AVX2 kernels, at
about half the core's peak. oneDNN, which torch also ships, picks by instruction set. Measured on
this project's CPU (an AMD EPYC with AVX-512, one thread,
``tests/benchmarks/bench_pinn_vs_jax.py --problems gemm``): about 100 GFLOP/s through MKL against
190-250 through oneDNN, for a 1600x128x128 product as for a 1024-cube. On an Intel CPU MKL runs
its AVX-512 kernels, and the pass made an Intel Xeon's L-shape step 1.4x slower (measured by
the issue that asked for the choice): so the pass runs only where :func:`pdeml.device.gemm`
chooses oneDNN, by the CPU's vendor with ``--gemm auto`` (the default), or where ``--gemm
onednn`` forces it.

A PINN step's matrix products are most of its time once compiling has fused the elementwise
work around them: at D = 1000 with STDE, 5.6 ms of a 9.9 ms compiled step. So the compiled
graphs (:class:`pdeml.steppers.WholeStep`, and ``compile="losses"``) go through an inductor
pass, :class:`OneDNNGemm`, that rewrites each float32 CPU ``mm`` and ``addmm`` of at least
:data:`MIN_MACS` multiply-adds into ``pdeml::onednn_linear``, an operator that calls oneDNN's
inner-product kernel (``torch.ops.mkldnn._linear_pointwise``). The pass runs after AOTAutograd
has differentiated the step, so the backward's products are rewritten as the forward's are, and
no autograd formula is involved. The arithmetic stays float32 with float32 accumulation (oneDNN's
strict default; the order of the sums differs from MKL's, so results agree to float rounding).

Smaller products stay with MKL: each oneDNN call costs about 8-12 us more, and under about 10^6
multiply-adds that outweighs the faster kernel (a 100x50x50 product: 0.53x). Float64 products
stay too (oneDNN has no float64 matmul), as does any device but the CPU.

The choice is made from the machine and the graph's shapes and dtypes alone, never by timing,
so a seeded run does the same arithmetic every time; run.json records it and a resumed run keeps
it. A backend with ``onednn_gemm = False`` compiles without the pass (the benchmark's
comparison). Imported when a graph is compiled (it loads inductor).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass

from .device import gemm, onednn_available, requested_gemm
from .device import gemm_cache_path as cache_path

#: the smallest product (M*K*N multiply-adds) the pass hands to oneDNN
MIN_MACS = 1_000_000


def available() -> bool:
    """oneDNN is built into this torch and the CPU is x86-64 with AVX2 or better."""
    return onednn_available()


_lib = torch.library.Library("pdeml", "DEF")
_lib.define("onednn_linear(Tensor x, Tensor w, Tensor? bias) -> Tensor")


def _onednn_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ w.T + bias`` by oneDNN's inner product (x: (M, K), w: (N, K), bias: (N,) or None).

    oneDNN reads the weight in either layout, but wants x with K contiguous. A weight gradient
    contracts over the batch dimension, the outer one of both its factors, so its x is copied
    first (about 30 us for a 1600x128 factor, against 200 us saved). Asking inductor for that
    layout instead (a clone in the graph) was slower: it made the copies apart too, and more of
    them. A weight with no unit stride is copied too, and a bias that is not contiguous: oneDNN
    ignores a bias's stride (a strided bias gave wrong sums, with no error)."""
    if bias is not None and not bias.is_contiguous():  # oneDNN reads the bias as contiguous: a
        bias = bias.contiguous()  # strided one gave wrong sums, silently
    return torch.ops.mkldnn._linear_pointwise(
        x, w if 1 in w.stride() else w.contiguous(), bias, "none", [], ""
    )


_lib.impl("onednn_linear", _onednn_linear, "CPU")


@torch.library.register_fake("pdeml::onednn_linear", lib=_lib)
def _onednn_linear_shape(x, w, bias):
    return x.new_empty(x.shape[0], w.shape[0])


onednn_linear = torch.ops.pdeml.onednn_linear.default


def _product(node):
    """``(a, b, bias, bias_is_row)`` of an ``mm``/``addmm`` node worth handing to oneDNN, or
    None."""
    aten = torch.ops.aten
    if node.op != "call_function" or node.target not in (aten.mm.default, aten.addmm.default):
        return None
    if node.target is aten.mm.default:
        (a, b), bias = node.args[:2], None
    else:
        bias, a, b = node.args[:3]
        if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
            return None
    vals = [getattr(x, "meta", {}).get("val") for x in (a, b)]
    if any(not isinstance(v, torch.Tensor) for v in vals):
        return None
    (M, K), (_, N) = vals[0].shape, vals[1].shape
    if (
        any(v.device.type != "cpu" or v.dtype != torch.float32 for v in vals)
        or M * K * N < MIN_MACS
    ):
        return None
    row = None
    if bias is not None:
        bv = getattr(bias, "meta", {}).get("val")
        if not isinstance(bv, torch.Tensor) or bv.dtype != torch.float32:
            return None
        row = bv.ndim == 1 and bv.shape[0] == N
    return a, b, bias, row


def _hint(n) -> int | None:
    """A size as an int: itself, a symbolic size's example value (a graph compiled for dynamic
    batch sizes), or None."""
    if isinstance(n, int):
        return n
    return getattr(getattr(n, "node", None), "hint", None)


def signature(a, b) -> str | None:
    """A product's key: ``"MxKxN:ab"`` with a/b ``N`` where the factor's rows are contiguous
    and ``T`` where it is stored transposed (a weight gradient's factors): what the timings of
    both libraries depend on. A dynamic size counts at its example value; None if unknown."""
    dims = [_hint(n) for n in (*a.shape, b.shape[1])]
    last = [_hint(t.stride()[-1]) for t in (a, b)]
    if None in dims or None in last:
        return None
    M, K, N = dims
    return f"{M}x{K}x{N}:" + "".join("N" if st == 1 else "T" for st in last)


def _factors(sig: str):
    dims, lay = sig.split(":")
    M, K, N = (int(v) for v in dims.split("x"))
    g = torch.Generator().manual_seed(0)
    a = torch.randn(M, K, generator=g) if lay[0] == "N" else torch.randn(K, M, generator=g).T
    b = torch.randn(K, N, generator=g) if lay[1] == "N" else torch.randn(N, K, generator=g).T
    return a, b


def measure(sig: str, rounds: int = 9) -> dict:
    """Seconds of one product of shape ``sig`` through MKL (``a @ b``) and through oneDNN (with
    the copies :func:`_onednn_linear` makes), the median of ``rounds`` interleaved calls each
    after a warm-up, on this process's threads."""
    import statistics
    import time

    a, b = _factors(sig)
    calls = {"mkl": lambda: torch.mm(a, b), "onednn": lambda: _onednn_linear(a, b.T, None)}
    for f in calls.values():
        f(), f()
    times: dict = {k: [] for k in calls}
    for _ in range(rounds):
        for k, f in calls.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


#: oneDNN takes a product only where it measured at least this much faster than MKL (a margin:
#: a near tie stays with torch's default library). 0.9 left STDE at D = 10 000 6% slower than
#: oneDNN for every product: its first-layer products measured 0.90-0.91.
FASTER = 0.95


def _choice(entry: dict) -> str:
    """A cached measurement's library by :data:`FASTER` (the times are kept, so a new margin
    re-decides without measuring again)."""
    if "mkl_us" in entry and "onednn_us" in entry:
        return "onednn" if entry["onednn_us"] < FASTER * entry["mkl_us"] else "mkl"
    return entry["choice"]


def _read(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text()).get("products", {})
    except (OSError, ValueError, AttributeError):
        return {}


def calibrated(sig: str) -> str:
    """``"onednn"`` or ``"mkl"`` for a product of shape ``sig`` on this machine: read from
    :func:`cache_path`, or measured (:func:`measure`) and written there, so the choice is
    made once per machine and every later run makes the same one. An unwritable cache only
    costs the measurement again."""
    import json
    import os
    import tempfile

    from .device import cpu_model

    path = cache_path()
    known = _read(path)
    if sig in known:
        return _choice(known[sig])
    t = measure(sig)
    entry = {f"{k}_us": v * 1e6 for k, v in t.items()}
    choice = _choice(entry)
    known = {**_read(path), sig: {"choice": choice, **entry}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads()}
        fd, tmp = tempfile.mkstemp(prefix=".gemm-", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({**body, "products": known}, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass
    return choice


class OneDNNGemm(CustomGraphPass):
    """Inductor post-grad pass: large float32 CPU ``mm``/``addmm`` become
    ``pdeml::onednn_linear``; every one of them (``mode="onednn"``), or, with ``mode="auto"``,
    those that ``table`` (product signature -> library) or this machine's measurements
    (:func:`calibrated`, which fill ``table``) give to oneDNN. An ``addmm`` whose added term is a
    row bias keeps it in the call; any other added term (a gradient accumulated across uses of a
    weight) is added after it."""

    def __init__(self, mode: str = "onednn", table: dict | None = None):
        self.mode, self.table = mode, table if table is not None else {}

    def __call__(self, graph: torch.fx.Graph) -> None:
        for node in list(graph.nodes):
            found = _product(node)
            if found is None:
                continue
            a, b, bias, row = found
            if self.mode == "auto":
                sig = signature(a.meta["val"], b.meta["val"])
                if sig is None:  # no size to measure at: torch's default library
                    continue
                if sig not in self.table:
                    self.table[sig] = calibrated(sig)
                if self.table[sig] != "onednn":
                    continue
            with graph.inserting_before(node):
                bt = graph.call_function(torch.ops.aten.permute.default, (b, [1, 0]))
                bt.meta["val"] = b.meta["val"].t()
                if bias is None or row:
                    new = graph.call_function(onednn_linear, (a, bt, bias))
                else:
                    mm = graph.call_function(onednn_linear, (a, bt, None))
                    mm.meta["val"] = node.meta["val"]
                    new = graph.call_function(torch.ops.aten.add.Tensor, (mm, bias))
            new.meta.update(node.meta)
            node.replace_all_uses_with(new)
            graph.erase_node(node)

    def uuid(self) -> bytes:
        """Keys inductor's graph cache: this file's text, the mode, and for ``"auto"`` the
        decisions known so far (the run's table and this machine's measurements)."""
        import json

        h = hashlib.sha256(Path(__file__).read_bytes() + self.mode.encode())
        if self.mode == "auto":
            known = {**{k: _choice(v) for k, v in _read(cache_path()).items()}, **self.table}
            h.update(json.dumps(known, sort_keys=True).encode())
        return h.digest()


#: the forced pass (``--gemm onednn``): one instance, since torch.compile tells its compiled
#: frames apart by their options, and a new pass object in each would make every step recompile
PASS = OneDNNGemm("onednn")


def compile_options(backend, device: torch.device) -> dict:
    """The keyword arguments of :func:`torch.compile` for ``backend``'s graphs on ``device``,
    by :func:`pdeml.device.gemm` of ``backend.gemm`` ("auto" by default; ``backend.onednn_gemm
    = False`` forces MKL, as before): no pass for MKL, :data:`PASS` for oneDNN, and for "auto"
    the backend's own pass over its ``gemm_table`` (the decisions a checkpoint keeps)."""
    choice = gemm(requested_gemm(backend), device)[0]
    if choice == "onednn":
        return {"options": {"post_grad_custom_post_pass": PASS}}
    if choice != "auto":
        return {}
    if getattr(backend, "_gemm_pass", None) is None:
        table = getattr(backend, "gemm_table", None)
        backend._gemm_pass = OneDNNGemm("auto", table if table is not None else {})
    return {"options": {"post_grad_custom_post_pass": backend._gemm_pass}}
