"""`Model`: the generative-function interface every inference block uses.

A model denotes an unnormalised measure over traces: the product of the densities of its sample
sites (w.r.t. their base measures), its observations and its factors.  The operations below are
pure functions of their inputs (jit-able, vmap-able, differentiable) and each states which
density or weight it computes.
"""

from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from . import core
from .checks import call_argument_error, list_argument_error, parameter_error  # issue 18
from .errors import AddressError, ModelError, NaNLogDensityError, OutsideModelError, PPLError, nearest
from .messengers import Provide, scope, seed, trace
from .randomness import check_key, draw
from .traces import Selection, Trace, _sum, make_trace, select

__all__ = ["Model", "Trace", "model", "call", "as_model", "handled", "run", "select", "Selection"]


# ---------------------------------------------------------------------------------------------
# running a model


def run(fn: Callable, args: tuple, kwargs: dict, *handlers: core.Messenger) -> tuple[Any, "OrderedDict[str, dict]"]:
    """Run `fn` under `handlers` (outermost first) and a recorder; return (retval, site records)."""
    rec = trace()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(rec)
            for h in handlers:
                stack.enter_context(h)
            retval = fn(*args, **kwargs)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
            jax.errors.TracerArrayConversionError, jax.errors.TracerIntegerConversionError) as e:
        last = next(reversed(rec.sites), None)
        where = f" after site {last!r}" if last else ""
        raise ModelError(
            f"model {getattr(fn, '__name__', 'model')!r} uses a traced value in Python control flow"
            f"{where} (an `if`/`while`/`int()` on a random or jit-traced value). Under jit, vmap or "
            "grad, branch with ppl.cond / ppl.switch and loop with ppl.scan; eager Python branches "
            "work only without jit."
        ) from None
    except Exception as e:
        if not isinstance(e, PPLError):
            # e.g. NumPyro's parameter validation (a ValueError): say where in the model it happened
            last = next(reversed(rec.sites), None)
            named = parameter_error(e, getattr(fn, "__name__", "model"), last) or list_argument_error(e, fn, args, kwargs)
            if named is None and last is None:
                named = call_argument_error(e, fn, args, kwargs)
            if named is not None:
                raise named from None
            where = f"after site {last!r}" if last else "before its first site"
            e.add_note(f"(raised while running model {getattr(fn, '__name__', 'model')!r}, {where})")
        raise
    return retval, rec.sites


def _first_nan(sites: Mapping[str, dict]) -> str | None:
    for name, s in sites.items():
        lp = s.get("log_prob")
        if lp is not None and core.is_concrete(lp) and bool(jnp.any(jnp.isnan(lp))):
            return name
    return None


class _LogDensityValues(Provide):
    """Supply every latent value from `choices`; a missing latent is an error."""

    verb = "log_density"

    def process_message(self, msg: dict) -> None:
        t = msg["type"]
        if t not in ("sample", "param"):
            return
        found, value = self.lookup(msg)
        if msg["intervened"]:
            return
        if found:
            self.put(msg, value, "latent")
        elif t == "sample" and msg["value"] is None:
            given = sorted(self.data)
            raise AddressError(
                f"log_density: the latent site {msg['name']!r} has no value in the given choices "
                f"(given: {given}); pass every latent site's value."
            )


class _Constrain(Provide):
    """Fix the constrained sites of `generate`; they are scored in the importance weight."""

    verb = "generate"

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["intervened"]:
            if msg["type"] == "deterministic":
                self._names.add(msg["name"])
            return
        found, value = self.lookup(msg)
        if found:
            self.put(msg, value, "constrained")


class _Update(Provide):
    """Reuse the old trace's values, except constrained and selected sites (see Model.update)."""

    verb = "update"
    tables = ("data", "old_values", "old_active")

    def __init__(self, fn, constraints, old: Trace, selection: Selection | None):
        super().__init__(None, constraints)
        self.old_values = {k: v for k, v in old.choices.items() if k not in old.observed}
        self.old_active = dict(old.active)
        self.selection = selection if selection is not None else Selection()

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["intervened"]:
            if msg["type"] == "deterministic":
                self._names.add(msg["name"])
            return
        name = msg["name"]
        found, value = self.lookup(msg)
        if msg["is_observed"]:
            return
        if found:
            self.put(msg, value, "constrained", fresh=False)
            return
        if name in self.old_values and name not in self.selection:
            old = self.old_values[name]
            if name in self.old_active:
                # a site of a branch: keep the old value where it existed, draw it where not
                s = core.active_handlers(seed)[-1]
                new = draw(s.next_key(), msg["fn"], (), name)
                act = self.old_active[name]
                self.put(msg, jnp.where(_expand_mask(act, jnp.shape(new)), old, new), "kept", fresh=~act)
            else:
                self.put(msg, old, "kept", fresh=False)


