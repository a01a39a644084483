"""The effect-handler core: a stack of handlers, messages, and the primitives.

A model is a Python function that calls the primitives below.  Each primitive builds a *message*
(a dict naming the site, its distribution and its value) and sends it through the handler stack:
``process_message`` runs from the innermost handler outwards (a handler may rename the site, set
its value, scale it...), then ``postprocess_message`` runs from the outermost handler that saw it
back inwards (recorders such as ``trace`` record it there).  A handler whose ``blocks(msg)`` is
true hides the site from the recorders outside it.  This is NumPyro's design, kept small; the one
addition is the *emit* path that loop and branch combinators use to hand a stacked site to the
recorders outside them.

The stack is per thread and exists only while a model runs (at trace time); nothing of it is on
the hot path of compiled code.
"""

from __future__ import annotations

import operator
import threading
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .errors import ArgumentTypeError, MixedLibraryError, ModelError, OutsideModelError, SupportError
from .checks import check_observation_plates, exact_zeros, whole_number
from .message import Message, new_message

__all__ = [
    "Messenger",
    "Message",
    "new_message",
    "apply_stack",
    "emit",
    "sample",
    "param",
    "factor",
    "deterministic",
    "plate",
    "site_log_prob",
    "is_concrete",
    "active_handlers",
    "inside_combinator",
]


class _State(threading.local):
    def __init__(self) -> None:
        self.stack: list[Messenger] = []
        # incremented whenever a branch is taken eagerly (the address set then depends on data)
        self.dynamic_structure: int = 0
        # the guards this thread put on NumPyro's handler stack while a ppl handler is active: a
        # stack, since code that swaps in a fresh handler stack (ppl.reparam's pre-pass) nests them
        self.numpyro_guards: list = []


_STATE = _State()


def _stack() -> list["Messenger"]:
    return _STATE.stack


