"""Gradient estimators per random choice: strategies as objects, registered by name.

A *strategy* knows, for one latent site z ~ q_φ of a guide run inside an objective, how to
draw its value and how to build its surrogate term (GenJAX's ADEV is the model).  The estimator
(:mod:`.estimator`) runs the objective program in passes (:mod:`.program`); at each site the
pass calls one method of the site's strategy:

* :meth:`Strategy.draw` -- first pass: draw a value, record in ``rec`` what replays it;
* :meth:`Strategy.replay` -- gradient pass: the recorded value with differentiable parameters,
  and the site's surrogate terms (:mod:`.terms`) added to the run;
* :meth:`Strategy.one_pass` -- both at once, for programs without re-running strategies;
* :meth:`Strategy.value_of` / :meth:`Strategy.prefix` / :meth:`Strategy.fresh` -- value-only
  draws of the runs that re-run the program (shared prefixes, branches).

Built in: :data:`REPARAM`, :data:`REINFORCE`, :data:`ENUM`, :data:`MVD` (what each is unbiased
for: ``inference/vi/core.py``'s docstring).  Users name strategies per site
(``strategies={"z": "enum"}`` or ``infer={"grad": "enum"}``) or pass a :class:`Strategy`
object; :func:`register_strategy` adds a name.  Dispatch on distributions is by NumPyro class.

Example:
    >>> class HalfBaseline(vi.Reinforce):
    ...     '''REINFORCE whose learning signal is F − 0.5 (any constant keeps it unbiased).'''
    ...     def baseline(self, run):
    ...         return run.baseline + 0.5
    >>> s = vi.register_strategy("reinforce-half", HalfBaseline("reinforce-half"), replace=True)
    >>> vi.registered_strategies()["reinforce-half"] is s
    True
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions.distribution import ExpandedDistribution, Independent, MaskedDistribution

from ppl.errors import ArgumentError
from ppl.randomness import draw, requires_eager

from . import reparam as _rp
from .terms import VIError, _MVDTerm, _NeedsTwoPasses, _Score

__all__ = [
    "STRATEGIES",
    "Strategy",
    "Reparam",
    "Reinforce",
    "Enumerate",
    "MeasureValued",
    "REPARAM",
    "REINFORCE",
    "ENUM",
    "MVD",
    "register_strategy",
    "registered_strategies",
]

#: the names of the built-in strategies
STRATEGIES = ("reparam", "reinforce", "enum", "mvd")
MAX_ENUM_ALTERNATIVES = 4096
MAX_MVD_ELEMENTS = 64

sg = jax.lax.stop_gradient


@dataclass
class Choice:
    """One latent site met by a pass: address, distribution, the message's ``infer`` dict, its
    position among the run's choices, and the key the run split off for it."""

    name: str
    distribution: Any
    infer: Mapping
    index: int
    key: Any


def _shape(d: Any) -> tuple:
    return tuple(d.batch_shape) + tuple(d.event_shape)


class Strategy:
    """A gradient estimator for one random choice (see the module docstring for the protocol).

    Subclass and override the methods; ``run`` is the running pass (:mod:`.program`), whose
    ``scores``, ``mvd`` and ``enum_logq`` lists collect surrogate terms and whose ``baseline``
    is the baseline given to the enclosing ``vi.sample``.  The base class draws plainly and
    contributes no term (its gradient through the value alone).

    Attributes:
        name: the name records carry (the first and gradient passes must agree on it).
        reruns: True when the strategy re-runs the program per value (two passes, no vmap).
        detachable: False when a detached draw still uses this strategy (enum: summed exactly).
    """

    name: str = "strategy"
    reruns: bool = False
    detachable: bool = True

    def __init__(self, name: str | None = None):
        if name is not None:
            self.name = name

    def __repr__(self) -> str:
        return f"<vi.Strategy {self.name}>"

    def check(self, name: str, d: Any) -> None:
        """Raise :class:`VIError` naming site `name` when this strategy cannot estimate `d`."""

    def draw(self, run: Any, c: Choice, rec: dict) -> Any:
        """First pass: the site's value (no gradients needed); fill `rec` to replay it."""
        value = draw(c.key, c.distribution, (), c.name)
        rec["value"] = value
        return value

    def value_of(self, rec: dict, d: Any) -> Any:
        """The value recorded in `rec` (value-only)."""
        return rec["value"]

    def prefix(self, run: Any, c: Choice, rec: dict) -> Any:
        """First pass, in the prefix shared with the previous run: the recorded value."""
        return self.value_of(rec, c.distribution)

    def fresh(self, run: Any, c: Choice) -> Any:
        """A value-only branch run, after its override: a fresh draw."""
        return draw(c.key, c.distribution, (), c.name)

    def replay(self, run: Any, c: Choice, rec: dict) -> Any:
        """Gradient pass: the recorded value, differentiable, and the site's surrogate terms."""
        return sg(rec["value"])

    def one_pass(self, run: Any, c: Choice) -> Any:
        """Draw and differentiate at once (the same draw as :meth:`draw` then :meth:`replay`)."""
        raise _NeedsTwoPasses(c.name)

    def finish(self, paths: list, branch_value: Any) -> None:
        """After the first pass: complete the records of `paths` (the runs of the program, one
        per joint enum value) that the gradient pass needs; ``branch_value(records, site,
        value)`` is E[F | the record up to `site`, site = value]."""


