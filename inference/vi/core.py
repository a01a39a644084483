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

Each strategy is an object (:mod:`.strategies`) registered by name; the built-ins:

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
    >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
    >>> guide = ppl.model(lambda x: ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0)))
    >>> @vi.objective
    ... def my_elbo(x):
    ...     tr = vi.sample(guide, x)
    ...     return model.log_density(tr.choices, x) - tr.log_density
    >>> u = my_elbo.init_params(jax.random.key(0), 1.0)
    >>> value, grads = my_elbo.grad(jax.random.key(1), u, 1.0)
    >>> sorted(grads)
    ['m']
"""

from __future__ import annotations

from .estimator import Objective, objective
from .program import _NeedsLoop, _NeedsTwoPasses, _current, expectation, particles, sample
from .strategies import MAX_ENUM_ALTERNATIVES, MAX_MVD_ELEMENTS, STRATEGIES
from .terms import VIError

# The modules: terms.py (surrogate terms, VIError), strategies.py (the estimators per site and
# their registry), reparam.py (pathwise transforms per distribution type), program.py (the passes
# and the constructs), estimator.py (the estimators).  This module keeps the documentation of the
# objective language and its names.

__all__ = [
    "STRATEGIES",
    "Objective",
    "objective",
    "sample",
    "expectation",
    "particles",
    "VIError",
]