def is_concrete(x: Any) -> bool:
    """True when every leaf of `x` is a concrete value (not a tracer under jit/vmap/grad)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


class Messenger:
    """Base class of effect handlers: a context manager, and a wrapper when given `fn`.

    Subclasses override ``process_message`` (transform a site on its way out), and
    ``postprocess_message`` (record it on its way back).  ``tables`` lists attributes holding
    dicts keyed by address; loop combinators slice their entries step by step.
    """

    tables: tuple[str, ...] = ()
    #: True for handlers that only annotate sites (plates, scopes) and cannot run a model alone
    passive: bool = False
    #: True for the recorder that a loop or branch combinator puts around its body (see
    #: :func:`inside_combinator`)
    combinator_body: bool = False

    def __init__(self, fn: Callable | None = None):
        self.fn = fn

    def __enter__(self) -> "Messenger":
        stack = _stack()
        if not stack:
            _numpyro_guard_on()
        stack.append(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        stack = _stack()
        if stack and stack[-1] is self:
            stack.pop()
        elif self in stack:  # pragma: no cover - exits out of order after an error
            stack.remove(self)
        if not stack:
            _numpyro_guard_off()

    def process_message(self, msg: Message) -> None:
        """Called on the way out (innermost handler first), before the site has its default
        value: set ``msg["value"]`` to provide one, change ``fn``/``scale``/``mask``; set
        ``msg["stop"]`` to hide the site from the handlers outside.  Default: nothing."""

    def postprocess_message(self, msg: Message) -> None:
        """Called on the way back (outermost handler that saw the site first) once the site
        has its value: recorders read the message here.  Default: nothing."""

    def blocks(self, msg: Message) -> bool:
        """True to hide the site from the recorders outside this handler.  Default: False."""
        return False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.fn is None:
            raise ArgumentTypeError(
                f"{type(self).__name__} was called without a function to run: pass the model as its "
                f"first argument (fn), e.g. {type(self).__name__}(model, ...)(*args); got fn=None."
            )
        with self:
            return self.fn(*args, **kwargs)


def apply_stack(msg: Message, sample_shape: tuple = ()) -> Message:
    """Send `msg` through the handler stack and fill in its value.

    A non-empty `sample_shape` (``ppl.sample(..., sample_shape=...)``) expands a sample site's
    distribution to ``sample_shape + batch_shape`` once the plates innermost in the stack have
    broadcast its batch shape, i.e. just before the first handler that is not a plate (or scope)
    sees the site: the sample dims sit to the left of every plate dim, as in NumPyro.
    """
    stack = _stack()
    # a bare `with ppl.plate(...)` (or scope) outside any model is still outside a model
    if all(h.passive for h in stack):
        raise OutsideModelError(
            f"ppl.{msg['type']}({msg['name']!r}, ...) was called outside a model: run the model "
            "through one of its operations, e.g. model.simulate(jax.random.key(0), *args), or "
            "inside a handler such as ppl.seed(model, key)(*args)."
        )
    _refuse_numpyro_handlers(msg)
    n = len(stack)
    first = n
    for i in range(n - 1, -1, -1):
        handler = stack[i]
        if sample_shape and not handler.passive:
            _expand_sample_shape(msg, sample_shape)
            sample_shape = ()
        handler.process_message(msg)
        if msg["_floor"] is None and handler.blocks(msg):
            msg["_floor"] = i
        first = i
        if msg["stop"]:
            break
    if sample_shape:
        _expand_sample_shape(msg, sample_shape)
    _default_process(msg)
    floor = max(first, msg["_floor"] or 0)
    for i in range(floor, n):
        stack[i].postprocess_message(msg)
    return msg


def _expand_sample_shape(msg: Message, sample_shape: tuple) -> None:
    fn = msg["fn"]
    msg["fn"] = fn.expand(tuple(sample_shape) + tuple(fn.batch_shape))


def _check_sample_shape(name: str, sample_shape: Any) -> tuple:
    """`sample_shape` as a tuple of Python ints, or a ModelError naming the site."""
    if isinstance(sample_shape, (int, np.integer)) and not isinstance(sample_shape, bool):
        sample_shape = (sample_shape,)
    try:
        out = tuple(int(operator.index(n)) for n in sample_shape)
    except TypeError:
        out = None
    if out is None or any(n < 0 for n in out):
        raise ModelError(
            f"site {name!r}: sample_shape must be a tuple of non-negative Python ints "
            f"(e.g. sample_shape=(3,)), got {sample_shape!r}."
        )
    return out


def emit(msg: Message) -> None:
    """Hand an already-computed site (from a loop or branch combinator) to the recorders."""
    stack = _stack()
    floor = 0
    for i in range(len(stack) - 1, -1, -1):
        if stack[i].blocks(msg):
            floor = i
            break
    for i in range(floor, len(stack)):
        stack[i].postprocess_message(msg)


# ---------------------------------------------------------------------------------------------
# NumPyro's primitives and handlers next to ppl's: refused by name, never ignored
#
# NumPyro keeps its own handler stack (``numpyro.primitives._PYRO_STACK``).  While a ppl handler
# is active (a ppl model runs), a guard sits on that stack, so a ``numpyro.sample`` / ``param`` /
# ``plate`` / ``deterministic`` / ``factor`` call reaches the guard, which refuses it naming the
# site and the ppl primitive to use.  Conversely a ppl site made while a NumPyro handler is on
# NumPyro's stack (``numpyro.handlers.condition(ppl_model, ...)``, ``with
# numpyro.handlers.seed(...)``, a NumPyro handler inside the model) is refused by
# :func:`apply_stack`, naming the handler and its ppl equivalent: NumPyro's handler would not see
# the site, so the model would run unconditioned, unscaled, ... without a word.

#: NumPyro's handlers and primitives -> the ppl equivalent named in the error
_NUMPYRO_EQUIVALENT = {
    "condition": "ppl.condition(model, {...})",
    "substitute": "ppl.substitute(model, {...})",
    "scale": "ppl.scale(model, scale=...)",
    "seed": "ppl.seed(model, key) or model.simulate(key, ...)",
    "block": "ppl.block(model, ...)",
    "mask": "ppl.mask(model, mask=...)",
    "trace": "model.simulate(key, ...) (a Trace) or ppl.trace",
    "replay": "ppl.replay(model, trace)",
    "do": "ppl.do(model, {...})",
    "reparam": "ppl.reparam(model, config) (it takes NumPyro's reparameterisers)",
    "scope": "ppl.scope(model, prefix=...)",
    "plate": "ppl.plate(name, size)",
    "sample": "ppl.sample(name, distribution, obs=...)",
    "param": "ppl.param(name, init, constraint=...)",
    "deterministic": "ppl.deterministic(name, value)",
    "factor": "ppl.factor(name, log_weight)",
    "subsample": "ppl.plate(name, size, subsample_size=...)",
    "prng_key": "a key argument of the model",
    "mutable": "ppl.param",
}


def _numpyro_stack() -> list:
    from numpyro import primitives  # imported by ppl.dist already: a dict lookup

    return primitives._PYRO_STACK


def _numpyro_guard_cls():
    global _NumPyroGuard
    if _NumPyroGuard is None:
        from numpyro.primitives import Messenger as _NMessenger

        class _Guard(_NMessenger):
            """Refuses every NumPyro primitive that reaches it (see above)."""

            def process_message(self, msg):
                t = msg.get("type")
                fn = msg.get("fn")
                if t == "sample" and type(fn).__name__ == "Unit":
                    t = "factor"
                name = msg.get("name")
                prim = t
                raise MixedLibraryError(
                    f"numpyro.{prim}({name!r}, ...) was called inside a ppl model: NumPyro's "
                    f"primitives do not reach ppl's handlers, so site {name!r} would be ignored. "
                    f"Use {_NUMPYRO_EQUIVALENT.get(prim, 'the ppl primitive of the same name')} instead."
                )

        _NumPyroGuard = _Guard
    return _NumPyroGuard


_NumPyroGuard: Any = None


def _numpyro_guard_on() -> None:
    guard = _numpyro_guard_cls()()
    _STATE.numpyro_guards.append(guard)
    _numpyro_stack().append(guard)


def _numpyro_guard_off() -> None:
    if not _STATE.numpyro_guards:
        return
    guard = _STATE.numpyro_guards.pop()
    stack = _numpyro_stack()
    if guard in stack:  # by identity (NumPyro's own exit may already have popped it)
        stack[:] = [h for h in stack if h is not guard]


def _refuse_numpyro_handlers(msg: Message) -> None:
    """Raise MixedLibraryError if a NumPyro handler is active while ppl site `msg` is made."""
    guard = _NumPyroGuard
    foreign = [h for h in _numpyro_stack() if guard is None or not isinstance(h, guard)]
    if not foreign:
        return
    h = foreign[-1]
    kind = type(h).__name__
    where = "numpyro" if kind == "plate" else "numpyro.handlers"
    raise MixedLibraryError(
        f"ppl site {msg['name']!r} was made inside NumPyro's {where}.{kind}: NumPyro's handlers do "
        f"not see ppl's sites, so {kind} would be silently ignored. Use "
        f"{_NUMPYRO_EQUIVALENT.get(kind, 'the ppl handler of the same name')} instead."
    )


# ---------------------------------------------------------------------------------------------
# default processing and checks


def _default_process(msg: dict) -> None:
    t = msg["type"]
    if msg["value"] is None:
        if t == "sample":
            raise ModelError(
                f"site {msg['name']!r} needs a random key but none was given: use "
                "model.simulate(key, ...), model.generate(key, ...), or ppl.seed(model, key)."
            )
        if t == "param":
            init = msg["kwargs"]["init"]
            if callable(init):
                raise ModelError(
                    f"param {msg['name']!r} has a callable initial value, which needs a random "
                    "key: run the model under ppl.seed or model.simulate(key, ...)."
                )
            msg["value"] = jnp.asarray(init)
        elif t == "subsample":
            kw = msg["kwargs"]
            raise ModelError(
                f"plate {msg['name']!r} subsamples ({kw['subsample_size']} of {kw['size']}), which "
                "needs a random key on every run: model.simulate(key, ...) and ppl.seed give one, "
                "and VI (vi.elbo and the other objectives) draws it from its key stream.  A density "
                "(log_density, MCMC, SMC) cannot: subsampling changes the target; use the full "
                "data (no subsample_size) or VI."
            )
    if t == "sample" and msg["supplied"] and not msg["intervened"]:
        _check_supplied_value(msg)


def refuse_subsampled(sites: Any, who: str) -> None:
    """Refuse a run whose sites lie in a subsampled plate where a target density is needed
    (importance weights, MCMC moves): the plate's random indices change the target."""
    for s in sites.values():
        for f in s.get("cond_indep_stack") or ():
            if f.size != f.full_size:
                raise ModelError(
                    f"{who}: plate {f.name!r} subsamples ({f.size} of {f.full_size}) around site "
                    f"{s['name']!r}; subsampling changes the target: use the full data (no "
                    "subsample_size) or VI."
                )


