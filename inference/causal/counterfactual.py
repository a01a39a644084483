"""Counterfactuals by the twin network: shared exogenous noise, one world intervened.

A structural causal model (SCM) is written as a model whose randomness is *exogenous noise*:
sample sites marked ``infer={"exogenous": True}`` (or listed in ``exogenous=[...]``), with
the endogenous variables computed from them (``ppl.deterministic`` sites, or sample sites of
their own).  The counterfactual "had X been x, what would Y have been, given that we saw e?" is
Pearl's three steps:

1. *abduction*: the posterior P(U | e) over the exogenous noise given the factual evidence;
2. *action*: ``do(X = x)``;
3. *prediction*: the law of Y in the intervened model, with U drawn from that posterior.

The twin network computes all three at once: the model runs twice, a *factual* world and a
*counterfactual* world intervened on X, sharing the exogenous sites (and every latent site that
is not downstream of X, whose value the intervention cannot change); the evidence is a
constraint on the factual world and Y is read off the counterfactual one.  Latent sample sites
downstream of X that are not exogenous get independent draws in each world (their noise is not
shared: write it out as an exogenous site to share it).  For finite models the result is exact:
every latent site of the twin is enumerated (one ``vmap`` over the grid of their values).

Example:
    >>> @ppl.model
    ... def firing_squad():
    ...     order = ppl.sample("order", dist.Bernoulli(0.6), infer={"exogenous": True})
    ...     nerves = ppl.sample("nerves", dist.Bernoulli(0.1), infer={"exogenous": True})
    ...     a = ppl.deterministic("a", order | nerves)   # rifleman A fires
    ...     b = ppl.deterministic("b", order)            # rifleman B fires
    ...     ppl.deterministic("dead", a | b)
    >>> cf = causal.counterfactual(firing_squad, evidence={"dead": 1}, do={"a": 0}, query="dead")
    >>> round(float(cf.table[1]), 4)   # P(dead_{a=0} = 1 | dead = 1) = 0.6 / (0.6 + 0.4 * 0.1)
    0.9375
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.core import Messenger
from ppl.errors import AddressError, ModelError, nearest
from ppl.handlers import scope

from .joint import Joint

__all__ = ["counterfactual", "abduction", "twin", "exogenous_sites"]

FACTUAL = "factual"
COUNTERFACTUAL = "counterfactual"
MAX_GRID = 1 << 20


def exogenous_sites(model: Any, *args: Any, exogenous: Sequence[str] | None = None, **kwargs: Any) -> tuple:
    """The exogenous sites of `model`: `exogenous` if given (checked), else the sample sites
    marked ``infer={"exogenous": True}``, in execution order.

    Example:
        >>> from inference.causal.examples import firing_squad
        >>> causal.exogenous_sites(firing_squad)
        ('order', 'nerves')
    """
    sites = ppl.as_model(model).trace_sites(jax.random.key(0), *args, **kwargs)
    return _exogenous(sites, exogenous)


def _exogenous(sites: Mapping[str, dict], exogenous: Sequence[str] | None) -> tuple:
    samples = [n for n, s in sites.items() if s["type"] == "sample"]
    if exogenous is None:
        out = tuple(n for n in samples if (sites[n].get("infer") or {}).get("exogenous"))
        if not out:
            raise ModelError(
                "counterfactuals need exogenous noise: mark the noise sites with "
                "ppl.sample(name, d, infer={'exogenous': True}) or pass exogenous=[...]."
            )
        return out
    exogenous = [exogenous] if isinstance(exogenous, str) else list(exogenous)
    for n in exogenous:
        if n not in sites:
            raise AddressError(f"exogenous site {n!r} is not a site of the model{nearest(n, sites)}.")
        if sites[n]["type"] != "sample" or sites[n]["is_observed"]:
            raise ModelError(f"exogenous site {n!r} must be a latent sample site; it is {sites[n]['type']}.")
    return tuple(n for n in samples if n in exogenous)


# ---------------------------------------------------------------------------------------------
# the twin program


class _Share(Messenger):
    """In the counterfactual world: a shared sample site takes its factual value and is not a
    new site (hidden from every handler outside, so its wires come from the factual site).

    A Messenger, not ``ppl.substitute``: besides providing the value it stops the message, so
    no recorder outside sees a second random choice.
    """

    def __init__(self, values: Mapping[str, Any], names: set):
        super().__init__()
        self.values = values
        self.names = set(names)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] in self.names and not msg["intervened"]:
            msg["value"] = self.values[msg["name"]]
            msg["stop"] = True


class _Values(Messenger):
    """Record every sample/deterministic value, by its address inside the world's scope.

    A recorder (it provides no value): it reads the values after every handler has run, so the
    counterfactual world can be given the factual world's values of the same run.
    """

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix + "/"
        self.values: dict = {}

    def postprocess_message(self, msg: dict) -> None:
        if msg["type"] in ("sample", "deterministic"):
            name = msg["name"]
            self.values[name[len(self.prefix):] if name.startswith(self.prefix) else name] = msg["value"]


def twin(model: Any, do: Mapping[str, Any], *args: Any, exogenous: Sequence[str] | None = None, **kwargs: Any) -> ppl.Model:
    """The twin network of `model` under `do`: one program running both worlds.

    Sites of the factual world are named ``"factual/<site>"``, those of the counterfactual
    world (the model under ``ppl.do(model, do)``) ``"counterfactual/<site>"``.  The exogenous
    sites, and every latent sample site that is not a descendant of an intervened site in the
    model's diagram, are shared: in the counterfactual world they take the factual value and
    are not new random choices.  Its measure is the joint law of the two worlds; simulating it
    draws counterfactual pairs (for any model, finite or not).

    Example:
        >>> from inference.causal.examples import firing_squad
        >>> tw = causal.twin(firing_squad, {"a": 0})
        >>> tw.shared
        ('order', 'nerves')
        >>> tr = tw.simulate(jax.random.key(0))
        >>> bool(tr["counterfactual/dead"] <= tr["factual/dead"])   # A not firing cannot add a death
        True
    """
    from .diagram import diagram

    base = ppl.as_model(model)
    do = dict(do)
    sites = base.trace_sites(jax.random.key(0), *args, **kwargs)
    for n in do:
        if n not in sites or sites[n]["type"] not in ("sample", "deterministic"):
            raise AddressError(f"twin: do names {n!r}, which is not a sample or deterministic site{nearest(n, sites)}.")
    for n, s in sites.items():
        if s["type"] == "sample" and s["is_observed"]:
            raise ModelError(
                f"twin: site {n!r} is observed in the model; pass factual observations as "
                "evidence={...} instead (in the counterfactual world they are unknown)."
            )
    exo = _exogenous(sites, exogenous)
    d = diagram(base, *args, **kwargs)
    downstream = set()
    for n in do:
        downstream |= d.descendants(n) | {n}
    shared = set(exo) | {
        n for n, s in sites.items() if s["type"] == "sample" and not s["intervened"] and n not in downstream
    }
    shared -= set(do)
    intervened = ppl.do(base, do)

    def twin_fn(*a: Any, **k: Any) -> Any:
        rec = _Values(FACTUAL)
        with scope(prefix=FACTUAL), rec:
            base.fn(*a, **k)
        with scope(prefix=COUNTERFACTUAL), _Share(rec.values, shared):
            return intervened.fn(*a, **k)

    out = ppl.Model(twin_fn, name=f"twin({base.name})")
    out.shared = tuple(n for n in sites if n in shared)
    out.exogenous = exo
    return out


# ---------------------------------------------------------------------------------------------
# exact enumeration


def _enumerate(model: ppl.Model, args: tuple, kwargs: dict, read: Sequence[str]) -> tuple[np.ndarray, dict]:
    """Every assignment of the latent sample sites of `model`: (weights, values of `read`),
    flat; the joint is :func:`semantics.enumerate_table`'s."""
    from semantics.tables import enumerate_table

    sites = model.trace_sites(jax.random.key(0), *args, **kwargs)
    for n in read:
        if n not in sites or sites[n]["type"] not in ("sample", "deterministic"):
            raise AddressError(f"no sample or deterministic site {n!r}{nearest(n, sites)}.")
        if np.ndim(sites[n]["value"]) != 0:
            raise ModelError(f"site {n!r} has shape {np.shape(sites[n]['value'])}; counterfactual queries read scalar sites.")
    t = enumerate_table(
        model, *args, read=read, max_size=MAX_GRID, what="exact counterfactuals (simulate causal.twin(...) otherwise)", **kwargs
    )
    w = np.exp(np.asarray(t.log_weight, dtype=np.float64)).reshape(-1)
    return w, {k: np.asarray(v).reshape(-1) for k, v in t.values.items()}