class Reparam(Strategy):
    """z = T_φ(ε), ε ~ base noise: ∇ E[f(z)] = E[∇ f(T_φ(ε))] (pathwise)."""

    name = "reparam"

    def check(self, name: str, d: Any) -> None:
        if d.support.is_discrete or not d.has_rsample:
            raise VIError(
                f"site {name!r}: {type(d).__name__} cannot be reparameterised; use 'reinforce', "
                "'enum' (finite discrete) or 'mvd'."
            )

    def draw(self, run: Any, c: Choice, rec: dict) -> Any:
        d = c.distribution
        rep = _rp._reparam(d, _shape(d))
        if rep is None:
            if requires_eager():
                raise VIError(
                    f"site {c.name!r}: a reparameterised draw from {type(d).__name__} cannot run "
                    "under an interpreter (only Normal-family, Uniform and Exponential sites "
                    "can); use strategy 'reinforce' there."
                )
            rec["key"] = c.key
            return d.sample(c.key)
        noise, f = rep
        eps = draw(c.key, noise, (), c.name) if noise is not None else None
        rec["noise"] = eps
        return f(eps)

    def value_of(self, rec: dict, d: Any) -> Any:
        if "key" in rec:
            return d.sample(rec["key"])
        return _rp._reparam(d, _shape(d))[1](rec["noise"])

    def replay(self, run: Any, c: Choice, rec: dict) -> Any:
        return self.value_of(rec, c.distribution)

    def one_pass(self, run: Any, c: Choice) -> Any:
        d = c.distribution
        rep = _rp._reparam(d, _shape(d))
        if rep is None:
            return d.sample(c.key)
        noise, f = rep
        return f(draw(c.key, noise, (), c.name) if noise is not None else None)


def _score_term(d: Any, value: Any, site: Any) -> Any:
    """log q(z) of a score-function site (summed over its elements), with gradients."""
    return jnp.sum(d.log_prob(value))


class Reinforce(Strategy):
    """Score function: ∇ E[f(z)] = E[∇f(z) + (f(z) − b) ∇ log q_φ(z)], b independent of z.

    The learning signal is the whole objective value F of the run; :meth:`baseline` gives b
    (by default the baseline of the enclosing ``vi.sample``; VIMCO's particle baselines are
    added later).  Override it for another baseline independent of the site's value."""

    name = "reinforce"

    def check(self, name: str, d: Any) -> None:
        if isinstance(_leaf(d), dist.Delta):  # issue 19: its score is not ∇ log q of a draw
            raise VIError(
                f"site {name!r}: a point mass (dist.Delta, e.g. a site of vi.auto_multivariate_normal, "
                "auto_low_rank_normal or auto_flow, whose value is computed from an auxiliary draw) "
                "cannot take 'reinforce'; its gradient is pathwise ('reparam'). Put the strategy on "
                "the auxiliary site the value comes from (its address starts with '_aux/')."
            )

    def baseline(self, run: Any) -> Any:
        """The baseline b of this site's score term (independent of the site's value)."""
        return run.baseline

    def replay(self, run: Any, c: Choice, rec: dict) -> Any:
        value = sg(rec["value"])
        run.scores.append(_Score(_score_term(c.distribution, value, c), self.baseline(run)))
        return value

    def one_pass(self, run: Any, c: Choice) -> Any:
        d = c.distribution
        value = sg(draw(c.key, jax.tree_util.tree_map(sg, d), (), c.name))
        run.scores.append(_Score(_score_term(d, value, c), self.baseline(run)))
        return value