def _expand_mask(mask: Any, shape: tuple) -> jax.Array:
    mask = jnp.asarray(mask)
    return mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim))


class Model:
    """A probabilistic model: a Python function that calls ``ppl.sample`` and friends.

    Create one with the :func:`model` decorator.  Calling it inside another model runs it there
    (with ``name=`` its addresses are prefixed: ``"layer1/z"``); its operations
    (:meth:`simulate`, :meth:`log_density`, :meth:`generate`, :meth:`update`,
    :meth:`regenerate`) are pure, jit-able functions.
    """

    def __init__(self, fn: Callable, name: str | None = None):
        if isinstance(fn, Model):
            fn = fn.fn
        if not callable(fn):
            raise ModelError(f"ppl.model expects a function, got {type(fn).__name__}.")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "model")
        self._base: Model | None = None
        self._wrapper: tuple | None = None
        functools.update_wrapper(self, fn, updated=())

    def __repr__(self) -> str:
        return f"<ppl.Model {self.name}>"

    # -- calling ---------------------------------------------------------------------------------

    def __call__(self, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
        if not core._stack() and self._wrapper is None:
            raise OutsideModelError(
                f"model {self.name!r} was called outside a model or handler. To draw from it use "
                f"{self.name}.simulate(jax.random.key(0), ...); inside JAX code use "
                f"ppl.seed({self.name}, key)(...); inside another model call it directly, "
                f"optionally as {self.name}(..., name='sub') to prefix its addresses."
            )
        if name is None:
            return self.fn(*args, **kwargs)
        with scope(prefix=name):
            return self.fn(*args, **kwargs)

    # -- the generative-function interface -------------------------------------------------------

    def simulate(self, key: Any, *args: Any, **kwargs: Any) -> Trace:
        """Run the model forward: a draw from its prior (observed sites keep their values).

        Returns a :class:`Trace`; ``trace.log_density`` is the joint log density of the draw.

        Example:
            >>> m = ppl.model(lambda: ppl.sample("x", dist.Normal(0.0, 1.0)))
            >>> tr = m.simulate(jax.random.key(0))
            >>> bool(tr.log_density == dist.Normal(0.0, 1.0).log_prob(tr["x"]))
            True
        """
        key = check_key(key, f"{self.name}.simulate")
        retval, sites = run(self.fn, args, kwargs, seed(key=key))
        return make_trace(sites, retval, args, kwargs)

    def trace_sites(self, key: Any, *args: Any, **kwargs: Any) -> "OrderedDict[str, dict]":
        """The raw site records of one forward run (for library code that needs distributions)."""
        key = check_key(key, f"{self.name}.trace_sites")
        return run(self.fn, args, kwargs, seed(key=key))[1]

    def log_density(self, choices: Mapping[str, Any], *args: Any, **kwargs: Any) -> jax.Array:
        """Joint log density log p(choices) of a complete set of choices.

        Every latent sample site must have a value in `choices`; observed sites take their
        observation unless `choices` gives them a value.  Intervened sites are not scored.  When
        evaluated on concrete values, a NaN result raises an error naming the first site where it
        appeared.

        Example:
            >>> @ppl.model
            ... def m(y=None):
            ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
            ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
            >>> round(float(m.log_density({"mu": 0.0}, y=0.0)), 4)   # 2 log N(0; 0, 1)
            -1.8379
        """
        if not isinstance(choices, Mapping):
            if isinstance(choices, Trace):
                choices = choices.choices
            else:
                raise ModelError(
                    f"{self.name}.log_density: choices must be a mapping from addresses to values, "
                    f"got {type(choices).__name__}."
                )
        _, sites = run(self.fn, args, kwargs, _LogDensityValues(None, choices))
        total = _sum(s["log_prob"] for s in sites.values() if s["type"] in ("sample", "factor"))
        if core.is_concrete(total) and bool(jnp.isnan(total)):
            bad = _first_nan(sites)
            raise NaNLogDensityError(
                f"{self.name}.log_density is NaN; it first appears at site {bad!r}."
            )
        return total

    def generate(
        self, key: Any, constraints: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> tuple[Trace, jax.Array]:
        """Importance sampling with the prior as proposal.

        Sites in `constraints` take those values; the other latent sites are drawn from the
        prior.  Returns ``(trace, log_weight)`` with ``log_weight`` the log density of the
        constrained and observed sites (and factors) given the rest: for every function f,
        E[exp(log_weight) f(trace)] = ∫ f dμ, μ the model's measure restricted to the constraints.
        With every site constrained the weight is the joint log density; with none (and no
        observations) it is 0.

        Example:
            >>> @ppl.model
            ... def m():
            ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
            ...     ppl.sample("y", dist.Normal(mu, 1.0))
            >>> tr, log_w = m.generate(jax.random.key(0), {"y": 0.0})
            >>> bool(log_w == tr.log_probs["y"])
            True
        """
        key = check_key(key, f"{self.name}.generate")
        constraints = _as_choices(constraints, f"{self.name}.generate")
        retval, sites = run(self.fn, args, kwargs, seed(key=key), _Constrain(None, constraints))
        core.refuse_subsampled(sites, f"{self.name}.generate")
        weight = _sum(
            s["log_prob"]
            for s in sites.values()
            if s["type"] == "factor"
            or (s["type"] == "sample" and (s["is_observed"] or s.get("constrained")))
        )
        return make_trace(sites, retval, args, kwargs), weight

    def update(
        self,
        key: Any,
        trace: Trace,
        constraints: Mapping[str, Any] | None = None,
        args: tuple | None = None,
        kwargs: dict | None = None,
    ) -> tuple[Trace, jax.Array, dict]:
        """Move `trace` to new `constraints` (and/or new arguments); the MH building block.

        Constrained sites take the given values, other latent sites keep their old values, and
        sites that did not exist before are drawn from the prior.  Returns
        ``(new_trace, log_weight, discard)`` with

            log_weight = log p(t') - log p(t) - log q(fresh sites of t') + log q(dropped sites of t)

        where q is the prior density of a site given its parents (fresh: drawn now; dropped:
        latent sites of t that t' no longer has, or now observes because new data reached them).  For an MH move whose proposal q_fwd proposes the
        constraints, the acceptance ratio is exp(log_weight + log q_rev - log q_fwd).  `discard`
        holds the old values of the constrained and of the removed addresses.
        """
        key = check_key(key, f"{self.name}.update")
        constraints = _as_choices(constraints, f"{self.name}.update")
        return self._update(key, trace, constraints, None, args, kwargs)

    def regenerate(
        self, key: Any, trace: Trace, selection: Any, args: tuple | None = None, kwargs: dict | None = None
    ) -> tuple[Trace, jax.Array]:
        """Redraw the selected latent sites from their prior (given the rest of the trace).

        Returns ``(new_trace, log_weight)`` with log_weight = log p(t') - log p(t) minus the prior
        densities of the redrawn/new sites in t' plus those of the redrawn/removed sites in t,
        which is exactly the log acceptance ratio of this MH move.
        """
        key = check_key(key, f"{self.name}.regenerate")
        if not isinstance(selection, Selection):
            selection = Selection(*([selection] if isinstance(selection, str) else selection))
        known = set(trace.choices) | set(trace.deterministic)
        for a in selection.addresses:
            if a not in known and not any(k.startswith(a + "/") for k in known):
                raise AddressError(
                    f"{self.name}.regenerate: selection names {a!r}, which the trace does not have"
                    f"{nearest(a, known)}."
                )
        new, w, _ = self._update(key, trace, {}, selection, args, kwargs)
        return new, w

    def _update(self, key, old: Trace, constraints, selection, args, kwargs):
        if not isinstance(old, Trace):
            raise ModelError(f"{self.name}.update: expected a ppl.Trace, got {type(old).__name__}.")
        args = old.args if args is None else tuple(args)
        kwargs = old.kwargs if kwargs is None else dict(kwargs)
        handler = _Update(None, constraints, old, selection)
        retval, sites = run(self.fn, args, kwargs, seed(key=key), handler)
        core.refuse_subsampled(sites, f"{self.name}.update")
        new = make_trace(sites, retval, args, kwargs)
        sel = selection if selection is not None else Selection()
        new_sum = []
        for name, s in sites.items():
            if s["type"] not in ("sample", "factor") or s["intervened"]:
                continue
            lp = s["log_prob"]
            fresh = s.get("fresh")
            if s["type"] == "sample" and not s["is_observed"] and fresh is not None:
                lp = jnp.where(fresh, 0.0, lp)
            new_sum.append(lp)
        old_latent = set(old.choices) - set(old.observed)
        old_sum = []
        for name, lp in old.log_probs.items():
            if name in old_latent:
                # redrawn or dropped sites of t: their log q cancels their share of log p(t)
                if (name in sel and name not in constraints) or name not in new.choices:
                    continue
                if name in new.observed:
                    # a latent site whose data arrived: its sampled value is replaced by the
                    # observation, so it is dropped like a removed site (SMC data addition)
                    continue
                if name in new.active:
                    lp = jnp.where(new.active[name], lp, 0.0)
            old_sum.append(lp)
        weight = _sum(new_sum) - _sum(old_sum)
        discard = {
            k: v
            for k, v in old.choices.items()
            if k not in old.observed and (k in constraints or k not in new.choices or k in new.observed)
        }
        return new, weight, discard


def _as_choices(c: Any, who: str) -> dict:
    if c is None:
        return {}
    if isinstance(c, Trace):
        return dict(c.choices)
    if not isinstance(c, Mapping):
        raise ModelError(f"{who}: constraints must be a mapping from addresses to values, got {type(c).__name__}.")
    return dict(c)


def model(fn: Callable | None = None, *, name: str | None = None):
    """Decorator turning a function that calls ``ppl.sample`` & co into a :class:`Model`.

    Example:
        >>> @ppl.model
        ... def eight_schools(sigma, y=None):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
        ...     tau = ppl.sample("tau", dist.HalfCauchy(5.0))
        ...     with ppl.plate("school", sigma.shape[0]):
        ...         theta = ppl.sample("theta", dist.Normal(mu, tau))
        ...         ppl.sample("y", dist.Normal(theta, sigma), obs=y)
    """
    if fn is None:
        return lambda f: Model(f, name=name)
    return Model(fn, name=name)


def handled(fn: Callable, handler: Callable[..., core.Messenger], *args: Any, **kwargs: Any) -> Model:
    """`fn` as a :class:`Model` that runs under a fresh ``handler(*args, **kwargs)`` on every call.

    The handler is built once now (so bad arguments fail at this call) and anew for each run, so
    the wrapped model stays a pure function of its inputs.  This is how ``ppl.condition(model,
    data)`` and the other handlers wrap a model; inference code wraps models with its own
    messengers the same way.

    Example:
        >>> from ppl.model import handled
        >>> m = handled(lambda: ppl.sample("x", dist.Normal(0.0, 1.0)), ppl.messengers.substitute, None, {"x": 0.5})
        >>> float(m.simulate(jax.random.key(0)).retval)
        0.5
    """
    base = as_model(fn)
    handler(*args, **kwargs)  # check the arguments now, at the call that gave them

    def wrapped(*a: Any, **k: Any) -> Any:
        with handler(*args, **kwargs):
            return base.fn(*a, **k)

    wrapped.__name__ = wrapped.__qualname__ = base.name  # errors name the user's model
    out = Model(wrapped, name=base.name)
    out._base = base
    out._wrapper = (handler, args, kwargs)
    return out


def as_model(fn: Any) -> Model:
    """`fn` as a :class:`Model` (a Model is returned unchanged)."""
    return fn if isinstance(fn, Model) else Model(fn)


def call(fn: Callable, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
    """Call a model (or plain function using primitives) inside a model, under address prefix `name`.

    Example:
        >>> layer = ppl.model(lambda x: ppl.sample("z", dist.Normal(x, 1.0)))
        >>> outer = ppl.model(lambda: ppl.call(layer, 0.0, name="layer1"))
        >>> list(outer.simulate(jax.random.key(0)).choices)
        ['layer1/z']
    """
    if name is None:
        return fn(*args, **kwargs)
    with scope(prefix=name):
        return (fn.fn if isinstance(fn, Model) else fn)(*args, **kwargs)
