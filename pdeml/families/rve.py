"""The FE² unit cell as a family over macroscopic strains: a draw is a Voigt strain in
[-0.04, 0.04]³, its truth the RVE solver's σ̄ (:mod:`pdeml.solvers.rve`)."""

from __future__ import annotations

import dataclasses
import functools

import torch

from pdeml.family import AbstractFamily
from pdeml.solvers.rve import RVE


@dataclasses.dataclass(frozen=True)
class RVEFamily(AbstractFamily):
    """Macro strains and their homogenized stresses on an ``RVE(n, fraction)``."""

    n: int = 4
    fraction: float = 0.3

    @functools.cached_property
    def rve(self) -> RVE:
        """The cell (built once, on first use)."""
        return RVE(n=self.n, fraction=self.fraction)

    def shapes(self):
        return {"strain": (3,), "stress": (3,)}

    def generate(self, count, generator, device="cpu"):
        from pdeml.operators.equino import latin_hypercube, snapshots

        strains = latin_hypercube(count, seed=int(torch.randint(2**31, (1,), generator=generator)))
        return {
            "strain": torch.as_tensor(strains, device=device),
            "stress": torch.as_tensor(snapshots(self.rve, strains)["stress"], device=device),
        }

    def __repr__(self):
        return f"RVEFamily(n={self.n}, fraction={self.fraction})"


__all__ = ["RVEFamily"]
