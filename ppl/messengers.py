"""The handler implementations: one :class:`ppl.core.Messenger` subclass per handler.

These are the messengers themselves, used as context managers (``with seed(key=k): ...``) by
the model operations and the combinators.  :mod:`ppl.handlers` gives each of them the
constructor that wraps a model (``ppl.condition(model, data)`` returns a new model), which needs
:class:`ppl.Model`; keeping that constructor out of this module keeps the imports one-way
(core -> messengers -> model -> handlers).

Every handler that puts a value at a site (condition, substitute, replay, do, and the private
value-providers of ``ppl.model`` and ``ppl.transforms``) goes through one mechanism,
:class:`Provide`: it says which sites it acts on and what value a site gets, and the mechanism
writes the value and the flags that the value's meaning needs (observed, supplied, intervened).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from . import core
from .core import Messenger, site_log_prob
from .errors import AddressError, ModelError, nearest
from .randomness import check_key, draw

__all__ = [
    "Provide",
    "MEANINGS",
    "check_key",
    "current_prefix",
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
    "AUXILIARY",
    "is_auxiliary",
]

#: Address prefix of a guide's *auxiliary* sites (issue 19): random choices a guide makes that
#: the model does not have (the base noise of a flow guide).  A handler that puts values at sites
#: (``log_density``, ``substitute``, ``condition``, ...) ignores a given address under this
#: prefix when the model has no such site, instead of refusing it, so that
#: ``model.log_density(guide_trace.choices)`` works for guides with auxiliary sites.  The guide
#: must then score its model sites with the auxiliary choices integrated out (a flow guide's sites
#: are point masses carrying the change-of-variables density).
AUXILIARY = "_aux/"


def is_auxiliary(address: str) -> bool:
    """Whether `address` names a guide's auxiliary site (:data:`AUXILIARY`).

    Example:
        >>> ppl.messengers.is_auxiliary("_aux/auto/base"), ppl.messengers.is_auxiliary("mu")
        (True, False)
    """
    return address.startswith(AUXILIARY)


class seed(Messenger):
    """Give every unobserved sample site a fresh random key split from `key`.

    Example:
        >>> m = ppl.model(lambda: ppl.sample("x", dist.Normal(0.0, 1.0)))
        >>> bool(ppl.seed(m, jax.random.key(0))() == ppl.seed(m, jax.random.key(0))())
        True
    """

    def __init__(self, fn: Callable | None = None, key: Any = None):
        super().__init__(None)
        self.key = check_key(key, "ppl.seed")

    def next_key(self) -> jax.Array:
        self.key, sub = jax.random.split(self.key)
        return sub

    def process_message(self, msg: dict) -> None:
        t = msg["type"]
        if msg["value"] is not None:
            return
        if t == "sample" and not msg["is_observed"]:
            msg["value"] = draw(self.next_key(), msg["fn"], (), msg["name"])
            msg["fresh"] = True if msg["fresh"] is None else msg["fresh"]
        elif t == "param" and callable(msg["kwargs"]["init"]):
            msg["value"] = msg["kwargs"]["init"](self.next_key())
        elif t == "subsample":
            kw = msg["kwargs"]
            msg["value"] = jax.random.choice(
                self.next_key(), kw["size"], (kw["subsample_size"],), replace=False
            )


class trace(Messenger):
    """Record every site, in execution order, into ``self.sites`` (address -> site record).

    ``ppl.trace(model).get_trace(*args)`` runs the model and returns the records.  Each record is
    the site's message with its summed log density under ``"log_prob"``.  Using one address
    twice is an error.
    """

    def __init__(self, fn: Callable | None = None):
        super().__init__(fn)
        self.sites: "OrderedDict[str, dict]" = OrderedDict()

    def __enter__(self) -> "OrderedDict[str, dict]":  # type: ignore[override]
        super().__enter__()
        self.sites = OrderedDict()
        return self.sites

    def postprocess_message(self, msg: dict) -> None:
        if msg["type"] not in ("sample", "param", "factor", "deterministic"):
            return
        name = msg["name"]
        if name in self.sites:
            raise AddressError(
                f"address {name!r} is used twice in one run of the model: every site needs its own "
                "address (inside a loop use f'{name}_{i}', ppl.plate or ppl.scan)."
            )
        rec = dict(msg)
        rec["cond_indep_stack"] = list(msg["cond_indep_stack"])
        rec["log_prob"] = site_log_prob(msg)
        self.sites[name] = rec

    def get_trace(self, *args: Any, **kwargs: Any) -> "OrderedDict[str, dict]":
        self(*args, **kwargs)
        return self.sites


#: what a provided value means -> the message flags that say it (see :meth:`Provide.put`)
MEANINGS: dict[str, dict[str, Any]] = {
    # an observation: scored in the likelihood, shape- and support-checked (condition)
    "observed": {"is_observed": True, "supplied": True},
    # a latent value: scored in the prior, checked (substitute, replay, log_density)
    "latent": {"supplied": "sample"},
    # a constraint of generate/update: scored in the importance weight, checked
    "constrained": {"supplied": True, "constrained": True},
    # an old latent value kept by update: known to be in the support (shape-checked only)
    "kept": {"supplied": True, "in_support": True},
    # set by surgery (do): not scored; its descendants see it
    "intervened": {"intervened": True, "is_observed": "sample-false", "supplied": "sample"},
    # the unconstrained view's T(u): in the support by construction, not checked
    "transformed": {"in_support": True},
}


class Provide(Messenger):
    """The one mechanism of the handlers that put values at sites.

    `data` maps addresses to values (``ppl.scan`` slices it step by step); :meth:`lookup` finds
    a site's entry and remembers which addresses were used, so that with ``strict`` an address
    the model does not have is an error when the handler exits.  :meth:`put` writes a value with
    the flags of its meaning (:data:`MEANINGS`), so what "observed", "intervened", ... mean is
    said in one place.  condition, substitute, replay, do and the private value-providers of
    ``ppl.model`` and ``ppl.transforms`` are subclasses; user code provides values through
    ``ppl.substitute(model, substitute_fn=f)`` instead.
    """

    tables = ("data",)
    verb = "handler"

    def __init__(self, fn: Callable | None = None, data: Mapping[str, Any] | None = None, strict: bool = True):
        super().__init__(None)
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            if hasattr(data, "choices"):
                data = data.choices
            else:
                raise ModelError(
                    f"ppl.{self.verb}: expected a mapping from addresses to values, got "
                    f"{type(data).__name__}."
                )
        for k in data:
            if not isinstance(k, str):
                raise ModelError(f"ppl.{self.verb}: addresses must be strings, got {k!r}.")
        self.data = dict(data)
        self.strict = strict
        self._seen: set[str] = set()
        self._names: set[str] = set()
        self._dyn0 = 0

    def __enter__(self) -> "Messenger":
        self._seen = set()
        self._names = set()
        self._dyn0 = core._STATE.dynamic_structure
        return super().__enter__()

    def __exit__(self, exc_type, exc, tb) -> None:
        super().__exit__(exc_type, exc, tb)
        if exc_type is None and self.strict and core._STATE.dynamic_structure == self._dyn0:
            missing = [k for k in self.data if k not in self._seen and not is_auxiliary(k)]
            if missing:
                k = missing[0]
                raise AddressError(
                    f"ppl.{self.verb} was given address {k!r}, which the model does not have"
                    f"{nearest(k, self._names)}."
                )

    def lookup(self, msg: dict) -> tuple[bool, Any]:
        """(True, value) if `data` has the site's address, else (False, None)."""
        name = msg["name"]
        self._names.add(name)
        if name in self.data:
            self._seen.add(name)
            return True, self.data[name]
        return False, None

    @staticmethod
    def put(msg: dict, value: Any, meaning: str, **fields: Any) -> None:
        """Give the site `value` with the flags of `meaning` (a key of :data:`MEANINGS`), and set
        the other declared message `fields` given (``u``, ``log_jac``, ``fresh``)."""
        msg["value"] = value
        is_sample = msg["type"] == "sample"
        for flag, how in MEANINGS[meaning].items():
            if how == "sample":
                msg[flag] = is_sample
            elif how == "sample-false":
                if is_sample:
                    msg[flag] = False
            else:
                msg[flag] = how
        for k, v in fields.items():
            msg[k] = v


