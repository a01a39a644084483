"""Interpretation of diagrams: exact tensors for finite variables, the program otherwise.

The functor sends each box to its conditional probability table (:mod:`.cpt`); composition is
one ``jnp.einsum`` whose contraction order ``opt_einsum`` plans.  A diagram that is not finite
(:func:`finitely_enumerable` is False) is interpreted as a :class:`Sampler` of the program it
denotes.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ppl.errors import AddressError, ModelError, nearest
from semantics.paths import NotEnumerableError

from .cpt import _contract, _cut_factors, _element_names, _variables, factors, finitely_enumerable
from .diagram import Diagram, Mechanism, surgery
from .joint import Joint

__all__ = ["Joint", "interpret", "query", "factors", "finitely_enumerable", "enumerate_model", "Sampler", "as_measure"]


def interpret(d: Diagram):
    """The meaning of the diagram: the exact joint (a :class:`Joint`) when finite, else a sampler.

    For a diagram whose latent sites are all finite, returns the unnormalised measure over them
    (observations and factors multiplied in), axes in execution order: the product of the
    boxes' tables, contracted by one ``einsum``.  A site in a plate (or with a batch shape) is
    unrolled: each element is a variable of its own, named ``"w[0]"``, ``"w[1]"``, ..., and each
    element's table keeps only the variables it varies with.  Otherwise (a continuous site, a
    plate too large to unroll) returns a :class:`Sampler` of the program the diagram denotes.

    Example:
        >>> from inference.causal.examples import smoking
        >>> joint = causal.interpret(causal.surgery(causal.diagram(smoking), {"smoke": 1}))
        >>> [round(float(p), 4) for p in joint.marginal(["cancer"]).table]
        [0.36, 0.64]
    """
    try:
        variables, fs = factors(d)
    except NotEnumerableError:  # a latent site without finite support, a plate too large to unroll
        return Sampler(d)
    table = _contract(fs, variables, variables)
    info = _variables(d)[1]
    return Joint(tuple(variables), tuple(info[n][2] for n in variables), table)


class Sampler:
    """The interpretation of a diagram that is not finite: draws from the program it denotes."""

    def __init__(self, d: Diagram):
        self.diagram = d
        self.model = d.to_model()

    def sample(self, key: Any, num_samples: int) -> dict:
        """`num_samples` joint draws: address -> array with a leading sample axis."""
        keys = jax.random.split(key, num_samples)

        def one(k):
            tr = self.model.simulate(k, *self.diagram.args, **self.diagram.kwargs)
            return {**tr.choices, **tr.deterministic}

        return jax.vmap(one)(keys)

    def __repr__(self) -> str:
        return f"Sampler({self.model!r})"


def query(d: Diagram, target: Any, given: Mapping[str, Any] | None = None, do: Mapping[str, Any] | None = None) -> Joint:
    """P(target | given, do(do)) exactly: cut `do` first, then condition on `given`.

    Intervene-then-condition: the `do` cut is applied to the diagram, and `given` is evidence in
    the cut diagram (so evidence on an ancestor of the cut site is not propagated through the
    cut wire).  Only the factors are contracted, straight to `target` (no full joint).  A site
    in a plate stands for its elements (``"w"`` for ``"w[0]", "w[1]", ...``; a value given
    for it is split elementwise), and each element can be named on its own.

    Example:
        >>> from inference.causal.examples import smoking
        >>> d = causal.diagram(smoking)
        >>> [round(float(p), 4) for p in causal.query(d, "hidden", given={"cancer": 1}, do={"smoke": 1}).table]
        [0.6016, 0.3984]
    """
    targets = [target] if isinstance(target, str) else list(target)
    given = dict(given or {})
    fast = bool(do) and all(
        n in d.boxes and n in d.latent and not isinstance(v, Mechanism) and d.boxes[n].kind == "sample"
        and d.boxes[n].support is not None and not d.boxes[n].shape
        for n, v in do.items()
    ) and all(n not in do for n in targets + list(given))
    if fast:  # cut the tensors of d directly (no recompilation)
        variables, fs = _cut_factors(d, do)
        d = surgery(d, do)
    else:
        if do:
            d = surgery(d, do)
        variables, fs = factors(d)
    info = _variables(d)[1]

    def expand(n: str) -> list[str]:
        if n in d.boxes and n not in info and d.boxes[n].element_support is not None and not d.boxes[n].is_hard:
            return _element_names(n, d.boxes[n].shape)
        return [n]

    targets = [v for n in targets for v in expand(n)]
    flat_given = {}
    for n, v in given.items():
        els = expand(n)
        if els == [n]:
            flat_given[n] = v
        else:
            flat_given.update(zip(els, np.broadcast_to(np.asarray(v), d.boxes[n].shape).reshape(-1)))
    given = flat_given
    for n in targets + list(given):
        if n not in variables or (do and n in do):
            why = " (it is intervened on)" if n in d.boxes and d.boxes[n].is_hard else ""
            raise AddressError(f"causal.query: {n!r} is not a latent variable of the diagram{why}{nearest(n, variables)}.")
    ev = []
    for n, v in given.items():
        sup = info[n][2]
        onehot = np.zeros(len(sup))
        hit = [i for i, s in enumerate(sup) if s == np.asarray(v).item()]
        if not hit:
            raise ModelError(f"causal.query: value {v!r} is not in the support {list(sup)} of {n!r}.")
        onehot[hit[0]] = 1.0
        ev.append((jnp.asarray(onehot), (n,)))
    t = _contract(fs + ev, targets, variables)
    total = jnp.sum(t)
    return Joint(tuple(targets), tuple(info[n][2] for n in targets), t / total)



# ---------------------------------------------------------------------------------------------
# brute force (the program-level reference)


def enumerate_model(model: Any, *args: Any, **kwargs: Any) -> Joint:
    """The measure of a finite model by brute force: ``exp(model.log_density)`` on every trace.

    Every latent sample site must be a scalar with an enumerable support and the set of
    addresses must not depend on the values.  Intervened (``ppl.do``) sites are not variables.
    The table is :func:`semantics.enumerate_table`'s (one ``vmap`` over every assignment).

    Example:
        >>> from inference.causal.examples import smoking
        >>> j = causal.enumerate_model(ppl.do(smoking, {"smoke": 1}))
        >>> j.names
        ('hidden', 'tar', 'cancer')
    """
    from semantics.tables import enumerate_table

    t = enumerate_table(model, *args, what="enumerate_model", **kwargs)
    return Joint(t.names, t.supports, jnp.exp(t.log_weight))


def as_measure(x: Any, joint: "Joint | None" = None):
    """A cut diagram's exact interpretation as a :class:`semantics.Measure` over its traces.

    Atoms are the latent variables' values together with the observed sites' values (as in
    ``semantics.enumerate``), so the result compares directly with the enumeration of the
    program ``d.to_model()``.

    Example:
        >>> from inference.causal.examples import smoking
        >>> mu = causal.as_measure(causal.surgery(causal.diagram(smoking), {"smoke": 1}))
        >>> round(mu.weight({"hidden": 0, "tar": 1, "cancer": 1}), 4)   # 0.7 * 0.9 * 0.6
        0.378
    """
    from semantics import Measure

    d = x
    j = interpret(d) if joint is None else joint
    if not isinstance(j, Joint):
        raise ModelError("as_measure needs a diagram whose latent sites are all finite.")
    sites = d.model.trace_sites(jax.random.key(0), *d.args, **d.kwargs)
    obs = {n: s["value"] for n, s in sites.items() if s["type"] == "sample" and s["is_observed"] and not s["intervened"]}
    table = np.asarray(j.table)
    info = _variables(d)[1]
    shapes = {b.name: b.shape for b in d.boxes.values()}
    pairs = []
    for idx in itertools.product(*[range(len(s)) for s in j.supports]):
        w = float(table[idx]) if idx else float(table)
        atom, elements = {}, {}
        for i, (n, k) in enumerate(zip(j.names, idx)):
            site, el, _ = info[n]
            if el is None:
                atom[n] = j.supports[i][k]
            else:
                elements.setdefault(site, {})[el] = j.supports[i][k]
        for site, els in elements.items():
            atom[site] = np.array([els[e] for e in range(len(els))]).reshape(shapes[site])
        atom.update(obs)
        pairs.append((atom, np.log(w) if w > 0 else -np.inf, None))
    return Measure.from_pairs(pairs)
