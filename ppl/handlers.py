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
]


def _wrap(cls: type, fn: Callable, *args: Any, **kwargs: Any):
    """A Model running `fn` under a fresh `cls(*args, **kwargs)` on every call."""
    from .model import Model, as_model

    base = as_model(fn)
    cls(None, *args, **kwargs)  # check the arguments now, at the call that gave them

    def wrapped(*a: Any, **k: Any) -> Any:
        with cls(None, *args, **kwargs):
            return base.fn(*a, **k)

    wrapped.__name__ = wrapped.__qualname__ = base.name  # errors name the user's model
    out = Model(wrapped, name=base.name)
    out._base = base
    out._wrapper = (cls, args, kwargs)
    return out


def check_key(key: Any, who: str) -> jax.Array:
    """Validate a random key argument, with an error that says what was expected."""
    if key is None:
        raise ModelError(f"{who}: a random key is required, e.g. jax.random.key(0); got None.")
    if isinstance(key, (int, float)) or not hasattr(key, "dtype"):
        raise ModelError(
            f"{who}: expected a JAX random key such as jax.random.key(0), got "
            f"{type(key).__name__} {key!r}."
        )
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if key.dtype == jnp.uint32 and key.shape[-1:] == (2,):
        return key
    raise ModelError(
        f"{who}: expected a JAX random key such as jax.random.key(0), got an array of dtype "
        f"{key.dtype} and shape {key.shape}."
    )


# ---------------------------------------------------------------------------------------------


class seed(Messenger):
    """Give every unobserved sample site a fresh random key split from `key`.

    Example:
        >>> value = ppl.seed(model, jax.random.key(0))(*args)
    """

    def __new__(cls, fn: Callable | None = None, key: Any = None, *a: Any, **k: Any):
        if fn is not None and not isinstance(fn, Messenger) and cls is seed:
            return _wrap(seed, fn, key)
        return super().__new__(cls)

    def __init__(self, fn: Callable | None = None, key: Any = None):
        super().__init__(None)
        self.key = check_key(key, "ppl.seed")

    def next_key(self) -> jax.Array:
        self.key, sub = jax.random.split(self.key)
        return sub

    def process_message(self, msg: dict) -> None:
        from .randomness import draw

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


class _AddressData(Messenger):
    """Shared logic of handlers keyed by address: lookup and the unknown-address check."""

    tables = ("data",)
    verb = "handler"

    def __new__(cls, fn: Callable | None = None, data: Any = None, *a: Any, **k: Any):
        if fn is not None and not isinstance(fn, Messenger):
            return _wrap(cls, fn, data, *a, **k)
        return super().__new__(cls)

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
            missing = [k for k in self.data if k not in self._seen]
            if missing:
                k = missing[0]
                raise AddressError(
                    f"ppl.{self.verb} was given address {k!r}, which the model does not have"
                    f"{nearest(k, self._names)}."
                )

    def lookup(self, msg: dict) -> tuple[bool, Any]:
        name = msg["name"]
        self._names.add(name)
        if name in self.data:
            self._seen.add(name)
            return True, self.data[name]
        return False, None


class condition(_AddressData):
    """Observe sites: each address in `data` takes that value and is scored as an observation.

    ``ppl.condition(model, {"y": y})`` is the posterior's unnormalised density; it is the same as
    passing ``y=y`` to a model written with ``obs=y``.

    Example:
        >>> posterior = ppl.condition(eight_schools, {"y": y})
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
        if found:
            if msg["intervened"]:
                return
            msg["value"] = value
            msg["is_observed"] = True
            msg["supplied"] = True


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


class substitute(_AddressData):
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
            msg["value"] = value
            msg["supplied"] = msg["type"] == "sample"


class replay(substitute):
    """Replay the latent values of a recorded :class:`ppl.Trace` (or a dict of choices)."""

    verb = "replay"

    def __init__(self, fn: Callable | None = None, data: Any = None, strict: bool = False):
        super().__init__(None, data, strict=strict)


class do(_AddressData):
    """Intervene: each address in `data` is *set* to its value and is not scored (surgery).

    Unlike :class:`condition`, the intervened site's own density is dropped and the value flows
    to its descendants only; its ancestors are untouched.  Works on sample and deterministic
    sites.

    Example:
        >>> surgery = ppl.do(eight_schools, {"tau": 1.0})
    """

    verb = "do"

    def process_message(self, msg: dict) -> None:
        if msg["type"] not in ("sample", "deterministic"):
            return
        found, value = self.lookup(msg)
        if found:
            msg["value"] = jnp.asarray(value) if not hasattr(value, "shape") else value
            msg["intervened"] = True
            if msg["type"] == "sample":
                msg["is_observed"] = False
                msg["supplied"] = True
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

    def __new__(cls, fn: Callable | None = None, *a: Any, **k: Any):
        if fn is not None and not isinstance(fn, Messenger):
            return _wrap(block, fn, *a, **k)
        return super().__new__(cls)

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

    def __new__(cls, fn: Callable | None = None, *a: Any, **k: Any):
        if fn is not None and not isinstance(fn, Messenger):
            return _wrap(scale, fn, *a, **k)
        return super().__new__(cls)

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

    def __new__(cls, fn: Callable | None = None, *a: Any, **k: Any):
        if fn is not None and not isinstance(fn, Messenger):
            return _wrap(mask, fn, *a, **k)
        return super().__new__(cls)

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

    def __new__(cls, fn: Callable | None = None, *a: Any, **k: Any):
        if fn is not None and not isinstance(fn, Messenger):
            return _wrap(scope, fn, *a, **k)
        return super().__new__(cls)

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