#: the former name of :class:`Provide`
_AddressData = Provide


class condition(Provide):
    """Observe sites: each address in `data` takes that value and is scored as an observation.

    ``ppl.condition(model, {"y": y})`` is the posterior's unnormalised density; it is the same as
    passing ``y=y`` to a model written with ``obs=y``.

    Example:
        >>> @ppl.model
        ... def m():
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0))
        >>> tr = ppl.condition(m, {"y": 0.5}).simulate(jax.random.key(0))
        >>> float(tr["y"]), tr.observed
        (0.5, ('y',))
    """

    verb = "condition"

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample":
            if msg["type"] in ("deterministic", "param"):
                self._names.add(msg["name"])
                if msg["name"] in self.data:
                    raise ModelError(
                        f"ppl.condition: site {msg['name']!r} is a {msg['type']} site, which cannot be "
                        "observed; condition on the sample sites it is computed from."
                    )
            return
        found, value = self.lookup(msg)
        if found and not msg["intervened"]:
            self.put(msg, value, "observed")


@dataclasses.dataclass(frozen=True)
class Site:
    """A read-only view of one site, handed to the value-providing hook of :class:`substitute`.

    Attributes: ``name`` (the full address), ``type`` (``"sample"`` or ``"param"``),
    ``distribution`` (the site's distribution; ``None`` for a param), ``value`` (the value the
    site has so far, ``None`` if not yet drawn), ``init`` and ``constraint`` (a param's initial
    value and constraint; ``None`` for sample sites).
    """

    name: str
    type: str
    distribution: Any = None
    value: Any = None
    init: Any = None
    constraint: Any = None