def _matches(values: np.ndarray, target: Any) -> np.ndarray:
    t = np.asarray(target)
    if np.issubdtype(values.dtype, np.floating) or np.issubdtype(t.dtype, np.floating):
        return np.isclose(values.astype(np.float64), t.astype(np.float64), rtol=0, atol=1e-9)
    return values == t


def _distribution(w: np.ndarray, vals: dict, names: Sequence[str], labels: Sequence[str]) -> Joint:
    sups, idx = [], []
    for n in names:
        u, inv = np.unique(vals[n], return_inverse=True)
        sups.append(tuple(v.item() for v in u))
        idx.append(inv.reshape(-1))
    table = np.zeros(tuple(len(s) for s in sups))
    np.add.at(table, tuple(idx), w)
    return Joint(tuple(labels), tuple(sups), jnp.asarray(table / table.sum()))


def _evidence_weights(w: np.ndarray, vals: dict, evidence: Mapping[str, Any], keys: Mapping[str, str]) -> np.ndarray:
    for n, v in evidence.items():
        w = w * _matches(vals[keys[n]], v)
    if not w.sum() > 0:
        raise ModelError(f"the evidence {dict(evidence)} has probability zero under the model.")
    return w


def abduction(model: Any, *args: Any, evidence: Mapping[str, Any], exogenous: Sequence[str] | None = None, **kwargs: Any) -> Joint:
    """Step 1 of a counterfactual: the exact posterior P(U | evidence) over the exogenous sites.

    `evidence` maps sample or deterministic sites to observed values.  Every latent site must
    be a finite scalar; the result is a normalised :class:`Joint` over the exogenous sites.

    Example:
        >>> from inference.causal.examples import firing_squad
        >>> post = causal.abduction(firing_squad, evidence={"dead": 1})
        >>> [round(float(p), 4) for p in post.marginal(["order"]).table]   # P(order = 1 | dead) = 0.6 / 0.64
        [0.0625, 0.9375]
    """
    base = ppl.as_model(model)
    sites = base.trace_sites(jax.random.key(0), *args, **kwargs)
    exo = _exogenous(sites, exogenous)
    evidence = dict(evidence)
    w, vals = _enumerate(base, args, kwargs, list(dict.fromkeys(list(exo) + list(evidence))))
    w = _evidence_weights(w, vals, evidence, {n: n for n in evidence})
    return _distribution(w, vals, exo, exo)


