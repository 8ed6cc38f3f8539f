r"""``GridField``: the :class:`pdeml.field.Field` interface on trajectories sampled on a periodic
grid, so that one ``pde(x, f)`` serves a PINN (derivatives by autograd at scattered points) and
an operator (derivatives of a whole predicted trajectory on its grid).

On a grid of the periodic box :math:`[0, 1)^d` with frames ``dt`` apart, a field's space
derivatives are spectral (:math:`\widehat{\partial_j u}_k = 2\pi i k_j\hat u_k`) and its time
derivative is the second-order central difference :math:`(u^{j+1} - u^{j-1})/(2\Delta t)`, so every
value is reported at the interior frames :math:`1 \dots T-2`. Values come with a trailing
component axis of length 1, ``(..., T - 2, n, n, 1)``, as a PINN field's ``(N, 1)``; the
coordinates ``x`` given to ``pde`` are ``(T - 2, n, n, d + 1)`` (space, then time), so a case
written with ``x[..., :1]`` for the first coordinate reads the same in both settings.

Example:
    >>> n = 16
    >>> X, _ = torch.meshgrid(torch.arange(n) / n, torch.arange(n) / n, indexing="ij")
    >>> w = torch.sin(2 * torch.pi * X.double()).expand(1, 5, n, n)    # (B, T, n, n)
    >>> f = GridField({"w": w}, dt=0.1)
    >>> f.value.shape, f.x.shape                       # interior frames; (space, time) coordinates
    (torch.Size([1, 3, 16, 16, 1]), torch.Size([3, 16, 16, 3]))
    >>> bool(torch.allclose(f.laplacian(), -4 * torch.pi**2 * f.value))   # spectral: exact
    True
"""

from __future__ import annotations

import copy
import math

import torch

from ._validate import fail, finite_scalar


def _wavenumbers(n: int, dims: int, dtype, device) -> list[torch.Tensor]:
    """:math:`2\\pi k_j` on an ``rfftn`` grid of ``dims`` axes, each broadcastable to its shape."""
    full = 2 * math.pi * torch.fft.fftfreq(n, d=1.0 / n, dtype=dtype, device=device)
    last = 2 * math.pi * torch.fft.rfftfreq(n, d=1.0 / n, dtype=dtype, device=device)
    out = []
    for j in range(dims):
        k = last if j == dims - 1 else full
        shape = [1] * dims
        shape[j] = len(k)
        out.append(k.reshape(shape))
    return out


class GridField:
    """Named fields ``{name: (..., T, n, n)}`` (the same grid), frames ``dt`` apart, on the
    periodic unit square; ``f["w"]`` selects one, as a PINN's ``Field`` does.

    Args:
        fields: the trajectories of each output.
        dt: time between frames. t0: the time of frame 0.
        names: the input names, space then time (default ``("x", "y", "t")``).
    """

    def __init__(
        self, fields: dict, dt: float, *, t0: float = 0.0, names=("x", "y", "t"), _name=None
    ):
        if not fields:
            fail("fields", fields, "is empty", 'pass e.g. {"w": trajectories}')
        self.fields, self.frame_dt, self.t0 = dict(fields), finite_scalar("dt", dt), float(t0)
        first = next(iter(self.fields.values()))
        self.dims = len(names) - 1
        if (
            first.ndim < self.dims + 1
            or first.shape[-1] != first.shape[-2]
            or first.shape[-1 - self.dims] < 3
        ):
            fail(
                "fields",
                tuple(first.shape),
                "is not (..., T >= 3, n, n) trajectories",
                "pass (B, T, n, n)",
            )
        for k, v in self.fields.items():
            if v.shape != first.shape:
                fail(
                    f"fields[{k!r}]",
                    tuple(v.shape),
                    f"differs from the first field's {tuple(first.shape)}",
                    "sample every output on one grid",
                )
        self.input_names, self._name = tuple(names), _name
        self.n = first.shape[-1]
        # each field's spectrum at the interior frames, shared by its selections
        self._hats: dict = {}

    def __getitem__(self, name: str) -> GridField:
        if name not in self.fields:
            raise KeyError(
                f"output {name!r} is not one of {tuple(self.fields)}. Fix: use one of those names."
            )
        out = copy.copy(self)  # shares the fields and the spectra already taken
        out._name = name
        return out

    def _one(self) -> torch.Tensor:
        if self._name is None:
            if len(self.fields) > 1:
                raise ValueError(
                    f"this field has outputs {tuple(self.fields)}; derivatives need one. "
                    f"Fix: select it first, e.g. f[{next(iter(self.fields))!r}]"
                )
            return next(iter(self.fields.values()))
        return self.fields[self._name]

    @property
    def x(self) -> torch.Tensor:
        """Coordinates of the interior frames' grid points, ``(T - 2, n, n, 3)``: x, y, then t."""
        u = next(iter(self.fields.values()))
        frames = u.shape[-1 - self.dims]
        g = torch.arange(self.n, dtype=u.dtype, device=u.device) / self.n
        t = self.t0 + self.frame_dt * torch.arange(1, frames - 1, dtype=u.dtype, device=u.device)
        grids = torch.meshgrid(t, *([g] * self.dims), indexing="ij")
        return torch.stack([*grids[1:], grids[0]], dim=-1)

    @staticmethod
    def _col(t: torch.Tensor) -> torch.Tensor:
        return t[..., None]

    def _interior(self, u):
        return u.narrow(-1 - self.dims, 1, u.shape[-1 - self.dims] - 2)

    def _spectral(self, factor) -> torch.Tensor:
        """irfftn(factor * the selected field's spectrum), the spectrum taken once per field."""
        axes = tuple(range(-self.dims, 0))
        key = self._name or next(iter(self.fields))
        if key not in self._hats:
            self._hats[key] = torch.fft.rfftn(self._interior(self._one()), dim=axes)
        return torch.fft.irfftn(factor * self._hats[key], s=(self.n,) * self.dims, dim=axes)

    def _k(self) -> list[torch.Tensor]:
        u = self._one()
        return _wavenumbers(self.n, self.dims, u.dtype, u.device)

    def _index(self, i) -> int:
        if isinstance(i, str):
            if i not in self.input_names:
                raise KeyError(
                    f"input {i!r} is not one of {self.input_names}. Fix: use one of those names."
                )
            i = self.input_names.index(i)
        return i

    @property
    def value(self) -> torch.Tensor:
        return self._col(self._interior(self._one()))

    def d(self, i) -> torch.Tensor:
        i = self._index(i)
        if i == self.dims:
            return self.dt()
        return self._col(self._spectral(1j * self._k()[i]))

    def dt(self) -> torch.Tensor:
        """Central differences in time, at the interior frames."""
        u, axis = self._one(), -1 - self.dims
        frames = u.shape[axis]
        return self._col(
            (u.narrow(axis, 2, frames - 2) - u.narrow(axis, 0, frames - 2)) / (2 * self.frame_dt)
        )

    def d2(self, i, j=None) -> torch.Tensor:
        i = self._index(i)
        j = i if j is None else self._index(j)
        if self.dims in (i, j):
            fail(
                "d2",
                (i, j),
                "asks for a second time derivative",
                "the grid field has first-order time only",
            )
        k = self._k()
        return self._col(self._spectral(-k[i] * k[j]))

    def laplacian(self) -> torch.Tensor:
        return self._col(self._spectral(-sum(kj**2 for kj in self._k())))

    def __repr__(self):
        name = ", " + self._name if self._name else ""
        return f"GridField({tuple(self.fields)}, dt={self.frame_dt}, n={self.n}{name})"
