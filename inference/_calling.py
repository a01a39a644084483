"""The one calling convention of every driver: ``f(key, algorithm, model, *args, **kwargs)``.

The key comes first, then the algorithm (a kernel, an objective, ...), then the model, then the
model's own positional and keyword arguments; every option of the driver is keyword-only.  A model
keyword argument that has the name of one of the driver's options cannot be told apart from the
option, so :func:`check_option_clash` refuses it with an error naming both, instead of routing it
to one of them silently.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable

from ppl.errors import ArgumentError

__all__ = ["check_option_clash", "is_algorithm"]


def _parameters(model: Any) -> set[str]:
    fn = getattr(model, "fn", model)
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def check_option_clash(who: str, model: Any, options: Iterable[str]) -> None:
    """Raise :class:`ppl.errors.ArgumentError` if ``model`` has a parameter named like one of the
    driver's keyword-only ``options`` (the call would be ambiguous).

    Example:
        >>> import ppl
        >>> from inference._calling import check_option_clash
        >>> @ppl.model
        ... def m(num_samples):
        ...     return ppl.sample("x", ppl.dist.Normal(0.0, 1.0))
        >>> check_option_clash("mcmc.sample", m, ["num_warmup"])       # fine
        >>> check_option_clash("mcmc.sample", m, ["num_samples"])      # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ppl.errors.ArgumentError: ...
    """
    clash = sorted(_parameters(model) & set(options))
    if clash:
        name = clash[0]
        raise ArgumentError(
            f"{who}: the model has a parameter {name!r}, which is also an option of {who}; "
            f"rename the model's parameter, or bind it first (functools.partial or ppl.condition)."
        )


def is_algorithm(x: Any) -> bool:
    """Whether ``x`` is an algorithm configuration (something with ``bind``, e.g. an MCMC kernel)
    rather than a model: drivers whose algorithm used to be an option accept it in the
    conventional second place, ``f(key, algorithm, model, ...)``, with this test.

    Example:
        >>> from inference import mcmc
        >>> from inference._calling import is_algorithm
        >>> is_algorithm(mcmc.RWM()), is_algorithm(lambda: None)
        (True, False)
    """
    return hasattr(x, "bind") and callable(getattr(x, "bind"))
