"""The unconstrained view of a model, for gradient-based inference (HMC, NUTS, VI).

Each continuous latent site x with support S is written x = T(u) with T = ``biject_to(S)``
(NumPyro's bijectors) and u unconstrained; the view's density over the flat vector of all u is

    log p(T(u)) + log |det J_T(u)|,

the density of the pushforward, so that sampling u from it and mapping through T samples the
model's posterior.  The transform of each site is taken from its distribution *at run time*, so
bounds that depend on other parameters (``Uniform(0, a)`` with ``a`` latent) are handled.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import biject_to

from . import enum as _enum
from .messengers import Provide
from .errors import AddressError, ArgumentError, ModelError, nearest
from .model import Model, _sum, as_model, run

__all__ = ["unconstrained", "UnconstrainedView"]


def _latent(msg: dict) -> bool:
    return msg["type"] == "sample" and not msg["is_observed"] and not msg["intervened"] and msg["value"] is None


def _continuous_latent(msg: dict) -> bool:
    """A latent site of the unconstrained view: the finite discrete ones are summed out (ppl.enum)."""
    return _latent(msg) and not msg["fn"].support.is_discrete


# The three messengers below put values at the latent sites through the shared mechanism
# (Provide.put, meaning "transformed": in the support by construction, not checked), but each
# does more than the public hook ppl.substitute(substitute_fn=...) can: they write the
# unconstrained view's own message fields (log_jac, u), which must travel with the site through
# ppl.scan/ppl.cond, and _Prototype refuses discrete sites and records shapes.


class _Unconstrain(Provide):
    """Set each latent site to T(u[name]) and record log|det J| (see module docstring)."""

    def __init__(self, data: Mapping[str, Any]):
        super().__init__(None, data, strict=False)

    def process_message(self, msg: dict) -> None:
        if not _continuous_latent(msg):
            return
        name = msg["name"]
        found, u = self.lookup(msg)
        if not found:
            raise AddressError(
                f"the unconstrained view has no value for latent site {name!r}; the model's "
                "structure changed since the view was built (a random set of addresses?)."
            )
        t = biject_to(msg["fn"].support)
        v = t(u)
        lj = jnp.sum(t.log_abs_det_jacobian(u, v))
        if msg["scale"] is not None:
            lj = lj * msg["scale"]
        self.put(msg, v, "transformed", log_jac=lj)


class _Prototype(Provide):
    """Give each latent site an in-support value T(0) and record its unconstrained step shape."""

    def __init__(self) -> None:
        super().__init__(None, {}, strict=False)
        self.step_shapes: dict[str, tuple[tuple, tuple]] = {}

    def process_message(self, msg: dict) -> None:
        if not _continuous_latent(msg):
            return  # a discrete latent site is summed out (ppl.enum: _Fill gives it a placeholder)
        fn = msg["fn"]
        name = msg["name"]
        t = biject_to(fn.support)
        vshape = tuple(fn.batch_shape) + tuple(fn.event_shape)
        ushape = tuple(t.inverse_shape(vshape))
        u = jnp.zeros(ushape)
        self.put(msg, t(u), "transformed", u=u)
        self.step_shapes[name] = (vshape, ushape)


class _Inverse(Provide):
    """Substitute constrained values and record their unconstrained images in msg['u']."""

    def __init__(self, data: Mapping[str, Any]):
        super().__init__(None, data, strict=False)

    def process_message(self, msg: dict) -> None:
        if not _continuous_latent(msg):
            return
        name = msg["name"]
        found, v = self.lookup(msg)
        if not found:
            raise AddressError(
                f"to_unconstrained: no value given for latent site {name!r}"
                f"{nearest(name, self.data)}."
            )
        self.put(msg, v, "transformed", u=biject_to(msg["fn"].support).inv(v))


class _Start(Provide):
    """Start values: the given constrained value at a site in ``data``; elsewhere the median or
    mean of the site's distribution (strategy ``median`` / ``mean``) or T(u0[name]) (the other
    strategies' point); records each site's unconstrained image in msg['u']."""

    tables = ("data", "u0")

    def __init__(self, data: Mapping[str, Any], u0: Mapping[str, Any], strategy: Any, key: Any):
        super().__init__(None, data, strict=False)
        self.u0, self.strategy, self.key = u0, strategy, key

    def _central(self, fn: Any, name: str) -> Any:
        from .randomness import draw

        shape = tuple(fn.batch_shape) + tuple(fn.event_shape)
        if self.strategy.kind == "mean":
            try:
                m = jnp.broadcast_to(fn.mean, shape)
                ok = jnp.all(jnp.isfinite(m))
            except (NotImplementedError, AttributeError, ValueError):
                m, ok = None, False
        else:
            m, ok = None, False
        self.key, k = jax.random.split(self.key)
        draws = draw(k, fn, (int(self.strategy.num_samples),), f"init/{name}")
        med = jnp.quantile(draws, 0.5, axis=0, method="nearest") if fn.support.is_discrete else jnp.median(draws, 0)
        return med if m is None else jnp.where(ok, m, med)

    def process_message(self, msg: dict) -> None:
        if not _latent(msg):
            return
        name = msg["name"]
        t = biject_to(msg["fn"].support)
        found, v = self.lookup(msg)
        if found:
            v = jnp.asarray(v)
        elif self.strategy.kind in ("median", "mean"):
            v = self._central(msg["fn"], name)
        else:
            u = self.u0[name]
            self.put(msg, t(u), "transformed", u=u)
            return
        self.put(msg, v, "transformed", u=t.inv(v))


@functools.lru_cache(maxsize=64)
def _check_point(dim: int) -> np.ndarray:
    """The unconstrained point at which :meth:`UnconstrainedView.check_elementwise` runs the
    model: uniform in (-2, 2) from NumPy's generator (seed 0), so that a driver's check compiles
    no random-number program of its own (``_default_init``'s eager draw compiled one: 0.3 s of
    a cold run)."""
    x = np.random.default_rng(0).uniform(-2.0, 2.0, dim)
    x.flags.writeable = False
    return x


@functools.lru_cache(maxsize=64)
def _default_init(dim: int, dtype) -> jax.Array:
    """The views' default initial point of length ``dim`` (concrete even inside a trace; one per
    length and dtype in a process, so views bound again by a driver do not draw it again)."""
    draw = lambda: jax.random.uniform(jax.random.key(0), (dim,), dtype, minval=-2.0, maxval=2.0)  # noqa: E731
    x = draw()  # eagerly outside a trace (the same compiled programs as the user's own key(0))
    if isinstance(x, jax.core.Tracer):  # inside one: evaluated now, not staged
        with jax.ensure_compile_time_eval():
            x = draw()
    return x


def _abstract_run(fn, args, kwargs, *handlers) -> dict:
    """``run(fn, args, kwargs, *handlers)``'s sites under ``jax.eval_shape`` (nothing staged into
    an enclosing trace): name -> {"type", "value"} with each value a ``jax.ShapeDtypeStruct``."""
    out: dict = {}

    def go():
        _, sites = run(fn, args, kwargs, *handlers)
        for n, r in sites.items():
            v = r["value"]
            dtype = getattr(v, "dtype", None)
            if dtype is None:
                try:
                    dtype = np.result_type(v)
                except TypeError:  # not an array value: only its (empty) shape is read
                    dtype = np.float32
            out[n] = {"type": r["type"], "value": jax.ShapeDtypeStruct(tuple(np.shape(v)), dtype)}
        return jnp.zeros(())

    jax.eval_shape(go)
    return out


class UnconstrainedView:
    """A model's latent space as one flat unconstrained vector (see the module docstring).

    Attributes:
        dim: length of the flat vector.
        sites: ordered mapping address -> unconstrained shape.
        init: a default initial point (uniform in (-2, 2) on every coordinate, key 0).

    Example:
        >>> @ppl.model
        ... def m():
        ...     ppl.sample("tau", dist.HalfNormal(1.0))
        >>> view = ppl.unconstrained(m)
        >>> view.dim, jax.grad(view.potential)(view.init).shape
        (1, (1,))
        >>> bool(view.to_constrained(view.init)["tau"] > 0)
        True
    """

    def __init__(self, model: Any, args: tuple, kwargs: dict):
        self.model: Model = as_model(model)
        self.args = tuple(args)
        self.kwargs = dict(kwargs)
        proto = _Prototype()
        fill = _enum._Fill()  # finite discrete latent sites are summed out (raises for infinite ones)
        concrete = _enum._concrete((self.args, self.kwargs))
        if concrete:
            _, sites = run(self.model.fn, self.args, self.kwargs, fill, proto)
        else:
            # inside a trace (a driver's program binds a view in every program it traces): only
            # the sites' shapes are read, so the prototype run is abstract and its operations are
            # not staged into the caller's program as dead code (issue 14: compile time)
            sites = _abstract_run(self.model.fn, self.args, self.kwargs, fill, proto)
        #: the finite discrete latent sites that log_density sums out exactly (ppl.enum)
        self.discrete: tuple[str, ...] = tuple(fill.discrete)
        self._nesting = fill.nesting
        shapes: dict[str, tuple] = {}
        for name, (vshape, ushape) in proto.step_shapes.items():
            final = tuple(np.shape(sites[name]["value"])) if name in sites else vshape
            lead = final[: len(final) - len(vshape)]
            shapes[name] = lead + ushape
        self.sites = shapes
        self._sizes = [int(np.prod(s)) for s in shapes.values()]
        self.dim = int(sum(self._sizes))
        self._init = None  # ``init``, made when first read
        self._dropped: frozenset = frozenset()
        if self.discrete:
            self._dropped = self._depends_on_discrete(sites)
            # a summed-out plated site used across its plate would give a wrong marginal: refuse it
            # (checked once, at the concrete initial point; skipped when the data are traced)
            if concrete:
                self.check_elementwise(self.args, self.kwargs)

    def check_elementwise(self, args: tuple, kwargs: dict) -> None:
        """Refuse (ModelError naming the site) a model that uses a summed-out plated site other
        than element by element, checked at the concrete inputs ``args``, ``kwargs`` (of this
        view's shapes) and a fixed point (``_check_point``): once per (model, inputs), cached by
        :func:`ppl.enum._check_elementwise`.  A view built while a program is traced skips the
        check (its inputs are not concrete); a driver calls this with the concrete inputs.

        Example:
            >>> @ppl.model
            ... def ones(y):
            ...     with ppl.plate("data", y.shape[0]):
            ...         z = ppl.sample("z", dist.Bernoulli(0.3))
            ...         ppl.sample("y", dist.Normal(z * 1.0, 1.0), obs=y)
            >>> view = ppl.unconstrained(ones, jnp.array([0.1, 2.0]))
            >>> view.check_elementwise((jnp.array([0.5, -1.0]),), {})  # element by element: passes
        """
        if self.discrete and _enum._concrete((args, kwargs)):
            x = _check_point(self.dim)
            _enum._check_elementwise(self.model.fn, tuple(args), dict(kwargs),
                                     (_Unconstrain(self.unravel(x)),), self._nesting, values=x)

    @property
    def init(self) -> jax.Array:
        """A default initial point: uniform in (-2, 2) on every coordinate, key 0 (made when
        first read, concrete even inside a trace: a view bound while a program is traced does
        not stage the draw into it)."""
        if self._init is None:
            self._init = _default_init(self.dim, jax.dtypes.canonicalize_dtype(np.float64))
        return self._init

    # -- flat <-> dict ----------------------------------------------------------------------------

    def unravel(self, x: jax.Array) -> dict:
        """The flat vector as address -> unconstrained array."""
        x = jnp.asarray(x)
        if x.shape[-1:] != (self.dim,):
            raise ModelError(
                f"expected a flat unconstrained vector of length {self.dim} for model "
                f"{self.model.name!r}, got shape {x.shape}."
            )
        out, i = {}, 0
        for (name, shape), size in zip(self.sites.items(), self._sizes):
            out[name] = x[..., i : i + size].reshape(x.shape[:-1] + shape)
            i += size
        return out

    def ravel(self, u: Mapping[str, Any]) -> jax.Array:
        """address -> unconstrained array, as one flat vector."""
        parts = []
        for name, shape in self.sites.items():
            if name not in u:
                raise AddressError(f"ravel: no value for site {name!r}{nearest(name, u)}.")
            parts.append(jnp.reshape(jnp.asarray(u[name]), (-1,)))
        return jnp.concatenate(parts) if parts else jnp.zeros((0,))

    # -- densities ----------------------------------------------------------------------------------

    def _run(self, x: jax.Array):
        extra = (_enum._Fill(),) if self.discrete else ()
        return run(self.model.fn, self.args, self.kwargs, *extra, _Unconstrain(self.unravel(x)))

    def _depends_on_discrete(self, sites) -> frozenset:
        """Deterministic sites whose value depends on a summed-out discrete site (their shape
        changes under enumeration, or they are made inside an enumerated scan)."""
        shapes = {}

        def go(x):
            _, s = _enum._enumerated(self.model.fn, self.args, self.kwargs, (_Unconstrain(self.unravel(x)),),
                                     nesting=self._nesting)
            shapes.update({n: tuple(np.shape(r["value"])) for n, r in s.items() if r["type"] == "deterministic"})
            return jnp.zeros(())

        jax.eval_shape(go, jax.ShapeDtypeStruct((self.dim,), jax.dtypes.canonicalize_dtype(np.float64)))
        return frozenset(
            n for n, r in sites.items()
            if r["type"] == "deterministic" and shapes.get(n) != tuple(np.shape(r["value"]))
        )

    def log_density(self, x: jax.Array) -> jax.Array:
        """log p(T(x)) + log|det J_T(x)|: the density of the model's measure in unconstrained space.

        With finite discrete latent sites (``self.discrete``) it is the marginal density: they are
        summed out exactly (:func:`ppl.marginal_log_density`)."""
        if self.discrete:
            enum, _ = _enum._enumerated(self.model.fn, self.args, self.kwargs, (_Unconstrain(self.unravel(x)),),
                                        nesting=self._nesting)
            return _enum._total(enum)
        _, sites = self._run(x)
        return _sum(
            [s["log_prob"] for s in sites.values() if s["type"] in ("sample", "factor")]
            + [s["log_jac"] for s in sites.values() if s.get("log_jac") is not None]
        )

    def potential(self, x: jax.Array) -> jax.Array:
        """The potential energy: ``-log_density(x)``."""
        return -self.log_density(x)

    def to_constrained(self, x: jax.Array) -> dict:
        """address -> constrained value of each latent site (deterministic sites included).

        Summed-out discrete sites, and the deterministic sites that depend on them, are not
        included: draw them with :func:`ppl.infer_discrete` (or ``run.discrete(key)``)."""
        _, sites = self._run(x)
        return {
            n: s["value"]
            for n, s in sites.items()
            if n in self.sites or (s["type"] == "deterministic" and n not in self._dropped)
        }

    def to_unconstrained(self, values: Mapping[str, Any]) -> jax.Array:
        """The flat vector whose image is the given constrained latent values."""
        extra = (_enum._Fill(),) if self.discrete else ()
        _, sites = run(self.model.fn, self.args, self.kwargs, *extra, _Inverse(values))
        return self.ravel({n: sites[n]["u"] for n in self.sites})

    def init_point(self, key: Any = None, strategy: Any = "uniform", radius: float = 2.0,
                   values: Mapping[str, Any] | None = None) -> jax.Array:
        """An initial point (flat, unconstrained) by ``strategy``: ``"uniform"`` in
        (-radius, radius), ``"prior"`` (a prior draw), ``"zeros"`` (the transform of 0: e.g. 1
        for positive sites), ``"median"`` / ``"mean"`` (site by site given the values upstream),
        or an :class:`ppl.initialization.InitStrategy` (see :mod:`ppl.initialization`).  With
        ``values`` (address -> constrained value, for some sites) those sites start there and
        the others by the strategy, each in its support given the values upstream."""
        from .initialization import InitStrategy, as_strategy

        try:
            st = as_strategy(strategy, "init_point")
        except ArgumentError as e:  # the view's errors are ModelErrors (a bad model input)
            raise ModelError(str(e)) from None
        if not isinstance(st, InitStrategy):
            raise ModelError(f"init_point: expected a strategy, got {strategy!r}.")
        if st.kind == "uniform" and radius != 2.0 and st.radius == 2.0:
            st = InitStrategy("uniform", radius=float(radius))
        if key is None:
            key = jax.random.key(0)
        k_x, k_site = jax.random.split(key)
        if st.kind == "zeros":
            x = jnp.zeros((self.dim,))
        elif st.kind == "uniform":
            x = jax.random.uniform(k_x, (self.dim,), minval=-st.radius, maxval=st.radius)
        elif st.kind == "prior":
            tr = self.model.simulate(k_x, *self.args, **self.kwargs)
            x = self.to_unconstrained({n: tr.choices[n] for n in self.sites})
        else:  # median / mean: chosen site by site below
            x = jnp.zeros((self.dim,))
        if not values and st.kind not in ("median", "mean"):
            return x
        unknown = [a for a in (values or {}) if a not in self.sites]
        if unknown:
            raise AddressError(
                f"init: {unknown[0]!r} is not a latent site of model {self.model.name!r}"
                f"{nearest(unknown[0], self.sites)}."
            )
        start = _Start(dict(values or {}), self.unravel(x), st, k_site)
        _, sites = run(self.model.fn, self.args, self.kwargs, start)
        return self.ravel({n: sites[n]["u"] for n in self.sites})

    def __repr__(self) -> str:
        s = ", ".join(f"{k}: {v}" for k, v in self.sites.items())
        return f"UnconstrainedView({self.model.name}, dim={self.dim}, sites={{{s}}})"


def unconstrained(model: Any, *args: Any, **kwargs: Any) -> UnconstrainedView:
    """The unconstrained view of ``model(*args, **kwargs)``'s latent sites (see module docstring)."""
    return UnconstrainedView(model, args, kwargs)
