"""The one calling convention of every driver: ``f(key, algorithm, model, *args, **kwargs)``.

The key comes first, then the algorithm (a kernel, an objective, ...), then the model, then the
model's own positional and keyword arguments; every option of the driver is keyword-only.

**Which keyword goes where** (decided here once, for ``mcmc.sample``, ``smc.tempered_smc`` and
``vi.fit``; :func:`model_keywords`):

1. A keyword named like an option of the driver is the option (Python gives it to the driver).
   If the model also has a parameter of that name and the user set the option, the call is
   ambiguous and refused (:func:`check_option_clash`): pass the model's value as
   ``model_kwargs={name: value}``.
2. A keyword named like a parameter of the model goes to the model.
3. Any other keyword is an error that names it, with "did you mean" among the driver's options
   and the model's parameters (``progress_bar=`` -> ``progress``, ``num_sample=`` ->
   ``num_samples``, ``thining=`` -> ``thinning``), instead of a ``TypeError`` from inside the
   model or, worse, a silently accepted typo.
4. A model with ``**kwargs`` takes any other keyword too, *unless* it is close to an option's
   name (then it is most likely a misspelt option and is refused as in 3).
5. ``model_kwargs={...}`` is the unambiguous way in: its entries go to the model whatever their
   names (each must be a parameter of the model unless it takes ``**kwargs``), and may not repeat
   a keyword given directly.

The model's parameters are read from its signature (through ``ppl.condition`` and the other
handler wrappers, down to the user's function); a model whose signature cannot be read counts as
taking ``**kwargs``.
"""

from __future__ import annotations

import difflib
import inspect
import weakref
from typing import Any, Iterable, Mapping

from ppl.errors import ArgumentError, ArgumentTypeError

__all__ = ["check_option_clash", "given_options", "is_algorithm", "model_keywords", "options_of", "reject_unknown"]

#: how close (difflib ratio) an unknown keyword must be to an option's name to be taken for a
#: misspelt option even when the model takes ``**kwargs`` (``progress_bar`` ~ ``progress``: 0.8)
_CLOSE = 0.75


_SIGNATURES: "weakref.WeakKeyDictionary[Any, inspect.Signature]" = weakref.WeakKeyDictionary()


def _inspect_signature(fn: Any) -> inspect.Signature:
    """``inspect.signature(fn)``, kept per function (issue 19: every driver call inspects the
    driver and the model several times, a tenth of a warm ``vi.fit``'s fixed cost)."""
    try:
        sig = _SIGNATURES.get(fn)
    except TypeError:  # not weakly referenceable or not hashable
        return inspect.signature(fn)
    if sig is None:
        sig = inspect.signature(fn)
        try:
            _SIGNATURES[fn] = sig
        except TypeError:
            pass
    return sig


def _signature(model: Any) -> tuple[set[str], bool]:
    """(the model's named parameters, whether it takes any keyword: ``**kwargs`` or unknown)."""
    while getattr(model, "_base", None) is not None:  # ppl.condition(...), ppl.do(...), ...
        model = model._base
    fn = getattr(model, "fn", model)
    try:
        params = _inspect_signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    named = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def _parameters(model: Any) -> set[str]:
    return _signature(model)[0]


def options_of(driver: Any) -> list[str]:
    """The keyword-only parameters of ``driver`` (its options), in order.

    Example:
        >>> from inference._calling import options_of
        >>> def driver(key, model, *args, num_samples=1000, progress=None, **kwargs): ...
        >>> options_of(driver)
        ['num_samples', 'progress']
    """
    return [p.name for p in _inspect_signature(driver).parameters.values() if p.kind is p.KEYWORD_ONLY]


def _name(model: Any) -> str:
    return str(getattr(model, "name", None) or getattr(model, "__name__", None) or type(model).__name__)


