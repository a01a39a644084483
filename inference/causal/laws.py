"""The algebraic laws of surgery and identification, as exact checks on finite models.

Each check returns a ``semantics.laws.LawResult`` (``.ok``, ``.message``; ``.assert_()``
raises).  The surgery under test is a parameter (`surgery_fn`, default :func:`surgery`), so a
planted-bug surgery can be shown to be rejected.

    surgery_commutes           interpret(surgery(diagram(m), i)) = μ(do(m, i)) = truncated factorisation
    cuts_compose               cut a then b = cut b then a = cut a ∪ b   (a, b on different sites)
    cut_idempotent             cutting twice = cutting once
    root_cut_is_conditioning   cutting a root = conditioning on it (for every other variable)
    identification_sound       the estimand on the observational joint = surgery on the full model
    counterfactual_sound       twin network = abduction, action, prediction (three explicit steps)
    counterfactual_consistent  do(X = its observed value) changes nothing: the factual posterior

Example:
    >>> from inference.causal.examples import smoking
    >>> surgery_commutes(smoking, {"smoke": 1}).ok
    True
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

import ppl
from ppl.errors import ArgumentError, ModelError

from .diagram import Diagram, Mechanism, diagram, surgery
from .intervene import intervene
from .interpret import Joint, as_measure, interpret, query

__all__ = [
    "surgery_commutes",
    "cuts_compose",
    "cut_idempotent",
    "root_cut_is_conditioning",
    "identification_sound",
    "joint_distance",
    "counterfactual_sound",
    "counterfactual_consistent",
    "three_step_counterfactual",
]


def _result(law: str, ok: bool, message: str, **details: Any):
    from semantics.laws import LawResult

    return LawResult(law, bool(ok), message, dict(details))


def joint_distance(a: Joint, b: Joint) -> float:
    """max |a - b| over the atoms, relative to max(1, total mass); inf if the variables differ."""
    if set(a.names) != set(b.names) or len(a.names) != len(b.names):
        return float("inf")
    bt = np.asarray(b.marginal(list(a.names)).table)
    at = np.asarray(a.table)
    if at.shape != bt.shape:
        return float("inf")
    return float(np.max(np.abs(at - bt), initial=0.0) / max(1.0, float(np.sum(np.abs(bt)))))


def _program(model: Any, interventions: Mapping[str, Any]) -> ppl.Model:
    hard = {k: v for k, v in interventions.items() if not isinstance(v, Mechanism)}
    soft = {k: v for k, v in interventions.items() if isinstance(v, Mechanism)}
    m = model
    if soft:
        m = intervene(m, soft)
    if hard:
        m = ppl.do(m, hard)
    return m


def surgery_commutes(
    model: Any,
    interventions: Mapping[str, Any],
    *args: Any,
    surgery_fn: Callable = surgery,
    tol: float = 1e-10,
    **kwargs: Any,
):
    """Interpreting the cut diagram gives the measure of the intervened program.

    Compares ``as_measure(surgery_fn(diagram(model), interventions))`` with
    ``semantics.enumerate`` of ``ppl.do(model, hard)`` / :func:`intervene` (soft) and, for hard
    interventions, with ``semantics.laws.surgery_commutes`` (the truncated factorisation of the
    unintervened model).  Soft mechanisms must name their parents.
    """
    import semantics
    from semantics import laws as slaws

    d = diagram(model, *args, **kwargs)
    cut = surgery_fn(d, dict(interventions))
    mu = as_measure(cut) if isinstance(cut, Diagram) else cut
    prog = semantics.enumerate(_program(model, interventions), *args, **kwargs)
    lines = mu.diff(prog, tol)
    if lines:
        return _result("surgery_commutes", False, "the cut diagram differs from the intervened program:\n" + "\n".join(lines))
    if all(not isinstance(v, Mechanism) for v in interventions.values()):
        r = slaws.surgery_commutes(model, dict(interventions), *args, surgery=lambda m, i: mu, tol=tol, **kwargs)
        if not r.ok:
            return r
    return _result("surgery_commutes", True, f"equal on {len(prog)} atoms")


def cuts_compose(d: Diagram, first: Mapping[str, Any], second: Mapping[str, Any], surgery_fn: Callable = surgery, tol: float = 1e-10):
    """Cutting `first` then `second` = `second` then `first` = both at once (disjoint sites)."""
    if set(first) & set(second):
        raise ArgumentError(
            f"cuts_compose: the two cuts must be on different sites; both name {sorted(set(first) & set(second))}."
        )
    both = interpret(surgery(d, {**first, **second}))
    ab = interpret(surgery_fn(surgery_fn(d, first), second))
    ba = interpret(surgery_fn(surgery_fn(d, second), first))
    e1, e2 = joint_distance(ab, both), joint_distance(ba, both)
    ok = e1 <= tol and e2 <= tol
    return _result("cuts_compose", ok, f"|ab - both| = {e1:.3g}, |ba - both| = {e2:.3g}")


def cut_idempotent(d: Diagram, cut: Mapping[str, Any], surgery_fn: Callable = surgery, tol: float = 1e-10):
    """Cutting the same wires twice is cutting them once."""
    once = interpret(surgery_fn(d, cut))
    twice = interpret(surgery_fn(surgery_fn(d, cut), cut))
    e = joint_distance(twice, once)
    return _result("cut_idempotent", e <= tol, f"|twice - once| = {e:.3g}")


def root_cut_is_conditioning(d: Diagram, root: str, value: Any, surgery_fn: Callable = surgery, tol: float = 1e-10):
    """For a box without parents, do(root = v) gives every other variable its law given root = v."""
    if d[root].parents:
        raise ArgumentError(f"root_cut_is_conditioning: root must be a box without parents; {root!r} has parents {d[root].parents}.")
    cut = interpret(surgery_fn(d, {root: value})).normalized()
    cond = interpret(d).condition({root: value})
    e = joint_distance(cut, cond)
    return _result("root_cut_is_conditioning", e <= tol, f"|do - condition| = {e:.3g}")


def identification_sound(d: Diagram, effect_of: str, on: str, observed: Sequence[str], identify_fn: Callable | None = None, tol: float = 1e-10):
    """When `identify_fn` returns an estimand, it evaluates (on the exact observational joint of
    `d` over `observed`) to P(on | do(effect_of)) computed by surgery on the full diagram."""
    from .identify import NotIdentifiable, identify, observational

    identify_fn = identify_fn or identify
    try:
        est = identify_fn(d, effect_of=effect_of, on=on, observed=observed)
    except NotIdentifiable as e:
        return _result("identification_sound", True, f"not identifiable: {e}", identified=False)
    obs = observational(d, observed)
    got = np.asarray(est.evaluate(obs))
    worst = 0.0
    for i, x in enumerate(d[effect_of].support):
        truth = np.asarray(query(d, on, do={effect_of: x}).table)
        worst = max(worst, float(np.max(np.abs(got[i] - truth))))
    return _result(
        "identification_sound", worst <= tol, f"{est.criterion}: max error {worst:.3g}", identified=True, criterion=est.criterion
    )


# ---------------------------------------------------------------------------------------------
# counterfactuals


def three_step_counterfactual(model: Any, evidence: Mapping[str, Any], do: Mapping[str, Any], query: Sequence[str], *args: Any, exogenous: Sequence[str] | None = None, **kwargs: Any) -> dict:
    """Pearl's three steps, spelled out, for a model whose only randomness is exogenous:
    for every value u of the exogenous sites, P(u) and whether u reproduces the evidence
    (abduction) are read from ``ppl.do(model, u)`` -- which fixes all the noise, so every other
    site is a function of u -- and the query from ``ppl.do(model, u | do)`` (action and
    prediction).  Returns {query values: probability}, a reference for :func:`counterfactual`."""
    import itertools

    import jax

    from .counterfactual import _exogenous, _matches
    from semantics.tables import finite_support as _finite_support

    base = ppl.as_model(model)
    sites = base.trace_sites(jax.random.key(0), *args, **kwargs)
    exo = _exogenous(sites, exogenous)
    other = [n for n, s in sites.items() if s["type"] == "sample" and n not in exo]
    if other:
        raise ModelError(f"three_step_counterfactual: every sample site must be exogenous; {other[0]!r} is not.")
    sups = [_finite_support(sites[n]["fn"]) for n in exo]
    out: dict = {}
    total = 0.0
    for u in itertools.product(*sups):
        fix = dict(zip(exo, u))
        fact = ppl.do(base, fix).trace_sites(jax.random.key(0), *args, **kwargs)
        p = float(np.exp(sum(float(sites[n]["fn"].log_prob(v)) for n, v in fix.items())))
        if not all(bool(_matches(np.asarray(fact[n]["value"]), v)) for n, v in evidence.items()):
            continue
        cf = ppl.do(base, {**fix, **dict(do)}).trace_sites(jax.random.key(0), *args, **kwargs)
        key = tuple(np.asarray(cf[q]["value"]).item() for q in query)
        out[key] = out.get(key, 0.0) + p
        total += p
    return {k: v / total for k, v in out.items()}


def _joint_as_dict(j: Joint) -> dict:
    import itertools

    t = np.asarray(j.table)
    return {
        tuple(sup[i] for sup, i in zip(j.supports, idx)): float(t[idx])
        for idx in itertools.product(*[range(len(s)) for s in j.supports])
    }


def _dict_distance(a: dict, b: dict) -> float:
    return max((abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b)), default=0.0)


def counterfactual_sound(model: Any, evidence: Mapping[str, Any], do: Mapping[str, Any], query: Sequence[str], *args: Any, counterfactual_fn: Callable | None = None, exogenous: Sequence[str] | None = None, tol: float = 1e-10, **kwargs: Any):
    """The twin-network counterfactual (`counterfactual_fn`, default :func:`counterfactual`)
    equals :func:`three_step_counterfactual` (abduction, action, prediction by ``ppl.do``)."""
    from .counterfactual import counterfactual

    fn = counterfactual_fn or counterfactual
    query = [query] if isinstance(query, str) else list(query)
    got = _joint_as_dict(fn(model, *args, evidence=evidence, do=do, query=query, exogenous=exogenous, **kwargs))
    want = three_step_counterfactual(model, evidence, do, query, *args, exogenous=exogenous, **kwargs)
    e = _dict_distance(got, want)
    return _result("counterfactual_sound", e <= tol, f"|twin - three steps| = {e:.3g}", got=got, want=want)


def counterfactual_consistent(model: Any, evidence: Mapping[str, Any], query: Sequence[str], *args: Any, counterfactual_fn: Callable | None = None, exogenous: Sequence[str] | None = None, tol: float = 1e-10, **kwargs: Any):
    """Consistency: intervening on an evidence site at its observed value changes nothing, so
    the counterfactual equals the factual posterior P(query | evidence), for every such site.

    The factual posterior is computed by :func:`three_step_counterfactual` with no intervention
    (abduction over the exogenous values, each world run by ``ppl.do``), not by the twin network
    under test; for a model with non-exogenous sample sites, where the three steps do not
    apply, it falls back to the twin network with ``do={}``."""
    from .counterfactual import counterfactual

    fn = counterfactual_fn or counterfactual
    query = [query] if isinstance(query, str) else list(query)
    try:
        post = three_step_counterfactual(model, evidence, {}, query, *args, exogenous=exogenous, **kwargs)
    except ModelError:  # a model with non-exogenous sample sites: the three steps do not apply
        post = _joint_as_dict(counterfactual(model, *args, evidence=evidence, do={}, query=query, exogenous=exogenous, **kwargs))
    worst = 0.0
    for n, v in evidence.items():
        if n in query:
            continue
        got = _joint_as_dict(fn(model, *args, evidence=evidence, do={n: v}, query=query, exogenous=exogenous, **kwargs))
        worst = max(worst, _dict_distance(got, post))
    return _result("counterfactual_consistent", worst <= tol, f"|do(observed) - posterior| = {worst:.3g}")
