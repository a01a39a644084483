"""Objectives as programs, and their automatic transformation into unbiased gradient estimators.

An *objective* is a Python function that uses the constructs below and returns a scalar F; the
objective it denotes is L(φ) = E[F], the expectation over every random choice the program makes.
:class:`Objective` turns the program into a *surrogate loss* s(φ) whose gradient is an unbiased
estimate of ∇L (see ``docs/design/vi.md``):

    E[∇s(φ)] = ∇ E[F]

Constructs (usable only inside an objective):

* :func:`sample` ``(guide, *args)`` -- run a model (a guide) and return its :class:`ppl.Trace`.
  Each latent site is a random choice whose gradient strategy is chosen per site: from
  ``ppl.sample(..., infer={"grad": s})``, from a mapping address -> strategy given to the
  objective (or to ``fit``), or by default ``"reparam"`` for reparameterisable continuous sites
  and ``"reinforce"`` otherwise.
* densities -- ``model.log_density(choices, *args)`` and ``trace.log_density`` (plain ppl).
* :func:`expectation` ``(fn, num_samples)`` -- the mean of ``fn()`` over independent runs.
* :func:`particles` ``(K, fn, baseline=)`` -- K independent runs of ``fn`` stacked on a leading
  axis, optionally with per-particle baselines for their score terms (VIMCO).
* :func:`marginal` -- a guide with some sites marginalised out, its density estimated by
  importance sampling (HVI / IWHVI).

Strategies (what each is unbiased for, for a site z ~ q_φ with the rest of the program f):

* ``"reparam"``  z = T_φ(ε), ε ~ base noise; ∇ E[f(z)] = E[∇ f(T_φ(ε))].
* ``"reinforce"`` score function: ∇ E[f(z)] = E[∇f(z) + (f(z) − b) ∇ log q_φ(z)], for any
  baseline b independent of z.  The learning signal f is the *whole objective value* F of the
  run (no dependency tracking; documented in ``docs/design/vi.md``).
* ``"enum"``  exact: ∇ Σ_v q_φ(v) E[f | v] = Σ_v ∇(q_φ(v) E[f | v]); the rest of the program is
  re-run once per value of the (finite) support.
* ``"mvd"``  measure-valued derivative: ∂_θ E_q[f] = c_θ (E_{q⁺}[f] − E_{q⁻}[f]) by the weak
  derivative decomposition, for Bernoulli, Categorical and Normal sites; the rest of the program
  is re-run (value only) with the site set to draws of q⁺ and q⁻.

Example:
    >>> @vi.objective
    ... def my_elbo(x):
    ...     tr = vi.sample(guide, x)
    ...     return model.log_density(tr.choices, x) - tr.log_density
    >>> u = my_elbo.init_params(jax.random.key(0), x)
    >>> value, grads = my_elbo.grad(jax.random.key(1), u, x)
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions.transforms import biject_to

import ppl
from ppl.core import Messenger
from ppl.errors import ModelError
from ppl.model import make_trace, run
from ppl.randomness import draw, requires_eager

__all__ = [
    "STRATEGIES",
    "Objective",
    "objective",
    "sample",
    "expectation",
    "particles",
    "VIError",
]

STRATEGIES = ("reparam", "reinforce", "enum", "mvd")
MAX_ENUM_ALTERNATIVES = 4096
MAX_MVD_ELEMENTS = 64

sg = jax.lax.stop_gradient


class VIError(ModelError):
    """A variational objective or guide was used in a way that cannot be honoured."""


# ---------------------------------------------------------------------------------------------
# the running context


class _State(threading.local):
    def __init__(self) -> None:
        self.stack: list[_Ctx] = []


_STATE = _State()


def _current(who: str) -> "_Ctx":
    if not _STATE.stack:
        raise VIError(
            f"vi.{who} was called outside an objective: use it inside a function decorated with "
            "@vi.objective, and run it with objective.grad / objective.estimate / vi.fit."
        )
    return _STATE.stack[-1]


@dataclass
class _Score:
    log_q: Any  # log q(z) with gradients (grad mode)
    baseline: Any = 0.0


@dataclass
class _MVDTerm:
    site: int
    name: str
    alts: list  # of (param, index, coefficient, v_plus, v_minus or None)
    signals: list | None = None


class _EnumWalker:
    """Walks the joint supports of the enum sites of a run, depth first (fixed structure)."""

    def __init__(self) -> None:
        self.nodes: list[list] = []  # [alternatives, index]
        self.pos = 0

    def value(self, name: str, d: Any, site: int = -1) -> Any:
        if self.pos < len(self.nodes):
            node = self.nodes[self.pos]
        else:
            node = [_enum_alternatives(name, d), 0, site]
            self.nodes.append(node)
        self.pos += 1
        return jnp.asarray(node[0][node[1]])

    def advance(self) -> bool:
        if self.pos != len(self.nodes):
            raise VIError("the objective made a different number of enum choices when re-run.")
        while self.nodes and self.nodes[-1][1] + 1 >= len(self.nodes[-1][0]):
            self.nodes.pop()
        if not self.nodes:
            return False
        self.nodes[-1][1] += 1
        self.pos = 0
        return True


class _Ctx:
    """One run of an objective program.

    Modes: ``"sample"`` (first pass: draw every choice with stop-gradient parameters, record it);
    ``"branch"`` (value only: replay a recorded prefix, override one site, draw the rest
    fresh); ``"grad"`` (second pass: replay the record with differentiable parameters and
    collect the surrogate's terms); ``"init"`` (draw fresh, collect ``ppl.param`` sites).
    """

    def __init__(
        self,
        mode: str,
        key: Any,
        uparams: Mapping[str, Any],
        strategies: Mapping[str, str],
        walker: _EnumWalker | None = None,
        replay: list | None = None,
        override: tuple[int, Any] | None = None,
    ):
        self.mode = mode
        self.key = key
        self.uparams = dict(uparams)
        self.strategies = dict(strategies)
        self.walker = walker
        self.replay = replay
        self.override = override
        self.index = 0
        self.records: list[dict] = []
        self.scores: list[_Score] = []
        self.enum_logq: list[Any] = []
        self.mvd: list[_MVDTerm] = []
        self.detach = 0
        self.block_depth = 0  # > 0 inside a vmapped vi.particles block
        self.params_seen: dict[str, tuple[Any, Any]] = {}
        # the record of the previous enum path, and how many of its sites this run shares
        self.prev: list[dict] | None = None
        self.prev_mvd: dict[int, _MVDTerm] = {}
        self.shared = 0

    def next_key(self) -> Any:
        self.key, k = jax.random.split(self.key)
        return k

    def call(self, fn: Callable, args: tuple, kwargs: dict) -> Any:
        _STATE.stack.append(self)
        try:
            with _Params(self):
                out = fn(*args, **kwargs)
        finally:
            _STATE.stack.pop()
        out = jnp.asarray(out)
        if out.shape != ():
            raise VIError(f"an objective must return a scalar, got an array of shape {out.shape}.")
        return out

    # -- strategies ---------------------------------------------------------------------------

    def strategy(self, msg: dict) -> str:
        name = msg["name"]
        s = self.strategies.get(name)
        if s is None:
            s = (msg.get("infer") or {}).get("grad")
        if s is None:
            d = msg["fn"]
            s = "reparam" if (not d.support.is_discrete and d.has_rsample) else "reinforce"
        if s not in STRATEGIES:
            raise VIError(f"site {name!r}: unknown gradient strategy {s!r}; expected one of {STRATEGIES}.")
        d = msg["fn"]
        if s == "reparam" and (d.support.is_discrete or not d.has_rsample):
            raise VIError(
                f"site {name!r}: {type(d).__name__} cannot be reparameterised; use 'reinforce', "
                "'enum' (finite discrete) or 'mvd'."
            )
        if s == "enum" and not d.support.is_discrete:
            raise VIError(f"site {name!r}: 'enum' needs a finite discrete distribution, got {type(d).__name__}.")
        return s

    # -- one latent site of a guide --------------------------------------------------------------

    def site(self, msg: dict) -> Any:
        name, d = msg["name"], msg["fn"]
        strategy = self.strategy(msg)
        if self.detach and strategy != "enum":  # detached enum sites are still summed exactly
            strategy = "detach"
        if self.mode == "direct" and strategy in ("enum", "mvd"):
            raise _NeedsTwoPasses(name)  # enum / MVD re-run the program: the two-pass estimator
        if self.block_depth and strategy in ("enum", "mvd"):
            raise _NeedsLoop(name)  # vi.particles re-runs its particles as a Python loop
        i = self.index
        self.index += 1
        key = self.next_key()
        mode = self.mode
        if mode in ("init",):
            return draw(key, d, (), name)
        if mode == "branch":
            if i == self.override[0]:
                return self.override[1]
            if i < self.override[0]:
                return _replay_value(self.replay[i], d)
            if strategy == "enum":  # value-only runs still sum enum sites exactly
                value = self.walker.value(name, d)
                self.enum_logq.append(jnp.sum(d.log_prob(value)))
                return value
            return draw(key, d, (), name)
        if mode == "sample":
            return self._sample_site(i, name, d, strategy, key)
        if mode == "grad":
            return self._grad_site(i, name, d, strategy, key, msg)
        if mode == "direct":
            return self._direct_site(name, d, strategy, key, msg)
        raise AssertionError(mode)  # pragma: no cover

    def _sample_site(self, i: int, name: str, d: Any, strategy: str, key: Any) -> Any:
        if self.prev is not None and i < self.shared:
            # before the enum site that changed since the previous path: the same choices
            rec = self.prev[i]
            if strategy == "enum":
                value = self.walker.value(name, d, i)
                self.enum_logq.append(jnp.sum(d.log_prob(value)))
            else:
                value = _replay_value(rec, d)
                if strategy == "mvd":
                    self.mvd.append(self.prev_mvd[i])
            self.records.append(rec)
            return value
        rec: dict = {"name": name, "strategy": strategy}
        if strategy == "enum":
            value = self.walker.value(name, d, i)
            rec["value"] = value
            self.enum_logq.append(jnp.sum(d.log_prob(value)))
        elif strategy == "reparam":
            rep = _reparam(d, _shape(d))
            if rep is None:
                if requires_eager():
                    raise VIError(
                        f"site {name!r}: a reparameterised draw from {type(d).__name__} cannot run "
                        "under an interpreter (only Normal-family, Uniform and Exponential sites "
                        "can); use strategy 'reinforce' there."
                    )
                rec["key"] = key
                value = d.sample(key)
            else:
                noise, f = rep
                eps = draw(key, noise, (), name) if noise is not None else None
                rec["noise"] = eps
                value = f(eps)
        else:  # reinforce, mvd, detach
            value = draw(key, d, (), name)
            rec["value"] = value
            if strategy == "mvd":
                k2 = jax.random.fold_in(key, 1)
                self.mvd.append(_MVDTerm(i, name, _mvd_alternatives(name, d, value, k2)))
                # the enum values chosen so far: runs that share them share this site's branches
                self.mvd[-1].prefix = tuple(n[1] for n in self.walker.nodes[: self.walker.pos])
        self.records.append(rec)
        return value

    def _grad_site(self, i: int, name: str, d: Any, strategy: str, key: Any, msg: dict) -> Any:
        rec = self.replay[i]
        if rec["name"] != name or rec["strategy"] != strategy:
            raise VIError(
                f"the objective is not deterministic given its random choices: site #{i} was "
                f"{rec['name']!r} ({rec['strategy']}) and is now {name!r} ({strategy})."
            )
        if strategy == "enum":
            value = rec["value"]
            self.enum_logq.append(jnp.sum(d.log_prob(value)))
            return value
        if strategy == "reparam":
            if "key" in rec:
                return d.sample(rec["key"])
            return _reparam(d, _shape(d))[1](rec["noise"])
        value = sg(rec["value"])
        if strategy == "reinforce":
            self.scores.append(_Score(_score_term(d, value, msg), self._baseline))
        elif strategy == "mvd":
            self.mvd.append(_MVDTerm(i, name, rec["mvd_alts"], rec["mvd_signals"]))
            self.mvd[-1].theta = _mvd_params(d)
        return value

    def _direct_site(self, name: str, d: Any, strategy: str, key: Any, msg: dict) -> Any:
        """One pass: draw and differentiate at once (no enum / MVD site in the program).

        The same draws, from the same keys, as the sample pass followed by the grad pass."""
        if strategy == "reparam":
            rep = _reparam(d, _shape(d))
            if rep is None:
                return d.sample(key)
            noise, f = rep
            return f(draw(key, noise, (), name) if noise is not None else None)
        value = sg(draw(key, jax.tree_util.tree_map(sg, d), (), name))
        if strategy == "reinforce":
            self.scores.append(_Score(_score_term(d, value, msg), self._baseline))
        return value

    _baseline: Any = 0.0


class _NeedsTwoPasses(Exception):
    """Raised by the one-pass estimator when the program has an enum or MVD site."""


def _score_term(d: Any, value: Any, msg: dict) -> Any:
    """log q(z) of a score-function site (summed over its elements), with gradients."""
    return jnp.sum(d.log_prob(value))


def _replay_value(rec: dict, d: Any) -> Any:
    if "value" in rec:
        return rec["value"]
    if "key" in rec:
        return d.sample(rec["key"])
    return _reparam(d, _shape(d))[1](rec["noise"])


def _shape(d: Any) -> tuple:
    return tuple(d.batch_shape) + tuple(d.event_shape)


class _Params(Messenger):
    """Give every ``ppl.param`` site its value T(u) from the unconstrained parameters."""

    def __init__(self, ctx: _Ctx):
        super().__init__()
        self.ctx = ctx

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "param":
            return
        name = msg["name"]
        constraint = msg["kwargs"]["constraint"]
        if name in self.ctx.uparams:
            v = biject_to(constraint)(self.ctx.uparams[name])
            msg["value"] = sg(v) if self.ctx.detach else v
        elif self.ctx.mode != "init" and msg["value"] is None:
            raise VIError(
                f"param {name!r} has no value: it was not present when the parameters were "
                "initialised (objective.init_params); re-initialise them."
            )
        elif msg["value"] is None and callable(msg["kwargs"]["init"]):
            msg["value"] = msg["kwargs"]["init"](self.ctx.next_key())

    def postprocess_message(self, msg: dict) -> None:
        if msg["type"] == "param" and self.ctx.mode == "init":
            self.ctx.params_seen.setdefault(msg["name"], (msg["value"], msg["kwargs"]["constraint"]))


class _GuideSampler(Messenger):
    """Choose each latent site's value through the running objective's context."""

    def __init__(self, ctx: _Ctx):
        super().__init__()
        self.ctx = ctx

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg["intervened"] or msg["value"] is not None:
            return
        msg["value"] = self.ctx.site(msg)
        msg["in_support"] = True


# ---------------------------------------------------------------------------------------------
# reparameterisation: base noise and a differentiable transform


def _reparam(d: Any, V: tuple):
    """(noise distribution or None, f) with f(ε) ~ d for ε ~ noise, f differentiable in d's params.

    `V` is the shape of the value.  None when the family is not supported explicitly.
    """
    name = type(d).__name__
    if name in ("Independent", "ExpandedDistribution"):
        return _reparam(d.base_dist, V)
    if name == "Normal":
        return dist.Normal(jnp.zeros(V), 1.0), lambda e: d.loc + d.scale * e
    if name == "MultivariateNormal":
        return dist.Normal(jnp.zeros(V), 1.0), lambda e: d.loc + jnp.einsum("...ij,...j->...i", d.scale_tril, e)
    if name == "LowRankMultivariateNormal":
        r = d.cov_factor.shape[-1]
        W = V[:-1] + (r + V[-1],)

        def f(e):
            return (
                d.loc
                + jnp.einsum("...ij,...j->...i", d.cov_factor, e[..., :r])
                + jnp.sqrt(d.cov_diag) * e[..., r:]
            )

        return dist.Normal(jnp.zeros(W), 1.0), f
    if name == "Uniform":
        return dist.Uniform(jnp.zeros(V), 1.0), lambda e: d.low + (d.high - d.low) * e
    if name == "Exponential":
        return dist.Exponential(jnp.ones(V)), lambda e: e / d.rate
    if name == "Delta":
        return None, lambda e: jnp.broadcast_to(d.v, V)
    if name in ("TransformedDistribution", "LogNormal"):
        transforms = list(d.transforms)
        shape = V
        for t in reversed(transforms):
            shape = tuple(t.inverse_shape(shape))
        base = _reparam(d.base_dist, shape)
        if base is None:
            return None
        noise, g = base

        def f(e):
            x = g(e)
            for t in transforms:
                x = t(x)
            return x

        return noise, f
    return None


# ---------------------------------------------------------------------------------------------
# enumeration


def _leaf(d: Any) -> Any:
    while type(d).__name__ in ("Independent", "ExpandedDistribution", "MaskedDistribution"):
        d = d.base_dist
    return d


def _enum_alternatives(name: str, d: Any) -> list:
    leaf = _leaf(d)
    try:
        with jax.ensure_compile_time_eval():
            S = np.asarray(leaf.enumerate_support(expand=False)).reshape(-1)
    except Exception as e:
        raise VIError(
            f"site {name!r}: cannot enumerate the support of {type(leaf).__name__} for 'enum' ({e})."
        ) from None
    V = _shape(d)
    n = int(np.prod(V)) if V else 1
    count = len(S) ** n
    if count > MAX_ENUM_ALTERNATIVES:
        raise VIError(
            f"site {name!r}: 'enum' would sum over {count} joint values (support {len(S)}, "
            f"{n} elements); use 'reinforce' or 'mvd' for large sites."
        )
    dtype = np.asarray(S).dtype
    return [np.asarray(c, dtype=dtype).reshape(V) for c in itertools.product(S, repeat=n)]


# ---------------------------------------------------------------------------------------------
# measure-valued derivatives


def _mvd_params(d: Any) -> dict:
    """The parameters that the weak derivatives of `d` are taken with respect to, broadcast."""
    leaf = _leaf(d)
    V = _shape(d)
    kind = type(leaf).__name__
    if kind.startswith("Bernoulli"):
        return {"probs": jnp.broadcast_to(leaf.probs, V)}
    if kind.startswith("Categorical"):
        return {"probs": jnp.broadcast_to(leaf.probs, V + leaf.probs.shape[-1:])}
    if kind == "Normal":
        return {"loc": jnp.broadcast_to(leaf.loc, V), "scale": jnp.broadcast_to(leaf.scale, V)}
    raise VIError(
        f"'mvd' supports Bernoulli, Categorical and Normal sites, got {kind}; use 'reinforce' "
        "(or 'reparam' for continuous sites)."
    )


def _mvd_alternatives(name: str, d: Any, value: Any, key: Any) -> list:
    """(param, index, c, v_plus, v_minus | None) for each scalar parameter θ of the site.

    ∂_θ E_q[f] = c (E_{q⁺}[f] − E_{q⁻}[f]); v_minus None means q⁻ = q (the main run is used).
    Bernoulli: ∂_p = δ₁ − δ₀.  Categorical: ∂_{p_k} = δ_k (minus q, valid since Σ_k ∂p_k = 0).
    Normal: ∂_μ = (σ√(2π))⁻¹ (μ + σR − (μ − σR)), R ~ Rayleigh; ∂_σ = σ⁻¹ (DoubleMaxwell − q).
    """
    try:
        theta = _mvd_params(d)
    except VIError as e:
        raise VIError(f"site {name!r}: {e}") from None
    leaf = _leaf(d)
    kind = type(leaf).__name__
    V = _shape(d)
    n = int(np.prod(V)) if V else 1
    if n > MAX_MVD_ELEMENTS:
        raise VIError(f"site {name!r}: 'mvd' re-runs the objective per element; {n} elements is too many.")
    alts = []
    for idx in np.ndindex(*V) if V else [()]:
        if kind.startswith("Bernoulli"):
            one = jnp.ones((), value.dtype)
            alts.append(("probs", idx, 1.0, value.at[idx].set(one), value.at[idx].set(0 * one)))
        elif kind.startswith("Categorical"):
            for k in range(theta["probs"].shape[-1]):
                alts.append(("probs", idx + (k,), 1.0, value.at[idx].set(k), None))
        else:  # Normal
            mu, s = sg(theta["loc"][idx]), sg(theta["scale"][idx])
            key, k1, k2, k3 = jax.random.split(key, 4)
            r = jnp.sqrt(2.0 * draw(k1, dist.Exponential(1.0), (), f"{name}/mvd_rayleigh"))
            m = jnp.sqrt(draw(k2, dist.Gamma(1.5, 0.5), (), f"{name}/mvd_maxwell"))
            sign = 2.0 * draw(k3, dist.Bernoulli(probs=0.5), (), f"{name}/mvd_sign") - 1.0
            c_loc = 1.0 / (s * math.sqrt(2.0 * math.pi))
            alts.append(("loc", idx, c_loc, value.at[idx].set(mu + s * r), value.at[idx].set(mu - s * r)))
            alts.append(("scale", idx, 1.0 / s, value.at[idx].set(mu + s * sign * m), None))
    return alts


# ---------------------------------------------------------------------------------------------
# constructs


def sample(guide: Any, *args: Any, baseline: Any = None, detach: bool = False, **kwargs: Any) -> ppl.Trace:
    """Run `guide` (a model, or a :func:`vi.marginal`) as a random choice of the objective;
    return its :class:`ppl.Trace` (for a marginal: the non-auxiliary choices, with the
    estimated marginal log density as ``log_density``).

    Each latent site's gradient is estimated by its strategy (module docstring).  `baseline`, a
    value independent of this draw, is subtracted from the learning signal of the draw's
    score-function sites (variance reduction; any such value keeps the estimator unbiased).
    With ``detach=True`` the draw carries no gradient at all: its values, densities and the
    guide's parameters are constants (used by wake-sleep's p-wake).

    Example:
        >>> tr = vi.sample(guide, x)
        >>> tr["z"], tr.log_density
    """
    ctx = _current("sample")
    if hasattr(guide, "_vi_sample"):  # a vi.marginal
        return guide._vi_sample(args, kwargs, baseline, detach)
    g = ppl.as_model(guide)
    prev_b = ctx._baseline
    ctx._baseline = 0.0 if baseline is None else sg(jnp.asarray(baseline))
    ctx.detach += int(bool(detach))
    try:
        retval, sites = run(g.fn, args, kwargs, _GuideSampler(ctx))
    finally:
        ctx.detach -= int(bool(detach))
        ctx._baseline = prev_b
    return make_trace(sites, retval, args, kwargs)


class _NeedsLoop(Exception):
    """Raised inside a vmapped particle block that meets an enum or MVD site."""


_BIG = 1 << 62


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def _partition(tree: Any):
    """(array leaves, rebuild): split a pytree of records into arrays and static metadata."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    dyn = [j for j, x in enumerate(leaves) if _is_array(x)]
    static = list(leaves)

    def rebuild(arrays: list) -> Any:
        ls = list(static)
        for j, x in zip(dyn, arrays):
            ls[j] = x
        return jax.tree_util.tree_unflatten(treedef, ls)

    return [leaves[j] for j in dyn], rebuild


