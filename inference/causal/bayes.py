"""A posterior over an interventional distribution from the model's own structure.

The diagram gives the structure of a finite model: each sample site v has a conditional
probability table (CPT) P(v | pa(v)).  Put an independent Dirichlet(prior) on every row of every
CPT (a Beta for binary sites).  With fully observed data the posterior is conjugate: row
``pa`` of v's CPT is Dirichlet(prior + counts of (pa, v)).  Each posterior draw of the CPTs is a
model; pushing it through the truncated factorisation (surgery: the intervened site's CPT
becomes a point mass) gives a draw of P(on | do(x)).  The draws are one ``vmap``-ed
``einsum``, so they run on GPU where there is one.

Example:
    >>> from inference.causal.examples import confounded          # z -> x, z -> y, x -> y
    >>> d = causal.diagram(confounded)
    >>> data = {"z": jnp.array([0, 1, 1, 0]), "x": jnp.array([0, 1, 0, 0]), "y": jnp.array([1, 1, 0, 0])}
    >>> draws = causal.posterior_effect(d, data, on="y", do={"x": 1}, key=jax.random.key(0))
    >>> draws.shape                                               # P(y | do(x = 1)) per draw
    (1000, 2)
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ppl.errors import AddressError, ModelError, nearest

from .diagram import Diagram
from .interpret import _contract

__all__ = ["cpt_counts", "cpt_posterior", "effect_from_cpts", "posterior_effect"]


def _structure(d: Diagram) -> tuple[list[str], dict]:
    """The sample sites (the variables) and each one's parents among them."""
    for b in d.boxes.values():
        if b.kind == "factor" or b.observed:
            raise ModelError(
                f"posterior_effect: site {b.name!r} is {'a factor' if b.kind == 'factor' else 'observed'}; "
                "the CPT model needs a diagram of sample sites only (pass the data as data=...)."
            )
    names = list(d.latent)
    for n in names:
        if d.boxes[n].support is None or d.boxes[n].shape:
            raise ModelError(f"posterior_effect: site {n!r} is not a finite scalar site.")
    return names, {n: [p for p in d.effective_parents(n) if p in names] for n in names}


def cpt_counts(d: Diagram, data: Mapping[str, Any]) -> dict:
    """site -> the table of counts of (parents..., site) in `data` (site -> array of values).

    Example:
        >>> from inference.causal.examples import confounded
        >>> d = causal.diagram(confounded)
        >>> data = {"z": jnp.array([0, 1, 1, 0]), "x": jnp.array([0, 1, 0, 0]), "y": jnp.array([1, 1, 0, 0])}
        >>> causal.cpt_counts(d, data)["x"].tolist()   # axes (z, x)
        [[2.0, 0.0], [1.0, 1.0]]
    """
    names, parents = _structure(d)
    idx = {}
    for n in names:
        if n not in data:
            raise AddressError(f"posterior_effect: the data has no column for site {n!r}{nearest(n, list(data))}.")
        sup = d.boxes[n].support
        lut = {s: i for i, s in enumerate(sup)}
        try:
            idx[n] = np.array([lut[v.item()] for v in np.asarray(data[n]).reshape(-1)])
        except KeyError as e:
            raise ModelError(f"data for {n!r} has value {e.args[0]!r} outside its support {list(sup)}.") from None
    sizes = {len(v) for v in idx.values()}
    if len(sizes) > 1:
        raise ModelError(f"posterior_effect: the data columns have different lengths {sorted(sizes)}.")
    out = {}
    for n in names:
        fam = parents[n] + [n]
        table = np.zeros(tuple(len(d.boxes[v].support) for v in fam))
        np.add.at(table, tuple(idx[v] for v in fam), 1.0)
        out[n] = table
    return out


