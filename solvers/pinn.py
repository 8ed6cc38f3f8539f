r"""Physics-informed neural network backend.

Loss: one term per PDE residual and one per soft condition,
:math:`L_k = \frac{1}{N_k}\sum_i r_k(x_i)^2`, kept separate by name so the optimizer layer can
combine per-term gradients. Inputs are mapped affinely from the domain's bounding box (x time)
to :math:`[-1, 1]` before the network. Raissi, Perdikaris, Karniadakis, "Physics-informed neural
networks", J. Comput. Phys. 2019.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import time
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from pdeml import settings
from pdeml._validate import column, fail
from pdeml.backend import AbstractLeastSquares, AbstractMethod
from pdeml.conditions import Dirichlet
from pdeml.derivatives import AbstractEstimator, Autograd, Taylor, jets
from pdeml.derivatives import parse as parse_estimator
from pdeml.device import GEMMS, check_gemm, gemm_cache_path, requested_gemm
from pdeml.device import gemm as gemm_choice
from pdeml.field import Field
from pdeml.nn import MLP, HardDirichlet, OutputTransform
from pdeml.options import Option, set_field
from pdeml.problem import Problem
from pdeml.sampling import AbstractSampler

from .hard import HardConstraint, parse_constraint


def _inputs(x: torch.Tensor, grad: bool) -> torch.Tensor:
    """Detached points that require grad only when reverse-mode derivatives need it (never
    calling ``requires_grad_`` otherwise keeps the forward pass usable under ``torch.func``)."""
    x = x.detach()
    return x.requires_grad_(True) if grad else x


@dataclasses.dataclass(frozen=True, eq=False)
class PINN(AbstractMethod):
    """The physics-informed neural network method: settings only; :meth:`build` makes the
    backend (:class:`PINNBackend`) for a problem.

    Args:
        model: network; an unbuilt ``pl.nn.MLP`` gets the problem's input/output sizes
            (default ``MLP(width=50, depth=4)``). Each build works on a deep copy, initialized
            from the build's seed.
        estimator: derivative estimator behind ``Field`` (:mod:`pdeml.derivatives`; default:
            exact :class:`~pdeml.derivatives.Taylor` mode when every layer has a jet rule, else
            exact :class:`~pdeml.derivatives.Autograd`). Each build keeps its own copy.
        sampler: collocation points (:mod:`pdeml.samplers`; default ``Uniform(2000, 200, 200)``).
        hard_dirichlet: impose whole-boundary Dirichlet conditions exactly (SDF transform).
        transform: optional output transform ``(x, y) -> u`` applied last: a function
            (wrapped in :class:`pdeml.nn.OutputTransform`, no jet rule) or a module with
            ``forward(x, y)`` and optionally ``jet(x_jet, y_jet)``: conditions built into the
            ansatz.
        compile: what :func:`torch.compile` compiles (docs/compile.md). ``True``: the whole
            first-order training step, forward, backward and the optimizer's update in one graph
            (:class:`pdeml.steppers.WholeStep`; per-term combiners, which build their direction
            eagerly, get the losses compiled instead). ``"losses"``: the losses only.
            ``"auto"`` (default): the whole step when it pays, by the rule
            :func:`compile_pays` (on the CPU, a long enough phase for the batch and network).
            ``False``: eager. Compiling needs forward-mode derivatives at every call site
            (Taylor, STDE): reverse-mode ones (autograd, SDGD, a site that needs a double
            backward) stay eager, with a warning when compiling was asked for, because
            torch.compile does not support double backward.
        gemm: who runs a compiled CPU step's large float32 matrix products
            (:func:`pdeml.device.gemm`): ``"auto"`` (default) gives each product the library this
            machine measured faster at its shape (once, cached); ``"mkl"`` or ``"onednn"`` force
            one. run.json records the choice and its reason (``resolved``), the checkpoint the
            per-product decisions, and ``--resume`` keeps both.

    Example:
        >>> problem = pl.Problem(pl.geometry.Rectangle([0, 0], [1, 1]),
        ...                      lambda x, u: -u.laplacian() - 1.0, [pl.Dirichlet(0.0)])
        >>> method = pl.PINN(pl.nn.MLP(50, 4), sampler=pl.samplers.Uniform(2000, 400, every=100))
        >>> backend = method.build(problem, seed=0)
        >>> batch = backend.batches(None, np.random.default_rng(0)).current()
        >>> list(backend.losses(pl.sampling.to_torch(batch, backend.dtype, backend.device)))
        ['pde', 'dirichlet']
    """

    model: Any = None
    estimator: Any = None
    sampler: Any = None
    hard_dirichlet: bool = False
    transform: Any = None
    compile: Any = "auto"
    gemm: str = "auto"

    def __post_init__(self):
        if self.model is not None and not isinstance(self.model, nn.Module):
            fail(
                "model",
                self.model,
                "is not a torch module",
                "pass e.g. pl.nn.MLP(width=50, depth=4)",
            )
        if self.estimator is not None and not isinstance(self.estimator, AbstractEstimator):
            fail(
                "estimator",
                self.estimator,
                "is not a derivative estimator object",
                "pass e.g. pl.derivatives.STDE(16) (the spec strings are for --derivatives)",
            )
        if self.sampler is not None and not isinstance(self.sampler, AbstractSampler):
            fail(
                "sampler",
                self.sampler,
                "is not a sampler object",
                "pass e.g. pl.samplers.Uniform(2000, 200) (the names are for --sampler)",
            )
        if not isinstance(self.hard_dirichlet, bool):
            fail(
                "hard_dirichlet",
                self.hard_dirichlet,
                "must be True or False",
                "pass hard_dirichlet=True",
            )
        if self.compile not in COMPILE_MODES or not isinstance(self.compile, (bool, str)):
            fail(
                "compile",
                self.compile,
                "is not a compile mode",
                'pass True, False, "losses" or "auto"',
            )
        if self.transform is not None and not callable(self.transform):
            fail("transform", self.transform, "is not callable", "pass a function (x, y) -> y")
        check_gemm(self.gemm)

    @classmethod
    def cli_options(cls) -> tuple[Option, ...]:
        from pdeml import derivatives, samplers

        return (derivatives.OPTION, samplers.OPTION, COMPILE, GEMM, CONSTRAINT)

    def build(self, problem, *, seed=0, dtype=torch.float32, device="cpu") -> PINNBackend:
        return PINNBackend(
            problem,
            self.model if self.model is not None else MLP(width=50, depth=4),
            estimator=self.estimator,
            sampler=self.sampler,
            hard_dirichlet=self.hard_dirichlet,
            transform=self.transform,
            seed=seed,
            dtype=dtype,
            compile_losses=self.compile in (True, "losses"),
            compile_step={True: True, "auto": "auto"}.get(self.compile, False),
            gemm=self.gemm,
        ).to(device)


#: the values of ``PINN(compile=...)``
COMPILE_MODES = (False, True, "losses", "auto")
#: ``--compile MODE`` spellings -> ``PINN(compile=...)``
_COMPILE_NAMES = {
    "on": True,
    "true": True,
    "step": True,
    "losses": "losses",
    "auto": "auto",
    "off": False,
    "false": False,
}


def compile_mode(text: str):
    """``--compile MODE``: on/true/step (the whole step), losses, auto, off/false."""
    if text.lower() not in _COMPILE_NAMES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a compile mode. Fix: pass on, losses, auto or off"
        )
    return _COMPILE_NAMES[text.lower()]


#: ``--compile [MODE]``: the PINN's ``compile``
COMPILE = Option(
    "compile",
    "torch.compile the whole training step (--compile), the losses only (--compile "
    "losses), when it pays (--compile auto, the default) or nothing (--compile off); forward-mode "
    "estimators (taylor, stde) only; docs/compile.md",
    set_field("compile", flag="--compile"),
    type=compile_mode,
    nargs="?",
    const=True,
    metavar="MODE",
)
#: ``--gemm LIB``: the PINN's ``gemm``
GEMM = Option(
    "gemm",
    "who runs a compiled CPU step's large float32 matrix products: auto (the default: each "
    "product by the library this machine measured faster at its shape, cached; recorded in "
    "run.json and the checkpoint, kept on --resume), mkl or onednn",
    set_field("gemm", flag="--gemm"),
    type=lambda text: _named(text, GEMMS, "matrix-product library"),
    metavar="LIB",
)


def _named(text: str, names: tuple, what: str) -> str:
    if text.lower() not in names:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a {what}. Fix: pass one of {', '.join(names)}"
        )
    return text.lower()


#: ``compile="auto"`` on the CPU: the compile's cost (s; 11-20 s measured cold on this project's
#: 2-core CPU, 4-5 s from torch's compile cache) and a lower bound of what the compiled step
#: saves per step, a + b·R·H (s; R jet rows in the batch, :func:`jet_rows`, H hidden units of
#: the network: the elementwise work that compiling fuses). Measured savings (ms; L-shape-like
#: batches of N points, R = 3.7 N, with (N, width x depth)): (240, 20x3) 0.91; (1320, 50x4)
#: 2.95; (4400, 50x4) 8.26; (1100, 128x4) 5.63; (4400, 100x4) 14.5; and STDE at D = 1000
#: (100 points x 16 directions, R = 1801, 128x4) 6.3 (AMD EPYC family 25 model 17). b is below
#: (s - a) / (R H) for every one of them (2.1e-9 the smallest): a lower bound, so a phase
#: compiled by the rule (savings at least the cost) is never slower than eager. Counting points
#: instead of jet rows left STDE at D = 1000 eager at 1.5x the compiled step's time.
AUTO_COMPILE_COST_S = 20.0
AUTO_SAVING_S = (0.5e-3, 2e-9)


def jet_rows(backend, batch: dict) -> int:
    """The rows a compiled step's jets carry for ``batch``: each PDE point's value, its
    tangent directions (:meth:`pdeml.derivatives.AbstractEstimator.directions`) and the collapsed
    top coefficient; one for every other point."""
    dirs = backend.estimator.settings.directions(backend.problem.input_dim)
    return sum(
        len(next(iter(term.values()))) * ((2 + dirs) if key == "domain" else 1)
        for key, term in batch.items()
        if term
    )


def hidden_units(module: nn.Module) -> int:
    """The network's hidden units per point: the outputs of its linear layers but the last."""
    outs = [m.out_features for m in module.modules() if isinstance(m, nn.Linear)]
    return max(1, sum(outs[:-1]))


