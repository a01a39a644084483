"""Reparameterisation: NumPyro's reparameterisers applied to a ppl model, and automatic non-centring.

``ppl.reparam(model, config)`` rewrites chosen sample sites of `model` with the reparameterisers
of :mod:`numpyro.infer.reparam` (``LocScaleReparam``, ``TransformReparam``, ``CircularReparam``,
``ExplicitReparam``, ...), exactly as ``numpyro.handlers.reparam`` does: each affected site
becomes one or more auxiliary sample sites (``theta_decentered``, ``x_base``, ...) followed by a
deterministic site that keeps the original address, so draws, predictive and summaries still see
``theta``.  The reparameterisers themselves are NumPyro's, unchanged: the ``numpyro.sample`` /
``numpyro.param`` / ``numpyro.factor`` / ``numpyro.deterministic`` calls they make are routed to
the ppl primitives by a small bridge handler on NumPyro's stack (:class:`_Bridge`), so the new
sites go through ppl's handlers (plates, seed, substitute, trace, ...) like any other site.

What it preserves: the reparameterised model's joint density over its new latent sites pushes
forward, through the deterministic map to the original sites, to the original model's measure;
so its marginal over the original addresses (and hence every posterior expectation of them) is
the original's.  ``tests/test_reparam.py`` checks this exactly on quadrature models and
statistically for NUTS on the centred eight schools against posteriordb's reference.

``config`` is NumPyro's: a dict address -> reparameteriser, or a function of the site (a message
dict with ``"name"``, ``"fn"``, ``"is_observed"``, ...) returning a reparameteriser or ``None``;
or the string ``"auto"`` (ppl only): non-centre every latent location-scale site
(Normal, StudentT, Cauchy, Laplace, Logistic, Gumbel, SoftLaplace) whose ``loc`` or ``scale``
depends on another latent site, found from the model's data flow (:func:`auto_noncentre_sites`),
with ``LocScaleReparam(centered=0)``.  The choice is structural (fixed before sampling), not
learnt during warmup.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as ndist
from numpyro import primitives as _np_prim
from numpyro.infer.reparam import LocScaleReparam, Reparam

from . import core, messengers
from .core import Messenger
from .errors import ModelError, PPLError, nearest
from .handlers import _Wraps
from .model import Model, as_model, run

__all__ = ["reparam", "auto_noncentre_sites", "LOC_SCALE_FAMILIES"]

#: location-scale families that ``LocScaleReparam(0)`` non-centres exactly (x = loc + scale * z),
#: with the extra parameters copied unchanged (NumPyro's ``shape_params``)
LOC_SCALE_FAMILIES: dict[type, tuple[str, ...]] = {
    ndist.Normal: (),
    ndist.Cauchy: (),
    ndist.Laplace: (),
    ndist.Logistic: (),
    ndist.Gumbel: (),
    ndist.SoftLaplace: (),
    ndist.StudentT: ("df",),
}


# ---------------------------------------------------------------------------------------------
# the bridge: NumPyro primitives called by a reparameteriser become ppl primitives


class _Bridge(_np_prim.Messenger):
    """Innermost on NumPyro's handler stack while a reparameteriser runs: each NumPyro primitive
    it calls is sent through ppl's stack instead (and stops there, so no NumPyro handler outside
    sees it).  NumPyro's stack is emptied while the ppl primitive runs, so the ppl site is an
    ordinary site of the ppl model."""

    def __init__(self, site: str):
        super().__init__(None)
        self.site = site

    def process_message(self, msg: dict) -> None:
        t, name = msg["type"], msg.get("name")
        saved = list(_np_prim._PYRO_STACK)
        _np_prim._PYRO_STACK.clear()
        try:
            if t == "sample":
                fn = msg["fn"]
                shape = tuple(msg.get("kwargs", {}).get("sample_shape", ()) or ())
                if isinstance(fn, ndist.distribution.Unit):  # numpyro.factor
                    core.factor(name, fn.log_factor)
                    value = msg["value"]
                else:
                    obs = msg["value"] if msg.get("is_observed") else None
                    value = core.sample(name, fn, obs=obs, infer=msg.get("infer"), sample_shape=shape)
            elif t == "param":
                kw = dict(msg.get("kwargs", {}))
                kw.pop("event_dim", None)
                init = msg["args"][0] if msg.get("args") else None
                value = core.param(name, init, kw.pop("constraint", None), **kw)
            elif t == "deterministic":
                value = core.deterministic(name, msg["value"])
            elif t in ("mask", "prng_key"):  # queries (numpyro.get_mask, prng_key): no answer
                return
            else:
                raise ModelError(
                    f"ppl.reparam: the reparameteriser of site {self.site!r} used numpyro's {t!r} "
                    "primitive, which ppl does not translate (supported: sample, param, factor, "
                    "deterministic)."
                )
        finally:
            _np_prim._PYRO_STACK[:] = saved
        msg["value"] = value
        msg["stop"] = True


# ---------------------------------------------------------------------------------------------
# the handler


def _check_config(config: Any) -> None:
    if isinstance(config, Mapping):
        for k, v in config.items():
            if not isinstance(k, str):
                raise ModelError(f"ppl.reparam: config addresses must be strings, got {k!r}.")
            if v is not None and not isinstance(v, Reparam):
                raise ModelError(
                    f"ppl.reparam: config[{k!r}] must be a numpyro.infer.reparam reparameteriser "
                    f"(e.g. LocScaleReparam(0)), got {type(v).__name__}."
                )
    elif not callable(config):
        raise ModelError(
            "ppl.reparam: config must be a dict address -> reparameteriser, a function of the site "
            f"returning one (or None), or 'auto'; got {config!r}."
        )


class _ReparamMessenger(Messenger):
    """Apply NumPyro reparameterisers to the sample sites that `config` names (see module doc)."""

    def __init__(self, fn: Callable | None = None, config: Any = None):
        super().__init__(None)
        if isinstance(config, str):
            raise ModelError(
                f"ppl.reparam: config={config!r} needs the model: write ppl.reparam(model, 'auto')"
                if config == "auto"
                else f"ppl.reparam: unknown config {config!r} (a dict, a function, or 'auto')."
            )
        _check_config(config)
        self.config = config
        self._names: set[str] = set()
        self._seen: set[str] = set()

    def __enter__(self) -> "Messenger":
        self._names, self._seen = set(), set()
        self._dyn0 = core._STATE.dynamic_structure  # a counter: compare, never test against 0
        return super().__enter__()

    def __exit__(self, exc_type, exc, tb) -> None:
        super().__exit__(exc_type, exc, tb)
        if exc_type is None and isinstance(self.config, Mapping):
            missing = [k for k in self.config if k not in self._seen and self.config[k] is not None]
            if missing and core._STATE.dynamic_structure == self._dyn0:
                k = missing[0]
                raise ModelError(
                    f"ppl.reparam was given site {k!r}, which the model does not have as a sample "
                    f"site{nearest(k, self._names)}."
                )

    def _lookup(self, msg: dict) -> Any:
        if isinstance(self.config, Mapping):
            return self.config.get(msg["name"])
        r = self.config(msg)
        if r is not None and not isinstance(r, Reparam):
            raise ModelError(
                f"ppl.reparam: the config function returned {type(r).__name__} for site "
                f"{msg['name']!r}; expected a numpyro.infer.reparam reparameteriser or None."
            )
        return r

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["intervened"]:
            return
        name = msg["name"]
        self._names.add(name)
        r = self._lookup(msg)
        if r is None:
            return
        self._seen.add(name)
        if msg["is_observed"] and isinstance(r, LocScaleReparam):
            raise ModelError(
                f"ppl.reparam: site {name!r} is observed, and LocScaleReparam applies to latent "
                "sites only (NumPyro's rule); leave it out of the config."
            )
        obs = msg["value"]
        bridge = _Bridge(name)
        try:
            with bridge:
                new_fn, value = r(name, msg["fn"], obs)
        except PPLError:
            raise
        except (AssertionError, ValueError) as e:
            raise ModelError(
                f"ppl.reparam: {type(r).__name__} cannot reparameterise site {name!r} "
                f"({type(msg['fn']).__name__}): {type(e).__name__}: {e}"
            ) from None
        if value is None:
            msg["fn"] = new_fn
            return
        if new_fn is None:  # the site becomes a deterministic function of the new sites
            msg["type"] = "deterministic"
            msg["fn"] = None
            msg["is_observed"] = False
            msg["supplied"] = False
            msg["in_support"] = False
            msg["value"] = value
            return
        if msg["value"] is None:
            msg["is_observed"] = True
            msg["supplied"] = True
        msg["value"] = value
        msg["fn"] = new_fn


class _SameReparam(type(_Wraps)):
    """``isinstance(h, ppl.reparam)`` holds for every reparam messenger (as for the handlers of
    :mod:`ppl.handlers`, whose metaclass looks for the messenger in that module only)."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return type.__instancecheck__(_ReparamMessenger, obj)


