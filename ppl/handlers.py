"""Effect handlers: composable interpretations of a model's primitives.

Each handler is a context manager; called with a model (or function) as first argument it
returns a new :class:`ppl.Model` that runs under a fresh instance of the handler on every call
(so wrapped models stay pure functions of their inputs).  All of them work under ``jit``,
``vmap`` and ``grad``: they act at trace time only.

    seed        give sample sites random keys
    trace       record every site
    condition   fix sites to data and score them (observations)
    substitute  fix latent sites to values (still scored as latent)
    replay      substitute the latent values of a trace
    do          fix sites to values *without* scoring them (intervention / surgery)
    block       hide sites from the recorders outside
    scale       multiply log densities (e.g. for mini-batches)
    mask        drop the log density where the mask is False
    scope       prefix addresses ("layer1/z")

What each handler does to a site is in :mod:`ppl.messengers`; this module adds the constructor
that wraps a model (:func:`ppl.model.handled`), so the imports go one way: messengers know
nothing of models, models run messengers, handlers wrap models.
"""

from __future__ import annotations

from typing import Any, Callable

from . import messengers as _m
from .core import Messenger
from .messengers import Site, current_prefix
from .model import handled
from .randomness import check_key

__all__ = [
    "seed",
    "trace",
    "condition",
    "substitute",
    "Site",
    "replay",
    "do",
    "block",
    "scale",
    "mask",
    "scope",
    "check_key",
    "current_prefix",
]


class _SameHandler(type):
    """A public handler class counts every instance of its messenger as its own instance, so
    ``isinstance(h, ppl.seed)`` holds for the seeds that model operations run with."""

    def __instancecheck__(cls, obj: Any) -> bool:
        impl = next(c for c in cls.__mro__ if c.__module__ != __name__)  # the messenger
        return isinstance(obj, impl) if impl is not object else type.__instancecheck__(cls, obj)


class _Wraps(metaclass=_SameHandler):
    """Mixin: called with a model (or function) first, the handler returns the wrapped model."""

    def __new__(cls, fn: Callable | None = None, *args: Any, **kwargs: Any):
        if fn is not None and not isinstance(fn, Messenger):
            return handled(fn, cls, None, *args, **kwargs)
        return super().__new__(cls)


class seed(_Wraps, _m.seed):
    __doc__ = _m.seed.__doc__


#: trace(model) keeps Messenger's own wrapping: a recorder whose get_trace runs the model
trace = _m.trace


class condition(_Wraps, _m.condition):
    __doc__ = _m.condition.__doc__


class substitute(_Wraps, _m.substitute):
    __doc__ = _m.substitute.__doc__


class replay(_Wraps, _m.replay):
    __doc__ = _m.replay.__doc__


class do(_Wraps, _m.do):
    __doc__ = _m.do.__doc__


class block(_Wraps, _m.block):
    __doc__ = _m.block.__doc__


class scale(_Wraps, _m.scale):
    __doc__ = _m.scale.__doc__


class mask(_Wraps, _m.mask):
    __doc__ = _m.mask.__doc__


class scope(_Wraps, _m.scope):
    __doc__ = _m.scope.__doc__
