"""Small models the docstring examples of :mod:`inference.causal` use (and users may start from).

``smoking``: a hidden confounder of smoking and cancer, with tar as the mediator (the front-door
graph).  ``confounded``: ``z -> x -> y`` and ``z -> y`` (the back-door graph).
``firing_squad``: Pearl's structural causal model with exogenous noise (counterfactuals).

Example:
    >>> from inference.causal.examples import smoking
    >>> causal.diagram(smoking)["tar"].parents
    ('smoke',)
"""

from __future__ import annotations

import ppl
from ppl import dist

__all__ = ["smoking", "confounded", "firing_squad"]


@ppl.model
def smoking():
    """hidden -> smoke -> tar -> cancer, hidden -> cancer (binary)."""
    h = ppl.sample("hidden", dist.Bernoulli(0.3))
    s = ppl.sample("smoke", dist.Bernoulli(0.2 + 0.6 * h))
    t = ppl.sample("tar", dist.Bernoulli(0.1 + 0.8 * s))
    ppl.sample("cancer", dist.Bernoulli(0.1 + 0.5 * t + 0.3 * h))


@ppl.model
def confounded():
    """z -> x -> y, z -> y (binary)."""
    z = ppl.sample("z", dist.Bernoulli(0.4))
    x = ppl.sample("x", dist.Bernoulli(0.2 + 0.6 * z))
    ppl.sample("y", dist.Bernoulli(0.1 + 0.5 * x + 0.3 * z))


@ppl.model
def firing_squad():
    """The court orders (or a rifleman's nerves fail); riflemen A and B fire; the prisoner dies."""
    order = ppl.sample("order", dist.Bernoulli(0.6), infer={"exogenous": True})
    nerves = ppl.sample("nerves", dist.Bernoulli(0.1), infer={"exogenous": True})
    a = ppl.deterministic("a", order | nerves)  # rifleman A fires
    b = ppl.deterministic("b", order)  # rifleman B fires
    ppl.deterministic("dead", a | b)