class reparam(_Wraps, _ReparamMessenger, metaclass=_SameReparam):
    """Reparameterise sample sites with NumPyro's reparameterisers (``numpyro.handlers.reparam``).

    ``ppl.reparam(model, {"theta": LocScaleReparam(0)})`` is `model` with ``theta`` non-centred:
    a new latent site ``theta_decentered`` and a deterministic ``theta`` = loc + scale *
    theta_decentered.  The measure over the original addresses is unchanged.  `config` is a dict
    address -> reparameteriser, a function of the site message returning one or ``None``, or
    ``"auto"``: non-centre the hierarchical location-scale sites (:func:`auto_noncentre_sites`).
    Used without a model (``with ppl.reparam(config=...)``) it is a handler inside a model.

    Example:
        >>> from numpyro.infer.reparam import LocScaleReparam
        >>> @ppl.model
        ... def m():
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     return ppl.sample("x", dist.Normal(mu, 2.0))
        >>> tr = ppl.reparam(m, {"x": LocScaleReparam(0)}).simulate(jax.random.key(0))
        >>> sorted(tr.choices), sorted(tr.deterministic)
        (['mu', 'x_decentered'], ['x'])
        >>> bool(tr["x"] == tr["mu"] + 2.0 * tr["x_decentered"])
        True
    """

    def __new__(cls, fn: Callable | None = None, config: Any = None):
        if config == "auto" and fn is not None and not isinstance(fn, Messenger):
            return _auto(fn)
        return super().__new__(cls, fn, config)