def _expand(b: Any, ndim: int) -> Any:
    b = jnp.asarray(b)
    return jnp.reshape(b, b.shape + (1,) * max(0, ndim - b.ndim))


def _particles_vmapped(ctx: "_Ctx", num: int, fn: Callable[[], Any]) -> Any:
    """Run the particles with ``jax.vmap``: the block is one record (index) of the run whose
    inner records carry a leading ``num`` axis; raises :class:`_NeedsLoop` (state restored)
    when a particle meets an enum or MVD site (those re-run the program per value)."""
    from inference import sharding

    saved = (ctx.key, ctx.index, ctx.records, ctx.scores, ctx.replay, ctx.prev, ctx.shared, ctx.override)
    i = ctx.index
    mode = ctx.mode
    inner_in = None
    recorded = None
    if mode == "grad":
        recorded = ctx.replay
    elif mode == "branch" and i < ctx.override[0]:
        recorded = ctx.replay
    elif mode == "sample" and ctx.prev is not None and i < ctx.shared:
        recorded = ctx.prev
    if recorded is not None:
        if i >= len(recorded):
            raise VIError("the objective is not deterministic given its random choices: it made more choices when re-run.")
        rec = recorded[i]
        if rec.get("strategy") != "block":  # the first pass ran these particles as a loop
            raise _NeedsLoop(rec.get("name"))
        if rec.get("num") != num:
            raise VIError(
                f"the objective is not deterministic given its random choices: a vi.particles block "
                f"of {rec.get('num')} is now one of {num}."
            )
        inner_in = rec["inner"]
    key = ctx.next_key()
    after_key = ctx.key
    keys = sharding.constrain_batch(jax.random.split(key, num))
    in_leaves, rebuild_in = _partition(inner_in)
    in_leaves = sharding.constrain_batch(in_leaves)
    meta: dict = {}

    def body(k, leaves):
        inner = rebuild_in(leaves) if inner_in is not None else None
        ctx.key, ctx.index, ctx.records, ctx.scores = k, 0, [], []
        if mode in ("grad", "branch"):
            ctx.replay = inner
            if mode == "branch":
                ctx.override = (_BIG, None) if inner is not None else (-1, None)
        elif mode == "sample":
            ctx.prev, ctx.shared = inner, (_BIG if inner is not None else 0)
        ctx.block_depth += 1
        try:
            out = fn()
        finally:
            ctx.block_depth -= 1
        out = jax.tree_util.tree_map(jnp.asarray, out)
        recs, meta["records"] = _partition(ctx.records)
        scores = [(t.log_q, jnp.asarray(t.baseline, dtype=jnp.result_type(t.log_q))) for t in ctx.scores]
        return out, recs, scores

    try:
        out, recs, scores = jax.vmap(body)(keys, in_leaves)
    except BaseException:
        (ctx.key, ctx.index, ctx.records, ctx.scores, ctx.replay, ctx.prev, ctx.shared, ctx.override) = saved
        raise
    (_, _, ctx.records, ctx.scores, ctx.replay, ctx.prev, ctx.shared, ctx.override) = saved
    ctx.key, ctx.index = after_key, i + 1
    out = sharding.constrain_batch(out)
    if mode == "sample":
        inner = meta["records"](sharding.constrain_batch(recs))
        ctx.records.append({"name": "<vi.particles>", "strategy": "block", "num": num, "inner": inner})
    start = len(ctx.scores)
    for log_q, b in scores:
        ctx.scores.append(_Score(log_q, b))
    return out, start


