"""Causal inference with string diagrams (Jacobs, Kissinger & Zanasi, "Causal Inference by String
Diagram Surgery").

A model is a string diagram (syntax: boxes = sites, wires = data dependencies, found by tracing
the model) interpreted as stochastic matrices (semantics: an exact tensor for finite variables,
the program otherwise).  An intervention is surgery on the diagram: the wires into the
intervened box are cut and the box replaced by a point mass (hard) or a new mechanism (soft);
interpreting the cut diagram gives the measure of ``ppl.do(model, ...)``.  Identification
finds, from the diagram and the set of observed variables, a formula for an interventional
distribution in terms of the observational one (back-door, front-door / comb disintegration,
the general ID algorithm), which is then estimated from data (plug-in or Bayesian).

Example:
    >>> from inference import causal
    >>> from inference.causal.examples import firing_squad, smoking
    >>> d = causal.diagram(smoking)
    >>> d["cancer"].parents
    ('hidden', 'tar')
    >>> [round(float(p), 4) for p in causal.query(d, "cancer", do={"smoke": 1}).table]
    [0.36, 0.64]
    >>> est = causal.identify(d, effect_of="smoke", on="cancer", observed=["smoke", "tar", "cancer"])
    >>> est.criterion
    'front-door'
    >>> data = {"smoke": jnp.array([0, 0, 1, 1]), "tar": jnp.array([0, 1, 1, 1]), "cancer": jnp.array([0, 1, 1, 0])}
    >>> causal.estimate(est, data, do={"smoke": 1}).shape
    (2,)
    >>> cf = causal.counterfactual(firing_squad, evidence={"dead": 1}, do={"a": 0}, query="dead")
    >>> round(float(cf.table[1]), 4)
    0.9375
"""

from .bayes import cpt_counts, cpt_posterior, effect_from_cpts, posterior_effect
from .counterfactual import abduction, counterfactual, exogenous_sites, twin
from .diagram import Box, Diagram, Mechanism, Wire, diagram, surgery
from .intervene import intervene
from .identify import Estimand, NotIdentifiable, estimate, identify, observational
from .interpret import Joint, Sampler, as_measure, enumerate_model, factors, finitely_enumerable, interpret, query

__all__ = [
    "Box",
    "Wire",
    "Diagram",
    "Mechanism",
    "diagram",
    "surgery",
    "intervene",
    "Joint",
    "Sampler",
    "interpret",
    "factors",
    "finitely_enumerable",
    "query",
    "enumerate_model",
    "as_measure",
    "identify",
    "Estimand",
    "NotIdentifiable",
    "estimate",
    "observational",
    "counterfactual",
    "abduction",
    "twin",
    "exogenous_sites",
    "cpt_counts",
    "cpt_posterior",
    "effect_from_cpts",
    "posterior_effect",
]
