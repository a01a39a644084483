"""Interpretation of diagrams: exact tensors for finite variables, the program otherwise.

The functor sends each box to its conditional probability table (CPT) -- a tensor with one axis
per effective parent and one for the box's own value -- built by evaluating the model's own
site densities on every parent configuration (one ``vmap`` per box); a cut box goes to a point
mass (its value is plugged into its children's tables), a soft-intervened box to its new
mechanism's table.  Composition is one ``jnp.einsum`` whose contraction order ``opt_einsum``
plans.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.core import Messenger
from ppl.errors import AddressError, ModelError, nearest
from ppl.model import run

from .diagram import Diagram, Mechanism, surgery

__all__ = ["Joint", "interpret", "query", "factors", "enumerate_model", "Sampler", "as_measure"]


@dataclass
class Joint:
    """A finite measure as a named tensor: ``table[i, j, ...]`` is the mass of
    ``(names[0] = supports[0][i], names[1] = supports[1][j], ...)``.

    Example:
        >>> j = causal.interpret(d)
        >>> j.marginal(["cancer"]).table
    """

    names: tuple
    supports: tuple
    table: Any

    @property
    def total(self) -> jax.Array:
        return jnp.sum(self.table)

    def normalized(self) -> "Joint":
        return Joint(self.names, self.supports, self.table / jnp.sum(self.table))

    def marginal(self, names: Sequence[str]) -> "Joint":
        """Sum out every variable not in `names`; axes follow the order of `names`."""
        names = [names] if isinstance(names, str) else list(names)
        for n in names:
            if n not in self.names:
                raise AddressError(f"the joint has no variable {n!r}{nearest(n, self.names)}.")
        idx = [self.names.index(n) for n in names]
        t = jnp.einsum(self.table, list(range(len(self.names))), idx)
        return Joint(tuple(names), tuple(self.supports[i] for i in idx), t)

    def index(self, name: str, value: Any) -> int:
        sup = self.supports[self.names.index(name)]
        v = np.asarray(value).item()
        for i, s in enumerate(sup):
            if s == v:
                return i
        raise ModelError(f"value {value!r} is not in the support {list(sup)} of {name!r}.")

    def condition(self, given: Mapping[str, Any]) -> "Joint":
        """Restrict to `given` (dropping those axes) and normalise."""
        t = self.table
        names, sups = list(self.names), list(self.supports)
        for n, v in given.items():
            i = names.index(n)
            t = jnp.take(t, self.index(n, v), axis=i)
            del names[i], sups[i]
        return Joint(tuple(names), tuple(sups), t / jnp.sum(t))

    def align(self, names: Sequence[str]) -> "Joint":
        """The same joint with axes permuted into the order `names`."""
        return self.marginal(names) if set(names) == set(self.names) and len(names) == len(self.names) else self._bad(names)

    def _bad(self, names):
        raise ModelError(f"cannot align a joint over {list(self.names)} to {list(names)}.")

    def __repr__(self) -> str:
        return f"Joint(names={list(self.names)}, shape={tuple(np.shape(self.table))})"


# ---------------------------------------------------------------------------------------------
# plugging values into the model


class _Plug(Messenger):
    """Set the values of latent sample sites and of deterministic sites (not scored differently)."""

    def __init__(self, values: Mapping[str, Any]):
        super().__init__()
        self.values = dict(values)

    def process_message(self, msg: dict) -> None:
        t, name = msg["type"], msg["name"]
        if name not in self.values:
            return
        if t == "sample" and not msg["intervened"]:
            msg["value"] = self.values[name]
        elif t == "deterministic":
            msg["value"] = self.values[name]


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
            raise ModelError(
                f"exact interpretation needs every latent site to have a finite support; "
                f"site {n!r} ({b.dist}, shape {b.shape}) does not. Use causal.interpret(d) to get a "
                "sampler instead."
            )
        k = int(np.prod(b.shape))
        if k > MAX_ELEMENTS:
            raise ModelError(
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


def _require_finite(d: Diagram, names: Iterable[str]) -> None:
    _variables(d)


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
        pars = [v for p in d.effective_parents(b.name) for v in _site_vars(d, p, info)]
        own = _site_vars(d, b.name, info) if b.name in d.latent else []
        fam = pars + own
        size = int(np.prod([len(info[v][2]) for v in fam])) if fam else 1
        if size > MAX_TABLE:
            raise ModelError(
                f"exact interpretation: the table of site {b.name!r} over {len(fam)} variables has {size} "
                f"entries (more than {MAX_TABLE}); its plates are too large to unroll."
            )
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


def _grid(d: Diagram, fam: Sequence[str], info: dict | None = None) -> tuple[list, tuple]:
    sups = [np.asarray(info[n][2] if info else d.boxes[n].support) for n in fam]
    shape = tuple(len(s) for s in sups)
    if not fam:
        return [], shape
    mesh = np.meshgrid(*sups, indexing="ij")
    return [jnp.asarray(m.reshape(-1)) for m in mesh], shape


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
    cols, shape = _grid(d, fam, info)
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
        values.update(consts)
        _, sites = run(model.fn, d.args, d.kwargs, _Plug(values))
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
    cols, shape = _grid(d, fam)
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


def interpret(d: Diagram):
    """The meaning of the diagram: the exact joint (a :class:`Joint`) when finite, else a sampler.

    For a diagram whose latent sites are all finite, returns the unnormalised measure over them
    (observations and factors multiplied in), axes in execution order: the product of the
    boxes' tables, contracted by one ``einsum``.  A site in a plate (or with a batch shape) is
    unrolled: each element is a variable of its own, named ``"w[0]"``, ``"w[1]"``, ..., and each
    element's table keeps only the variables it varies with.  Otherwise (a continuous site, a
    plate too large to unroll) returns a :class:`Sampler` of the program the diagram denotes.

    Example:
        >>> joint = causal.interpret(causal.surgery(d, {"smoke": 1}))
        >>> joint.marginal(["cancer"]).table
    """
    try:
        variables, fs = factors(d)
    except ModelError as e:
        if "finite support" in str(e) or "plates" in str(e):
            return Sampler(d)
        raise
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
        >>> causal.query(d, "rain", given={"wet": 1}, do={"sprinkler": 1}).table
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

    Example:
        >>> enumerate_model(ppl.do(smoking, {"smoke": 1})).marginal(["cancer"])
    """
    from .diagram import _finite_support

    model = ppl.as_model(model)
    sites = model.trace_sites(jax.random.key(0), *args, **kwargs)
    names, sups = [], []
    for n, s in sites.items():
        if s["type"] == "sample" and not s["is_observed"] and not s["intervened"]:
            sup = _finite_support(s["fn"])
            if sup is None:
                raise ModelError(f"enumerate_model: site {n!r} is not finite and scalar.")
            names.append(n)
            sups.append(sup)
    grid = list(itertools.product(*sups))
    cols = {n: jnp.asarray([g[i] for g in grid]) for i, n in enumerate(names)}

    def one(vals):
        return model.log_density(vals, *args, **kwargs)

    lp = jax.jit(jax.vmap(one))(cols) if grid and names else jnp.reshape(one({}), (1,))
    table = jnp.exp(lp).reshape(tuple(len(s) for s in sups))
    return Joint(tuple(names), tuple(sups), table)


def as_measure(x: Any, joint: "Joint | None" = None):
    """A cut diagram's exact interpretation as a :class:`semantics.Measure` over its traces.

    Atoms are the latent variables' values together with the observed sites' values (as in
    ``semantics.enumerate``), so the result compares directly with the enumeration of the
    program ``d.to_model()``.

    Example:
        >>> causal.as_measure(causal.surgery(d, {"smoke": 1}))
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
