"""The one calling convention of every driver: ``f(key, algorithm, model, *args, **kwargs)``.

The key comes first, then the algorithm (a kernel, an objective, ...), then the model, then the
model's own positional and keyword arguments; every option of the driver is keyword-only.  When the
user sets an option whose name is also a parameter of the model, the call is ambiguous (Python
gives the value to the driver; the user may have meant the model), so :func:`check_option_clash`
refuses it with an error naming both, instead of routing it silently.  Options left at their
defaults are not ambiguous (:func:`given_options` picks the ones the user set), so a model may
well have a parameter called ``data`` or ``init``.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable, Mapping

from ppl.errors import ArgumentError

__all__ = ["check_option_clash", "given_options", "is_algorithm"]


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


def given_options(fn: Any, values: Mapping[str, Any]) -> list[str]:
    """The names in ``values`` (option -> the value the driver received) that differ from
    ``fn``'s defaults for them: the options the user set (an option passed with its default value
    is indistinguishable from one not passed, and counts as not set).

    Example:
        >>> from inference._calling import given_options
        >>> def driver(key, model, *args, num_samples=1000, data=None, **kwargs): ...
        >>> given_options(driver, {"num_samples": 1000, "data": (1.0,)})
        ['data']
    """
    params = inspect.signature(fn).parameters
    out = []
    for name, value in values.items():
        default = params[name].default
        if value is default:
            continue
        try:
            if type(value) is type(default) and bool(value == default):
                continue
        except Exception:  # noqa: BLE001 - arrays and odd types: count as set
            pass
        out.append(name)
    return out