def _site_view(msg: dict) -> Site:
    kw = msg.get("kwargs") or {}
    return Site(
        name=msg["name"],
        type=msg["type"],
        distribution=msg["fn"] if msg["type"] == "sample" else None,
        value=msg["value"],
        init=kw.get("init") if msg["type"] == "param" else None,
        constraint=kw.get("constraint") if msg["type"] == "param" else None,
    )


class substitute(Provide):
    """Fix latent sample sites (and params) to given values; they are still scored as latent.

    Values come from ``data`` (address -> value) and, for addresses not in ``data``, from
    ``substitute_fn``: called with a :class:`Site` view of each latent sample site and param, it
    returns the value to put there or ``None`` to leave the site alone.  The measure is the
    model's density evaluated at the substituted values (nothing is added or dropped); this is
    the public hook through which inference code provides values at sites.

    Example:
        >>> import jax, ppl
        >>> @ppl.model
        ... def m():
        ...     return ppl.sample("x", ppl.dist.Normal(0.0, 1.0)) + ppl.sample("y", ppl.dist.Normal(0.0, 1.0))
        >>> at_mean = ppl.substitute(m, substitute_fn=lambda site: site.distribution.mean)
        >>> float(at_mean.simulate(jax.random.key(0)).retval)
        0.0
    """

    verb = "substitute"

    def __init__(
        self,
        fn: Callable | None = None,
        data: Mapping[str, Any] | None = None,
        strict: bool = True,
        substitute_fn: Callable[[Site], Any] | None = None,
    ):
        super().__init__(fn, data, strict=strict)
        if substitute_fn is not None and not callable(substitute_fn):
            raise ModelError(
                f"ppl.{self.verb}: substitute_fn must be a function of a ppl.Site returning a value "
                f"or None, got {type(substitute_fn).__name__}."
            )
        self.substitute_fn = substitute_fn

    def process_message(self, msg: dict) -> None:
        if msg["type"] not in ("sample", "param"):
            if msg["type"] == "deterministic":
                self._names.add(msg["name"])
            return
        if msg["type"] == "sample" and msg["is_observed"]:
            self._names.add(msg["name"])
            return
        found, value = self.lookup(msg)
        if not found and self.substitute_fn is not None and not msg["intervened"]:
            value = self.substitute_fn(_site_view(msg))
            found = value is not None
        if found and not msg["intervened"]:
            self.put(msg, value, "latent")


class replay(substitute):
    """Replay the latent values of a recorded :class:`ppl.Trace` (or a dict of choices)."""

    verb = "replay"

    def __init__(self, fn: Callable | None = None, data: Any = None, strict: bool = False):
        super().__init__(None, data, strict=strict)