def counterfactual(
    model: Any,
    *args: Any,
    evidence: Mapping[str, Any],
    do: Mapping[str, Any],
    query: str | Sequence[str],
    exogenous: Sequence[str] | None = None,
    **kwargs: Any,
) -> Joint:
    """P(query_{do} | evidence): the counterfactual law of `query` had `do` been set, given that
    `evidence` was observed in the factual world — exactly, by enumerating the twin network.

    `evidence` and `query` name sample or deterministic sites of `model` (scalars); a query
    name ``"factual/<site>"`` reads the factual world instead (for joint queries such as the
    probability of necessity).  Abduction, action and prediction are done at once: the twin
    (:func:`twin`) is enumerated over every latent value, weighted by its density and the
    evidence, and the query is read off the counterfactual world.  Returns a normalised
    :class:`Joint` over the query sites (supports: the values they take).

    With no evidence this is the interventional law P(query | do); with ``do`` setting a site
    to the value it has in the evidence, it is the factual posterior P(query | evidence).

    Example:
        >>> from inference.causal.examples import firing_squad
        >>> cf = causal.counterfactual(firing_squad, evidence={"dead": 1}, do={"a": 0}, query="dead")
        >>> round(float(cf.table[1]), 4)  # would the prisoner be dead had A not fired?
        0.9375
    """
    queries = [query] if isinstance(query, str) else list(query)
    evidence = dict(evidence)
    tw = twin(model, do, *args, exogenous=exogenous, **kwargs)
    keys = {n: f"{FACTUAL}/{n}" for n in evidence}
    # a shared site has one value in both worlds: read it from the factual one
    qkeys = [
        q if q.startswith(FACTUAL + "/") else f"{FACTUAL if q in tw.shared else COUNTERFACTUAL}/{q}" for q in queries
    ]
    for q in queries:
        if q in do:
            raise ModelError(f"counterfactual: the query {q!r} is intervened on (its value is {do[q]!r}).")
    w, vals = _enumerate(tw, args, kwargs, list(dict.fromkeys(list(keys.values()) + qkeys)))
    w = _evidence_weights(w, vals, evidence, keys)
    return _distribution(w, vals, qkeys, queries)
