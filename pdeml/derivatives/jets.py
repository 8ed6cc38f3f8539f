r"""Taylor-mode automatic differentiation ("jets") for the layers pdeml ships.

A K-jet of a curve :math:`h(t)` through a layer's input is the list of its derivatives
:math:`(h_0, h_1, \dots, h_K)`, :math:`h_j = \partial_t^j h(t)|_{t=0}`. Pushing the input jet
:math:`(x, v^{(1)}, \dots, v^{(K)})` of the curve :math:`x(t) = x + \sum_j v^{(j)} t^j / j!`
through the network gives the output jet, whose :math:`j`-th coefficient is
:math:`\partial_t^j u(x(t))|_{t=0}`: with :math:`(v, 0)`, :math:`u_2 = v^\top \nabla^2 u\, v`.
Several directions :math:`s = 1..S` travel together.

Rules (Griewank & Walther, "Evaluating derivatives", ch. 13; Bettencourt et al., "Taylor-mode
automatic differentiation for higher-order derivatives in JAX", 2019):

* Linear: :math:`(W h_0 + b, W h_1, \dots, W h_K)`; a one-hot input tangent :math:`e_i` is a
  column lookup :math:`W_{:, i}` (no :math:`d \times d` identity is ever built).
* Elementwise :math:`\sigma`: Faà di Bruno,
  :math:`y_n = \sum_{\pi \in P(n)} c_\pi\, \sigma^{(|\pi|)}(h_0) \prod_{B \in \pi} h_{|B|}`,
  summed over the integer partitions of :math:`n` with
  :math:`c_\pi = n! / \prod_j m_j!\,(j!)^{m_j}` (tanh: :math:`y_2 = (1-y_0^2) h_2 - 2 y_0 (1-y_0^2)
  h_1^2`).
* Products: Leibniz, :math:`(ab)_n = \sum_k \binom{n}{k} a_k b_{n-k}`.
* Collapsed Taylor mode (Dangel, Mucsányi, Siebenborn, Zeinhofer, Kristiadi, "Collapsing
  Taylor mode automatic differentiation", 2025): the top coefficient enters every rule
  linearly, so the weighted sum :math:`\sum_s w_s h_{K,s}` can be propagated instead of the
  :math:`S` separate ones (the forward Laplacian for :math:`K = 2`, :math:`w = 1`).
* Anything else: nested :func:`torch.func.jvp` along the curve (slower; a warning says so).

Shapes: ``c[0]`` is (N, F); a coefficient ``c[j]`` is (N, S, F), or (S, F) while it is shared by
all points (before the first nonlinearity), or ``None`` when it is zero; a collapsed top
coefficient is (N, F) or (F,).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class OneHot:
    """The input tangents :math:`e_{i_s}\\,\\text{scale}_s`, s = 1..S, without materializing
    them."""

    index: torch.Tensor  # (S,) long
    scale: torch.Tensor  # (S,)
    known: tuple | None = (
        None  # the indices as Python ints, all of unit scale, when not drawn at random
    )

    def dense(self, dim: int, dtype, device) -> torch.Tensor:
        out = torch.zeros(len(self.index), dim, dtype=dtype, device=device)
        out[torch.arange(len(self.index), device=device), self.index] = self.scale.to(dtype)
        return out


@dataclass(frozen=True)
class Prefix:
    """Collapse weights ``a`` on directions ``0..m-1`` and 0 on the rest, without a tensor."""

    m: int
    a: float


@dataclass
class Jet:
    """Coefficients ``c`` (see the module docstring). ``weights`` when the top one is collapsed:
    a tensor (S,), or :class:`Prefix` (m, a): weight ``a`` on the first m directions, 0 after.
    ``stack``: a linear layer multiplies the value and every per-point coefficient as one
    stacked (rows x features) matrix, one product instead of one per coefficient
    (:func:`linear`); the estimator's choice, carried by every rule."""

    c: list
    weights: torch.Tensor | Prefix | None = None
    stack: bool = False

    def like(self, c: list) -> Jet:
        """A jet of coefficients ``c`` with this one's weights and stacking."""
        return Jet(c, self.weights, self.stack)

    @property
    def order(self) -> int:
        return len(self.c) - 1

    @property
    def collapsed(self) -> bool:
        return self.weights is not None

    def is_top(self, j: int) -> bool:
        return self.collapsed and j == self.order