class _Detach(Strategy):
    """A detached draw (``vi.sample(..., detach=True)``): a constant value, no term."""

    name = "detach"

    def one_pass(self, run: Any, c: Choice) -> Any:
        return sg(draw(c.key, jax.tree_util.tree_map(sg, c.distribution), (), c.name))


# ---------------------------------------------------------------------------------------------
# enumeration


_WRAPPERS = (Independent, ExpandedDistribution, MaskedDistribution)


def _leaf(d: Any) -> Any:
    while type(d) in _WRAPPERS:
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


class _EnumWalker:
    """Walks the joint supports of the enum sites of a run, depth first (fixed structure)."""

    def __init__(self) -> None:
        self.nodes: list[list] = []  # [alternatives, index, site]
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


class Enumerate(Strategy):
    """Exact: ∇ Σ_v q_φ(v) E[f | v] = Σ_v ∇(q_φ(v) E[f | v]); the program re-runs per value of
    the (finite) support, each run weighted by q_φ(v) (a path weight)."""

    name = "enum"
    reruns = True
    detachable = False  # detached enum sites are still summed exactly

    def check(self, name: str, d: Any) -> None:
        if not d.support.is_discrete:
            raise VIError(f"site {name!r}: 'enum' needs a finite discrete distribution, got {type(d).__name__}.")

    def _walk(self, run: Any, c: Choice, site: int = -1) -> Any:
        value = run.walker.value(c.name, c.distribution, site)
        run.enum_logq.append(jnp.sum(c.distribution.log_prob(value)))
        return value

    def draw(self, run: Any, c: Choice, rec: dict) -> Any:
        value = self._walk(run, c, c.index)
        rec["value"] = value
        return value

    def prefix(self, run: Any, c: Choice, rec: dict) -> Any:
        return self._walk(run, c, c.index)

    def fresh(self, run: Any, c: Choice) -> Any:  # value-only runs still sum enum sites exactly
        return self._walk(run, c)

    def replay(self, run: Any, c: Choice, rec: dict) -> Any:
        value = rec["value"]
        run.enum_logq.append(jnp.sum(c.distribution.log_prob(value)))
        return value


# ---------------------------------------------------------------------------------------------
# measure-valued derivatives

_BERNOULLI = (dist.BernoulliProbs, dist.BernoulliLogits)
_CATEGORICAL = (dist.CategoricalProbs, dist.CategoricalLogits)