def _check_supplied_value(msg: dict) -> None:
    name, fn = msg["name"], msg["fn"]
    value = msg["value"]
    shape = tuple(np.shape(value))
    dshape = tuple(fn.batch_shape) + tuple(fn.event_shape)
    ev = tuple(fn.event_shape)
    # a plate that disagrees with its data is named first (the clearest message)
    for frame in msg["cond_indep_stack"]:
        axis = frame.dim - len(ev)
        if len(shape) >= -axis and shape[axis] not in (1, frame.size):
            raise ModelError(
                f"plate {frame.name!r} has size {frame.size} but the value at site {name!r} "
                f"(shape {shape}) has {shape[axis]} along the plate's dim {frame.dim}."
            )
    try:
        full = jnp.broadcast_shapes(shape, dshape)
    except ValueError:
        full = None
    # the value's own trailing dims must be the event shape (broadcasting an event is an error)
    if full is None or (ev and tuple(shape[max(len(shape) - len(ev), 0):]) != ev):
        what = "observation" if msg["is_observed"] else "value"
        raise ModelError(
            f"{what} for site {name!r} has shape {shape}, which does not broadcast with the "
            f"distribution's batch shape {tuple(fn.batch_shape)} and event shape {ev}; "
            f"expected a shape broadcastable to {dshape}."
        )
    check_observation_plates(msg, shape, dshape)  # issue 18: no likelihood enlarged by broadcasting
    support = fn.support
    if is_concrete(value) and is_concrete(support) and not msg["in_support"]:
        # every support is checked, the reals too: they exclude NaN and infinities
        try:
            with jax.ensure_compile_time_eval():  # concrete values are checked under jit too
                # on a NumPy copy first: the usual supports are then NumPy comparisons, not
                # eager JAX ops that each compile a small program (issue 15 fourth pass: three
                # per observed site and trace of mcmc.sample's first call)
                try:
                    ok = np.asarray(support(np.asarray(value))) if hasattr(value, "dtype") else None
                except Exception:  # noqa: BLE001 - evaluated with JAX below
                    ok = None
                if ok is None:
                    ok = np.asarray(support(value))
        except Exception:  # a support that cannot be evaluated here is not checked
            return
        # masked-out entries (ppl.mask or a masked distribution) are not checked
        for m in (msg["mask"], getattr(_unwrap(fn, "MaskedDistribution"), "_mask", None)):
            if m is not None and is_concrete(m) and not isinstance(m, bool):
                try:
                    ok = ok | ~np.broadcast_to(np.asarray(m, bool), ok.shape)
                except ValueError:
                    pass
            elif m is False:
                ok = np.ones_like(ok, bool)
        if not ok.all():
            bad = np.asarray(value)
            if bad.shape == ok.shape and bad.ndim > 0:
                bad = bad[~ok][:5]
            raise SupportError(
                f"value for site {name!r} lies outside the support of "
                f"{_dist_name(fn)} ({support}): got {bad!r}."
            )


