"""Multilayer perceptrons for PINNs, with optional random Fourier-feature inputs."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validate import fail, positive_int
from ..derivatives import jets as J


class Sin(nn.Module):
    """Elementwise ``sin``."""

    def forward(self, x):
        return torch.sin(x)

    def jet(self, jet):
        return J.elementwise(jet, J.sin_derivatives)


ACTIVATIONS = {"tanh": nn.Tanh, "sin": Sin, "silu": nn.SiLU, "gelu": nn.GELU}


class FourierFeatures(nn.Module):
    r"""Random Fourier features :math:`[\sin(2\pi Bx), \cos(2\pi Bx)]`, :math:`B_{ij}\sim
    N(0,\sigma^2)`
    fixed (a buffer). Tancik et al., "Fourier features let networks learn high frequency
    functions in low dimensional domains", NeurIPS 2020.

    Args:
        features: number of frequencies (the layer outputs twice as many values).
        scale: :math:`\sigma`, the frequency scale in the network's (normalized) input units.
    """

    def __init__(self, features: int = 64, scale: float = 1.0, in_features: int | None = None):
        super().__init__()
        self.features = positive_int("FourierFeatures(features)", features)
        self.scale = float(scale)
        self.in_features = in_features
        if in_features is not None:
            self.register_buffer("B", torch.empty(self.features, in_features))
            self.reset_parameters()

    def reset_parameters(self):
        if self.in_features is not None:
            nn.init.normal_(self.B, std=self.scale)

    def bind(self, in_features: int) -> FourierFeatures:
        return FourierFeatures(self.features, self.scale, in_features)

    @property
    def out_features(self) -> int:
        return 2 * self.features

    def forward(self, x):
        z = 2 * math.pi * x @ self.B.T
        return torch.cat([torch.sin(z), torch.cos(z)], dim=-1)

    def jet(self, jet):
        z = J.linear(jet, 2 * math.pi * self.B)
        return J.concat([J.elementwise(z, J.sin_derivatives), J.elementwise(z, J.cos_derivatives)])


class PeriodicFeatures(nn.Module):
    r"""Exact periodicity in chosen input dimensions: :math:`x_i \mapsto [\sin(\pi k x_i), \cos(\pi
    k x_i)]_{k=1..K}`,
    the other inputs passed through. The network sees inputs normalized to [-1, 1] on the
    domain's bounding box, so period 2 there is the box width: a network built on it is periodic
    across the box in those dimensions, derivatives included (the soft ``Periodic`` loss term
    then vanishes identically). Dong & Ni, "A method for representing periodic functions and
    enforcing exactly periodic boundary conditions with deep neural networks", JCP 2021.

    Args:
        dims: the periodic input indices (e.g. ``(0,)`` for x in (x, t)).
        harmonics: K, the number of frequencies per periodic input.
    """

    def __init__(self, dims=(0,), harmonics: int = 1, in_features: int | None = None):
        super().__init__()
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
        if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in dims):
            fail(
                "PeriodicFeatures(dims)",
                dims,
                "must be non-negative input indices",
                "pass e.g. (0,)",
            )
        self.dims, self.harmonics = dims, positive_int("PeriodicFeatures(harmonics)", harmonics)
        self.in_features = in_features
        if in_features is not None:
            if max(dims) >= in_features:
                fail(
                    "PeriodicFeatures(dims)",
                    dims,
                    f"names an input beyond the {in_features} there are",
                    f"use indices below {in_features}",
                )
            keep = [i for i in range(in_features) if i not in dims]
            eye = torch.eye(in_features)
            self.register_buffer("P", eye[keep])
            # integer frequencies (exact in any dtype); π is applied in the input's dtype
            self.register_buffer(
                "B", torch.cat([k * eye[list(dims)] for k in range(1, self.harmonics + 1)])
            )

    def bind(self, in_features: int) -> PeriodicFeatures:
        return PeriodicFeatures(self.dims, self.harmonics, in_features)

    @property
    def out_features(self) -> int:
        return int(self.P.shape[0]) + 2 * int(self.B.shape[0])  # type: ignore[index]

    def forward(self, x):
        z = math.pi * (x @ self.B.T)
        return torch.cat([x @ self.P.T, torch.sin(z), torch.cos(z)], dim=-1)

    def jet(self, jet):
        z = J.scale(J.linear(jet, self.B), math.pi)
        return J.concat(
            [
                J.linear(jet, self.P),
                J.elementwise(z, J.sin_derivatives),
                J.elementwise(z, J.cos_derivatives),
            ]
        )


EMBEDDINGS = (FourierFeatures, PeriodicFeatures)


class MLP(nn.Module):
    """Fully connected network ``in -> width x depth -> out`` with Glorot-normal weights.

    Input and output sizes may be left out: a backend binds them to the problem's
    (:meth:`bind` returns a new, built network).

    Args:
        width: hidden units per layer. depth: number of hidden layers (0: a linear model of the
            (embedded) inputs, e.g. a Fourier series with :class:`PeriodicFeatures`).
        activation: "tanh", "sin", "silu" or "gelu".
        fourier: optional input embedding applied first: :class:`FourierFeatures` or
            :class:`PeriodicFeatures`.

    Example:
        >>> net = MLP(width=50, depth=4).bind(2, 1)
        >>> net(torch.zeros(10, 2)).shape
        torch.Size([10, 1])
    """

    def __init__(
        self,
        width: int = 50,
        depth: int = 4,
        activation: str = "tanh",
        *,
        fourier: FourierFeatures | None = None,
        in_features: int | None = None,
        out_features: int | None = None,
    ):
        super().__init__()
        self.width = positive_int("MLP(width)", width)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            fail(
                "MLP(depth)",
                depth,
                "must be a non-negative integer",
                "pass e.g. 4 (0 gives a linear model of the input features)",
            )
        self.depth = depth
        if activation not in ACTIVATIONS:
            fail(
                "MLP(activation)",
                activation,
                "is not supported",
                f"use one of {sorted(ACTIVATIONS)}",
            )
        if fourier is not None and not isinstance(fourier, EMBEDDINGS):
            fail(
                "MLP(fourier)",
                fourier,
                "is not an input embedding",
                "pass FourierFeatures(64, 1.0) or PeriodicFeatures(dims=(0,))",
            )
        self.activation = activation
        self.in_features, self.out_features = in_features, out_features
        self.fourier = fourier
        self.layers = nn.ModuleList()
        if in_features is not None and out_features is not None:
            if fourier is not None:
                self.fourier = (
                    fourier if fourier.in_features == in_features else fourier.bind(in_features)
                )
            n = self.fourier.out_features if self.fourier is not None else in_features
            sizes = [n] + [width] * depth + [out_features]
            self.layers.extend(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
            self.act = ACTIVATIONS[activation]()
            self.reset_parameters()

    @property
    def built(self) -> bool:
        return len(self.layers) > 0

    def bind(self, in_features: int, out_features: int) -> MLP:
        """A new network with these sizes (``self`` if it already has them)."""
        if self.built and (self.in_features, self.out_features) == (in_features, out_features):
            return self
        if self.built:
            fail(
                "model",
                f"MLP({self.in_features} -> {self.out_features})",
                f"does not fit a problem with {in_features} inputs and {out_features} outputs",
                "leave in_features/out_features unset so the problem decides",
            )
        return MLP(
            self.width,
            self.depth,
            self.activation,
            fourier=self.fourier,
            in_features=in_features,
            out_features=out_features,
        )

    def reset_parameters(self):
        for layer in self.layers:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        if not self.built:
            raise RuntimeError(
                "MLP has no layers yet. Fix: call .bind(in_features, out_features) "
                "or pass it to a backend, which does."
            )
        if self.fourier is not None:
            x = self.fourier(x)
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)

    def jet(self, jet):
        """Taylor-mode propagation (see :mod:`pdeml.derivatives.jets`)."""
        if self.fourier is not None:
            jet = self.fourier.jet(jet)
        for layer in self.layers[:-1]:
            jet = J.push(self.act, J.linear(jet, layer.weight, layer.bias))
        return J.linear(jet, self.layers[-1].weight, self.layers[-1].bias)

    def extra_repr(self):
        return f"width={self.width}, depth={self.depth}, activation={self.activation!r}"