def _mvd_params(d: Any) -> dict:
    """The parameters that the weak derivatives of `d` are taken with respect to, broadcast."""
    leaf = _leaf(d)
    V = _shape(d)
    if isinstance(leaf, _BERNOULLI):
        return {"probs": jnp.broadcast_to(leaf.probs, V)}
    if isinstance(leaf, _CATEGORICAL):
        return {"probs": jnp.broadcast_to(leaf.probs, V + leaf.probs.shape[-1:])}
    if type(leaf) is dist.Normal:
        return {"loc": jnp.broadcast_to(leaf.loc, V), "scale": jnp.broadcast_to(leaf.scale, V)}
    if isinstance(leaf, dist.Delta):  # a joint autoguide's site: its value comes from an auxiliary draw
        raise VIError(
            "'mvd' got a point mass (dist.Delta, e.g. a site of vi.auto_multivariate_normal, "
            "auto_low_rank_normal or auto_flow); its gradient is pathwise ('reparam'). Put a "
            "score-function strategy on the auxiliary site the value comes from (address '_aux/...')."
        )
    raise VIError(
        f"'mvd' supports Bernoulli, Categorical and Normal sites, got {type(leaf).__name__}; use "
        "'reinforce' (or 'reparam' for continuous sites)."
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
    V = _shape(d)
    n = int(np.prod(V)) if V else 1
    if n > MAX_MVD_ELEMENTS:
        raise VIError(f"site {name!r}: 'mvd' re-runs the objective per element; {n} elements is too many.")
    alts = []
    for idx in np.ndindex(*V) if V else [()]:
        if isinstance(leaf, _BERNOULLI):
            one = jnp.ones((), value.dtype)
            alts.append(("probs", idx, 1.0, value.at[idx].set(one), value.at[idx].set(0 * one)))
        elif isinstance(leaf, _CATEGORICAL):
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


class MeasureValued(Strategy):
    """Measure-valued derivative: ∂_θ E_q[f] = c_θ (E_{q⁺}[f] − E_{q⁻}[f]) by the weak
    derivative decomposition, for Bernoulli, Categorical and Normal sites; the rest of the
    program is re-run (value only) with the site set to draws of q⁺ and q⁻."""

    name = "mvd"
    reruns = True

    def draw(self, run: Any, c: Choice, rec: dict) -> Any:
        value = super().draw(run, c, rec)
        k2 = jax.random.fold_in(c.key, 1)
        term = _MVDTerm(c.index, c.name, _mvd_alternatives(c.name, c.distribution, value, k2))
        # the enum values chosen so far: runs that share them share this site's branches
        term.prefix = tuple(n[1] for n in run.walker.nodes[: run.walker.pos])
        run.mvd.append(term)
        return value

    def prefix(self, run: Any, c: Choice, rec: dict) -> Any:
        run.mvd.append(run.prev_mvd[c.index])
        return self.value_of(rec, c.distribution)

    def replay(self, run: Any, c: Choice, rec: dict) -> Any:
        value = sg(rec["value"])
        term = _MVDTerm(c.index, c.name, rec["mvd_alts"], rec["mvd_signals"])
        term.theta = _mvd_params(c.distribution)
        run.mvd.append(term)
        return value

    def finish(self, paths: list, branch_value: Any) -> None:
        """Each MVD site's signals c (E[F | q⁺ branch] − E[F | q⁻ branch]), into its record."""
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
                    f_plus = branch_value(ctx.records, term.site, vp)
                    f_minus = base if vm is None else branch_value(ctx.records, term.site, vm)
                    signals.append(c * (f_plus - f_minus))
                rec["mvd_signals"] = memo[tag] = signals


# ---------------------------------------------------------------------------------------------
# the registry

REPARAM = Reparam()
REINFORCE = Reinforce()
ENUM = Enumerate()
MVD = MeasureValued()
_DETACH = _Detach()

_REGISTRY: dict[str, Strategy] = {s.name: s for s in (REPARAM, REINFORCE, ENUM, MVD)}


def register_strategy(name: str, strategy: Strategy, *, replace: bool = False) -> Strategy:
    """Register `strategy` under `name`, so sites can name it (``strategies={"z": name}`` or
    ``infer={"grad": name}``); returns it.  A name already registered is refused unless
    ``replace=True``; the built-in names cannot be replaced.

    Example:
        >>> s = vi.register_strategy("my-reinforce", vi.Reinforce("my-reinforce"), replace=True)
        >>> vi.registered_strategies()["my-reinforce"] is s
        True
    """
    if not isinstance(name, str) or not name:
        raise ArgumentError(f"vi.register_strategy: name must be a non-empty string, got {name!r}.")
    if not isinstance(strategy, Strategy):
        raise ArgumentError(
            f"vi.register_strategy: strategy must be a vi.Strategy, got {type(strategy).__name__}."
        )
    if name in STRATEGIES or (name in _REGISTRY and not replace):
        raise ArgumentError(
            f"vi.register_strategy: the name {name!r} is already registered"
            + (" (a built-in strategy)." if name in STRATEGIES else "; pass replace=True to replace it.")
        )
    _REGISTRY[name] = strategy
    return strategy


def registered_strategies() -> dict[str, Strategy]:
    """A copy of the registry: name -> strategy, the built-ins first.

    Example:
        >>> list(vi.registered_strategies())[:4]
        ['reparam', 'reinforce', 'enum', 'mvd']
    """
    return dict(_REGISTRY)


def _known() -> tuple:
    return tuple(_REGISTRY)


def _validate(site: str, spec: Any) -> None:
    """Refuse a strategy spec that is neither a registered name nor a :class:`Strategy`."""
    if isinstance(spec, Strategy):
        return
    if not isinstance(spec, str) or spec not in _REGISTRY:
        raise VIError(f"strategy for site {site!r}: unknown {spec!r}; expected one of {_known()} or a vi.Strategy.")


def resolve(name: str, d: Any, given: Any, infer: Mapping | None) -> Strategy:
    """The strategy of site `name` with distribution `d`: `given` (the objective's mapping),
    else the site's ``infer={"grad": ...}``, else reparam for reparameterisable continuous
    sites and reinforce otherwise; checked against `d`."""
    s = given
    if s is None:
        s = (infer or {}).get("grad")
    if s is None:
        s = REPARAM if (not d.support.is_discrete and d.has_rsample) else REINFORCE
    elif not isinstance(s, Strategy):
        if s not in _REGISTRY:
            raise VIError(f"site {name!r}: unknown gradient strategy {s!r}; expected one of {_known()}.")
        s = _REGISTRY[s]
    s.check(name, d)
    return s
