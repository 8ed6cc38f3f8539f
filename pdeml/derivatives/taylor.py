r"""Taylor-mode estimators: exact forward-mode derivatives and STDE.

One forward pass of a 2-jet per network evaluation gives the values, the first derivatives a
PDE asks for (tangents :math:`e_i`, weight 0) and the weighted sum of second directional
derivatives :math:`\sum_s w_s\, v_s^\top \nabla^2 u\, v_s` (collapsed Taylor mode), see
:mod:`pdeml.derivatives.jets`. The estimators differ only in the Laplacian's directions:

* :class:`Taylor`: :math:`v_s = e_i` for every spatial :math:`i`, :math:`w_s = 1`: the exact
  Laplacian ("forward Laplacian"; Li et al., "A computational framework for neural network-based
  variational Monte Carlo with Forward Laplacian", Nat. Mach. Intell. 2024).
* :class:`STDE` sparse: :math:`B` indices :math:`I` drawn without replacement, shared by all
  points, :math:`v_s = e_i`, :math:`w_s = d/B`:
  :math:`\mathbb{E}[\frac{d}{B}\sum_{i\in I}\partial_i^2 u] = \Delta u` (SDGD's estimator in forward
  mode).
* :class:`STDE` dense (Hutchinson): Rademacher :math:`v` per point, :math:`w_s = 1/S`:
  :math:`\mathbb{E}[v^\top \nabla^2 u\, v] = \operatorname{tr}\nabla^2 u` (no factor :math:`d`).

Shi, Hu, Lin, Kawaguchi, "Stochastic Taylor derivative estimator: efficient amortization for
arbitrary differential operators", NeurIPS 2024. The estimator learns which first and second
derivatives each call site ("pde", "conditions") asks for, and then computes them all in one
pass. ``d2(i, i)`` is exact (per-direction second coefficients); mixed ``d2(i, j)`` falls back
to autograd on the forward-mode first derivative.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import ClassVar

import torch

from .._validate import fail, positive_int
from ..settings import frozen_set
from . import jets as J
from .autograd import Autograd
from .base import AbstractEstimator, AbstractStochasticEstimator, grad_of


@dataclasses.dataclass(frozen=True)
class _TaylorEstimator(AbstractEstimator):
    """One collapsed 2-jet pass per evaluation; subclasses choose the Laplacian directions.

    ``stack``: each linear layer multiplies the value and every per-point jet coefficient as one
    stacked (N (2 + S) x width) matrix, one product instead of three
    (:func:`pdeml.derivatives.jets.linear`); the same numbers to float rounding. Measured on an
    AMD EPYC (family 25, model 17, one core; ``bench_pinn_vs_jax.py --problems lshape``): the
    compiled L-shape step 5.06 -> 5.07 ms, eager 9.49 -> 9.83 ms; STDE at D = 1000 compiled
    11.05 -> 11.51 ms, eager 15.07 -> 15.59 ms. So it is off by default here; the stacked JAX
    step was 1.3x faster than the forward Laplacian on an Intel Xeon, 0.93x here."""

    _: dataclasses.KW_ONLY
    stack: bool = False

    def _tail(self) -> str:
        return ", stack=True" if self.stack else ""

    @abc.abstractmethod
    def _laplacian_directions(self, run, dims: tuple, n_inputs: int, n_points: int, dtype, device):
        """``(tangents, weight)``: a :class:`~pdeml.derivatives.jets.OneHot` or a dense (S, d)
        or (N, S, d) tensor, and the weight (a float) shared by the S directions."""

    # ----------------------------------------------------------------- the pass
    def _need(self, run, field, key):
        cache = field._cache
        plan = run.plans.setdefault(cache.get("site"), set())
        if key is not None:
            plan.add(key)
        res = cache.get("jet")
        if res is None or not (plan - {("reverse",)}) <= res["has"]:  # the marker needs no pass
            res = self._pass(run, field, frozenset(plan))
            cache["jet"] = res
            cache.setdefault("values", res["values"])
        return res

    def _pass(self, run, field, plan):
        x = field.x
        n, d = x.shape
        first = sorted(k[1] for k in plan if k[0] == "d")
        diag = sorted(k[1] for k in plan if k[0] == "d2")
        lap = next((k[1] for k in plan if k[0] == "lap"), None)
        pos: dict[int, int] = {}
        if lap is None and not diag:
            tangent, weights = (
                J.OneHot(
                    torch.tensor(first, dtype=torch.long, device=x.device),
                    torch.ones(len(first), dtype=x.dtype, device=x.device),
                ),
                None,
            )
            pos = {i: k for k, i in enumerate(first)}
        else:
            tl, wl = (
                self._laplacian_directions(run, lap, d, n, x.dtype, x.device)
                if lap is not None
                else (
                    J.OneHot(
                        torch.zeros(0, dtype=torch.long, device=x.device),
                        torch.zeros(0, dtype=x.dtype, device=x.device),
                        (),
                    ),
                    0.0,
                )
            )
            extra = sorted(set(first) | set(diag))
            tangent, pos = _merge(tl, extra, d, n) if extra else (tl, {})
            weights = J.Prefix(_count(tl), wl)
        order = 2 if (lap is not None or diag) else 1
        out = field.model.jet(
            x, [tangent] + [None] * (order - 1), weights if not diag else None, self.stack
        )
        res = {"has": plan, "values": out.c[0], "pos": pos, "c1": out.c[1]}
        if order == 2:
            if diag:  # per-direction second coefficients: the weighted sum is taken here
                res["c2"] = out.c[2]
                res["lap"] = J.collapse(weights, out.c[2])
            else:
                res["lap"] = out.c[2]
        return res

    # --------------------------------------------------------------- interface
    def input_grad(self, run, site):
        plan = run.plans.get(site)
        return plan is None or ("reverse",) in plan

    def _reverse(self, run, field):
        """Note that this site needs reverse mode through x (mixed d2, the biharmonic)."""
        run.plans.setdefault(field._cache.get("site"), set()).add(("reverse",))
        if not field.x.requires_grad:
            raise RuntimeError(
                "this derivative needs reverse mode through x, but the points do not "
                "require grad. Fix: evaluate once more; the estimator now knows."
            )

    def biharmonic(self, run, field, dims):
        self._reverse(run, field)
        return super().biharmonic(run, field, dims)

    def values(self, run, field):
        cache = field._cache
        if "values" not in cache:
            if run.plans.get(cache.get("site")):
                self._need(run, field, None)
            else:
                cache["values"] = field.model(field.x)
        return cache["values"]

    def d(self, run, field, i):
        res = self._need(run, field, ("d", i))
        return _per_point(res["c1"], field.x.shape[0])[
            :, res["pos"][i], field.component : field.component + 1
        ]

    def grad(self, run, field):
        for i in range(field.x.shape[1]):
            run.plans.setdefault(field._cache.get("site"), set()).add(("d", i))
        return torch.cat([self.d(run, field, i) for i in range(field.x.shape[1])], dim=1)

    def d2(self, run, field, i, j):
        if i == j:
            res = self._need(run, field, ("d2", i))
            return _per_point(res["c2"], field.x.shape[0])[
                :, res["pos"][i], field.component : field.component + 1
            ]
        key = ("jet-hrow", field.component, i)
        self._reverse(run, field)
        if key not in field._cache:
            field._cache[key] = grad_of(self.d(run, field, i), field.x)
        return field._cache[key][:, j : j + 1]

    def laplacian(self, run, field, dims):
        res = self._need(run, field, ("lap", tuple(dims)))
        return res["lap"][..., field.component : field.component + 1].expand(field.x.shape[0], 1)

    def _collapsed(self, run, field, key, tangent, weight: float, order: int):
        """The collapsed top coefficient of one extra jet pass, cached under ``key``."""
        if key not in field._cache:
            c = [tangent] + [None] * (order - 1)
            field._cache[key] = field.model.jet(
                field.x, c, J.Prefix(_count(tangent), weight), self.stack
            ).c[order]
        top = field._cache[key]
        return top[..., field.component : field.component + 1].expand(field.x.shape[0], 1)

    def diffusion(self, run, field, dims, sigma):
        n, d = field.x.shape
        cols = torch.zeros(len(dims), d, dtype=field.x.dtype, device=field.x.device)
        cols[:, list(dims)] = sigma.T.to(field.x.dtype)  # row k: sigma e_k
        tangent, weight = self._diffusion_directions(run, cols, n)
        return self._collapsed(run, field, ("diffusion", tuple(dims)), tangent, weight, 2)

    def _diffusion_directions(self, run, cols, n):
        """All columns of sigma, weight 1/2 (exact)."""
        return cols, 0.5


def _per_point(c, n):
    return c.expand(n, *c.shape[-2:]) if c.ndim == 2 else c


def _unit_one_hot(dims: tuple, dtype, device) -> J.OneHot:
    """e_i for every i in ``dims``: cached in eager runs (built once per run, not per step);
    under torch.compile built in the graph, as constants (the cache is eager state, and calling
    it from a compiled graph would split the graph in two)."""
    if torch.compiler.is_compiling():
        return _one_hot(dims, dtype, device)
    return _cached_one_hot(dims, dtype, device)


def _one_hot(dims: tuple, dtype, device) -> J.OneHot:
    return J.OneHot(
        torch.tensor(dims, dtype=torch.long, device=device),
        torch.ones(len(dims), dtype=dtype, device=device),
        tuple(dims),
    )


_cached_one_hot = functools.lru_cache(maxsize=32)(_one_hot)


def _count(t) -> int:
    return len(t.index) if isinstance(t, J.OneHot) else t.shape[-2]


def _merge(tl, extra: list, d: int, n: int):
    """Append one-hot tangents for the first/diagonal derivatives in ``extra`` (weight 0, so
    after the Laplacian's) to the Laplacian's. Where the Laplacian's directions are known (not
    drawn at random) a direction e_i already among them is reused; random ones are never read
    back from the tensor (that would stall a GPU and split a compiled graph)."""
    if isinstance(tl, J.OneHot):
        dev, dt = tl.scale.device, tl.scale.dtype
        m = len(tl.index)
        pos = {i: k for k, i in enumerate(tl.known)} if tl.known is not None else {}
        new = [i for i in extra if i not in pos]
        pos.update({i: m + k for k, i in enumerate(new)})
        if not new:
            return tl, pos
        idx = torch.cat([tl.index, torch.tensor(new, dtype=torch.long, device=dev)])
        scale = torch.cat([tl.scale, torch.ones(len(new), dtype=dt, device=dev)])
        known = tl.known + tuple(new) if tl.known is not None else None
        return J.OneHot(idx, scale, known), pos
    dev, dt = tl.device, tl.dtype
    pos = {i: tl.shape[-2] + k for k, i in enumerate(extra)}
    eye = J.OneHot(
        torch.tensor(extra, dtype=torch.long, device=dev),
        torch.ones(len(extra), dtype=dt, device=dev),
    ).dense(d, dt, dev)
    if tl.ndim == 3:
        eye = eye.expand(n, *eye.shape)
    return torch.cat([tl, eye], dim=-2), pos


@dataclasses.dataclass(frozen=True)
class Taylor(_TaylorEstimator):
    """Exact derivatives in collapsed Taylor mode (the forward Laplacian).

    Example:
        >>> pl.PINN(pl.nn.MLP(50, 4), estimator=pl.derivatives.Taylor())   # or --derivatives taylor
        PINN(...)
    """

    def _laplacian_directions(self, run, dims, n_inputs, n_points, dtype, device):
        return _unit_one_hot(dims, dtype, device), 1.0

    def directions(self, n_inputs: int) -> int:
        """Every coordinate direction."""
        return n_inputs

    def __repr__(self):
        return f"Taylor({self._tail()[2:]})"


@dataclasses.dataclass(frozen=True)
class STDE(_TaylorEstimator, AbstractStochasticEstimator):
    r"""Stochastic Taylor derivative estimator of the Laplacian.

    Args:
        samples: sampled dimensions :math:`B` (sparse) or Rademacher probes :math:`S` (dense).
        dense: Hutchinson probes instead of sampled coordinate directions.
        unbiased: ask the backend for the unbiased gradient :math:`2 R_J^{\text{detach}} R_I`
            from two independent draws (default: the cheaper, biased :math:`R_I^2`).
        seed: the generator's seed (``reset`` re-seeds it; its state is checkpointed).

    Variance (per point) of the sparse estimator:
    :math:`\frac{d^2}{B}\frac{d-B}{d-1}\,\mathrm{Var}_i(\partial_i^2 u)`;
    dense: :math:`\frac{2}{S}\sum_{i\ne j} H_{ij}^2`.

    Example:
        >>> pl.derivatives.STDE(samples=16)    # --derivatives stde:16
        STDE(samples=16, dense=False, unbiased=False)
    """

    samples: int = 16
    _: dataclasses.KW_ONLY
    dense: bool = False
    unbiased: bool = False
    seed: int = 0

    def __post_init__(self):
        positive_int("STDE(samples)", self.samples)
        frozen_set(self, dense=bool(self.dense), unbiased=bool(self.unbiased))

    def directions(self, n_inputs: int) -> int:
        """The sampled dimensions (at most the inputs), or the dense probes."""
        return self.samples if self.dense else min(self.samples, n_inputs)

    def _laplacian_directions(self, run, dims, n_inputs, n_points, dtype, device):
        k = len(dims)
        if self.dense:
            signs = run.rng.draw("randint", 0, 2, (n_points, self.samples, k)).to(dtype) * 2 - 1
            v = torch.zeros(n_points, self.samples, n_inputs, dtype=dtype)
            v[..., list(dims)] = signs
            return v.to(device), 1.0 / self.samples
        b = min(self.samples, k)
        every = _unit_one_hot(dims, dtype, device)
        pick = run.rng.draw("randperm", k)[:b].to(device)
        return J.OneHot(every.index[pick], every.scale[:b]), k / b

    def _diffusion_directions(self, run, cols, n):
        k = cols.shape[0]
        if self.dense:  # sigma z, z Rademacher: E[(sigma z)^T H (sigma z)] = tr(sigma sigma^T H)
            z = (
                run.rng.draw("randint", 0, 2, (n, self.samples, k)).to(cols.dtype).to(cols.device)
                * 2
                - 1
            )
            return z @ cols, 0.5 / self.samples
        b = min(self.samples, k)
        return cols[run.rng.draw("randperm", k)[:b].to(cols.device)], 0.5 * k / b

    def biharmonic(self, run, field, dims):
        r""":math:`\Delta^2 u = \tfrac13 \mathbb{E}_{v\sim N(0, I)}[\partial^4 u(v, 0, 0, 0)]`
        with ``samples`` Gaussian 4-jets per point (collapsed)."""
        n, d = field.x.shape
        v = torch.zeros(n, self.samples, d, dtype=field.x.dtype)
        v[..., list(dims)] = run.rng.draw("randn", n, self.samples, len(dims), dtype=field.x.dtype)
        return self._collapsed(
            run,
            field,
            ("biharmonic", tuple(dims)),
            v.to(field.x.device),
            1.0 / (3 * self.samples),
            4,
        )

    def __repr__(self):
        return (
            f"STDE(samples={self.samples}, dense={self.dense}, unbiased={self.unbiased}"
            f"{self._tail()})"
        )


@dataclasses.dataclass(frozen=True)
class SDGD(AbstractStochasticEstimator):
    r"""Stochastic dimension gradient descent's Laplacian by reverse mode (double backward).

    :math:`\Delta u \approx \frac{d}{B}\sum_{i \in I} \partial_i^2 u` with one index set
    :math:`I` (:math:`|I| = B`, without replacement) per evaluation, shared by all points;
    :math:`u`, :math:`\nabla u`, :math:`u_t` and ``d2`` stay exact autograd. Hu, Shukla,
    Karniadakis, Kawaguchi, "Tackling the curse of dimensionality with physics-informed neural
    networks", Neural Networks 2024.

    Args: as :class:`STDE` (``samples`` is :math:`B`).
    """

    samples: int = 16
    _: dataclasses.KW_ONLY
    unbiased: bool = False
    seed: int = 0

    #: u, its gradient and d2 stay exact: the autograd estimator's rules, on this run's cache
    _exact: ClassVar[AbstractEstimator] = Autograd()

    def __post_init__(self):
        positive_int("SDGD(samples)", self.samples)
        frozen_set(self, unbiased=bool(self.unbiased))

    def grad(self, run, field):
        return self._exact.grad(run, field)

    def d2(self, run, field, i, j):
        return self._exact.d2(run, field, i, j)

    def laplacian(self, run, field, dims):
        key = ("sdgd-I", tuple(dims))
        if key not in field._cache:
            b = min(self.samples, len(dims))
            field._cache[key] = [dims[i] for i in run.rng.draw("randperm", len(dims))[:b].tolist()]
        pick = field._cache[key]
        return (
            len(dims)
            / len(pick)
            * sum(self._exact.hessian_row(run, field, i)[:, i : i + 1] for i in pick)
        )

    def __repr__(self):
        return f"SDGD(samples={self.samples}, unbiased={self.unbiased})"


def parse(spec) -> AbstractEstimator:
    """``"autograd"``, ``"taylor"``, ``"sdgd:16"``, ``"stde:16"``, ``"stde-dense:16"``; a suffix
    ``":unbiased"`` selects the paired unbiased gradient, ``":stack"`` (Taylor mode, STDE) one
    stacked matrix product per layer. Objects pass through."""
    if isinstance(spec, AbstractEstimator):
        return spec
    parts = str(spec).split(":")
    name, rest = parts[0], parts[1:]
    unbiased, stack = "unbiased" in rest, "stack" in rest
    nums = [p for p in rest if p not in ("unbiased", "stack")]
    try:
        samples = int(nums[0]) if nums else 16
    except ValueError:
        fail(
            "derivatives", spec, "has a sample count that is not an integer", 'pass e.g. "stde:16"'
        )
    if name == "autograd" and not rest:
        return Autograd()
    if name == "taylor" and not nums and not unbiased:
        return Taylor(stack=stack)
    if name == "sdgd":
        return SDGD(samples, unbiased=unbiased)
    if name in ("stde", "stde-dense"):
        return STDE(samples, dense=name == "stde-dense", unbiased=unbiased, stack=stack)
    fail(
        "derivatives",
        spec,
        "is not a derivative estimator",
        'use "autograd", "taylor", "sdgd:B", "stde:B" or "stde-dense:S" (optionally ":unbiased"; '
        'Taylor mode and STDE also ":stack")',
    )
