"""Checks that turn silent wrong answers into errors that name the culprit (issue 18).

Four questions, one place each:

- :func:`validate` — the counts, sizes and keys given to a public entry point (``num_chains``,
  ``num_particles``, ``plate`` sizes, ...): whole numbers at least some minimum, and real keys.
  Every entry point calls it once, so ``num_chains=2.5`` is refused instead of running 2 chains.
- :func:`check_observation_plates` — an observation inside plates must not broadcast the
  likelihood beyond the site's own shape (an (8, 1) observation in a plate of 8 would make an
  8×8 likelihood; a (2, 8) one would count the likelihood twice).  NumPyro accepts both; we do not.
- :func:`exact_zeros` — data of probability zero get a log density of −inf (NumPyro clamps the
  probabilities of Bernoulli, Binomial and Categorical, giving −88 or −36 instead).
- :func:`parameter_error` — NumPyro's "Normal distribution got invalid scale parameter" (raised
  while the distribution is built, before ``ppl.sample`` sees it) becomes a
  :class:`~ppl.errors.ParameterError` naming the site whose distribution it is.

Example:
    >>> import jax, jax.numpy as jnp, ppl
    >>> from ppl import dist
    >>> from ppl.checks import validate
    >>> validate("mcmc.sample", num_chains=(2, 1), num_samples=(0, 0))
    >>> try:
    ...     validate("mcmc.sample", num_chains=(2.5, 1))
    ... except ppl.ArgumentError as e:
    ...     print(e)
    mcmc.sample: num_chains must be >= 1, got 2.5; a whole number is expected (got float).
    >>> @ppl.model
    ... def coin():
    ...     ppl.sample("y", dist.Bernoulli(probs=0.0), obs=1)
    >>> float(coin.log_density({}))
    -inf
"""

from __future__ import annotations

import operator
import re
import traceback
from typing import Any

import jax.numpy as jnp
import numpy as np

from .errors import ArgumentError, ModelError, ParameterError

__all__ = ["validate", "whole_number", "check_observation_plates", "exact_zeros", "parameter_error", "list_argument_error"]

_NO_KEY = object()


