"""Errors raised by the language, each naming the site or argument at fault."""

from __future__ import annotations

import difflib
from typing import Iterable


class PPLError(Exception):
    """Base class of every error the library raises about a model or its input."""


class ModelError(PPLError, ValueError):
    """A model, or the data given to it, is malformed (raised at trace time)."""


class AddressError(ModelError, KeyError):
    """An address is unknown, missing or used twice."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0]) if self.args else ""


class SupportError(ModelError):
    """A value lies outside the support of its site's distribution."""


class NaNLogDensityError(ModelError, FloatingPointError):
    """A log density is NaN; the message names the first site where it appeared."""


class ArgumentError(PPLError, ValueError):
    """An argument of a library function (not the model) is invalid; the message names it, says
    what was expected and what was given."""


class ArgumentKeyError(ArgumentError, KeyError):
    """A name given to a library function (not a model address) is unknown; the message names
    it and the names that are known."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0]) if self.args else ""


class ArgumentTypeError(PPLError, TypeError):
    """An argument of a library function has the wrong type; the message names it."""


class CheckFailed(PPLError, AssertionError):
    """A check the library runs on request failed (a law of :mod:`semantics`, a statistical test,
    a comparison of measures); the message says what differed.  An ``AssertionError``, so test
    runners report it as a failed check."""


class MixedLibraryError(ModelError):
    """A NumPyro primitive (``numpyro.sample``, ``numpyro.plate``, ...) ran inside a ppl model, or
    a NumPyro handler (``numpyro.handlers.condition``, ...) around or inside one: NumPyro's effects
    do not reach ppl's handlers (they would be ignored), so the message names the site and the ppl
    equivalent."""


class OutsideModelError(PPLError, RuntimeError):
    """A primitive (`sample`, `param`, ...) was called outside any model or handler."""


def nearest(name: str, candidates: Iterable[str]) -> str:
    """A ' (did you mean ...?)' suffix naming the closest candidate, or ''."""
    cands = sorted(set(candidates))
    best = difflib.get_close_matches(name, cands, n=1, cutoff=0.5)
    if best:
        return f" (did you mean {best[0]!r}?)"
    if cands:
        shown = ", ".join(repr(c) for c in cands[:12])
        more = ", ..." if len(cands) > 12 else ""
        return f" (the model's addresses are: {shown}{more})"
    return " (the model has no such sites)"


# --- issue 18: results that check their own health -------------------------------------------


class ParameterError(ModelError):
    """A distribution's parameter is invalid (e.g. a negative scale); the message names the site."""


class InferenceWarning(PPLError, UserWarning):
    """A warning (a ``UserWarning``; a PPLError so one ``except``/filter covers the library):
    an inference result is usable but degraded (divergences, R̂ above its threshold, a low
    ESS, a tempering that had to force β = 1); ``result.health`` says what and where."""


class InferenceFailure(PPLError, RuntimeError):
    """An inference run produced nothing usable (evidence −inf or NaN, a collapsed population,
    draws running off to the float limits).  ``.result`` is the failed result and ``.health``
    its health record, for inspection."""

    def __init__(self, message: str, result=None, health=None):
        super().__init__(message)
        self.result, self.health = result, health