# ---------------------------------------------------------------------------------------------
# automatic non-centring


def _loc_scale_params(fn: Any) -> tuple[type, Any, Any] | None:
    """(family, loc, scale) of a location-scale distribution through plate/to_event wrappers."""
    while isinstance(fn, (ndist.ExpandedDistribution, ndist.Independent)):
        fn = fn.base_dist
    fam = type(fn)
    if fam not in LOC_SCALE_FAMILIES:
        return None
    return fam, fn.loc, fn.scale


class _Record(Messenger):
    """Pre-pass recorder: substitute latent values from `values` and collect, for every latent
    location-scale site, its ``loc`` and ``scale`` (the outputs whose inputs are traced)."""

    def __init__(self, values: Mapping[str, Any] | None = None):
        super().__init__(None)
        self.values = dict(values or {})
        self.latent: dict[str, Any] = {}
        self.candidates: dict[str, tuple[Any, Any]] = {}
        self.families: dict[str, type] = {}

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg["intervened"]:
            return
        if msg["name"] in self.values:
            msg["value"] = self.values[msg["name"]]
        elif msg["value"] is None:
            # a placeholder of the right shape and dtype, drawn by NumPyro directly: the pre-pass
            # must not draw through ppl's randomness interpreter (semantics' enumerators count draws)
            try:
                msg["value"] = msg["fn"].sample(jax.random.key(0))
            except NotImplementedError:
                msg["value"] = jnp.zeros(msg["fn"].shape())

    def postprocess_message(self, msg: dict) -> None:
        # after the outer handlers: a site an outer ppl.condition observes is not latent
        if msg["type"] != "sample" or msg["is_observed"] or msg["intervened"]:
            return
        name = msg["name"]
        self.latent[name] = msg["value"]
        ls = None if core.inside_combinator() else _loc_scale_params(msg["fn"])
        if ls is not None:
            self.families[name] = ls[0]
            self.candidates[name] = (ls[1], ls[2])