def particles(num: int, fn: Callable[[], Any], baseline: Callable[[Any], Any] | None = None) -> Any:
    """Run ``fn()`` `num` times independently; return the outputs stacked on a leading axis.

    ``baseline(outputs)`` (optional) returns one baseline per particle, shape ``(num,)``; the
    score-function terms of particle k then use the learning signal F − b_k.  The estimator stays
    unbiased only when b_k does not depend on particle k's own random choices (VIMCO's
    leave-one-out baselines); it is computed from stop-gradient values.

    The particles run vectorised (``jax.vmap``, their axis split across devices when there are
    several, see ``inference.sharding``); they run as a Python loop under an eager interpreter
    (the exact enumerator of the tests) and when a particle contains an ``"enum"`` or ``"mvd"``
    site, whose re-runs are per value.  Both give the same estimator.

    Example:
        >>> log_w = vi.particles(10, lambda: log_weight(vi.sample(guide, x)))
    """
    ctx = _current("particles")
    num = int(num)
    if num < 1:
        raise VIError(f"vi.particles: num must be at least 1, got {num}.")
    block = None
    if ctx.mode != "init" and num > 1 and not requires_eager():  # one particle: no vmap axis
        try:
            block = _particles_vmapped(ctx, num, fn)
        except _NeedsLoop:
            if ctx.block_depth:  # an enclosing block must run as a loop too
                raise
    if block is not None:
        stacked, start = block
        spans = None
    else:
        # the same keys as the vmapped block: particle k runs from key k of the split
        keys = jax.random.split(ctx.next_key(), num)
        after_key = ctx.key
        outs, spans = [], []
        for k in range(num):
            start = len(ctx.scores)
            ctx.key = keys[k]
            outs.append(fn())
            spans.append((start, len(ctx.scores)))
        ctx.key = after_key
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)
    if baseline is not None and ctx.mode in ("grad", "direct"):
        b = sg(jnp.asarray(baseline(jax.tree_util.tree_map(sg, stacked))))
        if b.shape != (num,):
            raise VIError(f"vi.particles: baseline must return shape ({num},), got {b.shape}.")
        if spans is None:
            for t in ctx.scores[start:]:
                t.baseline = t.baseline + _expand(b, jnp.ndim(t.log_q))
        else:
            for k, (a, e) in enumerate(spans):
                for t in ctx.scores[a:e]:
                    t.baseline = t.baseline + b[k]
    return stacked