# ----------------------------------------------------------------------------- helpers
def collapse(w, p: torch.Tensor, axis: int = -2) -> torch.Tensor:
    """sum_s w_s p_s over the direction axis."""
    if isinstance(w, Prefix):
        q = p.narrow(axis, 0, w.m).sum(axis)
        return q if w.a == 1.0 else w.a * q
    shape = [1] * p.ndim
    shape[axis] = -1
    return (w.to(p.dtype).reshape(shape) * p).sum(axis)


def _dir(p0: torch.Tensor) -> torch.Tensor:
    """A primal (N, F) made to broadcast against per-direction coefficients (N, S, F)."""
    return p0.unsqueeze(-2)


def _add(a, b):
    if a is None:
        return b
    return a if b is None else a + b


_PARTITIONS: dict = {}


def partitions(n: int) -> tuple:
    """Integer partitions of n as (coefficient, number of parts, ((size, multiplicity), ...)),
    memoized in a plain dict (which torch.compile traces; it warns about ``lru_cache``)."""
    if n not in _PARTITIONS:
        _PARTITIONS[n] = _partitions(n)
    return _PARTITIONS[n]


def _partitions(n: int) -> tuple:
    out = []

    def rec(rest, largest, parts):
        if rest == 0:
            mult = {}
            for p in parts:
                mult[p] = mult.get(p, 0) + 1
            coef = math.factorial(n)
            for j, m in mult.items():
                coef //= math.factorial(m) * math.factorial(j) ** m
            out.append((coef, len(parts), tuple(sorted(mult.items()))))
            return
        for p in range(min(rest, largest), 0, -1):
            rec(rest - p, p, parts + [p])

    rec(n, n, [])
    return tuple(out)


# ----------------------------------------------------------------------------- rules
def _tangent(h, weight: torch.Tensor):
    """One tangent coefficient through ``h @ W.T`` (no bias): a zero stays None, a
    :class:`OneHot` is a column lookup."""
    if h is None:
        return None
    if isinstance(h, OneHot):
        return weight[:, h.index].T * h.scale.to(weight.dtype).unsqueeze(-1)
    if weight.shape[0] == 1:  # one output: a dot product. As a GEMM, its backward is
        return (h * weight[0]).sum(-1, keepdim=True)  # an outer product, 15x slower
    return h @ weight.T


def _stackable(jet: Jet, j: int) -> bool:
    """Coefficient ``j`` holds a row per point: (N, S, F), or the collapsed top (N, F); not a
    shared (S, F) / (F,) one, a one-hot or a zero."""
    h = jet.c[j]
    return isinstance(h, torch.Tensor) and (h.ndim == 3 or (jet.is_top(j) and h.ndim == 2))