def auto_noncentre_sites(model: Any, *args: Any, **kwargs: Any) -> dict[str, Reparam]:
    """The hierarchical location-scale sites of `model` called with `args`: address ->
    ``LocScaleReparam(0)`` for each latent Normal/StudentT/Cauchy/Laplace/Logistic/Gumbel/
    SoftLaplace site whose ``loc`` or ``scale`` depends (through the model's data flow, traced
    to a jaxpr) on the value of another latent site.

    Example:
        >>> @ppl.model
        ... def funnel():
        ...     v = ppl.sample("v", dist.Normal(0.0, 3.0))
        ...     return ppl.sample("x", dist.Normal(0.0, jnp.exp(v / 2)))
        >>> sorted(ppl.auto_noncentre_sites(funnel))
        ['x']
    """
    from jax._src.interpreters import partial_eval as pe

    fn = as_model(model).fn
    # tracers among the arguments become inputs of the pre-pass (concrete data stays concrete)
    leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
    traced = [i for i, x in enumerate(leaves) if isinstance(x, jax.core.Tracer)]
    avals = [jax.ShapeDtypeStruct(np.shape(leaves[i]), leaves[i].dtype) for i in traced]

    def rebuild(tr_vals: list) -> tuple[tuple, dict]:
        ls = list(leaves)
        for i, v in zip(traced, tr_vals):
            ls[i] = v
        return jax.tree_util.tree_unflatten(tree, ls)

    # keep the outer observers (condition/do): an observed site is not latent
    outer = [h for h in core._stack() if isinstance(h, (messengers.condition, messengers.do))]
    saved = core._STATE.stack
    core._STATE.stack = list(outer)
    try:
        def shapes(tr_vals: list) -> dict:
            rec = _Record()
            a, k = rebuild(tr_vals)
            run(fn, a, k, messengers.seed(key=jax.random.key(0)), rec)
            return rec.latent

        latent = jax.eval_shape(shapes, avals)

        def flow(values: dict, tr_vals: list) -> list:
            rec = _Record(values)
            a, k = rebuild(tr_vals)
            run(fn, a, k, messengers.seed(key=jax.random.key(0)), rec)
            flow.candidates = list(rec.candidates)
            flow.families = rec.families
            return [jnp.asarray(x) for n in flow.candidates for x in rec.candidates[n]]

        closed = jax.make_jaxpr(flow)(latent, avals)
    finally:
        core._STATE.stack = saved
    jaxpr = pe.convert_constvars_jaxpr(closed.jaxpr)
    n_const = len(closed.jaxpr.constvars)
    # input labels: the flattened latent dict (sorted keys, one leaf per site), then the data
    names = sorted(latent)
    labels = [None] * n_const + names + [None] * len(avals)
    out_owner = [n for n in flow.candidates for _ in range(2)]  # (loc, scale) per candidate
    chosen: dict[str, Reparam] = {}
    for n in flow.candidates:
        used_out = [o == n for o in out_owner]
        _, used_in = pe.dce_jaxpr(jaxpr, used_out, instantiate=False)
        if any(u and lab is not None and lab != n for u, lab in zip(used_in, labels)):
            chosen[n] = LocScaleReparam(0, shape_params=LOC_SCALE_FAMILIES[flow.families[n]])
    return chosen


def _auto(model: Any) -> Model:
    base = as_model(model)

    def wrapped(*a: Any, **k: Any) -> Any:
        config = auto_noncentre_sites(base, *a, **k)
        with _ReparamMessenger(config=config):
            return base.fn(*a, **k)

    wrapped.__name__ = wrapped.__qualname__ = base.name
    out = Model(wrapped, name=base.name)
    out._base = base
    return out
