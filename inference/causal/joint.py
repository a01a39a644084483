"""The exact interpretation of a finite diagram: a finite measure as a named tensor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ppl.errors import AddressError, ModelError, nearest

__all__ = ["Joint"]


@dataclass
class Joint:
    """A finite measure as a named tensor: ``table[i, j, ...]`` is the mass of
    ``(names[0] = supports[0][i], names[1] = supports[1][j], ...)``.

    Example:
        >>> from inference.causal.examples import smoking
        >>> j = causal.interpret(causal.diagram(smoking))
        >>> [round(float(p), 4) for p in j.marginal(["cancer"]).table]
        [0.608, 0.392]
    """

    names: tuple
    supports: tuple
    table: Any

    @property
    def total(self) -> jax.Array:
        return jnp.sum(self.table)

    def normalized(self) -> "Joint":
        return Joint(self.names, self.supports, self.table / jnp.sum(self.table))

    def marginal(self, names: Sequence[str]) -> "Joint":
        """Sum out every variable not in `names`; axes follow the order of `names`."""
        names = [names] if isinstance(names, str) else list(names)
        for n in names:
            if n not in self.names:
                raise AddressError(f"the joint has no variable {n!r}{nearest(n, self.names)}.")
        idx = [self.names.index(n) for n in names]
        t = jnp.einsum(self.table, list(range(len(self.names))), idx)
        return Joint(tuple(names), tuple(self.supports[i] for i in idx), t)

    def index(self, name: str, value: Any) -> int:
        sup = self.supports[self.names.index(name)]
        v = np.asarray(value).item()
        for i, s in enumerate(sup):
            if s == v:
                return i
        raise ModelError(f"value {value!r} is not in the support {list(sup)} of {name!r}.")

    def condition(self, given: Mapping[str, Any]) -> "Joint":
        """Restrict to `given` (dropping those axes) and normalise."""
        t = self.table
        names, sups = list(self.names), list(self.supports)
        for n, v in given.items():
            i = names.index(n)
            t = jnp.take(t, self.index(n, v), axis=i)
            del names[i], sups[i]
        return Joint(tuple(names), tuple(sups), t / jnp.sum(t))

    def align(self, names: Sequence[str]) -> "Joint":
        """The same joint with axes permuted into the order `names`."""
        return self.marginal(names) if set(names) == set(self.names) and len(names) == len(self.names) else self._bad(names)

    def _bad(self, names):
        raise ModelError(f"cannot align a joint over {list(self.names)} to {list(names)}.")

    def __repr__(self) -> str:
        return f"Joint(names={list(self.names)}, shape={tuple(np.shape(self.table))})"

