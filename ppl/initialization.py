"""Initialisation strategies for MCMC chains (and any user of the unconstrained view).

A strategy says where a chain starts when no value is given for a latent site:

- ``"uniform"`` / :func:`init_to_uniform` ``(radius=2.0)``: uniform in (−radius, radius) in the
  unconstrained space of each site;
- ``"prior"`` / :func:`init_to_sample`: a draw from the prior;
- ``"median"`` / :func:`init_to_median` ``(num_samples=15)``: at each site, the median of
  ``num_samples`` draws of its distribution given the values chosen upstream (NumPyro's rule);
- ``"mean"`` / :func:`init_to_mean`: the mean of each site's distribution given the values
  upstream, or its median where the mean is not finite (e.g. a half-Cauchy);
- ``"zeros"``: the image of 0 in each site's unconstrained space (e.g. 1 for a positive site).

NumPyro's own ``numpyro.infer.init_to_uniform`` / ``init_to_median`` / ``init_to_mean`` /
``init_to_sample`` (also with their keyword arguments, e.g. ``init_to_uniform(radius=0.5)``) are
accepted and read as the strategy of the same name, and ``init_to_value(values=...)`` as the
dict of values, so a NumPyro script's ``init_strategy=`` ports unchanged.  A strategy is a frozen
dataclass: hashable, part of a compiled program's identity.

Example:
    >>> ppl.init_to_uniform(radius=0.5)
    InitStrategy(kind='uniform', radius=0.5, num_samples=15)
    >>> ppl.initialization.as_strategy("median")
    InitStrategy(kind='median', radius=2.0, num_samples=15)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from .errors import ArgumentError

__all__ = ["InitStrategy", "init_to_uniform", "init_to_median", "init_to_mean", "init_to_sample", "as_strategy"]

KINDS = ("uniform", "prior", "zeros", "median", "mean")
_ALIASES = {"sample": "prior", "feasible": "zeros"}


@dataclasses.dataclass(frozen=True)
class InitStrategy:
    """Where chains start: ``kind`` is one of ``"uniform"``, ``"prior"``, ``"zeros"``,
    ``"median"``, ``"mean"`` (see the module docstring); ``radius`` is the uniform strategy's
    half-width (unconstrained), ``num_samples`` the median strategy's number of draws per site."""

    kind: str = "uniform"
    radius: float = 2.0
    num_samples: int = 15

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ArgumentError(f"init strategy: unknown kind {self.kind!r}; expected one of {', '.join(KINDS)}.")
        if not self.radius > 0:
            raise ArgumentError(f"init_to_uniform: radius must be > 0, got {self.radius!r}.")
        if int(self.num_samples) < 1:
            raise ArgumentError(f"init_to_median: num_samples must be >= 1, got {self.num_samples!r}.")


def init_to_uniform(radius: float = 2.0) -> InitStrategy:
    """Start uniformly in (−radius, radius) in each site's unconstrained space.

    Example:
        >>> ppl.init_to_uniform(1.0).radius
        1.0
    """
    return InitStrategy("uniform", radius=float(radius))


def init_to_median(num_samples: int = 15) -> InitStrategy:
    """Start each site at the median of ``num_samples`` draws of its distribution, given the
    values chosen upstream.

    Example:
        >>> ppl.init_to_median().kind
        'median'
    """
    return InitStrategy("median", num_samples=int(num_samples))


def init_to_mean() -> InitStrategy:
    """Start each site at its distribution's mean given the values upstream (the median where
    the mean is not finite).

    Example:
        >>> ppl.init_to_mean().kind
        'mean'
    """
    return InitStrategy("mean")


def init_to_sample() -> InitStrategy:
    """Start at a draw from the prior.

    Example:
        >>> ppl.init_to_sample().kind
        'prior'
    """
    return InitStrategy("prior")


def _numpyro_init(init: Any) -> tuple[str, dict] | None:
    """(name, keywords) when ``init`` is one of NumPyro's ``init_to_*`` (or a partial of one)."""
    fn, kw = init, {}
    if isinstance(init, functools.partial):
        fn, kw = init.func, dict(init.keywords or {})
    mod = getattr(fn, "__module__", "") or ""
    name = getattr(fn, "__name__", "")
    if mod.startswith("numpyro.infer") and name.startswith("init_to_"):
        return name[len("init_to_"):], kw
    return None


def as_strategy(init: Any, who: str = "init") -> Any:
    """``init`` as an :class:`InitStrategy`, a dict of values, or None (the kernel's default).

    Accepts None, a strategy name, an :class:`InitStrategy`, a mapping address -> value, and
    NumPyro's ``init_to_*`` functions; anything else is a :class:`ppl.ArgumentError` naming it.

    Example:
        >>> from ppl.initialization import as_strategy
        >>> import numpyro.infer
        >>> as_strategy(numpyro.infer.init_to_median(num_samples=7))
        InitStrategy(kind='median', radius=2.0, num_samples=7)
    """
    from collections.abc import Mapping

    if init is None or isinstance(init, (InitStrategy, Mapping)):
        return init
    if isinstance(init, str):
        kind = _ALIASES.get(init, init)
        if kind not in KINDS:
            import difflib

            best = difflib.get_close_matches(init, KINDS, n=1, cutoff=0.5)
            hint = f" (did you mean {best[0]!r}?)" if best else ""
            raise ArgumentError(
                f"{who}: unknown init strategy {init!r}{hint}; expected one of {', '.join(KINDS)}, "
                "an InitStrategy (ppl.init_to_uniform(radius=...), ...) or a dict of values."
            )
        return InitStrategy(kind)
    found = _numpyro_init(init)
    if found is not None:
        name, kw = found
        if name == "value":
            return dict(kw.get("values") or {})
        if name in ("uniform", "median", "mean", "sample", "feasible"):
            kind = _ALIASES.get(name, name)
            return InitStrategy(kind, radius=float(kw.get("radius", 2.0)), num_samples=int(kw.get("num_samples", 15)))
    raise ArgumentError(
        f"{who}: init must be None, a strategy name ({', '.join(KINDS)}), an InitStrategy "
        f"(ppl.init_to_uniform(radius=...), ...), NumPyro's init_to_* or a dict of values; got {init!r}."
    )