def linear(jet: Jet, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Jet:
    """Jet of ``h @ W.T + b``; a :class:`OneHot` tangent becomes a column lookup. With
    ``jet.stack`` the value and the per-point coefficients are one (rows x features) matrix:
    one product of N (1 + S + 1) rows instead of three (the bias goes to the value rows)."""
    rows = [j for j in range(1, len(jet.c)) if _stackable(jet, j)] if jet.stack else []
    if rows and weight.shape[0] > 1:
        flat = [jet.c[0]] + [jet.c[j].reshape(-1, weight.shape[1]) for j in rows]
        parts = (torch.cat(flat) @ weight.T).split([f.shape[0] for f in flat])
        out = [parts[0] if bias is None else parts[0] + bias]
        out += [None if j in rows else _tangent(h, weight) for j, h in enumerate(jet.c) if j]
        for j, part in zip(rows, parts[1:]):
            out[j] = part.reshape(*jet.c[j].shape[:-1], weight.shape[0])
        return jet.like(out)
    return jet.like(
        [torch.nn.functional.linear(jet.c[0], weight, bias)]
        + [_tangent(h, weight) for h in jet.c[1:]]
    )


def affine_diag(jet: Jet, shift: torch.Tensor, scale: torch.Tensor) -> Jet:
    """Jet of ``(h - shift) / scale`` (elementwise; the PINN's input normalization)."""
    out = [(jet.c[0] - shift) / scale]
    for h in jet.c[1:]:
        if isinstance(h, OneHot):
            out.append(OneHot(h.index, h.scale / scale[h.index]))
        else:
            out.append(None if h is None else h / scale)
    return jet.like(out)


def elementwise(jet: Jet, derivatives) -> Jet:
    """Jet of an elementwise function; ``derivatives(h0, K)`` returns
    :math:`[\\sigma(h_0), \\sigma'(h_0), \\dots, \\sigma^{(K)}(h_0)]`."""
    K = jet.order
    if derivatives is tanh_derivatives and K == 2 and jet.collapsed and jet.c[1] is not None:
        return _tanh2(jet)
    d = derivatives(jet.c[0], K)
    out = [d[0]]
    for n in range(1, K + 1):
        top = jet.is_top(n)
        total = None
        for coef, k, mults in partitions(n):
            if any(jet.c[j] is None for j, _ in mults):
                continue
            if top and mults == ((n, 1),):
                term = d[1] * jet.c[n]
            else:
                prod: Any = None
                for j, m in mults:
                    f = jet.c[j] if m == 1 else jet.c[j] ** m
                    prod = f if prod is None else prod * f
                term = d[k] * collapse(jet.weights, prod) if top else _dir(d[k]) * prod
                term = term if coef == 1 else coef * term
            total = _add(total, term)
        out.append(total)
    return jet.like(out)


def _tanh2(jet: Jet) -> Jet:
    """Collapsed 2-jet through tanh with the fewest kernels (the forward Laplacian's hot loop):
    :math:`y_1 = (1-y^2) h_1`, :math:`y_2 = (1-y^2)(h_2 - 2y\\sum_s w_s h_{1,s}^2)`."""
    h0, h1, h2 = jet.c
    y = torch.tanh(h0)
    d1 = 1 - y * y
    q = collapse(jet.weights, h1 * h1)
    inner = -2 * y * q if h2 is None else torch.addcmul(h2, y, q, value=-2.0)
    return jet.like([y, _dir(d1) * h1, d1 * inner])


def multiply(a: Jet, b: Jet) -> Jet:
    """Leibniz rule for the product of two jets with the same directions."""
    K = a.order
    out = [a.c[0] * b.c[0]]
    for n in range(1, K + 1):
        top = a.is_top(n)
        total = None
        for k in range(n + 1):
            p, q = a.c[k], b.c[n - k]
            if p is None or q is None:
                continue
            coef = math.comb(n, k)
            if k == 0:
                term = (p if top else _dir(p)) * q
            elif k == n:
                term = p * (q if top else _dir(q))
            else:
                term = collapse(a.weights, p * q) if top else p * q
            total = _add(total, coef * term)
        out.append(total)
    return a.like(out)


def add(a: Jet, b: Jet) -> Jet:
    return a.like([a.c[0] + b.c[0]] + [_add(p, q) for p, q in zip(a.c[1:], b.c[1:])])


def concat(jets: list[Jet]) -> Jet:
    """Concatenate along the feature axis (zeros filled in where one jet's coefficient is None)."""
    out: list[torch.Tensor | None] = [torch.cat([j.c[0] for j in jets], -1)]
    for n in range(1, jets[0].order + 1):
        parts = [j.c[n] for j in jets]
        if all(p is None for p in parts):
            out.append(None)
            continue
        ref = next(p for p in parts if p is not None)
        lead = max((p.shape[:-1] for p in parts if p is not None), key=len)
        full = [
            torch.zeros(*lead, j.c[0].shape[-1], dtype=ref.dtype, device=ref.device)
            if p is None
            else p.expand(*lead, p.shape[-1])
            for p, j in zip(parts, jets)
        ]
        out.append(torch.cat(full, -1))
    return jets[0].like(out)


# ------------------------------------------------------------------ activation derivatives
def _poly_derivatives(base_poly: np.ndarray, chain_poly: np.ndarray, K: int) -> list[np.ndarray]:
    """Polynomials P_k with sigma^(k) = P_k(sigma), for sigma' = chain(sigma) (tanh, sigmoid)."""
    polys = [base_poly]
    for _ in range(K):
        polys.append(
            np.polynomial.polynomial.polymul(
                np.polynomial.polynomial.polyder(polys[-1]), chain_poly
            )
        )
    return polys


def _horner(coeffs: np.ndarray, y: torch.Tensor) -> torch.Tensor:
    out = torch.full_like(y, float(coeffs[-1]))
    for c in coeffs[-2::-1]:
        out = out * y + float(c)
    return out


def tanh_derivatives(h, K):
    y = torch.tanh(h)
    if K <= 2:
        d1 = 1 - y * y
        return [y, d1, -2 * y * d1][: K + 1]
    polys = _poly_derivatives(np.array([0.0, 1.0]), np.array([1.0, 0.0, -1.0]), K)
    return [y] + [_horner(p, y) for p in polys[1:]]


def _sigmoid_derivatives(h, K):
    s = torch.sigmoid(h)
    polys = _poly_derivatives(np.array([0.0, 1.0]), np.array([0.0, 1.0, -1.0]), K)
    return [s] + [_horner(p, s) for p in polys[1:]]


def silu_derivatives(h, K):
    s = _sigmoid_derivatives(h, K)
    return [h * s[0]] + [h * s[k] + k * s[k - 1] for k in range(1, K + 1)]


def sin_derivatives(h, K):
    s, c = torch.sin(h), torch.cos(h)
    return [(s, c, -s, -c)[k % 4] for k in range(K + 1)]


def cos_derivatives(h, K):
    s, c = torch.sin(h), torch.cos(h)
    return [(c, -s, -c, s)[k % 4] for k in range(K + 1)]


def gelu_derivatives(h, K):
    r"""GELU :math:`x\Phi(x)`: :math:`\Phi^{(k)} = \varphi^{(k-1)}`,
    :math:`\varphi^{(m)} = (-1)^m \mathrm{He}_m(x)\varphi(x)`."""
    phi = torch.exp(-h * h / 2) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + torch.erf(h / math.sqrt(2)))
    he = [torch.ones_like(h), h]  # probabilists' Hermite polynomials
    for m in range(1, K):
        he.append(h * he[m] - m * he[m - 1])
    big = [Phi] + [(-1) ** (k - 1) * he[k - 1] * phi for k in range(1, K + 1)]  # Phi^(k)
    return [h * Phi] + [h * big[k] + k * big[k - 1] for k in range(1, K + 1)]


