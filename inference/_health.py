"""The one health policy of every inference family (issue 18: no silent wrong answers).

Every result is checked before it is returned, and carries what was found as ``result.health``,
a :class:`Health`:

- ``"ok"``: nothing found;
- ``"degraded"``: usable, with a caveat (divergences, R̂ above :data:`RHAT_MAX`, an ESS below
  its threshold, a tempering that had to force β = 1, a population that fell to a handful of
  particles): an :class:`~ppl.errors.InferenceWarning` is issued, the result is returned;
- ``"failed"``: nothing usable (the evidence estimate is −inf or NaN, every weight is zero,
  draws ran off to the float limits): :class:`~ppl.errors.InferenceFailure` is raised, with the
  result and its health attached (``err.result``, ``err.health``) for inspection.

Results computed inside ``jax.jit``/``vmap`` (values not concrete) or under the exact
enumerator of :mod:`semantics` (where a branch of zero weight is a legitimate outcome, not a
failure) are not checked when they are made; ``result.health`` can be read later on concrete
values.

Example:
    >>> from inference._health import Health
    >>> h = Health("smc.tempered_smc", failed=(), degraded=("min ESS 1.0 of 64 particles",))
    >>> h.status, bool(h)
    ('degraded', False)
    >>> print(h)
    smc.tempered_smc: degraded: min ESS 1.0 of 64 particles
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from ppl import randomness
from ppl.core import is_concrete
from ppl.errors import InferenceFailure, InferenceWarning

__all__ = ["Health", "enforce", "checkable", "MIN_ESS_FRACTION"]

#: a population (or a tempering step) whose ESS falls below this fraction of N, or below 2
#: particles, is degraded
MIN_ESS_FRACTION = 0.01


@dataclass(frozen=True)
class Health:
    """What the checks of a result found: ``failed`` (nothing usable) and ``degraded``
    (usable with a caveat) problems, each a sentence; ``details`` the numbers behind them."""

    who: str
    failed: tuple = ()
    degraded: tuple = ()
    details: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``"failed"``, ``"degraded"`` or ``"ok"``."""
        return "failed" if self.failed else "degraded" if self.degraded else "ok"

    @property
    def problems(self) -> tuple:
        """Every problem found, the failures first."""
        return tuple(self.failed) + tuple(self.degraded)

    def __bool__(self) -> bool:
        return self.status == "ok"

    def __str__(self) -> str:
        if not self.problems:
            return f"{self.who}: ok"
        return f"{self.who}: {self.status}: " + "; ".join(self.problems)


def checkable(*values: Any) -> bool:
    """Whether a result made of ``values`` can be checked now: concrete (not inside a JAX
    transformation) and not under an eager interpreter such as the exact enumerator."""
    return is_concrete(values) and randomness.current_interpreter() is None


def enforce(health: Health, result: Any, stacklevel: int = 3) -> Any:
    """Apply the policy: raise :class:`~ppl.errors.InferenceFailure` when ``health`` failed,
    warn (:class:`~ppl.errors.InferenceWarning`) when it is degraded; return ``result``."""
    if health.failed:
        raise InferenceFailure(
            f"{health}. Nothing usable was produced; the result is err.result and its health "
            "err.health.", result=result, health=health)
    if health.degraded:
        warnings.warn(f"{health}. See result.health.", InferenceWarning, stacklevel=stacklevel)
    return result