def compile_pays(backend, batch: dict, steps: int | None) -> bool:
    r"""The rule of ``compile="auto"``: compile a phase of K ``steps`` on the CPU when the time it
    saves, at least :math:`K (a + b R H)` with R the batch's jet rows (:func:`jet_rows`), is at
    least the compile's cost (:data:`AUTO_COMPILE_COST_S`, :data:`AUTO_SAVING_S`). For the
    L-shape Poisson (1200 + 120 points, 4920 rows, 50x4) that is 8 100 steps; for STDE at
    D = 1000 (100 points, 16 directions, 128x4), 8 600. Not on CUDA yet: no GPU has measured
    it (``compile=True`` compiles there, with CUDA graphs). Depends on the phase's length, not
    on the step a run starts at, so a resumed run decides as the first one did."""
    if steps is None or backend.device.type != "cpu":
        return False
    a, b = AUTO_SAVING_S
    rows = jet_rows(backend, batch)
    return steps * (a + b * rows * hidden_units(backend.net)) >= AUTO_COMPILE_COST_S


def _constrain(case, spec):
    """``--constraint soft | hc | moe:K | moe:AxBxC`` on a PINN case: :class:`HardConstraint` with
    the PINN's network, sampler and estimator (``soft`` keeps the PINN); on a method with a
    ``constraint`` setting of its own (the hard-constrained FNO), that setting."""
    experts = parse_constraint(spec, "--constraint")
    if "constraint" in settings.fields(case.method):
        return case.replace(method=settings.replace(case.method, constraint=str(spec)))
    if experts is None:
        return case
    if not isinstance(case.method, PINN):
        fail(
            "--constraint",
            spec,
            f"applies to PINN cases, not {type(case.method).__name__}",
            "drop --constraint",
        )
    m = case.method
    if m.transform is not None:
        fail(
            "--constraint",
            spec,
            "would drop the case's output transform (the constraint combines raw bases)",
            "drop --constraint, or the transform",
        )
    return case.replace(
        method=HardConstraint(
            model=m.model,
            experts=experts[0] if len(experts) == 1 else experts,
            sampler=m.sampler,
            estimator=m.estimator,
        )
    )


