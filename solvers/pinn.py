r"""Physics-informed neural network backend.

Loss: one term per PDE residual and one per soft condition,
:math:`L_k = \frac{1}{N_k}\sum_i r_k(x_i)^2`, kept separate by name so the optimizer layer can
combine per-term gradients. Inputs are mapped affinely from the domain's bounding box (x time)
to :math:`[-1, 1]` before the network. Raissi, Perdikaris, Karniadakis, "Physics-informed neural
networks", J. Comput. Phys. 2019.
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from torch import nn

from pdeml._validate import column, fail
from pdeml.conditions import Dirichlet
from pdeml.derivatives import AbstractEstimator, Autograd, Taylor, jets
from pdeml.derivatives import parse as parse_estimator
from pdeml.field import Field
from pdeml.nn import HardDirichlet, OutputTransform
from pdeml.problem import Problem


def _inputs(x: torch.Tensor, grad: bool) -> torch.Tensor:
    """Detached points that require grad only when reverse-mode derivatives need it (never
    calling ``requires_grad_`` otherwise keeps the forward pass usable under ``torch.func``)."""
    x = x.detach()
    return x.requires_grad_(True) if grad else x


class PINN(nn.Module):
    """A network trained to satisfy ``problem`` in the least-squares sense.

    Args:
        problem: the :class:`pdeml.Problem`.
        model: network; an unbuilt ``pl.nn.MLP`` gets the problem's input/output sizes. The
            backend works on a deep copy and re-initializes it from ``seed``.
        estimator: derivative estimator behind ``Field``, an object or a spec such as
            ``"stde:16"`` (default: exact :class:`~pdeml.derivatives.Taylor` mode when every layer
            has a jet rule, else exact :class:`~pdeml.derivatives.Autograd`).
        hard_dirichlet: impose whole-boundary Dirichlet conditions exactly (SDF transform).
        transform: optional output transform ``(x, y) -> u`` applied last: a function
            (wrapped in :class:`pdeml.nn.OutputTransform`, no jet rule) or a module with
            ``forward(x, y)`` and optionally ``jet(x_jet, y_jet)``: conditions built into the ansatz.
        seed: initialization seed (the caller's global RNG is left untouched).
        compile_losses: run :meth:`losses` through :func:`torch.compile` once the estimator
            knows what each call site needs (after the first evaluation). This fuses the jet
            rules' many small elementwise kernels: a forward-mode estimator (Taylor, STDE) only;
            reverse-mode ones (autograd, SDGD, or a site that needs a double backward) stay eager
            with a warning, because torch.compile does not support double backward.

    Example:
        >>> backend = PINN(problem, pl.nn.MLP(50, 4))
        >>> losses = backend.losses(batch)        # {"pde": ..., "dirichlet": ...}
    """

    def __init__(self, problem: Problem, model: nn.Module, *, estimator: AbstractEstimator | None = None,
                 hard_dirichlet: bool = False, transform=None, seed: int = 0,
                 dtype=torch.float32, compile_losses: bool = False):
        super().__init__()
        if not isinstance(problem, Problem):
            fail("problem", problem, "is not a pdeml.Problem", "pass pl.Problem(...)")
        if not isinstance(model, nn.Module):
            fail("model", model, "is not a torch module", "pass e.g. pl.nn.MLP(width=50, depth=4)")
        self.problem = problem
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = copy.deepcopy(model)
            if hasattr(net, "bind"):
                net = net.bind(problem.input_dim, len(problem.outputs))
            for m in reversed(list(net.modules())):  # children first, so a parent's init wins
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        self.net = net
        self.params = nn.ParameterDict({k: nn.Parameter(torch.tensor(v.initial))
                                        for k, v in problem.parameters.items()})
        lo, hi = problem.domain.bbox
        self.register_buffer("center", torch.as_tensor((lo + hi) / 2))
        self.register_buffer("halfwidth", torch.as_tensor((hi - lo) / 2))
        self.hard, self.soft = self._split_conditions(hard_dirichlet)
        if transform is not None:
            self.hard.append(transform if isinstance(transform, nn.Module) else OutputTransform(transform))
        self.estimator = parse_estimator(estimator) if estimator is not None else self._default_estimator()
        self.estimator.reset(seed)
        self.to(dtype)
        self.pde_names = self._probe()
        if not isinstance(compile_losses, bool):
            fail("compile_losses", compile_losses, "must be True or False", "pass compile_losses=True")
        # None: not decided yet; False: eager; else the compiled losses
        self._compiled = None if compile_losses else False

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
            fail("hard_dirichlet", True, "found no whole-boundary Dirichlet condition to impose",
                 "add pl.Dirichlet(value) without on=, or set hard_dirichlet=False")
        return hard, soft

    def _default_estimator(self) -> AbstractEstimator:
        """Exact Taylor mode (one forward jet, faster than nested autograd) when every layer
        has a jet rule; exact autograd otherwise (e.g. a user's output transform)."""
        if hasattr(self.net, "jet") and all(hasattr(h, "jet") and not isinstance(h, OutputTransform)
                                            for h in self.hard):
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

    # ------------------------------------------------------------ evaluation
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net((x - self.center) / self.halfwidth)
        for h in self.hard:
            y = h(x, y)
        return y

    def jet(self, x: torch.Tensor, tangents: list, weights=None) -> jets.Jet:
        """Taylor-mode jet of the outputs along ``x + sum_j tangents[j-1] t^j / j!``."""
        xj = jets.Jet([x] + list(tangents), weights)
        y = jets.push(self.net, jets.affine_diag(xj, self.center, self.halfwidth))
        for h in self.hard:
            y = h.jet(xj, y)
        return y

    def field(self, x: torch.Tensor, site: str | None = None) -> Field:
        p = self.problem
        return Field(x, estimator=self.estimator, input_names=p.inputs, output_names=p.outputs,
                     spatial_dims=p.spatial_dims, model=self, site=site)

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
        out = self.problem.pde(x, f, dict(self.params.items())) if self.problem.parameters \
            else self.problem.pde(x, f)
        out = list(out) if isinstance(out, (tuple, list)) else [out]
        return [column(f"pde (residual {i})", r, x.shape[0], finite=False) for i, r in enumerate(out)]

    def residual_terms(self, batch: dict, residuals: dict | None = None,
                       terms=None) -> dict[str, torch.Tensor]:
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
        if site == "conditions" and not any(c.needs_grad for _, c in
                                            (self.soft if conditions is None else conditions)):
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
            return self._compiled(batch, residuals)
        out = self._losses(batch, residuals)
        if self._compiled is None:
            self._compiled = self._compile_losses()
        return out

    def _compile_losses(self):
        """The compiled :meth:`_losses`, or False (with a warning) when some call site needs
        reverse mode through the points, i.e. a double backward."""
        reverse = [site for site in ("pde", "conditions") if self._input_grad(site)]
        if reverse:
            warnings.warn(f"compile_losses=True: the {' and '.join(reverse)} terms need reverse-mode "
                          f"derivatives through the points ({self.estimator!r}), a double backward, "
                          "which torch.compile does not support; running eager. Fix: a forward-mode "
                          "estimator (--derivatives taylor or stde:B) for compiled training.",
                          stacklevel=3)
            return False
        return torch.compile(self._losses)

    def _losses(self, batch: dict, residuals: dict | None = None) -> dict[str, torch.Tensor]:
        terms = self.residual_terms(batch, residuals)
        paired = dict(zip(self.pde_names, self._weighted_pde(batch))) if self.estimator.paired else {}
        out = {}
        for name, r in terms.items():
            j = paired.get(name)
            out[name] = r.pow(2).mean() if j is None else (2 * j.detach() * r).mean() - (j.detach() * r.detach()).mean()
        return out

    # ------------------------------------------------------------- reporting
    @torch.no_grad()
    def predict(self, x, chunk: int = 65536) -> np.ndarray:
        """Network outputs (N, n_outputs) at numpy/tensor points, as float64 numpy."""
        dev, dt = self.center.device, self.center.dtype
        x = torch.as_tensor(np.asarray(x), dtype=dt, device=dev)
        return np.concatenate([self(x[i:i + chunk]).double().cpu().numpy()
                               for i in range(0, max(len(x), 1), chunk)])[:len(x)]

    def residual_at(self, x, chunk: int = 16384) -> np.ndarray:
        """PDE residuals (N, n_residuals) at numpy points."""
        dev, dt = self.center.device, self.center.dtype
        x = torch.as_tensor(np.asarray(x), dtype=dt, device=dev)
        parts = []
        for i in range(0, len(x), chunk):
            xi = x[i:i + chunk].detach().requires_grad_(self._input_grad("pde"))
            parts.append(torch.cat(self.pde_residuals(xi), dim=1).detach().double().cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros((0, len(self.pde_names)))

    def parameter_values(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.params.items()}