def _dot0(x0: torch.Tensor, h) -> torch.Tensor:
    """<x0, h_s> for a primal (N, F) and a per-direction coefficient: (N, S)."""
    if isinstance(h, OneHot):
        return x0[:, h.index] * h.scale.to(x0.dtype)
    return x0 @ h.T if h.ndim == 2 else (x0.unsqueeze(1) * h).sum(-1)


def _dot(a, b) -> torch.Tensor:
    """<a_s, b_s> for two per-direction coefficients: (S,) or (N, S)."""
    if isinstance(a, OneHot) and isinstance(b, OneHot):
        return torch.where(a.index == b.index, a.scale * b.scale, torch.zeros_like(a.scale))
    if isinstance(b, OneHot):
        a, b = b, a
    if isinstance(a, OneHot):
        s = torch.arange(len(a.index), device=b.device)
        return b[..., s, a.index] * a.scale.to(b.dtype)
    return (a * b).sum(-1)


def sq_norm(jet: Jet, center: torch.Tensor) -> Jet:
    r"""Jet of :math:`q = \lVert h - c\rVert^2` (feature axis summed; output features 1):
    :math:`q_n = \sum_k \binom{n}{k} \langle h_k, h_{n-k}\rangle` with :math:`h_0 - c`."""
    x0 = jet.c[0] - center
    out = [(x0 * x0).sum(-1, keepdim=True)]
    K = jet.order
    for n in range(1, K + 1):
        top = jet.is_top(n)
        total = None
        for k in range(n + 1):
            p, q = jet.c[k], jet.c[n - k]
            if (k > 0 and p is None) or (k < n and q is None):
                continue
            coef = math.comb(n, k)
            if k == 0 or k == n:
                h = q if k == 0 else p
                term = (x0 * h).sum(-1) if top else _dot0(x0, h)
            else:
                term = _dot(p, q)
                if top:
                    term = collapse(jet.weights, term, -1)
            total = _add(total, coef * term)
        out.append(None if total is None else total.unsqueeze(-1))
    return jet.like(out)


def select(jet: Jet, i: int) -> Jet:
    """Feature ``i`` of a jet, kept as a column (a one-hot tangent gives its scale or 0)."""

    def one(h):
        if h is None:
            return None
        if isinstance(h, OneHot):
            return torch.where(h.index == i, h.scale, torch.zeros_like(h.scale)).unsqueeze(-1)
        return h[..., i : i + 1]

    return jet.like([one(h) for h in jet.c])


def scale(jet: Jet, a) -> Jet:
    """The jet of ``a * h`` for a constant ``a``."""
    return jet.like([None if h is None else a * h for h in jet.c])


def shift(jet: Jet, a) -> Jet:
    """The jet of ``h + a`` for a constant ``a``."""
    return jet.like([jet.c[0] + a] + list(jet.c[1:]))


def constant(value: torch.Tensor, like: Jet) -> Jet:
    """The jet of a function constant along the curve."""
    return like.like([value] + [None] * like.order)


