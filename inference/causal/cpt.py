"""The factors of a finite diagram: one conditional probability table (CPT) per box.

Each box goes to a tensor with one axis per effective parent and one for the box's own value,
built by evaluating the model's own site densities on every parent configuration (one ``vmap``
per box, all compiled as one program); a cut box goes to a point mass (its value is plugged into
its children's tables), a soft-intervened box to its new mechanism's table.  A site in a plate
(or with a batch shape) is unrolled, one variable per element.  The supports and grids are those
of :mod:`semantics.tables`, the enumerator of finite models this one factorises.

A diagram that is not finite (a latent site without a finite support, a plate too large to
unroll) raises :class:`semantics.NotEnumerableError`: :func:`inference.causal.interpret`
catches that type (and only that type) to fall back to a sampler.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ppl.errors import ModelError
from semantics.paths import NotEnumerableError
from semantics.tables import product_grid, sites_at

from .diagram import Diagram, Mechanism

__all__ = ["factors", "finitely_enumerable"]

MAX_ELEMENTS = 12  # a batched site with more elements than this is not unrolled
MAX_TABLE = 1 << 18  # entries of one site's table over its (element) family


def _element_names(name: str, shape: tuple) -> list[str]:
    """The variables of a batched site: one per element, ``"w[0]"``, ``"w[1, 2]"``."""
    return [f"{name}[{', '.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def _variables(d: Diagram) -> tuple[list[str], dict]:
    """The variables of the joint and, for each, (site, flat element index or None, support).

    A latent finite scalar site is one variable; a latent batched site (in a plate, or with a
    batch shape) whose elements are finite scalars is unrolled: one variable per element.
    """
    names, info = [], {}
    for n in d.latent:
        b = d.boxes[n]
        if b.support is not None and not b.shape:
            names.append(n)
            info[n] = (n, None, b.support)
            continue
        if b.element_support is None:
            raise NotEnumerableError(
                f"exact interpretation needs every latent site to have a finite support; "
                f"site {n!r} ({b.dist}, shape {b.shape}) does not. Use causal.interpret(d) to get a "
                "sampler instead."
            )
        k = int(np.prod(b.shape))
        if k > MAX_ELEMENTS:
            raise NotEnumerableError(
                f"exact interpretation unrolls batched sites (plates) up to {MAX_ELEMENTS} elements; "
                f"site {n!r} has shape {b.shape}."
            )
        for i, v in enumerate(_element_names(n, b.shape)):
            names.append(v)
            info[v] = (n, i, b.element_support)
    return names, info


def _site_vars(d: Diagram, site: str, info: dict) -> list[str]:
    """The variables a site's value is made of (itself, or its elements)."""
    b = d.boxes[site]
    if site in info:
        return [site]
    if b.shape and b.element_support is not None:
        return _element_names(site, b.shape)
    return []



def factors(d: Diagram) -> tuple[list[str], list[tuple[Any, tuple]]]:
    """The variables of `d` and its factors ``(table, variables)``: one per sample/factor box.

    Each latent sample box gives its CPT P(box | effective parents) with axes (parents..., box);
    an observed box or a factor gives its likelihood as a function of its parents; a hard cut
    box gives nothing (its value is a constant in its children's tables).
    """
    cached = getattr(d, "_factors", None)
    if cached is not None:
        return cached
    variables, info = _variables(d)
    consts = {b.name: b.intervention for b in d.boxes.values() if b.is_hard}
    defaults = {}
    for b in d.boxes.values():
        if b.name in d.latent:
            sup = b.support if b.name in info else b.element_support
            defaults[b.name] = jnp.full(b.shape, sup[0]) if b.shape else sup[0]
    jobs: list[tuple[Any, tuple, tuple]] = []
    for b in d.boxes.values():
        if b.kind == "deterministic" or b.is_hard:
            continue
        if b.kind == "sample" and b.is_soft:
            job, fam = _mechanism_job(d, b)
            jobs.append((job, fam, (fam,)))
            continue
        pars, own, fam = _family(d, b, info)
        batched = bool(b.shape) or any(info[v][1] is not None for v in pars)
        jobs.append((_site_job(d, b.name, fam, info, defaults, consts, batched), tuple(fam), tuple(own)))

    def tables():
        return [job() for job, _, _ in jobs]

    # one compiled program for every table (eager vmaps would compile op by op)
    results = jax.jit(tables)()
    out = []
    for (job, fam, own), res in zip(jobs, results):
        if getattr(job, "batched", False):
            out.extend(_split(np.asarray(res), fam, own))
        else:
            out.append((res, fam))
    d._factors = (variables, out)
    return variables, out


def _family(d: Diagram, b: Any, info: dict) -> tuple[list, list, list]:
    """The variables of a (not soft) box's table: (its parents' variables, its own, both);
    raises NotEnumerableError when the table would be larger than MAX_TABLE."""
    pars = [v for p in d.effective_parents(b.name) for v in _site_vars(d, p, info)]
    own = _site_vars(d, b.name, info) if b.name in d.latent else []
    fam = pars + own
    size = int(np.prod([len(info[v][2]) for v in fam])) if fam else 1
    if size > MAX_TABLE:
        raise NotEnumerableError(
            f"exact interpretation: the table of site {b.name!r} over {len(fam)} variables has {size} "
            f"entries (more than {MAX_TABLE}); its plates are too large to unroll."
        )
    return pars, own, fam


