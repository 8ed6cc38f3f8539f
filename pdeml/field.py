"""``Field``: the network's output at a batch of points, asked for its derivatives."""

from __future__ import annotations

import torch


class Field:
    r"""A network output evaluated at points ``x`` (N, n_inputs), differentiable in ``x``.

    ``value`` (N, 1), ``grad()`` (N, n_inputs), ``d(i)``, ``d2(i, j)``, ``laplacian()`` (over
    the spatial inputs), ``dt()``; inputs may be given by index or by name (``u.d("x")``).
    Several outputs: ``u["p"]`` or ``u[2]`` select one; ``u.value`` is then (N, n_outputs).
    How derivatives are computed is the estimator's business.

    Example:
        >>> def pde(x, u):
        ...     return u.dt() - 0.1 * u.laplacian()
    """

    def __init__(
        self,
        x,
        values=None,
        *,
        estimator,
        input_names,
        output_names,
        spatial_dims,
        component=None,
        cache=None,
        rows=None,
        model=None,
        site=None,
    ):
        self.x = x
        self.model = model
        from .derivatives.base import AbstractEstimator

        # estimator settings start a run here; a run (the backend's) is used as it is
        self._estimator = (
            estimator.init() if isinstance(estimator, AbstractEstimator) else estimator
        )
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self._spatial = tuple(spatial_dims)
        self.component = component
        self._cache = {} if cache is None else cache
        if values is not None:
            self._cache["values"] = values
        if site is not None:
            self._cache["site"] = site
        self._rows = rows

    def _like(self, **changes) -> Field:
        kw = dict(
            estimator=self._estimator,
            input_names=self.input_names,
            output_names=self.output_names,
            spatial_dims=self._spatial,
            component=self.component,
            cache=self._cache,
            rows=self._rows,
            model=self.model,
        )
        kw.update(changes)
        return Field(self.x, **kw)

    @property
    def _values(self) -> torch.Tensor:
        return self._estimator.values(self)

    # ------------------------------------------------------------- selection
    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.output_names:
                raise KeyError(
                    f"output {key!r} is not one of the problem's outputs "
                    f"{self.output_names}. Fix: use one of those names or an index."
                )
            key = self.output_names.index(key)
        if not isinstance(key, int) or not -len(self.output_names) <= key < len(self.output_names):
            raise IndexError(
                f"output index {key!r} is out of range for {len(self.output_names)} "
                f"output(s) {self.output_names}."
            )
        return self._like(component=key % len(self.output_names))

    def rows(self, sl: slice) -> Field:
        """The same field restricted to rows ``sl`` (derivatives still computed once for all)."""
        return self._like(rows=sl)

    def _one(self) -> Field:
        if self.component is not None:
            return self
        if len(self.output_names) == 1:
            return self[0]
        raise ValueError(
            f"this field has {len(self.output_names)} outputs {self.output_names}; "
            f"derivatives need one. Fix: select it first, e.g. u[{self.output_names[0]!r}].d(0)"
        )

    def _cut(self, t):
        return t if self._rows is None else t[self._rows]

    def _index(self, i) -> int:
        if isinstance(i, str):
            if i not in self.input_names:
                raise KeyError(
                    f"input {i!r} is not one of {self.input_names}. Fix: use one of "
                    "those names (set them with Problem(inputs=...)) or an index."
                )
            return self.input_names.index(i)
        n = len(self.input_names)
        if not isinstance(i, int) or not -n <= i < n:
            raise IndexError(f"input index {i!r} is out of range for inputs {self.input_names}.")
        return i % n

    # ---------------------------------------------------------------- values
    @property
    def _full_value(self):
        return self._values[:, self.component : self.component + 1]

    @property
    def value(self) -> torch.Tensor:
        if self.component is None and len(self.output_names) > 1:
            return self._cut(self._values)
        return self._cut(self._one()._full_value)

    def grad(self) -> torch.Tensor:
        f = self._one()
        return self._cut(self._estimator.grad(f))

    def d(self, i) -> torch.Tensor:
        return self._cut(self._estimator.d(self._one(), self._index(i)))

    def d2(self, i, j=None) -> torch.Tensor:
        i = self._index(i)
        j = i if j is None else self._index(j)
        return self._cut(self._estimator.d2(self._one(), i, j))

    def laplacian(self) -> torch.Tensor:
        return self._cut(self._estimator.laplacian(self._one(), self._spatial))

    def biharmonic(self) -> torch.Tensor:
        """:math:`\\Delta^2 u` over the spatial inputs."""
        return self._cut(self._estimator.biharmonic(self._one(), self._spatial))

    def diffusion(self, sigma) -> torch.Tensor:
        r"""The generator's second-order part
        :math:`\tfrac12\operatorname{tr}(\sigma\sigma^\top\nabla^2 u)`
        over the spatial inputs; ``sigma`` is a (d, d) matrix or a scalar (times the identity)."""
        d = len(self._spatial)
        s = torch.as_tensor(sigma, dtype=self.x.dtype, device=self.x.device)
        s = s * torch.eye(d, dtype=s.dtype, device=s.device) if s.ndim == 0 else s
        if s.shape != (d, d):
            raise ValueError(
                f"sigma has shape {tuple(s.shape)}; the problem has {d} spatial inputs. "
                f"Fix: pass a ({d}, {d}) matrix or a scalar."
            )
        return self._cut(self._estimator.diffusion(self._one(), self._spatial, s))

    def dt(self) -> torch.Tensor:
        if len(self._spatial) == len(self.input_names):
            raise ValueError(
                "dt() needs a time-dependent problem. Fix: pass "
                "Problem(..., time=(t0, t1)); time is then the last input."
            )
        return self.d(len(self.input_names) - 1)

    def __repr__(self):
        return (
            f"Field(outputs={self.output_names}, component={self.component}, "
            f"inputs={self.input_names}, estimator={self._estimator!r})"
        )