#: ``--constraint SPEC``: a PINN case trained with hard constraints (PI-HC, PI-HC-MoE); applied
#: before the other options, so that they land on the new method
CONSTRAINT = Option(
    "constraint",
    "soft (the case's PINN) | hc (hard constraint) | moe:K or moe:2x2x1 "
    "(hard constraint split over experts; docs/hard-constraints.md)",
    _constrain,
    first=True,
)


class PINNBackend(AbstractLeastSquares):
    """A network trained to satisfy ``problem`` in the least-squares sense (built by
    :meth:`PINN.build`; the arguments are the method's).

    Example:
        >>> problem = pl.Problem(pl.geometry.Interval(0, 1), lambda x, u: -u.d2("x") - 2.0,
        ...                      [pl.Dirichlet(0.0)])
        >>> backend = pl.PINN(pl.nn.MLP(50, 4)).build(problem)
        >>> backend.term_names
        ['pde', 'dirichlet']
    """

    def __init__(
        self,
        problem: Problem,
        model: nn.Module,
        *,
        estimator: AbstractEstimator | None = None,
        sampler: AbstractSampler | None = None,
        hard_dirichlet: bool = False,
        transform=None,
        seed: int = 0,
        dtype=torch.float32,
        compile_losses: bool = False,
        compile_step=False,
        gemm: str = "auto",
    ):
        super().__init__()
        if not isinstance(problem, Problem):
            fail("problem", problem, "is not a pdeml.Problem", "pass pl.Problem(...)")
        if not isinstance(model, nn.Module):
            fail("model", model, "is not a torch module", "pass e.g. pl.nn.MLP(width=50, depth=4)")
        if sampler is None:
            from pdeml.samplers import Uniform

            sampler = Uniform()
        self.problem, self.sampler = problem, sampler
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = copy.deepcopy(model)
            if hasattr(net, "bind"):
                net = net.bind(problem.input_dim, len(problem.outputs))
            for m in reversed(list(net.modules())):  # children first, so a parent's init wins
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        self.net = net
        self.params = nn.ParameterDict(
            {k: nn.Parameter(torch.tensor(v.initial)) for k, v in problem.parameters.items()}
        )
        lo, hi = problem.domain.bbox
        self.register_buffer("center", torch.as_tensor((lo + hi) / 2))
        self.register_buffer("halfwidth", torch.as_tensor((hi - lo) / 2))
        self.hard, self.soft = self._split_conditions(hard_dirichlet)
        if transform is not None:
            self.hard.append(
                transform if isinstance(transform, nn.Module) else OutputTransform(transform)
            )
        # the estimator learns per call site and may sample: this backend's own copy
        self.estimator = (
            parse_estimator(estimator) if estimator is not None else self._default_estimator()
        ).init(seed)
        self.to(dtype)
        self.pde_names = self._probe()
        if not isinstance(compile_losses, bool):
            fail(
                "compile_losses",
                compile_losses,
                "must be True or False",
                "pass compile_losses=True",
            )
        if compile_step not in (True, False, "auto") or not isinstance(compile_step, (bool, str)):
            fail(
                "compile_step",
                compile_step,
                'is not True, False or "auto"',
                "pass compile_step=True",
            )
        # None: not decided yet; False: eager; else the compiled losses
        self._compiled = None if compile_losses else False
        self.compile_step = compile_step
        # who runs compiled CPU products (pdeml.device.gemm decides "auto")
        self.gemm = check_gemm(gemm)
        #: "auto": each compiled product's library by its signature (pdeml.gemm.signature), as
        #: measured on this machine or kept from the checkpoint being resumed
        self.gemm_table: dict[str, str] = {}

    # --------------------------------------------------------------- set-up
    def _split_conditions(self, hard_dirichlet):
        hard, soft = nn.ModuleList(), []
        p = self.problem
        for name, c in zip(p.condition_names, p.conditions):
            if hard_dirichlet and isinstance(c, Dirichlet) and c.on is None:
                comp = c.component if isinstance(c.component, int) else p.outputs.index(c.component)
                x = p.domain.sample_interior(2048, np.random.default_rng(0), "random")
                scale = float(p.domain.smooth_distance(torch.as_tensor(x)).max())
                hard.append(HardDirichlet(p.domain, c.value, comp, scale))
            else:
                soft.append((name, c))
        if hard_dirichlet and not len(hard):
            fail(
                "hard_dirichlet",
                True,
                "found no whole-boundary Dirichlet condition to impose",
                "add pl.Dirichlet(value) without on=, or set hard_dirichlet=False",
            )
        return hard, soft

    def _default_estimator(self) -> AbstractEstimator:
        """Exact Taylor mode (one forward jet, faster than nested autograd) when every layer
        has a jet rule; exact autograd otherwise (e.g. a user's output transform)."""
        if hasattr(self.net, "jet") and all(
            hasattr(h, "jet") and not isinstance(h, OutputTransform) for h in self.hard
        ):
            return Taylor()
        return Autograd()

    def _probe(self) -> list[str]:
        """Evaluate the PDE on a few points: validates its output and names the terms."""
        x = self.problem.domain.sample_interior(4, np.random.default_rng(0), "random")
        x = torch.as_tensor(x, dtype=self.center.dtype).requires_grad_(True)
        res = self.pde_residuals(x)
        return ["pde"] if len(res) == 1 else [f"pde{i}" for i in range(len(res))]

    @property
    def term_names(self) -> list[str]:
        return self.pde_names + [name for name, _ in self.soft]

    def batches(self, sampler, rng):
        """A run of ``sampler`` (default: the method's) on this problem, with this backend's
        residuals for samplers that look at points of their own choosing (RAD)."""
        return (sampler if sampler is not None else self.sampler).init(
            self.problem, rng, self.residual_at
        )

    def resolved(self) -> dict:
        """The estimator, and the library of compiled CPU products with the reason
        (:func:`pdeml.device.gemm`; a resumed run keeps the recorded one)."""
        choice, why = gemm_choice(requested_gemm(self), self.device)
        if choice == "auto":
            why += f" (measured once, kept in {gemm_cache_path()})"
        return {"estimator": repr(self.estimator.settings), "gemm": choice, "gemm_reason": why}

    def choices(self) -> dict:
        """The per-product libraries of ``gemm="auto"`` (signature -> mkl | onednn)."""
        return {"gemm_products": dict(self.gemm_table)} if self.gemm_table else {}

    def keep_choices(self, choices: dict) -> None:
        """A resumed run takes the products' libraries the run chose where it started, so that
        it does the same arithmetic on another machine (products it had not compiled yet are
        measured here)."""
        self.gemm_table.update(choices.get("gemm_products", {}))

    @property
    def exact_residuals(self) -> bool:
        return not self.estimator.paired

    def residual_keys(self) -> dict[str, list[str]]:
        return {"domain": list(self.pde_names), **{name: [name] for name, _ in self.soft}}

    @property
    def residuals_need_grad(self) -> bool:
        return self._input_grad("pde") or self._input_grad("conditions")

    # ------------------------------------------------------------ evaluation
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net((x - self.center) / self.halfwidth)
        for h in self.hard:
            y = h(x, y)
        return y

    def jet(self, x: torch.Tensor, tangents: list, weights=None, stack=False) -> jets.Jet:
        """Taylor-mode jet of the outputs along ``x + sum_j tangents[j-1] t^j / j!``."""
        xj = jets.Jet([x] + list(tangents), weights, stack)
        y = jets.push(self.net, jets.affine_diag(xj, self.center, self.halfwidth))
        for h in self.hard:
            y = h.jet(xj, y)
        return y

    def field(self, x: torch.Tensor, site: str | None = None) -> Field:
        p = self.problem
        return Field(
            x,
            estimator=self.estimator,
            input_names=p.inputs,
            output_names=p.outputs,
            spatial_dims=p.spatial_dims,
            model=self,
            site=site,
        )

    def get_extra_state(self) -> torch.Tensor:
        """A stochastic estimator's generator state travels with the weights (resume)."""
        return self.estimator.state_dict().get("generator", torch.zeros(0, dtype=torch.uint8))

    def set_extra_state(self, state: torch.Tensor):
        if state.numel():
            self.estimator.load_state_dict({"generator": state})

    def pde_residuals(self, x: torch.Tensor, u: Field | None = None) -> list[torch.Tensor]:
        """The PDE residual columns at ``x`` (``x`` must require grad)."""
        u = self.field(x, "pde") if u is None else u
        f = u if len(self.problem.outputs) > 1 else u[0]
        out = (
            self.problem.pde(x, f, dict(self.params.items()))
            if self.problem.parameters
            else self.problem.pde(x, f)
        )
        out = list(out) if isinstance(out, (tuple, list)) else [out]
        return [
            column(f"pde (residual {i})", r, x.shape[0], finite=False) for i, r in enumerate(out)
        ]

    def residual_terms(
        self, batch: dict, residuals: dict | None = None, terms=None
    ) -> dict[str, torch.Tensor]:
        """Per-term residual columns on a tensor batch (see :mod:`pdeml.sampling`): the PDE
        residuals (times ``batch["domain"]["w"]`` (N, 1) if the sampler set weights) and each soft
        condition's. ``losses`` is their mean square; Gauss-Newton methods use them whole.
        If ``residuals`` is a dict it receives the detached, unweighted PDE residuals.
        ``terms`` limits the evaluation to some batch keys ("domain" and condition names)."""
        out = {}
        if terms is None or "domain" in terms:
            out.update(zip(self.pde_names, self._weighted_pde(batch, residuals)))
        soft = [(name, c) for name, c in self.soft if terms is None or name in terms]
        if soft:
            xs = [batch[name]["x"] for name, _ in soft]
            xc = _inputs(torch.cat(xs), self._input_grad("conditions", soft))
            u = self.field(xc, "conditions")
            start = 0
            for (name, c), xi in zip(soft, xs):
                sl = slice(start, start + xi.shape[0])
                start += xi.shape[0]
                out[name] = c.residual(u.rows(sl), batch[name])
        return out

    def _input_grad(self, site: str, conditions=None) -> bool:
        """Whether the points of call site ``site`` ("pde" or "conditions") must require grad:
        the estimator needs reverse mode there, and for the conditions (``self.soft`` or a
        subset) one of them takes derivatives at all."""
        if site == "conditions" and not any(
            c.needs_grad for _, c in (self.soft if conditions is None else conditions)
        ):
            return False
        return self.estimator.input_grad(site)

    def _weighted_pde(self, batch, residuals=None) -> list[torch.Tensor]:
        """The PDE residual columns, times the sampler's per-point weights ``batch["domain"]["w"]``
        (causal R3) if any; ``residuals`` receives them detached and unweighted."""
        xd = _inputs(batch["domain"]["x"], self._input_grad("pde"))
        w = batch["domain"].get("w")
        res = self.pde_residuals(xd)
        if residuals is not None:
            residuals.update({name: r.detach() for name, r in zip(self.pde_names, res)})
        return res if w is None else [r * w for r in res]

    def losses(self, batch: dict, residuals: dict | None = None) -> dict[str, torch.Tensor]:
        """Per-term mean squared residuals, mean(r^2). A paired (unbiased) estimator evaluates
        the PDE residual a second, independent time, R_J: value mean(R_J R_I), gradient
        2 mean(R_J grad R_I). Compiled (``compile_losses``) from the second call on."""
        if self._compiled:
            if self._compile_timed:
                return self._compiled(batch, residuals)
            t = time.perf_counter()  # the first compiled call compiles
            out = self._compiled(batch, residuals)
            self.compile_s, self._compile_timed = self.compile_s + time.perf_counter() - t, True
            return out
        if self._compiled is None:
            with jets.fallbacks_taken() as fallbacks:
                out = self._losses(batch, residuals)
            self._jet_fallbacks = sorted(set(fallbacks))
            self._compiled = self._compile_losses()
            return out
        return self._losses(batch, residuals)

    def _reverse_sites(self) -> list[str]:
        """The call sites that need reverse mode through the points (a double backward)."""
        return [site for site in ("pde", "conditions") if self._input_grad(site)]

    def _compile_losses(self):
        """The compiled :meth:`_losses`, or False (with a warning) when some call site needs
        reverse mode through the points, i.e. a double backward."""
        if self._jet_fallbacks:
            warnings.warn(
                f"compile: {', '.join(self._jet_fallbacks)} take the nested-jvp jet fallback, "
                "which torch.compile cannot trace; running eager. Fix: give them a jet rule "
                "(pdeml.nn layers, geometries with smooth_distance_jet).",
                stacklevel=4,
            )
            return False
        reverse = self._reverse_sites()
        if reverse:
            warnings.warn(
                f"compile_losses=True: the {' and '.join(reverse)} terms need reverse-mode "
                f"derivatives through the points ({self.estimator!r}), a double backward, "
                "which torch.compile does not support; running eager. Fix: a forward-mode "
                "estimator (--derivatives taylor or stde:B) for compiled training.",
                stacklevel=4,
            )
            return False
        from pdeml.gemm import compile_options
        from pdeml.steppers import compile_method

        return compile_method(self._losses, self, **compile_options(self, self.device))

    def whole_step(self, batch: dict, steps: int | None = None) -> bool:
        """Whether ``fit`` may compile a first-order phase of ``steps`` steps whole, forward,
        backward and update in one graph (:class:`pdeml.steppers.WholeStep`): ``compile=True``,
        or ``"auto"`` and :func:`compile_pays`; and forward-mode derivatives at every call site.
        The estimator learns what each site needs from one evaluation of the losses on
        ``batch`` (its random stream put back after it). The answer depends on the phase, not
        on where in it a run starts, so a resumed run takes the path the uninterrupted one took."""
        if self.compile_step is False:
            return False
        if self.compile_step == "auto" and not compile_pays(self, batch, steps):
            return False
        if self._draw_notes is None:
            saved = self.estimator.state_dict()
            rng = self._seeded()
            try:
                with (
                    rng.recording() if rng is not None else contextlib.nullcontext([]) as notes,
                    jets.fallbacks_taken() as fallbacks,
                ):
                    self._losses(batch)
            finally:
                self.estimator.load_state_dict(saved)
            self._draw_notes, self._jet_fallbacks = notes, sorted(set(fallbacks))
        if self.compile_step is True and self._compiled is None:
            self._compiled = self._compile_losses()  # warns: reverse-mode sites, jet fallbacks
        return not self._jet_fallbacks and not self._reverse_sites()

    _draw_notes = None
    _jet_fallbacks: list = []
    _compile_timed = False

    def _seeded(self):
        """The stochastic estimator's generator (:class:`pdeml.derivatives.base.Seeded`), or
        None."""
        return self.estimator.rng

    def draw_ahead(self) -> list[torch.Tensor]:
        """The random draws one evaluation of the losses makes (a stochastic estimator's
        directions), made now from its generator, for a compiled step to read in order."""
        rng = self._seeded()
        return rng.ahead(self._draw_notes) if rng is not None and self._draw_notes else []

    def step_losses(
        self, batch: dict, residuals: dict | None = None, draws=()
    ) -> dict[str, torch.Tensor]:
        """The per-term losses, uncompiled: what :class:`pdeml.steppers.WholeStep` traces, with
        the estimator's random draws made ahead (:meth:`draw_ahead`) passed in as ``draws``."""
        rng = self._seeded()
        if rng is None or not draws:
            return self._losses(batch, residuals)
        rng.tape = list(draws)
        try:
            return self._losses(batch, residuals)
        finally:
            rng.tape = None

    def _losses(self, batch: dict, residuals: dict | None = None) -> dict[str, torch.Tensor]:
        terms = self.residual_terms(batch, residuals)
        paired = (
            dict(zip(self.pde_names, self._weighted_pde(batch))) if self.estimator.paired else {}
        )
        out = {}
        for name, r in terms.items():
            j = paired.get(name)
            out[name] = (
                r.pow(2).mean()
                if j is None
                else (2 * j.detach() * r).mean() - (j.detach() * r.detach()).mean()
            )
        return out

    # ------------------------------------------------------------- reporting
    @torch.no_grad()
    def predict(self, x, chunk: int = 65536) -> np.ndarray:
        """Network outputs (N, n_outputs) at numpy/tensor points, as float64 numpy."""
        dev, dt = self.center.device, self.center.dtype
        x = torch.as_tensor(np.asarray(x), dtype=dt, device=dev)
        return np.concatenate(
            [self(x[i : i + chunk]).double().cpu().numpy() for i in range(0, max(len(x), 1), chunk)]
        )[: len(x)]

    def residual_at(self, x, chunk: int = 16384) -> np.ndarray:
        """PDE residuals (N, n_residuals) at numpy points. A stochastic estimator's random
        stream is left where it was: evaluating never changes what training draws next."""
        dev, dt = self.center.device, self.center.dtype
        x = torch.as_tensor(np.asarray(x), dtype=dt, device=dev)
        saved = self.estimator.state_dict()
        parts = []
        try:
            for i in range(0, len(x), chunk):
                xi = x[i : i + chunk].detach().requires_grad_(self._input_grad("pde"))
                parts.append(
                    torch.cat(self.pde_residuals(xi), dim=1).detach().double().cpu().numpy()
                )
        finally:
            self.estimator.load_state_dict(saved)
        return np.concatenate(parts) if parts else np.zeros((0, len(self.pde_names)))

    def exports(self, x) -> dict[str, np.ndarray]:
        """The PDE residual(s) at ``x``: ``residual`` or ``residual_k``."""
        res = self.residual_at(x)
        return {
            "residual" if res.shape[1] == 1 else f"residual_{k}": res[:, k]
            for k in range(res.shape[1])
        }

    def lr_scales(self) -> dict[str, float]:
        """Each unknown parameter's learning-rate factor (:class:`pdeml.Parameter` ``lr_scale``)."""
        return {
            f"params.{k}": p.lr_scale
            for k, p in self.problem.parameters.items()
            if p.lr_scale != 1.0
        }

    def parameter_values(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.params.items()}