def cpt_posterior(d: Diagram, data: Mapping[str, Any], prior: float = 1.0) -> dict:
    """site -> Dirichlet concentrations of its CPT rows: ``prior + counts`` (axes (parents..., site)).

    Example:
        >>> from inference.causal.examples import confounded
        >>> d = causal.diagram(confounded)
        >>> data = {"z": jnp.array([0, 1, 1, 0]), "x": jnp.array([0, 1, 0, 0]), "y": jnp.array([1, 1, 0, 0])}
        >>> causal.cpt_posterior(d, data)["x"].tolist()   # row z of P(x | z) ~ Dirichlet(alpha[z])
        [[3.0, 1.0], [2.0, 2.0]]
    """
    return {n: c + prior for n, c in cpt_counts(d, data).items()}


def effect_from_cpts(d: Diagram, cpts: Mapping[str, Any], on: str | Sequence[str], do: Mapping[str, Any]) -> jax.Array:
    """P(on | do) of the model with CPTs `cpts` (site -> array, axes (parents..., site), each
    row summing to one): the truncated factorisation, contracted by one ``einsum``.  Pure and
    ``vmap``-able over a leading axis of the CPTs.

    Example:
        >>> from inference.causal.examples import confounded
        >>> d = causal.diagram(confounded)
        >>> pz = jnp.array([0.6, 0.4])
        >>> px_z = jnp.array([[0.8, 0.2], [0.2, 0.8]])
        >>> py_zx = jnp.array([[[0.9, 0.1], [0.4, 0.6]], [[0.6, 0.4], [0.1, 0.9]]])
        >>> [round(float(p), 4) for p in causal.effect_from_cpts(d, {"z": pz, "x": px_z, "y": py_zx}, on="y", do={"x": 1})]
        [0.28, 0.72]
    """
    names, parents = _structure(d)
    on = [on] if isinstance(on, str) else list(on)
    for n in list(on) + list(do):
        if n not in names:
            raise AddressError(f"effect_from_cpts: {n!r} is not a sample site of the diagram{nearest(n, names)}.")
    fs = []
    for n in names:
        if n in do:
            sup = d.boxes[n].support
            hit = [i for i, s in enumerate(sup) if s == np.asarray(do[n]).item()]
            if not hit:
                raise ModelError(f"effect_from_cpts: value {do[n]!r} is not in the support {list(sup)} of {n!r}.")
            fs.append((jax.nn.one_hot(hit[0], len(sup), dtype=jnp.asarray(cpts[n]).dtype), (n,)))
        else:
            fs.append((jnp.asarray(cpts[n]), tuple(parents[n]) + (n,)))
    t = _contract(fs, on, names)
    return t / jnp.sum(t)


def posterior_effect(
    d: Diagram,
    data: Mapping[str, Any],
    *,
    on: str | Sequence[str],
    do: Mapping[str, Any],
    key: Any,
    num_draws: int = 1000,
    prior: float = 1.0,
) -> jax.Array:
    """Posterior draws of P(on | do) under Dirichlet(`prior`) priors on the model's CPTs.

    Every sample site of `d` must be a finite scalar observed in `data` (site -> array of
    values).  Each CPT row gets its conjugate posterior Dirichlet(prior + counts); `num_draws`
    joint draws of the CPTs are pushed through :func:`effect_from_cpts`.  Returns an array of
    shape ``(num_draws, |on|...)``.

    Example:
        >>> from inference.causal.examples import confounded
        >>> d = causal.diagram(confounded)
        >>> data = {"z": jnp.array([0, 1, 1, 0]), "x": jnp.array([0, 1, 0, 0]), "y": jnp.array([1, 1, 0, 0])}
        >>> draws = causal.posterior_effect(d, data, on="y", do={"x": 1}, key=jax.random.key(0))
        >>> lo, hi = jnp.quantile(draws[:, 1], jnp.array([0.05, 0.95]))   # P(y = 1 | do(x = 1))
        >>> bool(0 < lo < hi < 1)
        True
    """
    alpha = cpt_posterior(d, data, prior)
    keys = jax.random.split(key, len(alpha))
    cpts = {n: jax.random.dirichlet(k, jnp.asarray(a), (num_draws,) + a.shape[:-1]) for k, (n, a) in zip(keys, alpha.items())}
    return jax.jit(jax.vmap(lambda c: effect_from_cpts(d, c, on, do)))(cpts)