def expectation(fn: Callable[[], Any], num_samples: int = 1) -> Any:
    """The mean of ``fn()`` over `num_samples` independent runs (unbiased for E[fn()]).

    Example:
        >>> vi.expectation(lambda: log_weight(vi.sample(guide, x)), num_samples=4)
    """
    return jnp.mean(particles(num_samples, fn), axis=0)


# ---------------------------------------------------------------------------------------------
# objectives


def _freeze_strategies(strategies: Mapping[str, str] | None) -> dict:
    out = dict(strategies or {})
    for k, v in out.items():
        if v not in STRATEGIES:
            raise VIError(f"strategy for site {k!r}: unknown {v!r}; expected one of {STRATEGIES}.")
    return out


class Objective:
    """An objective program: L(φ) = E[F] for the scalar F that `fn` returns.

    Methods (``uparams`` are the unconstrained parameters, address -> array):

    * :meth:`init_params` -- initial unconstrained parameters of every ``ppl.param`` site.
    * :meth:`estimate` -- an unbiased estimate of L (enum sites summed exactly).
    * :meth:`surrogate` -- ``(s, value)`` with E[∇s] = ∇L and value an estimate of L.
    * :meth:`grad` -- ``(value, ∇s)``: an unbiased estimate of ∇L w.r.t. ``uparams``.
    * :meth:`with_strategies` -- the same objective with per-address gradient strategies.
    * :meth:`constrain` -- constrained values of unconstrained parameters.

    Example:
        >>> obj = vi.elbo(model, guide)
        >>> u = obj.init_params(jax.random.key(0), x)
        >>> value, g = obj.grad(jax.random.key(1), u, x)
    """

    def __init__(self, fn: Callable, strategies: Mapping[str, str] | None = None, name: str | None = None):
        self.fn = fn
        self.strategies = _freeze_strategies(strategies)
        self.name = name or getattr(fn, "__name__", "objective")
        self.constraints: dict[str, Any] = {}

    def __repr__(self) -> str:
        s = f", strategies={self.strategies}" if self.strategies else ""
        return f"<vi.Objective {self.name}{s}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Inside another objective, run this one's program (objectives compose)."""
        _current(self.name)
        return self.fn(*args, **kwargs)

    def with_strategies(self, strategies: Mapping[str, str]) -> "Objective":
        """A copy whose sites at the given addresses use the given strategies."""
        out = Objective(self.fn, {**self.strategies, **_freeze_strategies(strategies)}, self.name)
        out.constraints = self.constraints
        return out

    # -- parameters -----------------------------------------------------------------------------

    def init_params(self, key: Any, *args: Any, **kwargs: Any) -> dict:
        """Initial unconstrained parameters ``biject_to(constraint).inv(init)`` of every param site."""
        ctx = _Ctx("init", key, {}, self.strategies)
        ctx.call(self.fn, args, kwargs)
        out = {}
        for name, (value, constraint) in ctx.params_seen.items():
            self.constraints[name] = constraint
            out[name] = biject_to(constraint).inv(jnp.asarray(value))
        return out

    def constrain(self, uparams: Mapping[str, Any]) -> dict:
        """address -> constrained value ``biject_to(constraint)(u)``."""
        return {k: biject_to(self.constraints.get(k, dist.constraints.real))(v) for k, v in uparams.items()}

    def unconstrain(self, params: Mapping[str, Any]) -> dict:
        """address -> unconstrained value of constrained parameters."""
        return {k: biject_to(self.constraints.get(k, dist.constraints.real)).inv(jnp.asarray(v)) for k, v in params.items()}

    # -- estimators -----------------------------------------------------------------------------

    def _first_pass(self, key: Any, uparams: Mapping[str, Any], args: tuple, kwargs: dict) -> list[_Ctx]:
        """Run the program once per joint value of its enum sites; then the MVD branch runs."""
        u0 = jax.tree_util.tree_map(sg, dict(uparams))
        walker = _EnumWalker()
        paths: list[_Ctx] = []
        while True:
            ctx = _Ctx("sample", key, u0, self.strategies, walker=walker)
            if paths:  # replay the choices made before the enum site that changed
                ctx.prev = paths[-1].records
                ctx.prev_mvd = {t.site: t for t in paths[-1].mvd}
                ctx.shared = walker.nodes[-1][2]
            ctx.value = ctx.call(self.fn, args, kwargs)
            paths.append(ctx)
            if not walker.advance():
                break
        memo: dict = {}
        for ctx in paths:
            for term in ctx.mvd:
                rec = ctx.records[term.site]
                rec["mvd_alts"] = term.alts
                tag = (term.site, term.prefix)
                if tag in memo:  # same prefix of enum values: the same branch runs
                    rec["mvd_signals"] = memo[tag]
                    continue
                # q⁻ = q uses the value of E[F | prefix]: the weighted runs sharing the prefix
                same = [p for p in paths if any(t.site == term.site and t.prefix == term.prefix for t in p.mvd)]
                logw0 = sum(ctx.enum_logq[: len(term.prefix)], jnp.zeros(()))
                base = sum(
                    (jnp.exp(sum(p.enum_logq, jnp.zeros(())) - logw0) * p.value for p in same), jnp.zeros(())
                )
                signals = []
                for _, _, c, vp, vm in term.alts:
                    f_plus = self._branch_value(key, u0, ctx.records, term.site, vp, args, kwargs)
                    if vm is None:
                        f_minus = base
                    else:
                        f_minus = self._branch_value(key, u0, ctx.records, term.site, vm, args, kwargs)
                    signals.append(c * (f_plus - f_minus))
                rec["mvd_signals"] = memo[tag] = signals
        return paths

    def _branch_value(self, key, u0, records, site, value, args, kwargs):
        """E[F | the record up to `site`, site = value]: fresh draws after it, enum sites summed."""
        walker = _EnumWalker()
        total = jnp.zeros(())
        while True:
            b = _Ctx("branch", key, u0, self.strategies, walker=walker, replay=records, override=(site, value))
            F = b.call(self.fn, args, kwargs)
            total = total + jnp.exp(sum(b.enum_logq, jnp.zeros(()))) * F
            if not walker.advance():
                break
        return total

    def estimate(self, key: Any, uparams: Mapping[str, Any], *args: Any, **kwargs: Any) -> jax.Array:
        """An unbiased estimate of L = E[F]: one run per joint value of the enum sites, weighted."""
        paths = self._first_pass(key, uparams, args, kwargs)
        return _combine_values(paths)

    def _surrogate_parts(self, key: Any, uparams: Mapping[str, Any], args: tuple, kwargs: dict):
        """(surrogate, value, score sum) of one evaluation (see docs/design/vi.md)."""
        if not requires_eager():
            try:
                return self._one_pass(key, uparams, args, kwargs)
            except _NeedsTwoPasses:
                pass
        paths = self._first_pass(key, uparams, args, kwargs)
        total, value, score_total = 0.0, 0.0, 0.0
        for p in paths:
            g = _Ctx("grad", key, uparams, self.strategies, replay=p.records)
            F = g.call(self.fn, args, kwargs)
            S = sum((jnp.sum(t.log_q - sg(t.log_q)) for t in g.scores), jnp.zeros(()))
            B = sum((jnp.sum(sg(t.baseline) * (t.log_q - sg(t.log_q))) for t in g.scores), jnp.zeros(()))
            M = jnp.zeros(())
            for term in g.mvd:
                for (param, idx, _, _, _), sig in zip(term.alts, term.signals):
                    th = term.theta[param][idx]
                    M = M + (th - sg(th)) * sg(sig)
            surr = F + sg(F) * S - B + M
            logw = sum(g.enum_logq, jnp.zeros(()))
            w = jnp.exp(logw)
            total = total + (w - sg(w)) * sg(F) + sg(w) * surr
            value = value + sg(w) * sg(F)
            score_total = score_total + sg(w) * S
        return total, value, score_total

    def _one_pass(self, key: Any, uparams: Mapping[str, Any], args: tuple, kwargs: dict):
        """The surrogate of a program without enum / MVD sites in one pass (same value and
        gradient as the two passes, from the same draws; see docs/design/vi.md)."""
        g = _Ctx("direct", key, uparams, self.strategies)
        F = g.call(self.fn, args, kwargs)
        S = sum((jnp.sum(t.log_q - sg(t.log_q)) for t in g.scores), jnp.zeros(()))
        B = sum((jnp.sum(sg(t.baseline) * (t.log_q - sg(t.log_q))) for t in g.scores), jnp.zeros(()))
        return F + sg(F) * S - B, sg(F), S

    def surrogate(
        self,
        key: Any,
        uparams: Mapping[str, Any],
        *args: Any,
        num_samples: int = 1,
        baseline: str | None = None,
        **kwargs: Any,
    ) -> tuple[jax.Array, jax.Array]:
        """``(s, value)``: E[∇s] = ∇L, and value = the mean of `num_samples` estimates of L.

        With ``baseline="loo"`` (and ``num_samples ≥ 2``) the score terms of evaluation m use
        the mean value of the *other* evaluations as their baseline (leave-one-out, unbiased).
        """
        if baseline not in (None, "loo"):
            raise VIError(f"baseline must be None or 'loo', got {baseline!r}.")
        if baseline == "loo" and num_samples < 2:
            raise VIError("baseline='loo' needs num_samples >= 2.")
        keys = jax.random.split(key, num_samples)
        if num_samples == 1:
            s, v, _ = self._surrogate_parts(keys[0], uparams, args, kwargs)
            return s, v
        if requires_eager():
            parts = [self._surrogate_parts(k, uparams, args, kwargs) for k in keys]
            s, v, S = (jnp.stack(x) for x in zip(*parts))
        else:
            s, v, S = jax.vmap(lambda k: self._surrogate_parts(k, uparams, args, kwargs))(keys)
        if baseline == "loo":
            c = (jnp.sum(v) - v) / (num_samples - 1)
            s = s - sg(c) * S
        return jnp.mean(s), jnp.mean(v)

    def grad(self, key: Any, uparams: Mapping[str, Any], *args: Any, num_samples: int = 1, baseline: str | None = None, **kwargs: Any):
        """``(value, gradient)``: an unbiased estimate of ∇L w.r.t. the unconstrained parameters.

        Example:
            >>> value, g = vi.elbo(model, guide).grad(jax.random.key(0), u, x)
        """

        def f(u):
            s, v = self.surrogate(key, u, *args, num_samples=num_samples, baseline=baseline, **kwargs)
            return s, v

        g, v = jax.grad(f, has_aux=True)(dict(uparams))
        return v, g


def _combine_values(paths: list[_Ctx]) -> jax.Array:
    total = jnp.zeros(())
    for p in paths:
        total = total + jnp.exp(sum(p.enum_logq, jnp.zeros(()))) * p.value
    return total


def objective(fn: Callable | None = None, *, strategies: Mapping[str, str] | None = None, name: str | None = None):
    """Decorator: an :class:`Objective` from a program using :func:`sample` and friends.

    Example:
        >>> @vi.objective
        ... def iwae5(x):
        ...     lw = vi.particles(5, lambda: (lambda tr: model.log_density(tr.choices, x)
        ...                                   - tr.log_density)(vi.sample(guide, x)))
        ...     return jax.nn.logsumexp(lw) - jnp.log(5.0)
    """
    if fn is None:
        return lambda f: Objective(f, strategies, name)
    return Objective(fn, strategies, name)