def _unwrap(fn: Any, kind: str) -> Any:
    """The first distribution of type `kind` inside the wrappers of `fn`, or None."""
    while fn is not None:
        if type(fn).__name__ == kind:
            return fn
        fn = getattr(fn, "base_dist", None)
    return None


def _dist_name(fn: Any) -> str:
    """The user's distribution's name, through the wrappers that plates, masks and to_event add."""
    while type(fn).__name__ in ("ExpandedDistribution", "MaskedDistribution", "Independent") and hasattr(
        fn, "base_dist"
    ):
        fn = fn.base_dist
    return type(fn).__name__


def site_log_prob(msg: dict) -> jax.Array:
    """The site's log density contribution: masked, scaled and summed to a scalar.

    Sites handed out of a loop combinator carry a precomputed per-step vector instead.
    """
    if msg.get("log_prob") is not None:
        return msg["log_prob"]
    t = msg["type"]
    if t == "factor":
        lp = jnp.asarray(msg["value"])
    elif t == "sample":
        if msg["intervened"]:
            return jnp.zeros(())
        lp = exact_zeros(msg["fn"], msg["value"], msg["fn"].log_prob(msg["value"]))  # −inf, not a clamp
    else:
        return jnp.zeros(())
    if msg["mask"] is not None:
        lp = jnp.where(msg["mask"], lp, 0.0)
    if msg["scale"] is not None:
        lp = lp * msg["scale"]
    return jnp.sum(lp)