# ---------------------------------------------------------------------- generic fallback
_WARNED: set = set()
#: the fallbacks taken inside :func:`fallbacks_taken` (None outside it)
_TAKEN: contextvars.ContextVar = contextvars.ContextVar("pdeml_jet_fallbacks", default=None)


@contextlib.contextmanager
def fallbacks_taken():
    """Note the nested-jvp fallbacks (:func:`function_jet`) taken in the body: yields the list
    of their names. A compiled whole step cannot trace a nested jvp inside its gradient
    transform (torch 2.13), so the PINN backend asks before compiling one."""
    token = _TAKEN.set([])
    try:
        yield _TAKEN.get()
    finally:
        _TAKEN.reset(token)


def function_jet(fn, jets: list[Jet], name: str | None = None) -> Jet:
    r"""Jet of ``fn(*primals)`` by nested :func:`torch.func.jvp` along the curves
    :math:`h(t) = h_0 + \sum_j h_j t^j / j!` (cost :math:`2^K` evaluations on N·S rows).
    ``name`` warns once that a module has no jet rule."""
    taken = _TAKEN.get()
    if taken is not None:
        taken.append(name or getattr(fn, "__qualname__", repr(fn)))
    if name is not None and name not in _WARNED:
        _WARNED.add(name)
        warnings.warn(
            f"{name} has no Taylor-mode jet rule; using nested torch.func.jvp "
            "(correct, but slower and more memory). Fix: use the layers in pdeml.nn.",
            stacklevel=3,
        )
    ref = jets[0]
    K, w = ref.order, ref.weights
    N = ref.c[0].shape[0]
    S = next((_num_dirs(h) for j in jets for h in j.c[1:] if h is not None), 1)
    free = K - 1 if w is not None else K  # coefficients known per direction

    def curve(jet, t):
        x = jet.c[0].unsqueeze(1).expand(N, S, -1)
        for j in range(1, free + 1):
            h = _per_point(jet.c[j], N, S, jet.c[0])
            if h is not None:
                x = x + h * t**j / math.factorial(j)
        return x.reshape(N * S, -1)

    def f_of_t(t):
        return fn(*[curve(j, t) for j in jets])

    t0 = torch.zeros((), dtype=ref.c[0].dtype, device=ref.c[0].device)

    def upto(k):
        """t -> (f(t), f'(t), ..., f^(k)(t)): one nested jvp gives every order at once."""
        if k == 0:
            return lambda t: (f_of_t(t),)
        lower = upto(k - 1)

        def g(t):
            prim, tan = torch.func.jvp(lower, (t,), (torch.ones_like(t),))
            return prim + (tan[-1],)

        return g

    vals = [v.reshape(N, S, -1) for v in upto(K)(t0)]
    out = [vals[0][:, 0]] + vals[1:]
    if w is not None:
        top = collapse(w, vals[K])
        tops = [j.c[K] for j in jets]
        if any(h is not None for h in tops):
            tangents = tuple(
                torch.zeros_like(j.c[0]) if h is None else h.expand_as(j.c[0])
                for j, h in zip(jets, tops)
            )
            top = top + torch.func.jvp(fn, tuple(j.c[0] for j in jets), tangents)[1]
        out[K] = top
    return ref.like(out)


def _num_dirs(h) -> int:
    if isinstance(h, OneHot):
        return len(h.index)
    return h.shape[-2] if h.ndim >= 2 else 1


def _per_point(h, N, S, primal):
    if h is None:
        return None
    if isinstance(h, OneHot):
        h = h.dense(primal.shape[-1], primal.dtype, primal.device)
    return h.expand(N, S, h.shape[-1]) if h.ndim == 2 else h


# ----------------------------------------------------------------------------- dispatch
def _elementwise_table():
    from torch import nn

    return {nn.Tanh: tanh_derivatives, nn.SiLU: silu_derivatives}


def push(module, jet: Jet) -> Jet:
    """Push ``jet`` through ``module``: its own ``jet`` method, a rule for torch's Linear, Tanh,
    SiLU and exact GELU, or the nested-jvp fallback (with a one-time warning)."""
    from torch import nn

    if hasattr(module, "jet"):
        return module.jet(jet)
    if isinstance(module, nn.Linear):
        return linear(jet, module.weight, module.bias)
    if isinstance(module, nn.GELU) and module.approximate == "none":
        return elementwise(jet, gelu_derivatives)
    rule = _elementwise_table().get(type(module))
    if rule is not None:
        return elementwise(jet, rule)
    return function_jet(module, [jet], name=type(module).__name__)