def model_keywords(
    who: str, driver: Any, models: Any, kwargs: Mapping[str, Any], model_kwargs: Any = None
) -> dict:
    """The keyword arguments for the model(s) of a call of ``driver``: ``kwargs`` (the keywords
    the driver did not take as options) checked by the rules of the module docstring, and
    ``model_kwargs`` merged in.  Raises :class:`ppl.errors.ArgumentError` naming an unknown
    keyword (with "did you mean"), a keyword close to an option given to a ``**kwargs`` model, or
    a ``model_kwargs`` entry the model does not take.

    ``models`` is one model or several (``vi.fit``: the model and the guide); a keyword is a
    model parameter when one of them has it.

    Example:
        >>> import ppl
        >>> from inference._calling import model_keywords
        >>> def driver(key, model, *args, num_samples=1000, progress=None, model_kwargs=None, **kwargs): ...
        >>> @ppl.model
        ... def m(y=None, progress=0):
        ...     return ppl.sample("x", ppl.dist.Normal(0.0, 1.0))
        >>> model_keywords("drv", driver, m, {"y": 1.0}, {"progress": 2})
        {'y': 1.0, 'progress': 2}
        >>> model_keywords("drv", driver, m, {"num_sample": 5})  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ppl.errors.ArgumentError: drv: unknown keyword 'num_sample' (did you mean 'num_samples'?) ...
    """
    models = [m for m in (models if isinstance(models, (list, tuple)) else [models]) if m is not None]
    sigs = [(_name(m), *_signature(m)) for m in models] or [("the model", set(), True)]
    options = [o for o in options_of(driver) if o != "model_kwargs"]
    # every model receives every keyword (vi.fit: the model and the guide): each must take it
    for k in kwargs:
        close = difflib.get_close_matches(k, options, n=1, cutoff=_CLOSE)
        for what, named, open_kw in sigs:
            if k in named or (open_kw and not close):
                continue
            if open_kw:
                raise ArgumentError(
                    f"{who}: keyword {k!r} looks like a misspelt option {close[0]!r} of {who}; if "
                    f"it is meant for model {what!r} (which takes **kwargs), pass it as "
                    f"model_kwargs={{{k!r}: ...}}."
                )
            best = difflib.get_close_matches(k, options + sorted(named), n=1, cutoff=0.5)
            hint = f" (did you mean {best[0]!r}?)" if best else ""
            raise ArgumentError(
                f"{who}: unknown keyword {k!r}{hint}: it is neither an option of {who} "
                f"({', '.join(options)}) nor a parameter of model {what!r} "
                f"({', '.join(sorted(named)) or 'none'})."
            )
    out = dict(kwargs)
    if model_kwargs is None:
        return out
    if not isinstance(model_kwargs, Mapping):
        raise ArgumentTypeError(
            f"{who}: model_kwargs must be a dict of the model's keyword arguments, got "
            f"{type(model_kwargs).__name__}."
        )
    for k, v in model_kwargs.items():
        if k in out:
            raise ArgumentError(f"{who}: the model's keyword {k!r} was given twice (directly and in model_kwargs).")
        for what, named, open_kw in sigs:
            if k not in named and not open_kw:
                best = difflib.get_close_matches(str(k), sorted(named), n=1, cutoff=0.5)
                hint = f" (did you mean {best[0]!r}?)" if best else ""
                raise ArgumentError(
                    f"{who}: model_kwargs has {k!r}{hint}, which is not a parameter of model "
                    f"{what!r} ({', '.join(sorted(named)) or 'none'})."
                )
        out[k] = v
    return out


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
            f"{who}: the model has a parameter {name!r}, which is also an option of {who}, and "
            f"{name}= was given, so the call is ambiguous; pass the option's value to {who} and "
            f"the model's as model_kwargs={{{name!r}: ...}} (or bind it first: functools.partial)."
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
    params = _inspect_signature(fn).parameters
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


def reject_unknown(who: str, driver: Any, unknown: Mapping[str, Any]) -> None:
    """Raise :class:`ppl.errors.ArgumentError` naming the first keyword in ``unknown``, with
    "did you mean" among ``driver``'s parameters: for the drivers that pass no keywords to a
    model (``smc.particle_filter``, ``smc.resample_move``), whose ``**unknown`` catches typos
    that Python would report as a bare ``TypeError``.

    Example:
        >>> from inference._calling import reject_unknown
        >>> def driver(key, model, *, num_particles=100, **unknown): ...
        >>> reject_unknown("drv", driver, {})
        >>> reject_unknown("drv", driver, {"num_particle": 10})  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ppl.errors.ArgumentError: drv: unknown option 'num_particle' (did you mean 'num_particles'?) ...
    """
    if not unknown:
        return
    k = next(iter(unknown))
    params = [p.name for p in _inspect_signature(driver).parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    best = difflib.get_close_matches(k, params, n=1, cutoff=0.5)
    hint = f" (did you mean {best[0]!r}?)" if best else ""
    raise ArgumentError(f"{who}: unknown option {k!r}{hint}; its options are {', '.join(params)}.")