# ---------------------------------------------------------------------------------------------
# primitives


def sample(
    name: str,
    d: Any,
    obs: Any = None,
    *,
    sample_shape: tuple = (),
    infer: dict | None = None,
    obs_mask: Any = None,
) -> Any:
    """A random choice at address `name` from distribution `d` (any NumPyro distribution).

    With `obs` the site is observed: its value is `obs` and its log density is part of the
    likelihood.  Returns the value.

    `sample_shape` (as in NumPyro) draws that many independent copies: the site's distribution
    is ``d`` expanded to ``sample_shape + batch_shape`` (the batch shape after the plates around
    the site broadcast it), so the value has shape ``sample_shape + batch_shape + event_shape``
    and the site's log density is the sum of ``d``'s log densities over every copy.  The sample
    dims are the leftmost ones, to the left of every plate's dim; an observed value is scored as
    a value of the expanded distribution (broadcast against it).

    `obs_mask` (as in NumPyro; a boolean array broadcastable to the batch shape, given with
    `obs`) observes only the entries where it is True and imputes the others: the site becomes
    two sites, ``name + "_observed"`` (observed: ``obs`` scored where the mask is True) and
    ``name + "_unobserved"`` (a latent from `d` of the full shape), and a deterministic site
    `name` whose value takes ``obs`` where the mask is True and the latent elsewhere.  Entries of
    ``obs`` where the mask is False are never read (NaN is fine there).  Unlike NumPyro, the
    latent's entries where the data are observed keep their density under `d` instead of being
    masked out: they do not enter the value, so the posterior of every other site and the
    evidence are NumPyro's, but they stay proper (NumPyro leaves them flat, which MCMC cannot
    mix and which is improper on a constrained support); the log density differs from
    NumPyro's by exactly their log density.

    Example:
        >>> @ppl.model
        ... def coin(flips=None):
        ...     p = ppl.sample("p", dist.Beta(1.0, 1.0))
        ...     with ppl.plate("flip", 10):
        ...         ppl.sample("x", dist.Bernoulli(probs=p), obs=flips)
        >>> m = ppl.model(lambda: ppl.sample("z", dist.Normal(0.0, 1.0), sample_shape=(3,)))
        >>> m.simulate(jax.random.key(0)).choices["z"].shape
        (3,)
    """
    if not isinstance(name, str):
        raise ModelError(f"ppl.sample expects a string address as its first argument, got {name!r}")
    if not hasattr(d, "log_prob") or not hasattr(d, "batch_shape"):
        raise ModelError(
            f"site {name!r}: ppl.sample expects a distribution (e.g. dist.Normal(0, 1)) as its "
            f"second argument, got {type(d).__name__}."
        )
    sample_shape = _check_sample_shape(name, sample_shape)
    if obs_mask is not None:
        return _masked_observe(name, d, obs, obs_mask, sample_shape, infer)
    msg = new_message("sample", name, fn=d, infer=dict(infer or {}))
    if obs is not None:
        msg["value"] = obs
        msg["is_observed"] = True
        msg["supplied"] = True
    return apply_stack(msg, sample_shape)["value"]