class do(Provide):
    """Intervene: each address in `data` is *set* to its value and is not scored (surgery).

    Unlike :class:`condition`, the intervened site's own density is dropped and the value flows
    to its descendants only; its ancestors are untouched.  Works on sample and deterministic
    sites.

    Example:
        >>> @ppl.model
        ... def m():
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     return ppl.sample("y", dist.Normal(mu, 1.0))
        >>> tr = ppl.do(m, {"mu": 3.0}).simulate(jax.random.key(0))
        >>> float(tr["mu"]), "mu" in tr.log_probs
        (3.0, False)
    """

    verb = "do"

    def process_message(self, msg: dict) -> None:
        if msg["type"] not in ("sample", "deterministic"):
            return
        found, value = self.lookup(msg)
        if found:
            self.put(msg, jnp.asarray(value) if not hasattr(value, "shape") else value, "intervened")
            if msg["type"] == "sample":
                try:
                    shape = jnp.broadcast_shapes(
                        jnp.shape(value), tuple(msg["fn"].batch_shape) + tuple(msg["fn"].event_shape)
                    )
                except ValueError:
                    shape = None
                if shape is None:
                    raise ModelError(
                        f"ppl.do: the value for site {msg['name']!r} has shape {jnp.shape(value)}, "
                        "which does not broadcast with the distribution's shape "
                        f"{tuple(msg['fn'].batch_shape) + tuple(msg['fn'].event_shape)}."
                    )


class block(Messenger):
    """Hide sites from the recorders outside this handler (they still run and are seeded).

    `hide` lists addresses to hide, `expose` lists the only ones to show; with neither, all are
    hidden.  `hide_fn(msg)` decides per site.
    """

    def __init__(
        self,
        fn: Callable | None = None,
        hide: Iterable[str] | None = None,
        expose: Iterable[str] | None = None,
        hide_fn: Callable[[dict], bool] | None = None,
    ):
        super().__init__(None)
        self.hide = set(hide) if hide is not None else None
        self.expose = set(expose) if expose is not None else None
        self.hide_fn = hide_fn

    def blocks(self, msg: dict) -> bool:
        if self.hide_fn is not None:
            return bool(self.hide_fn(msg))
        if self.hide is not None:
            return msg["name"] in self.hide
        if self.expose is not None:
            return msg["name"] not in self.expose
        return True


class scale(Messenger):
    """Multiply the log density of every site inside by `scale` (a positive number or array)."""

    def __init__(self, fn: Callable | None = None, scale: Any = 1.0):
        super().__init__(None)
        if core.is_concrete(scale) and not bool(np.all(np.asarray(scale) > 0)):
            raise ModelError(f"ppl.scale: scale must be positive, got {scale!r}.")
        self.scale = scale

    def process_message(self, msg: dict) -> None:
        if msg["type"] in ("sample", "factor"):
            msg["scale"] = self.scale if msg["scale"] is None else msg["scale"] * self.scale


class mask(Messenger):
    """Keep the log density only where `mask` is True (it broadcasts with the site's batch shape)."""

    def __init__(self, fn: Callable | None = None, mask: Any = True):
        super().__init__(None)
        m = jnp.asarray(mask)
        if m.dtype != jnp.bool_:
            raise ModelError(f"ppl.mask: mask must be boolean, got dtype {m.dtype}.")
        self.mask = m

    def process_message(self, msg: dict) -> None:
        if msg["type"] in ("sample", "factor"):
            msg["mask"] = self.mask if msg["mask"] is None else (msg["mask"] & self.mask)


class scope(Messenger):
    """Prefix every address inside with ``prefix + "/"`` (used for nested model calls)."""

    passive = True

    def __init__(self, fn: Callable | None = None, prefix: str = ""):
        super().__init__(None)
        if not isinstance(prefix, str) or not prefix or "/" in prefix:
            raise ModelError(f"a model call's name must be a non-empty string without '/', got {prefix!r}.")
        self.prefix = prefix

    def process_message(self, msg: dict) -> None:
        msg["name"] = f"{self.prefix}/{msg['name']}"


def current_prefix() -> str:
    """The address prefix that the active scopes give to a site created here ('' or 'a/b/')."""
    parts = [h.prefix for h in core._stack() if isinstance(h, scope)]  # outermost first
    return "".join(p + "/" for p in parts)