def whole_number(who: str, name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an ``int`` when it is a whole number ≥ ``minimum`` (a Python or NumPy integer,
    a concrete integer array of shape (), or a float with no fractional part); else an
    :class:`~ppl.errors.ArgumentError` naming ``who``'s argument ``name``."""
    ok = not isinstance(value, (bool, np.bool_))
    n = None
    if ok:
        try:
            n = operator.index(value)
        except TypeError:
            try:
                f = float(value) if np.ndim(value) == 0 and not isinstance(value, str) else None
            except (TypeError, ValueError):
                f = None
            if f is not None and np.isfinite(f) and f == int(f):
                n = int(f)
    if n is None or n < minimum:
        raise ArgumentError(f"{who}: {name} must be >= {minimum}, got {value!r}; a whole number is expected "
                            f"(got {type(value).__name__}).")
    return int(n)


def validate(who: str, key: Any = _NO_KEY, **counts: tuple) -> None:
    """Validate a public entry point's arguments once: ``key`` (when given) is a JAX random key,
    and each ``name=(value, minimum)`` is a whole number ≥ ``minimum`` (``None`` values are
    skipped: an option left at its default).  Raises a :class:`~ppl.errors.PPLError` subclass
    naming ``who`` and the argument."""
    if key is not _NO_KEY:
        from .randomness import check_key

        check_key(key, who)
    for name, (value, minimum) in counts.items():
        if value is not None:
            whole_number(who, name, value, minimum)


# ---------------------------------------------------------------------------------------------
# observations against the plate structure


def check_observation_plates(msg: dict, shape: tuple, dshape: tuple) -> None:
    """An observed site inside plates: its value's shape ``shape`` must broadcast to the site's
    own shape ``dshape`` (batch + event) without enlarging it, else the likelihood would be
    replicated (an (8, 1) value against a plate of 8 makes an 8×8 likelihood) or counted
    several times (a (2, 8) value).  Raises a :class:`~ppl.errors.ModelError` naming the site,
    the plates and both shapes."""
    frames = msg["cond_indep_stack"]
    if not frames or not msg["is_observed"]:
        return
    try:
        full = tuple(np.broadcast_shapes(shape, dshape))
    except ValueError:
        return  # the caller reports shapes that do not broadcast at all
    if full == tuple(dshape):
        return
    plates = ", ".join(f"{f.name!r} (size {f.size}, dim {f.dim})" for f in frames)
    raise ModelError(
        f"observation for site {msg['name']!r} has shape {tuple(shape)}, but the site inside plates "
        f"{plates} has shape {tuple(dshape)}: broadcasting would enlarge the likelihood to shape "
        f"{full} (replicating or counting the data several times). Give the observation the "
        f"site's shape {tuple(dshape)} (e.g. y.reshape({tuple(dshape)}))."
    )


# ---------------------------------------------------------------------------------------------
# exact zeros of discrete likelihoods


def _bernoulli(d: Any, v: Any) -> Any:
    p = d.probs
    return ((p == 0) & (v != 0)) | ((p == 1) & (v != 1))


def _binomial(d: Any, v: Any) -> Any:
    p = d.probs
    return ((p == 0) & (v != 0)) | ((p == 1) & (v != d.total_count))


def _categorical(d: Any, v: Any) -> Any:
    p = d.probs
    k = p.shape[-1]
    idx = jnp.clip(jnp.asarray(v).astype(jnp.int32), 0, k - 1)
    batch = jnp.broadcast_shapes(jnp.shape(idx), p.shape[:-1])
    p = jnp.broadcast_to(p, batch + (k,))
    return jnp.take_along_axis(p, jnp.broadcast_to(idx, batch)[..., None], axis=-1)[..., 0] == 0


_ZEROS = {"BernoulliProbs": _bernoulli, "BinomialProbs": _binomial, "CategoricalProbs": _categorical}


def exact_zeros(fn: Any, value: Any, lp: Any) -> Any:
    """``lp`` (the site's unreduced log density) with −inf where ``value`` has probability zero
    under ``fn`` exactly: NumPyro clamps the probabilities of ``Bernoulli(probs=...)``,
    ``Binomial(probs=...)`` and ``Categorical(probs=...)`` away from 0 and 1, so impossible
    data would otherwise get a finite log density (−88.26 in float32 for y = 1 under
    probs = 0).  Other families, and masked distributions, are returned unchanged."""
    base, event_dims = fn, 0
    while True:
        kind = type(base).__name__
        if kind == "Independent":
            event_dims += int(base.reinterpreted_batch_ndims)
        elif kind != "ExpandedDistribution":
            break
        base = base.base_dist
    zero = _ZEROS.get(type(base).__name__)
    if zero is None:
        return lp
    z = zero(base, jnp.asarray(value))
    if event_dims:
        z = jnp.any(z, axis=tuple(range(-event_dims, 0)))
    return jnp.where(z, -jnp.inf, lp)


# ---------------------------------------------------------------------------------------------
# NumPyro's parameter validation, named


_INVALID = re.compile(r"(\w+) distribution got invalid (\w+) parameter")
_SITE = re.compile(r"sample\(\s*(['\"])(.+?)\1")


def parameter_error(e: BaseException, model_name: str, last_site: str | None) -> ParameterError | None:
    """A :class:`~ppl.errors.ParameterError` for NumPyro's "X distribution got invalid y
    parameter" (raised while the distribution is built, before ``ppl.sample`` sees it), naming
    the site from the source line that built it (else the site after ``last_site``) and that
    line; ``None`` for any other error."""
    m = _INVALID.search(str(e))
    if not isinstance(e, ValueError) or m is None:
        return None
    frames = traceback.extract_tb(e.__traceback__)
    user = [f for f in frames if "numpyro" not in f.filename and "/ppl/" not in f.filename.replace("\\", "/")
            and "/jax/" not in f.filename.replace("\\", "/")]
    line = user[-1] if user else None
    site = _SITE.search(line.line or "") if line is not None else None
    if site is not None:
        where = f"site {site.group(2)!r}"
    else:
        where = f"the site after {last_site!r}" if last_site else "the model's first site"
    at = f" (built at {line.filename}:{line.lineno}: {line.line.strip()})" if line is not None and line.line else ""
    return ParameterError(
        f"{where} of model {model_name!r}: the {m.group(1)} distribution got an invalid {m.group(2)} "
        f"parameter{at}; it must satisfy the constraint of {m.group(1)}'s {m.group(2)} "
        f"(e.g. a positive scale)."
    )


def call_argument_error(e: BaseException, fn: Any, args: tuple, kwargs: dict) -> Exception | None:
    """An :class:`~ppl.errors.ArgumentError` when a model could not even be called with the
    arguments it was given (Python's "missing 1 required positional argument", "got an
    unexpected keyword argument"): it names the model, its signature and what was given, and
    reminds that inference functions pass the model's data after the model (NumPyro's
    ``AutoNormal(model)`` habit: our autoguides are built from the sites the model makes with its
    data, ``vi.auto_normal(model, *args)``).  ``None`` otherwise (e.g. a ``TypeError`` raised
    inside the model body, where the call itself was fine)."""
    import inspect

    from .errors import ArgumentError

    if not isinstance(e, TypeError):
        return None
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(*args, **kwargs)
        return None  # the call matched: the TypeError came from inside the body
    except TypeError as bind_error:
        why = str(bind_error)
    name = getattr(fn, "__name__", "model")
    given = ", ".join([f"{len(args)} positional"] + ([f"keywords {sorted(kwargs)}"] if kwargs else []))
    return ArgumentError(
        f"model {name!r} takes {sig} but was called with {given}: {why}. Pass the model's "
        f"arguments (its data) after the model, e.g. mcmc.sample(key, kernel, {name}, *args) or "
        f"vi.auto_normal({name}, *args)."
    )


def list_argument_error(e: BaseException, fn: Any, args: tuple, kwargs: dict) -> Exception | None:
    """An :class:`~ppl.errors.ArgumentTypeError` when a model failed with Python's "'list'
    object has no attribute 'shape'" (or a ``TypeError`` on a list or tuple) and one of its
    arguments is a plain Python list or tuple of numbers: it names the argument and asks for
    an array.  ``None`` otherwise."""
    from .errors import ArgumentTypeError

    text = str(e)
    if not isinstance(e, (AttributeError, TypeError)) or not re.search(r"'(list|tuple)'", text):
        return None
    try:
        import inspect

        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        names = []
    given = [(names[i] if i < len(names) else f"#{i}", a) for i, a in enumerate(args)] + list(kwargs.items())
    plain = [(n, a) for n, a in given if isinstance(a, (list, tuple)) and a
             and all(isinstance(v, (int, float, bool, np.number)) for v in a)]
    if not plain:
        return None
    n, a = plain[0]
    shown = repr(a) if len(repr(a)) < 60 else repr(a)[:57] + "..."
    return ArgumentTypeError(
        f"model {getattr(fn, '__name__', 'model')!r}: its argument {n!r} is a plain Python "
        f"{type(a).__name__} ({shown}), and the model failed on it ({type(e).__name__}: {text}); pass an "
        f"array instead, e.g. jnp.asarray({n})."
    )