def _masked_observe(name: str, d: Any, obs: Any, obs_mask: Any, sample_shape: tuple, infer: Any) -> Any:
    """``sample(name, d, obs, obs_mask=...)``: NumPyro's split into an observed and an imputed site."""
    if obs is None:
        raise ModelError(f"site {name!r}: obs_mask was given without obs; pass the data as obs=.")
    m = jnp.asarray(obs_mask)
    if m.dtype != jnp.bool_:
        raise ModelError(f"site {name!r}: obs_mask must be a boolean array, got dtype {m.dtype}.")
    batch = tuple(sample_shape) + tuple(d.batch_shape)
    try:
        jnp.broadcast_shapes(m.shape, batch)
    except ValueError:
        raise ModelError(
            f"site {name!r}: obs_mask has shape {m.shape}, which does not broadcast with the "
            f"distribution's batch shape {batch}."
        ) from None
    # the latent first: its value fills the unread entries of obs, so that a NaN there reaches
    # neither the observed log density nor its gradient (the mask zeroes both).  Not masked: its
    # entries under observed data keep their density (proper; they integrate to 1)
    msg = new_message("sample", f"{name}_unobserved", fn=d, infer=dict(infer or {}))
    latent = apply_stack(msg, sample_shape)["value"]
    bm = jnp.reshape(m, m.shape + (1,) * len(d.event_shape))
    filled = jnp.where(bm, obs, jax.lax.stop_gradient(latent))
    msg = new_message(
        "sample", f"{name}_observed", fn=d, infer=dict(infer or {}), mask=m,
        value=filled, is_observed=True, supplied=True,
    )
    observed = apply_stack(msg, sample_shape)["value"]
    return deterministic(name, jnp.where(bm, observed, latent))


def param(name: str, init: Any = None, constraint: Any = None, **kwargs: Any) -> Any:
    """A learnable parameter at address `name` with initial value `init` (in the constrained space).

    `constraint` is a NumPyro constraint (default real); optimisers work on the unconstrained
    value given by ``biject_to(constraint)``.  A callable `init` is called with a random key.
    """
    from numpyro.distributions import constraints as _c

    msg = new_message(
        "param",
        name,
        kwargs={"init": init, "constraint": constraint if constraint is not None else _c.real, **kwargs},
    )
    return apply_stack(msg)["value"]


def factor(name: str, log_weight: Any) -> None:
    """Add `log_weight` to the log density (a soft constraint or an unnormalised likelihood)."""
    msg = new_message("factor", name, value=jnp.asarray(log_weight), is_observed=True)
    apply_stack(msg)


def deterministic(name: str, value: Any) -> Any:
    """Record a value computed from other sites under `name`; returns the value.

    Under ``ppl.do`` a deterministic site can itself be intervened on.
    """
    msg = new_message("deterministic", name, value=value)
    return apply_stack(msg)["value"]


# ---------------------------------------------------------------------------------------------
# plates


class CondIndepFrame:
    __slots__ = ("name", "size", "dim", "full_size")

    def __init__(self, name: str, size: int, dim: int, full_size: int):
        self.name, self.size, self.dim, self.full_size = name, size, dim, full_size

    def __repr__(self) -> str:
        return f"plate({self.name!r}, size={self.size}, dim={self.dim})"


