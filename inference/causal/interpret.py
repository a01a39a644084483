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


def _require_finite(d: Diagram, names: Iterable[str]) -> None:
    for n in names:
        b = d.boxes[n]
        if b.support is None:
            raise ModelError(
                f"exact interpretation needs every latent site to be a scalar with a finite support; "
                f"site {n!r} ({b.dist}, shape {b.shape}) is not. Use causal.interpret(d) to get a "
                "sampler instead."
            )
        if b.plates:
            raise ModelError(f"exact interpretation does not support plates yet (site {n!r} is in {b.plates}).")


def factors(d: Diagram) -> tuple[list[str], list[tuple[Any, tuple]]]:
    """The variables of `d` and its factors ``(table, variables)``: one per sample/factor box.

    Each latent sample box gives its CPT P(box | effective parents) with axes (parents..., box);
    an observed box or a factor gives its likelihood as a function of its parents; a hard cut
    box gives nothing (its value is a constant in its children's tables).
    """
    cached = getattr(d, "_factors", None)
    if cached is not None:
        return cached
    variables = d.latent
    _require_finite(d, variables)
    consts = {b.name: b.intervention for b in d.boxes.values() if b.is_hard}
    defaults = {n: d.boxes[n].support[0] for n in variables}
    jobs: list[tuple[Any, tuple]] = []
    for b in d.boxes.values():
        if b.kind == "deterministic" or b.is_hard:
            continue
        if b.kind == "sample" and b.is_soft:
            jobs.append(_mechanism_job(d, b))
            continue
        pars = [p for p in d.effective_parents(b.name) if p in variables]
        fam = pars + ([b.name] if b.name in variables else [])
        jobs.append((_site_job(d, b.name, fam, defaults, consts), tuple(fam)))

    def tables():
        return [job() for job, _ in jobs]

    # one compiled program for every table (eager vmaps would compile op by op)
    results = jax.jit(tables)()
    out = [(res, fam) for (job, fam), res in zip(jobs, results)]
    d._factors = (variables, out)
    return variables, out


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


def _grid(d: Diagram, fam: Sequence[str]) -> tuple[list, tuple]:
    sups = [np.asarray(d.boxes[n].support) for n in fam]
    shape = tuple(len(s) for s in sups)
    if not fam:
        return [], shape
    mesh = np.meshgrid(*sups, indexing="ij")
    return [jnp.asarray(m.reshape(-1)) for m in mesh], shape


def _site_job(d: Diagram, site: str, fam: Sequence[str], defaults: dict, consts: dict):
    cols, shape = _grid(d, fam)
    model = d.model

    def one(*vals):
        values = dict(defaults)
        values.update(zip(fam, vals))
        values.update(consts)
        _, sites = run(model.fn, d.args, d.kwargs, _Plug(values))
        return sites[site]["log_prob"]

    def job():
        if fam:
            lp = jax.vmap(one)(*cols).reshape(shape)
        else:
            lp = jnp.reshape(one(), ())
        return jnp.exp(lp)

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

    For a diagram whose latent sites are all finite scalars, returns the unnormalised measure
    over them (observations and factors multiplied in), axes in execution order: the product
    of the boxes' tables, contracted by one ``einsum``.  Otherwise returns a :class:`Sampler` of
    the program the diagram denotes.

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
    return Joint(tuple(variables), tuple(d.boxes[n].support for n in variables), table)


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
    cut wire).  Only the factors are contracted, straight to `target` (no full joint).

    Example:
        >>> causal.query(d, "rain", given={"wet": 1}, do={"sprinkler": 1}).table
    """
    targets = [target] if isinstance(target, str) else list(target)
    given = dict(given or {})
    fast = bool(do) and all(
        n in d.boxes and n in d.latent and not isinstance(v, Mechanism) and d.boxes[n].kind == "sample" for n, v in do.items()
    ) and all(n not in do for n in targets + list(given))
    if fast:  # cut the tensors of d directly (no recompilation)
        variables, fs = _cut_factors(d, do)
        d = surgery(d, do)
    else:
        if do:
            d = surgery(d, do)
        variables, fs = factors(d)
    for n in targets + list(given):
        if n not in variables or (do and n in do):
            why = " (it is intervened on)" if n in d.boxes and d.boxes[n].is_hard else ""
            raise AddressError(f"causal.query: {n!r} is not a latent variable of the diagram{why}{nearest(n, variables)}.")
    ev = []
    for n, v in given.items():
        sup = d.boxes[n].support
        onehot = np.zeros(len(sup))
        hit = [i for i, s in enumerate(sup) if s == np.asarray(v).item()]
        if not hit:
            raise ModelError(f"causal.query: value {v!r} is not in the support {list(sup)} of {n!r}.")
        onehot[hit[0]] = 1.0
        ev.append((jnp.asarray(onehot), (n,)))
    t = _contract(fs + ev, targets, variables)
    total = jnp.sum(t)
    return Joint(tuple(targets), tuple(d.boxes[n].support for n in targets), t / total)


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
    pairs = []
    for idx in itertools.product(*[range(len(s)) for s in j.supports]):
        w = float(table[idx]) if idx else float(table)
        atom = {n: j.supports[i][k] for i, (n, k) in enumerate(zip(j.names, idx))}
        atom.update(obs)
        pairs.append((atom, np.log(w) if w > 0 else -np.inf, None))
    return Measure.from_pairs(pairs)
