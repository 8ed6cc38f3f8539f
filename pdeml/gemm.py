r"""The matrix products of compiled CPU graphs, in float32, through oneDNN (issue 20).

On the CPU, torch runs a float32 ``mm``/``addmm`` through its BLAS (MKL in the PyPI wheels).
MKL picks its kernels by CPU vendor: on an AMD CPU with AVX-512 it runs its AVX2 kernels, at
about half the core's peak. oneDNN, which torch also ships, picks by instruction set. Measured on
this project's CPU (an AMD EPYC with AVX-512, one thread,
``tests/benchmarks/bench_pinn_vs_jax.py --problems gemm``): about 100 GFLOP/s through MKL against
190-250 through oneDNN, for a 1600x128x128 product as for a 1024-cube. On an Intel CPU MKL runs
its AVX-512 kernels too, and the pass should gain little (not measured: no Intel machine here).

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

The choice is made from the graph's shapes and dtypes alone, never by timing, so a seeded run
does the same arithmetic every time. A backend with ``onednn_gemm = False`` compiles without the
pass (the benchmark's comparison). Imported when a graph is compiled (it loads inductor).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass

#: the smallest product (M*K*N multiply-adds) the pass hands to oneDNN
MIN_MACS = 1_000_000


def available() -> bool:
    """oneDNN is built into this torch and the CPU is x86-64 with AVX2 or better."""
    return (
        torch.backends.mkldnn.is_available()
        and torch.backends.cpu.get_cpu_capability().startswith("AVX")
    )


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


class OneDNNGemm(CustomGraphPass):
    """Inductor post-grad pass: each large float32 CPU ``mm``/``addmm`` becomes
    ``pdeml::onednn_linear``. An ``addmm`` whose added term is a row bias keeps it in the call; any
    other added term (a gradient accumulated across uses of a weight) is added after it."""

    def __call__(self, graph: torch.fx.Graph) -> None:
        for node in list(graph.nodes):
            found = _product(node)
            if found is None:
                continue
            a, b, bias, row = found
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
        """Keys inductor's graph cache: this file's text (the pass and its threshold)."""
        return hashlib.sha256(Path(__file__).read_bytes()).digest()


#: the one instance: torch.compile tells its compiled frames apart by their options, and a new
#: pass object in each would make every new step recompile
PASS = OneDNNGemm()


def compile_options(backend, device: torch.device) -> dict:
    """The keyword arguments of :func:`torch.compile` for ``backend``'s graphs on ``device``:
    the oneDNN pass on a CPU that has it, unless ``backend.onednn_gemm`` is False."""
    if device.type != "cpu" or not getattr(backend, "onednn_gemm", True) or not available():
        return {}
    return {"options": {"post_grad_custom_post_pass": PASS}}
