"""The surrogate terms that strategies build, and the errors and signals of the estimator.

A strategy contributes to the surrogate loss of one run through three kinds of terms, which
the estimator (:mod:`.estimator`) assembles in one fixed form per run (``docs/design/vi.md``):

* score terms (:class:`_Score`): log q(z) with gradients, times the learning signal F − b;
* measure-valued terms (:class:`_MVDTerm`): θ − sg(θ) times a signal c (E_{q⁺}[F] − E_{q⁻}[F]);
* path weights (``run.enum_logq``): log q(v) of an enumerated value, weighting the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ppl.errors import ModelError

__all__ = ["VIError"]


class VIError(ModelError):
    """A variational objective or guide was used in a way that cannot be honoured."""


@dataclass
class _Score:
    """A score-function term: log q(z) with gradients, and the baseline b of its signal F − b."""

    log_q: Any
    baseline: Any = 0.0


@dataclass
class _MVDTerm:
    """A measure-valued derivative site: its branches and (in the gradient pass) their signals.

    ``alts`` holds ``(param, index, c, v_plus, v_minus | None)``; ``prefix`` the enum values
    chosen before the site (runs sharing it share the branches); ``theta`` the site's parameters
    with gradients (gradient pass)."""

    site: int
    name: str
    alts: list
    signals: list | None = None
    prefix: tuple = ()
    theta: dict | None = field(default=None)


class _NeedsTwoPasses(Exception):
    """Raised by the one-pass estimator when the program has a site whose strategy re-runs it."""


class _NeedsLoop(Exception):
    """Raised inside a vmapped particle block that meets a site whose strategy re-runs the program."""