class plate(Messenger):
    """Conditionally independent replicates along one batch dimension.

    Sites inside are broadcast to have `size` (or `subsample_size`) entries along `dim` (default:
    the next free dimension counting from the right).  With `subsample_size`, a random subset of
    indices is drawn and log densities are scaled by ``size / subsample_size`` (an unbiased
    estimate of the full log likelihood).  Entering the plate returns the indices.

    Example:
        >>> @ppl.model
        ... def m(y):
        ...     with ppl.plate("data", 3) as idx:
        ...         ppl.sample("y", dist.Normal(0.0, 1.0), obs=y)
        ...     return idx
        >>> m.simulate(jax.random.key(0), jnp.zeros(3)).retval.tolist()
        [0, 1, 2]
    """

    passive = True

    def __init__(self, name: str, size: int, dim: int | None = None, subsample_size: int | None = None):
        super().__init__()
        if not isinstance(name, str):
            raise ModelError(f"ppl.plate expects a string name, got {name!r}")
        size = whole_number(f"plate {name!r}", "size", size, 0)  # 2.5 is refused, not truncated
        if size < 1:
            raise ModelError(f"plate {name!r}: size must be at least 1, got {size}")
        if subsample_size is not None:
            subsample_size = int(subsample_size)
            if not 1 <= subsample_size <= size:
                raise ModelError(
                    f"plate {name!r}: subsample_size must be between 1 and size={size}, "
                    f"got {subsample_size}"
                )
        if dim is not None and dim >= 0:
            raise ModelError(f"plate {name!r}: dim must be negative (counted from the right), got {dim}")
        self.name = name
        self.size = size
        self.subsample_size = subsample_size if subsample_size is not None else size
        self._dim = dim
        self.dim: int | None = None
        self.indices: Any = None

    def __enter__(self) -> Any:  # type: ignore[override]
        used = {h.dim: h.name for h in _stack() if isinstance(h, plate)}
        if self._dim is None:
            d = -1
            while d in used:
                d -= 1
            self.dim = d
        else:
            if self._dim in used:
                raise ModelError(
                    f"plate {self.name!r} asks for dim {self._dim}, which plate "
                    f"{used[self._dim]!r} already uses."
                )
            self.dim = self._dim
        if self.subsample_size == self.size:
            self.indices = jnp.arange(self.size)
        else:
            msg = new_message(
                "subsample", self.name, kwargs={"size": self.size, "subsample_size": self.subsample_size}
            )
            self.indices = apply_stack(msg)["value"]
        super().__enter__()
        return self.indices

    def process_message(self, msg: Message) -> None:
        if msg["type"] not in ("sample", "factor"):
            return
        frame = CondIndepFrame(self.name, self.subsample_size, self.dim, self.size)
        msg["cond_indep_stack"] = list(msg["cond_indep_stack"]) + [frame]
        if msg["type"] == "sample":
            fn = msg["fn"]
            batch = list(fn.batch_shape)
            need = -self.dim
            if len(batch) < need:
                batch = [1] * (need - len(batch)) + batch
            cur = batch[self.dim]
            if cur == 1:
                batch[self.dim] = self.subsample_size
            elif cur != self.subsample_size:
                raise ModelError(
                    f"site {msg['name']!r} inside plate {self.name!r} (size {self.subsample_size}) "
                    f"has a distribution with batch shape {tuple(fn.batch_shape)}, which has {cur} "
                    f"along the plate's dim {self.dim}."
                )
            if tuple(batch) != tuple(fn.batch_shape):
                msg["fn"] = fn.expand(tuple(batch))
        if self.subsample_size != self.size:
            s = self.size / self.subsample_size
            msg["scale"] = s if msg["scale"] is None else msg["scale"] * s


# ---------------------------------------------------------------------------------------------
# public queries of the handler stack (for inference code that must know where a site is made)


def active_handlers(kind: type | tuple[type, ...] | None = None) -> tuple[Messenger, ...]:
    """The handlers active right now (outermost first), those that are instances of `kind` if given.

    A snapshot: a tuple, so changing it does not change the stack.  Empty outside a model.

    Example:
        >>> with ppl.seed(key=jax.random.key(0)):
        ...     [type(h).__name__ for h in ppl.core.active_handlers()]
        ['seed']
    """
    stack = tuple(_stack())
    if kind is None:
        return stack
    return tuple(h for h in stack if isinstance(h, kind))


def inside_combinator() -> bool:
    """True while model code runs inside the body of a ``ppl.scan`` step or a
    ``ppl.cond``/``ppl.switch`` branch.

    Sites made there reach the handlers outside the combinator only after its body has run, as
    stacked (scan) or flagged (branch) records, not one by one.  False outside any model.
    """
    return any(h.combinator_body for h in _stack())