def _split(lp: np.ndarray, fam: tuple, own: tuple) -> list[tuple[Any, tuple]]:
    """One factor per element of a batched site's log density (last axis of `lp`), each
    restricted to the variables it actually varies with (its own element always kept).

    Dropping an axis along which the table is constant leaves the product of the factors, as a
    function of every variable, unchanged: the contraction stays exact.
    """
    out = []
    for i in range(lp.shape[-1]):
        t = np.exp(lp[..., i])
        keep = list(fam)
        mine = own[i] if len(own) == lp.shape[-1] else None
        for v in list(fam):
            if v == mine:
                continue
            ax = keep.index(v)
            first = np.take(t, [0], axis=ax)
            if np.array_equal(np.broadcast_to(first, t.shape), t):
                t = np.squeeze(first, axis=ax)
                keep.pop(ax)
        out.append((jnp.asarray(t), tuple(keep)))
    return out


def _cut_factors(d: Diagram, cut: Mapping[str, Any]) -> tuple[list[str], list[tuple[Any, tuple]]]:
    """The factors of surgery(d, cut) for hard cuts on latent sample sites, from d's own tables:
    the cut box's table becomes a point mass and its children's tables are sliced at the value
    (the same tensors as re-evaluating the cut diagram, without recompiling)."""
    variables, fs = factors(d)
    out = []
    for t, vs in fs:
        if vs and vs[-1] in cut and d.boxes[vs[-1]].kind == "sample":
            continue  # the cut box's own CPT
        out.append((t, vs))
    for n, v in cut.items():
        sup = d.boxes[n].support
        hit = [i for i, s_ in enumerate(sup) if s_ == np.asarray(v).item()]
        if not hit:
            raise ModelError(f"causal.query: value {v!r} is not in the support {list(sup)} of {n!r}.")
        onehot = np.zeros(len(sup))
        onehot[hit[0]] = 1.0
        out.append((jnp.asarray(onehot), (n,)))
    return variables, out


def _elementwise_log_prob(msg: dict) -> jax.Array:
    """A site's log density per element (masked and scaled, not summed), flattened."""
    if msg["type"] == "factor":
        lp = jnp.asarray(msg["value"])
    elif msg["intervened"]:
        lp = jnp.zeros(())
    else:
        lp = msg["fn"].log_prob(msg["value"])
        if msg["mask"] is not None:
            lp = jnp.where(msg["mask"], lp, 0.0)
        if msg["scale"] is not None:
            lp = lp * msg["scale"]
    return jnp.reshape(lp, (-1,))


def _site_job(d: Diagram, site: str, fam: Sequence[str], info: dict, defaults: dict, consts: dict, batched: bool = False):
    cols, shape = product_grid([info[v][2] for v in fam])
    model = d.model
    shapes = {b.name: b.shape for b in d.boxes.values()}

    def one(*vals):
        values = dict(defaults)
        for v, x in zip(fam, vals):
            name, idx, _ = info[v]
            if idx is None:
                values[name] = x
            else:
                values[name] = jnp.reshape(jnp.reshape(values[name], (-1,)).at[idx].set(x), shapes[name])
        # hard cuts (sample or deterministic boxes) are what they denote, ppl.do (the cut box's
        # own density is never read: it has no factor)
        sites = sites_at(model, d.args, d.kwargs, values, interventions=consts)
        return _elementwise_log_prob(sites[site]) if batched else sites[site]["log_prob"]

    def job():
        if fam:
            lp = jax.vmap(one)(*cols)
            lp = lp.reshape(shape + lp.shape[1:])
        else:
            lp = one()
        return lp if batched else jnp.exp(lp)

    job.batched = batched
    return job


def _mechanism_job(d: Diagram, b):
    mech: Mechanism = b.intervention
    variables = set(d.latent)
    for p in mech.parents:
        pb = d.boxes[p]
        if p not in variables:
            if pb.is_hard:
                continue
            raise ModelError(
                f"exact interpretation of the mechanism for {b.name!r}: parent {p!r} must be a latent "
                "finite sample site (or a cut one)."
            )
    fam = [p for p in mech.parents if p in variables]
    cols, shape = product_grid([d.boxes[p].support for p in fam])
    sup = jnp.asarray(b.support)
    consts = {p: d.boxes[p].intervention for p in mech.parents if p not in variables}

    def one(*vals):
        env = dict(consts)
        env.update(zip(fam, vals))
        dist_ = mech.fn(*[jnp.asarray(env[p]) for p in mech.parents])
        return dist_.log_prob(sup)

    def job():
        if fam:
            lp = jax.vmap(one)(*cols).reshape(shape + (len(b.support),))
        else:
            lp = one()
        return jnp.exp(lp)

    return job, tuple(fam) + (b.name,)


def _contract(tensors: list[tuple[Any, tuple]], keep: Sequence[str], all_vars: Sequence[str]) -> jax.Array:
    index = {n: i for i, n in enumerate(all_vars)}
    ops: list = []
    for t, vs in tensors:
        ops.append(t)
        ops.append([index[v] for v in vs])
    # every variable must appear in some operand, else it would be dropped from the sum
    present = {v for _, vs in tensors for v in vs}
    for v in all_vars:
        if v not in present:
            raise ModelError(f"internal: variable {v!r} has no factor")
    if not tensors:
        return jnp.ones(())
    return jnp.einsum(*ops, [index[v] for v in keep], optimize="greedy")



def finitely_enumerable(d: Diagram) -> bool:
    """Whether :func:`factors` can interpret `d` exactly (checked without building a table): every latent site is a finite scalar,
    or a batched site with finite scalar elements small enough to unroll (and every table fits).

    Example:
        >>> from inference.causal.examples import smoking
        >>> causal.finitely_enumerable(causal.diagram(smoking))
        True
    """
    try:
        _, info = _variables(d)
        for b in d.boxes.values():
            if b.kind != "deterministic" and not b.is_hard and not b.is_soft:
                _family(d, b, info)
    except NotEnumerableError:
        return False
    return True
