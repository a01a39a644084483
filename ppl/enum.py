"""Finite discrete latent sites summed out exactly: parallel enumeration and variable elimination.

Each latent sample site whose distribution has a finite support (Bernoulli, Categorical,
Binomial, DiscreteUniform, ...) gets its *own tensor dimension*, to the left of the plates'
dimensions (NumPyro's and Pyro's ``infer={"enumerate": "parallel"}``, which is accepted and is
the default here): its value is the support laid along that dimension, so every site after it
computes its log density on the whole grid by broadcasting.  Plates stay batch dimensions, so a
plate of N points with K values costs N·K, not K^N.  The factors (one per site: its unsummed,
masked, scaled log density) are then contracted by variable elimination over the plated factor
graph (Obermeyer et al. 2019, "Tensor variable elimination for plated factor graphs"): inside
each plate set, variables are eliminated one at a time (``logsumexp`` over their dimension,
smallest bucket first); a plate's product is a sum of log factors over its dimension, taken once
the variables local to it are eliminated.

Sites inside ``ppl.scan`` are summed sequentially: a step is run once on the whole grid of
(previous state, current state) and the forward algorithm
``alpha_t(c) = logsumexp_p alpha_{t-1}(p) + g_t(p, c)`` runs in one ``lax.scan`` — T·K², not K^T.
The *state* of the chain is the part of the carry that depends on the step's discrete sites; it
must depend on the current step's sites only (a first-order chain).

Log densities of ``Categorical`` sites on the grid are read without broadcasting the logits
first (numpyro's ``log_prob`` gathers one number per grid element, a scatter in the gradient):
an observed site whose probabilities vary along enumeration dims gathers whole slices along
them (``_observed_log_prob``), and an enumerated site at its own support is its log-probability
table moved to its dim (``_support_log_prob``); both are numpyro's numbers bit for bit, and any
other site keeps numpyro's ``log_prob``.

What is computed: for continuous values x held fixed,

    marginal_log_density(x) = log Σ_z p(x, z, observations)

the log of exactly the total mass of ``semantics.enumerate``'s measure of the model with x
substituted.  :func:`infer_discrete` draws z from p(z | x, observations) (``temperature=1``,
backward sampling through the elimination's buckets: forward-filter backward-sample through
scans) or gives its mode (``temperature=0``: max-product, Viterbi through scans).

Example:
    >>> @ppl.model
    ... def mix(y):
    ...     mu = ppl.sample("mu", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
    ...     with ppl.plate("data", y.shape[0]):
    ...         z = ppl.sample("z", dist.Bernoulli(probs=0.3))
    ...         ppl.sample("y", dist.Normal(mu[z.astype(int)], 1.0), obs=y)
    >>> y = jnp.array([-1.0, 0.5, 2.0])
    >>> lp = ppl.marginal_log_density(mix, {"mu": jnp.array([0.0, 2.0])}, y)
    >>> prior = dist.Normal(0.0, 10.0).log_prob(jnp.array([0.0, 2.0])).sum()
    >>> lik = jnp.log(0.7 * jnp.exp(dist.Normal(0.0, 1.0).log_prob(y)) + 0.3 * jnp.exp(dist.Normal(2.0, 1.0).log_prob(y))).sum()
    >>> bool(jnp.allclose(lp, prior + lik))
    True
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import itertools
import warnings
import zlib
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions.transforms import biject_to
from numpyro.distributions.util import validate_sample

from . import core, randomness
from .checks import exact_zeros
from .core import Messenger
from .errors import InferenceWarning, ModelError
from .messengers import Provide, scope
from .model import as_model, run

__all__ = ["marginal_log_density", "infer_discrete", "enumerable_sites", "check_summed_out", "MAX_ELEMENTS"]

#: the memory guard: the most elements one tensor of an enumeration may have (float64: 8 bytes each)
MAX_ELEMENTS = 1 << 26
#: the most array dimensions a parallel enumeration may use (plates and summed-out sites
#: together); numpy's arrays have at most 32, and a factor adds an event dimension
MAX_DIMS = 30


def _dist_name(fn: Any) -> str:
    return core._dist_name(fn)


def _is_latent_discrete(msg: dict) -> bool:
    return (
        msg["type"] == "sample"
        and msg["value"] is None
        and not msg["is_observed"]
        and not msg["intervened"]
        and bool(msg["fn"].support.is_discrete)
    )


def _check_enumerable(msg: dict) -> None:
    """Raise a ModelError naming the site if its discrete distribution cannot be enumerated."""
    fn, name = msg["fn"], msg["name"]
    mode = (msg["infer"] or {}).get("enumerate", "parallel")
    if mode not in ("parallel", "sequential"):
        raise ModelError(
            f"site {name!r}: infer={{'enumerate': {mode!r}}} is not understood; use 'parallel' "
            "(the default for finite discrete latent sites)."
        )
    if not getattr(fn, "has_enumerate_support", False):
        raise ModelError(
            f"site {name!r} is a discrete latent site with an infinite support "
            f"({_dist_name(fn)}), which cannot be summed out: truncate it to a finite support "
            "(e.g. a Categorical over 0..K-1), sample it with a Gibbs block (mcmc.Gibbs), or "
            "marginalise it by hand (ppl.factor with the summed likelihood)."
        )
    if tuple(fn.event_shape):
        raise ModelError(
            f"site {name!r}: a discrete latent site with event shape {tuple(fn.event_shape)} "
            f"({_dist_name(fn)}) cannot be enumerated; use a scalar distribution in a plate "
            "(e.g. Categorical instead of OneHotCategorical)."
        )


def _support(msg: dict) -> jax.Array:
    fn, name = msg["fn"], msg["name"]
    with jax.ensure_compile_time_eval():  # supports are static (arange(K)): no tracer leaks out of probes
        sup = fn.enumerate_support(expand=False)
        if any(int(s) != 1 for s in sup.shape[1:]):
            raise ModelError(
                f"site {name!r}: its support depends on the batch (shape {tuple(sup.shape)}); "
                "enumeration needs one support shared by all elements."
            )
        return sup.reshape((sup.shape[0],))


class _Fill(Messenger):
    """Give each finite discrete latent site its first support value (a placeholder), and record
    the deepest plate nesting and the discrete sites (a probe run before enumerating)."""

    def __init__(self) -> None:
        super().__init__()
        self.nesting = 0
        self.discrete: list[str] = []

    def process_message(self, msg: dict) -> None:
        for f in msg["cond_indep_stack"]:
            self.nesting = max(self.nesting, -f.dim)
        if not _is_latent_discrete(msg):
            return
        _check_enumerable(msg)
        fn = msg["fn"]
        self.nesting = max(self.nesting, len(fn.batch_shape))
        if msg["name"] not in self.discrete:
            self.discrete.append(msg["name"])
        msg["value"] = jnp.broadcast_to(_support(msg)[0], tuple(fn.batch_shape))
        msg["in_support"] = True


@dataclasses.dataclass
class _Var:
    name: str
    dim: int
    size: int
    ordinal: frozenset
    support: Any
    batch_shape: tuple


def _size(shape) -> int:
    return int(np.prod([int(s) for s in shape], dtype=np.int64)) if len(shape) else 1


def _log_pmf(d: Any) -> jax.Array:
    """numpyro's own log-probabilities of a Categorical: ``CategoricalProbs.logits`` (log(probs),
    -inf where probs is 0); the logits of ``CategoricalLogits`` normalised as its ``log_prob`` does."""
    if isinstance(d, dist.CategoricalProbs):
        return d.logits
    return d.logits - jax.nn.logsumexp(d.logits, axis=-1, keepdims=True)


def _gathered_log_prob(d: Any, value: jax.Array, enum_axes: tuple) -> jax.Array:
    """numpyro's ``Categorical.log_prob`` with the enumeration axes of its logits gathered as
    slices (see _observed_log_prob); wrapped in numpyro's own ``validate_sample`` below."""
    log_pmf = _log_pmf(d)
    nd = max(len(d.batch_shape), jnp.ndim(value))
    log_pmf = log_pmf.reshape((1,) * (nd - log_pmf.ndim + 1) + log_pmf.shape)
    value = value.reshape((1,) * (nd - value.ndim) + value.shape)
    enum_axes = sorted(nd + a for a in enum_axes)
    rest = [a for a in range(nd) if a not in enum_axes]
    out_shape = tuple(max(log_pmf.shape[a], value.shape[a]) for a in rest)
    # one index tuple per element of the other axes: (its plate indices where the logits vary, y)
    indexed = [a for a in rest if log_pmf.shape[a] > 1]
    cols = [jnp.broadcast_to(jax.lax.broadcasted_iota(jnp.int32, out_shape, rest.index(a)), out_shape)
            for a in indexed]
    y = jnp.squeeze(value, axis=tuple(enum_axes)) if enum_axes else value
    cols.append(jnp.broadcast_to(y.astype(jnp.int32), out_shape))
    dnums = jax.lax.GatherDimensionNumbers(
        offset_dims=tuple(enum_axes), collapsed_slice_dims=tuple(rest) + (nd,),
        start_index_map=tuple(indexed) + (nd,))
    slices = tuple(log_pmf.shape[a] if a in enum_axes else 1 for a in range(nd)) + (1,)
    # the enumeration axes read whole, in place (no transpose); out-of-support data: any entry
    # (clipped), then -inf from validate_sample as in numpyro
    return jax.lax.gather(log_pmf, jnp.stack(cols, axis=-1), dnums, slices,
                          mode=jax.lax.GatherScatterMode.CLIP)


_GATHERED_LOG_PROB = validate_sample(_gathered_log_prob)


def _laid_log_prob(d: Any, value: jax.Array, dim: int) -> jax.Array:
    """numpyro's ``Categorical.log_prob`` of its support laid along `dim` (see _support_log_prob)."""
    log_pmf = _log_pmf(d)
    n = max(log_pmf.ndim - 1, -dim)
    log_pmf = log_pmf.reshape((1,) * (n + 1 - log_pmf.ndim) + log_pmf.shape)
    # log_prob(k at dim) = log_pmf[..., k]: the class axis moved to `dim` (its size-1 axis dropped)
    return jnp.squeeze(jnp.moveaxis(log_pmf, -1, n + dim), axis=n + dim + 1)


_LAID_LOG_PROB = validate_sample(_laid_log_prob)


def _categorical_base(fn: Any) -> Any:
    """numpyro's own ``CategoricalProbs`` / ``CategoricalLogits`` under `fn` (through the
    ``ExpandedDistribution`` that plates add) with argument validation on; None otherwise (the
    site keeps numpyro's ``log_prob``)."""
    base = fn.base_dist if type(fn) is dist.ExpandedDistribution else fn
    if type(base) not in (dist.CategoricalProbs, dist.CategoricalLogits) or not base._validate_args:
        return None
    return base


def _support_log_prob(fn: Any, value: jax.Array, dim: int) -> jax.Array | None:
    """The log density of an enumerated ``Categorical`` site at its support laid along its own
    dim `dim` (value ``arange(K)`` there), read without a gather; None for other sites.

    numpyro gathers ``log_pmf[..., k]`` for every k of the grid (a scatter in the gradient);
    the same numbers are ``log_pmf`` with its class axis moved to `dim`: a transpose, exact
    bit for bit (numpyro's own log-probabilities, masked by numpyro's ``validate_sample``).
    Only for numpyro's ``CategoricalProbs`` / ``CategoricalLogits`` (through a plate's
    ``ExpandedDistribution``) with validation on and logits that do not vary along `dim`."""
    base = _categorical_base(fn)
    if base is None:
        return None
    shape = tuple(base.batch_shape)
    if -dim <= len(shape) and shape[dim] != 1:
        return None
    lp = _LAID_LOG_PROB(base, value, dim)
    return jnp.broadcast_to(lp, jax.lax.broadcast_shapes(tuple(fn.batch_shape), jnp.shape(value)))


def _observed_log_prob(fn: Any, value: Any, enum_dims) -> jax.Array | None:
    """The log density of an observed ``Categorical`` whose parameters vary along enumeration
    dims, read from the un-broadcast logits; None for any other site (numpyro's ``log_prob``).

    numpyro's ``log_prob`` first broadcasts the logits to the site's whole shape (enumeration
    dims × plates × classes) and gathers one number per element (``take_along_axis``), whose
    gradient scatters them back one by one.  Here the enumeration axes of the logits are moved
    last and kept whole: one gather of ``log_pmf[plate index..., y, :]`` slices, as a
    hand-marginalised model indexes ``log(beta)[..., y, :]`` (Dawid–Skene: 45 × 7 slices of 4
    classes instead of 4 × 45 × 7 numbers; its likelihood's gradient 2.3× cheaper).  Exact: a
    gather copies numpyro's own log-probabilities (``CategoricalProbs.logits``; the normalised
    logits of ``CategoricalLogits``), bit for bit, and numpyro's ``validate_sample`` masks
    out-of-support data as numpyro does.  Lowered only for numpyro's own ``CategoricalProbs``
    / ``CategoricalLogits`` (through the ``ExpandedDistribution`` that plates add) with
    argument validation on, integer data not varying along the enumeration dims; everything
    else keeps numpyro's ``log_prob``."""
    base = _categorical_base(fn)
    if base is None:
        return None
    shape = tuple(base.batch_shape)
    axes = tuple(d for d in enum_dims if -d <= len(shape) and shape[d] > 1)
    if not axes:
        return None  # nothing broadcast along an enumeration dim: numpyro's gather is as cheap
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.integer) or any(-d <= value.ndim and value.shape[d] > 1 for d in axes):
        return None
    try:
        jax.lax.broadcast_shapes(shape, value.shape)
    except (ValueError, TypeError):
        return None  # shapes that do not broadcast: numpyro's log_prob says so
    lp = _GATHERED_LOG_PROB(base, value, axes)
    if base is not fn:  # numpyro's ExpandedDistribution.log_prob: the base's, broadcast
        lp = jnp.broadcast_to(lp, jax.lax.broadcast_shapes(tuple(fn.batch_shape), jnp.shape(value)))
    return lp


def _exact_zeros(fn: Any, value: Any, lp: jax.Array) -> jax.Array:
    """``ppl.checks.exact_zeros`` as ``ppl.core.site_log_prob`` applies it: −inf where the value
    has probability zero (NumPyro clamps ``Bernoulli`` / ``Binomial(probs=)`` away from 0 and 1,
    so impossible data got a finite marginal, e.g. −1416.8 for y = 1 under probs 0 at every z
    instead of −inf).  ``Categorical(probs=)`` is left as it is: its ``log_prob`` reads
    ``log(probs)``, already −inf at a zero (tests/test_enum_entry_points.py checks it), and the
    check would add a gather on the whole enumeration grid."""
    base = fn
    while type(base).__name__ in ("Independent", "ExpandedDistribution"):
        base = base.base_dist
    return lp if type(base).__name__ == "CategoricalProbs" else exact_zeros(fn, value, lp)


class _Enum(Messenger):
    """Enumerate finite discrete latent sites in parallel and record every site's log factor."""

    def __init__(self, first_dim: int, max_elements: int, known: Mapping[int, _Var] | None = None,
                 in_step: bool = False, record: bool = False):
        super().__init__()
        self.next_dim = first_dim
        self.max_elements = int(max_elements)
        self.known = dict(known or {})  # dims of variables made outside (outer sites, previous states)
        self.vars: dict[int, _Var] = {}
        self.factors: list[tuple[jax.Array, frozenset]] = []
        self.plates: dict[str, int] = {}
        self.extra = jnp.zeros(())
        self.in_step = in_step
        self.record = record
        self.scans: list[dict] = []
        self._op = "sum"
        self.outer_frames: list = []
        self.names: list[str] = []  # the site that made each factor (for error messages)
        #: (name, k, shape) -> index array into the support, or None: the relabelled run of the
        #: element-by-element check (_check_elementwise); None in an ordinary run
        self.relabel: Callable | None = None
        self.laid: dict[str, tuple] = {}  # site -> (its dim, its value) while it is the support laid along the dim

    # -- enumeration -----------------------------------------------------------------------------

    def process_message(self, msg: dict) -> None:
        if not _is_latent_discrete(msg):
            return
        _check_enumerable(msg)
        fn, name = msg["fn"], msg["name"]
        sup = _support(msg)
        # inside a scan's step the plates around the scan have not seen the message yet
        have = {f.name for f in msg["cond_indep_stack"]}
        frames = list(msg["cond_indep_stack"]) + [f for f in self.outer_frames if f.name not in have]
        plate_dims = {f.dim for f in frames}
        nb = len(fn.batch_shape)
        for i, s in enumerate(fn.batch_shape):
            d = i - nb
            if int(s) > 1 and d not in plate_dims and d not in self.vars and d not in self.known:
                raise ModelError(
                    f"site {name!r}: its distribution has batch shape {tuple(fn.batch_shape)}, whose "
                    f"dim {d} (size {s}) is not a plate; a discrete site summed out needs every "
                    "batch dimension declared by a ppl.plate."
                )
        dim = self.next_dim
        if -dim > MAX_DIMS:
            raise ModelError(
                f"site {name!r} would be the {len(self.vars) + 1}th finite discrete site summed out "
                f"in parallel, on array dimension {dim}: past {MAX_DIMS} dimensions arrays cannot "
                "hold them. Each site summed out in parallel takes a dimension of its own, so a chain "
                "of discrete states written as a Python loop (`for t in range(T)`, NumPyro's "
                "`markov`) needs one per step: write the chain with ppl.scan, which sums it out step "
                "by step (T*K^2 work), or sample the states with mcmc.Gibbs."
            )
        self.next_dim -= 1
        k = int(sup.shape[0])
        value = sup.reshape((k,) + (1,) * (-dim - 1))
        shape = jnp.broadcast_shapes(value.shape, tuple(fn.batch_shape))
        self._guard(shape, [name], f"the log density of site {name!r}")
        depth = max([-f.dim for f in frames], default=0)
        sizes = {f.dim: f.size for f in frames}
        real = tuple(sizes.get(d, 1) for d in range(-depth, 0))  # its shape in a run without enumeration
        self.vars[dim] = _Var(name, dim, k, frozenset(f.name for f in frames), sup, real)
        if self.relabel is not None:
            # one support value per plate element, constant along every enumeration dim (its
            # own and the other sites'): broadcasting it along the others' dims would give each
            # site of a Markov chain written as a Python loop all its predecessors' dims (K^T)
            nd = len(shape)
            enum_dims = set(self.vars) | set(self.known)
            rshape = tuple(s if i == 0 or (i - nd) not in enum_dims else 1 for i, s in enumerate(shape))
            value = sup[jnp.asarray(self.relabel(name, k, rshape))]
        else:
            self.laid[name] = (dim, value)  # the support itself along `dim`: see _support_log_prob
        msg["value"] = value
        msg["in_support"] = True

    def _guard(self, shape, names, what: str) -> None:
        n = _size(shape)
        if n > self.max_elements:
            raise ModelError(
                f"enumerating the discrete sites {sorted(set(names))} would need {what} to have "
                f"{n:,} elements (shape {tuple(int(s) for s in shape)}, {n * 8 / 2**20:,.0f} MiB in "
                f"float64), over the bound of {self.max_elements:,} (ppl.enum.MAX_ELEMENTS or "
                "max_elements=): observe or Gibbs-sample some of them, or split the plates."
            )

    def postprocess_message(self, msg: dict) -> None:
        t = msg["type"]
        if t not in ("sample", "factor") or (t == "sample" and msg["intervened"]):
            return
        frames = msg["cond_indep_stack"]
        for f in frames:
            self.plates[f.name] = f.dim
        ordinal = frozenset(f.name for f in frames)
        if msg.get("log_prob") is not None:  # emitted by a combinator: already summed per step
            lp = jnp.sum(msg["log_prob"])
            ordinal = frozenset()
        elif t == "factor":
            lp = jnp.asarray(msg["value"])
        else:
            lp, laid = None, self.laid.get(msg["name"])
            if msg["is_observed"]:
                lp = _observed_log_prob(msg["fn"], msg["value"], set(self.vars) | set(self.known))
            elif laid is not None and msg["value"] is laid[1]:
                lp = _support_log_prob(msg["fn"], laid[1], laid[0])
            if lp is None:
                lp = _exact_zeros(msg["fn"], msg["value"], msg["fn"].log_prob(msg["value"]))
        if msg["mask"] is not None:
            lp = jnp.where(msg["mask"], lp, 0.0)
        if msg["scale"] is not None:
            lp = lp * msg["scale"]
        self.factors.append((lp, ordinal))
        self.names.append(msg["name"])
        if msg.get("log_jac") is not None:
            self.extra = self.extra + msg["log_jac"]

    # -- ppl.scan ----------------------------------------------------------------------------------

    def scan_hook(self, step_fn, init, xs, T, name, loc, keys, scanned):
        if self.in_step:
            raise ModelError(
                f"ppl.scan {name!r} runs inside the step of another ppl.scan with discrete sites "
                "summed out; nested scans are not enumerated: flatten them into one scan."
            )
        return _enum_scan(self, step_fn, init, xs, T, name, loc, keys, scanned)


# ---------------------------------------------------------------------------------------------
# variable elimination


def _pad(t: jax.Array, nd: int) -> jax.Array:
    t = jnp.asarray(t)
    return t.reshape((1,) * (nd - t.ndim) + t.shape) if t.ndim < nd else t


def _has(t: jax.Array, dim: int) -> bool:
    return t.ndim >= -dim and t.shape[dim] > 1


def _reduce(t: jax.Array, axes, op: str) -> jax.Array:
    axes = tuple(axes)
    if not axes:
        return t
    if op == "max":
        return jnp.max(t, axis=axes, keepdims=True)
    return jax.nn.logsumexp(t, axis=axes, keepdims=True)


def _contract(factors, vars_: Mapping[int, _Var], plates: Mapping[str, int], keep, root: frozenset,
              op: str, guard: Callable, buckets: list | None = None) -> jax.Array:
    """Sum (``op="sum"``) or maximise (``"max"``) out every variable not in `keep` from the
    plated factor graph; plates not in `root` are multiplied out.  Returns the log factor at
    `root` (a tensor over the kept dims and the root's plates).  When `buckets` is a list, each
    elimination appends ``(var, bucket tensor)`` for backward sampling (reverse order)."""
    keep = set(keep)
    nd = max([-d for d in vars_] + [-d for d in plates.values()] + [t.ndim for t, _ in factors] + [0])
    by_ord: dict[frozenset, list] = {}
    for t, o in factors:
        by_ord.setdefault(frozenset(o), []).append(_pad(t, nd))

    def eliminate(ts: list, local: list) -> list:
        local = list(local)
        while local:
            # the variable whose bucket is smallest first (a greedy elimination order)
            def cost(v):
                b = [t for t in ts if _has(t, v.dim)]
                return _size(jnp.broadcast_shapes(*[t.shape for t in b])) if b else 0
            v = min(local, key=cost)
            local.remove(v)
            bucket = [t for t in ts if _has(t, v.dim)]
            if not bucket:
                continue
            shape = jnp.broadcast_shapes(*[t.shape for t in bucket])
            names = [w.name for d, w in vars_.items() if len(shape) >= -d and shape[d] > 1]
            guard(shape, names, "an intermediate factor")
            b = sum(bucket[1:], bucket[0])
            if buckets is not None:
                buckets.append((v, b))
            ts = [t for t in ts if not _has(t, v.dim)] + [_reduce(b, [nd + v.dim], op)]
        return ts

    while True:
        pending = [o for o in by_ord if o != root and by_ord[o]]
        if not pending:
            break
        o = max(pending, key=lambda s: (len(s), sorted(s)))
        ts = by_ord.pop(o)
        local = [v for v in vars_.values() if v.ordinal == o and v.dim not in keep]
        ts = eliminate(ts, local)
        for t in ts:
            rest = [v for v in vars_.values() if _has(t, v.dim)]
            for v in rest:
                if not v.ordinal <= o:
                    raise ModelError(
                        f"site {v.name!r} (in plates {sorted(v.ordinal)}) reaches a site in plates "
                        f"{sorted(o)} that it is not in: a value of a plated site is used outside its plate."
                    )
            parent = frozenset().union(*[v.ordinal for v in rest]) | (root & o)
            if parent == o:
                names = sorted(v.name for v in rest)
                raise ModelError(
                    f"the discrete sites {names} (plates {[sorted(v.ordinal) for v in rest]}) meet in "
                    f"plates {sorted(o)} that none of them is in alone; this plate structure cannot be "
                    "summed out without enumerating the plates jointly. Observe or Gibbs-sample one of them."
                )
            axes = [nd + plates[p] for p in o - parent]
            t = jnp.sum(t, axis=tuple(axes), keepdims=True) if axes else t
            by_ord.setdefault(parent, []).append(t)
    ts = by_ord.get(root, [])
    local = [v for v in vars_.values() if v.dim not in keep and v.ordinal <= root]
    ts = eliminate(ts, local)
    out = sum(ts[1:], ts[0]) if ts else jnp.zeros((1,) * nd)
    allowed = {d for d in keep} | {plates[p] for p in root}
    stray = [d for d in range(-out.ndim, 0) if out.shape[d] > 1 and d not in allowed]
    if stray:
        raise ModelError(
            f"after summing out the discrete sites {sorted(v.name for v in vars_.values())}, the log "
            f"density still varies along dims {stray}: a value that depends on the discrete sites of a "
            "ppl.scan (its carry or outputs) is used after the scan, or a site has batch dims that are "
            "not plates. Use such values inside the scan's step."
        )
    return out


def _select(t: jax.Array, dim: int, idx: jax.Array) -> jax.Array:
    """t at index `idx` along `dim` (idx a full-rank index tensor, size 1 along `dim`)."""
    nd = max(t.ndim, idx.ndim, -dim)
    t, idx = _pad(t, nd), _pad(idx, nd)
    shape = list(jnp.broadcast_shapes(t.shape, idx.shape))
    shape[dim] = 1
    return jnp.take_along_axis(t, jnp.broadcast_to(idx, shape), axis=nd + dim)


def _choose(key: Any, logits: jax.Array, axes: list[int], temperature: int, name: str) -> list[jax.Array]:
    """Draw (or, at temperature 0, maximise) jointly over `axes` of a log-weight tensor; returns one
    index tensor per axis (size 1 along every axis of `axes`)."""
    nd = logits.ndim
    axes = [nd + a if a < 0 else a for a in axes]
    rest = [i for i in range(nd) if i not in axes]
    moved = jnp.transpose(logits, rest + axes)
    sizes = [logits.shape[a] for a in axes]
    flat = moved.reshape(moved.shape[: len(rest)] + (_size(sizes),))
    if temperature == 0:
        j = jnp.argmax(flat, axis=-1)
    else:
        j = randomness.draw(key, dist.Categorical(logits=flat), (), name)
    idx = jnp.unravel_index(j, sizes) if len(sizes) > 1 else (j,)
    out = []
    for i in idx:
        full = jnp.expand_dims(i, tuple(range(len(rest), nd)))  # rest dims first, then size-1 axes
        inv = np.argsort(rest + axes)
        out.append(jnp.transpose(full, inv))
    return out


def _backward(key: Any, buckets: list, assign: dict, temperature: int) -> Any:
    """Sample (or maximise) the eliminated variables in reverse order of elimination."""
    for v, b in reversed(buckets):
        for d, idx in assign.items():
            if _has(b, d):
                b = _select(b, d, idx)
        key, sub = jax.random.split(key)
        (assign[v.dim],) = _choose(sub, b, [v.dim], temperature, v.name)
    return key


# ---------------------------------------------------------------------------------------------
# enumerated ppl.scan


def _swap(leaf: jax.Array, pairs, nd: int) -> jax.Array:
    leaf = _pad(leaf, nd)
    for a, b in pairs:
        leaf = jnp.swapaxes(leaf, nd + a, nd + b)
    return leaf


def _enum_scan(outer: _Enum, step_fn, init, xs, T, name, loc, keys, scanned):
    from .combinators import _Collector, _Localizer

    d0 = outer.next_dim
    root = frozenset(h.name for h in core.active_handlers(core.plate))
    plate_dims = {h.name: h.dim for h in core.active_handlers(core.plate)}
    info: dict = {}
    frames = [core.CondIndepFrame(h.name, h.subsample_size, h.dim, h.size) for h in core.active_handlers(core.plate)]

    def run_step(carry, x, slices, ks, known):
        saved = loc.install(ks, slices)
        col = _Collector()
        inner = _Enum(d0, outer.max_elements, known=known, in_step=True)
        inner.outer_frames = frames
        try:
            with col, inner, scope(prefix=name):
                carry, y = step_fn(carry, x)
        finally:
            _Localizer.restore(saved)
        return carry, y, inner

    x0 = jax.tree_util.tree_map(lambda a: a[0], xs)
    sl0 = [{k: v[0] for k, v in part.items()} for part in scanned]
    ks0 = [k[0] for k in keys]

    # probe 1: the step's discrete sites, from the initial carry
    def probe(carry):
        c, _, inner = run_step(carry, x0, sl0, ks0, dict(outer.vars))
        info["vars"] = list(inner.vars.values())
        return c

    c_shape = jax.eval_shape(probe, init)
    cur = info["vars"]
    m = len(cur)
    pairs = [(v.dim, v.dim - m) for v in cur]  # current dim <-> previous dim
    nd = -(d0 - 2 * m + 1) if m else -d0 - 1
    c_leaves, c_tree = jax.tree_util.tree_flatten(c_shape)
    dep = [any(len(l.shape) >= -v.dim and l.shape[v.dim] > 1 for v in cur) for l in c_leaves]
    carry_vars = [v for v in cur if any(len(l.shape) >= -v.dim and l.shape[v.dim] > 1 for l in c_leaves)]
    for v in carry_vars:
        if v.ordinal != root:
            raise ModelError(
                f"site {name}/{v.name.split('/')[-1]!r} carries the state of ppl.scan {name!r} but is "
                f"inside plates {sorted(v.ordinal - root)} of the step; put the plate outside the scan."
            )
    prev_vars = {v.dim - m: _Var(v.name, v.dim - m, v.size, v.ordinal, v.support, v.batch_shape) for v in carry_vars}
    init_leaves = jax.tree_util.tree_leaves(init)
    if len(init_leaves) != len(c_leaves):
        raise ModelError(f"ppl.scan {name!r}: the step returns a carry of another structure than init.")
    in_leaves = []
    for il, cl, d in zip(init_leaves, c_leaves, dep):
        if d:
            shape = jnp.broadcast_shapes(_swap(jnp.zeros(cl.shape, jnp.int8), pairs, nd).shape, _pad(jnp.asarray(il), nd).shape)
            in_leaves.append(jnp.broadcast_to(_pad(jnp.asarray(il), nd), shape).astype(cl.dtype))
        else:
            in_leaves.append(jnp.asarray(il, cl.dtype))
    carry0 = jax.tree_util.tree_unflatten(c_tree, in_leaves)
    kprev = _size([v.size for v in carry_vars])
    prev_axes = [nd + d for d in prev_vars]
    cur_dims = {v.dim for v in carry_vars}
    outer_dims = set(outer.vars)

    def factors(carry, inp):
        """One step on the grid: (its carry moved to the previous dims, its output, its factor
        g(prev, cur) with the step's other discrete sites summed out, its log-Jacobians)."""
        x, slices, ks = inp
        known = {**outer.vars, **prev_vars}
        c, y, inner = run_step(carry, x, slices, ks, known)
        out_leaves = []
        for l, d, li in zip(jax.tree_util.tree_leaves(c), dep, jax.tree_util.tree_leaves(carry)):
            if d:
                l = _pad(l, nd)
                if any(l.shape[p] > 1 for p in prev_axes):
                    raise ModelError(
                        f"ppl.scan {name!r}: the carry depends on the previous step's discrete sites; "
                        "an enumerated scan needs the carry to depend on the current step's discrete "
                        "sites only (a first-order chain)."
                    )
                l = jnp.broadcast_to(_swap(l, pairs, nd), jnp.shape(li))
            out_leaves.append(l)
        c = jax.tree_util.tree_unflatten(c_tree, out_leaves)
        allv = {**outer.vars, **prev_vars, **inner.vars}
        keep = set(prev_vars) | cur_dims | outer_dims
        g = _contract(inner.factors, allv, {**plate_dims, **inner.plates}, keep, root, outer._op,
                      outer._guard)
        return c, y, _pad(g, nd), inner.extra

    def forward(alpha, g):
        a = _swap(_reduce(_pad(alpha, nd) + g, prev_axes, outer._op), pairs, nd)
        return a, ((g, a) if outer.record else None)

    def body(state, inp):
        carry, alpha, extra = state
        c, y, g, ex = factors(carry, inp)
        a, rec = forward(alpha, g)
        return (c, a, extra + ex), (y, rec)

    if outer.record:
        info_inner = info["vars"]
        local = [v for v in info_inner if v.dim not in cur_dims]
        if local:
            raise ModelError(
                f"infer_discrete: ppl.scan {name!r} has discrete sites that are not part of the carry "
                f"({[v.name for v in local]}); recovering them is not supported: return them in the carry."
            )
    alpha0 = jnp.full((1,) * nd, -np.log(kprev) if kprev > 1 else 0.0)
    alpha0 = jnp.broadcast_to(alpha0, tuple(
        (prev_vars[d - nd].size if (d - nd) in prev_vars else 1) for d in range(nd)))
    shapes = jax.eval_shape(lambda s: body(s, (x0, sl0, ks0))[0], (carry0, alpha0, jnp.zeros(())))
    alpha0 = jnp.broadcast_to(alpha0, shapes[1].shape).astype(shapes[1].dtype)
    outer._guard((T,) + tuple(shapes[1].shape) + ((kprev,) if outer.record else ()),
                 [v.name for v in carry_vars], f"the forward messages of ppl.scan {name!r}")
    fast = _parallel_steps(factors, forward, carry0, alpha0, (xs, scanned, keys), (x0, sl0, ks0), T) \
        if all(dep) and T > 1 else None
    if fast is not None:
        carry, alpha, extra, ys, recs = fast
    else:
        (carry, alpha, extra), (ys, recs) = jax.lax.scan(body, (carry0, alpha0, jnp.zeros(())), (xs, scanned, keys), length=T)
    total = _reduce(alpha, prev_axes, outer._op)
    outer.factors.append((total, root))
    outer.names.append(name)
    outer.next_dim = d0 - 2 * m
    outer.extra = outer.extra + extra
    for p in root:
        outer.plates[p] = plate_dims[p]
    if outer.record:
        outer.scans.append({"name": name, "vars": carry_vars, "prev": prev_vars, "pairs": pairs,
                            "nd": nd, "g": recs[0], "alpha": recs[1], "m": m})
    return carry, ys


def _parallel_steps(factors, forward, carry0, alpha0, inputs, first, T):
    """The steps' factors evaluated for all t at once (``vmap``), then only the forward recursion
    in ``lax.scan``: valid when the carry entering every step after the first is the same tensor
    (the state laid on the grid), which is checked by ``vmap(out_axes=None)`` at trace time;
    returns None (use the sequential scan) when the carry varies with t."""
    c1, y0, g0, ex0 = factors(carry0, first)
    rest = jax.tree_util.tree_map(lambda a: a[1:], inputs)
    try:
        c_b, y_b, g_b, ex_b = jax.vmap(lambda i, inp: factors(c1, inp), out_axes=(None, 0, 0, 0))(
            jnp.arange(T - 1), rest)
    except ValueError as e:
        if isinstance(e, ModelError):
            raise
        return None
    a1, rec0 = forward(alpha0, g0)
    a1 = jnp.broadcast_to(a1, alpha0.shape)
    alpha, recs = jax.lax.scan(forward, a1, g_b)
    cat = lambda a, b: jnp.concatenate([jnp.asarray(a)[None], b], 0)  # noqa: E731
    ys = jax.tree_util.tree_map(cat, y0, y_b)
    recs = None if rec0 is None else jax.tree_util.tree_map(cat, rec0, recs)
    return c_b, alpha, ex0 + jnp.sum(ex_b), ys, recs


# ---------------------------------------------------------------------------------------------
# public functions


class _Given(Provide):
    """Substitute given values at latent sample sites (scored as latent)."""

    verb = "marginal_log_density"

    def __init__(self, data: Mapping[str, Any]):
        super().__init__(None, data, strict=False)

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg["intervened"]:
            return
        found, v = self.lookup(msg)
        if found:
            # a NumPy value (e.g. a draw from run.samples) becomes a JAX array: model code may
            # index it with an enumerated (traced) site, which a NumPy array refuses
            self.put(msg, jnp.asarray(v) if isinstance(v, np.ndarray) else v, "latent")


def _probe(fn, args, kwargs, handlers) -> _Fill:
    fill = _Fill()

    def go():
        run(fn, args, kwargs, fill, *handlers)
        return jnp.zeros(())

    jax.eval_shape(go)
    return fill


def _enumerated(fn, args, kwargs, handlers, op="sum", record=False, nesting=None,
                max_elements=None):
    """Run `fn` with its finite discrete latent sites enumerated; return the _Enum recorder."""
    if nesting is None:
        nesting = _probe(fn, args, kwargs, handlers).nesting
    enum = _Enum(-nesting - 1, MAX_ELEMENTS if max_elements is None else max_elements, record=record)
    enum._op = op
    _, sites = run(fn, args, kwargs, enum, *handlers)
    return enum, sites


def _concrete(*trees) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(trees))


def _relabelling(variant: int):
    """Each enumerated site's value replaced, in every plate element i, by one support value
    index c_i, the same along its enumeration dim.  Variant 0: c_i random in 1..K-1; variant 1:
    that minus one (so any sum, mean, max or min over the site differs from the ordinary run's
    in at least one of the two); variant 2: c_i random in 0..K-1 (elements unlike each other)."""
    made: dict = {}

    def relabel(name, k, shape):
        shape = tuple(int(s) for s in shape)
        rng = np.random.default_rng([zlib.crc32(name.encode()), variant // 2])
        lo = 1 if variant < 2 and k > 1 else 0
        c = rng.integers(lo, max(k, lo + 1), size=(1,) + shape[1:])
        if variant == 2 and c.size > 1 and k > 1 and np.all(c == c.flat[0]):
            c.flat[0] = (c.flat[0] + 1) % k  # elements unlike each other: cross-element uses show
        if variant == 1:
            c = c - 1 if k > 1 else c
        idx = np.broadcast_to(c, shape)
        made[name] = idx
        return idx

    return relabel, made


def _gathered(fa: np.ndarray, vars_: Mapping[int, _Var], made: Mapping[str, np.ndarray], nd: int) -> np.ndarray:
    """The ordinary run's factor read at the relabelled indices of every variable it varies along."""
    fa = fa.reshape((1,) * (nd - fa.ndim) + fa.shape)
    for d, v in vars_.items():
        if v.name not in made or fa.shape[d] == 1:
            continue
        idx = made[v.name]
        idx = idx.reshape((1,) * (nd - idx.ndim) + idx.shape)
        shape = np.broadcast_shapes(fa.shape, idx.shape)
        fa = np.take_along_axis(np.broadcast_to(fa, shape), np.broadcast_to(idx, shape), axis=nd + d)
    return fa


_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
_CHECKED: dict = {}  # digests of the (model, inputs) already found element by element


def _digest(fn, trees) -> tuple | None:
    """A key for the model function and its concrete inputs (None when some input is traced)."""
    if not _concrete(trees):
        return None
    h = hashlib.sha1(str(jax.tree_util.tree_structure(trees)).encode())
    for leaf in jax.tree_util.tree_leaves(trees):
        a = np.asarray(leaf) if isinstance(leaf, (jax.Array, np.ndarray, int, float, bool, complex)) else None
        if a is None:
            h.update(repr(leaf).encode())
        else:
            h.update(str((a.shape, a.dtype)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return (fn, h.hexdigest())


def _check_elementwise(fn, args, kwargs, handlers, nesting: int, max_elements=None, values=None) -> None:
    """Refuse a model that uses a summed-out plated site other than element by element.

    Enumeration lays a site's support along a dimension of its own, shared by its plate's
    elements; that sums the elements out one by one, which is exact only if every factor reads
    element i of the site in element i (indexing, arithmetic, distributions built from it).  A
    reduction across the plate (``jnp.sum(z)``, ``z.mean()``) instead reduces the support and
    gives a wrong marginal with no shape error.  The check: run the model again with each
    enumerated site's value relabelled (in every plate element one support value, the same along
    its enumeration dim: see _relabelling): an element-by-element model's
    factors are then exactly the ordinary run's factors read at those indices; any other
    factor depends on the site across elements (or across its support) and is refused, naming
    it.  Runs eagerly on concrete values (four runs of the model); with traced inputs it is
    skipped (the callers check once at a concrete point)."""
    key = _digest(fn, (args, kwargs, values))
    if key is None or key in _CHECKED:
        return
    cap = MAX_ELEMENTS if max_elements is None else max_elements
    info: dict = {}

    def runs():  # the ordinary run and the three relabelled ones, compiled as one program
        base, _ = _enumerated(fn, args, kwargs, handlers, nesting=nesting, max_elements=max_elements)
        info["base"], info["made"], out = base, [], [[f for f, _ in base.factors]]
        if not base.vars:
            return out
        for variant in (0, 1, 2):
            relabel, made = _relabelling(variant)
            enum = _Enum(-nesting - 1, cap)
            enum.relabel = relabel
            run(fn, args, kwargs, enum, *handlers)
            info["made"].append(made)
            out.append([f for f, _ in enum.factors])
        return out

    try:  # compiled for speed of compilation: the check runs once, on small programs' worth of work
        outs = jax.jit(runs).lower().compile(_FAST_COMPILE)()
    except Exception as e:  # an XLA build without these options: compile as usual
        if isinstance(e, ModelError):
            raise
        outs = jax.jit(runs)()
    if not _concrete(outs):
        return  # called while an outer function is traced: checked where the values are concrete
    outs = jax.device_get(outs)
    base = info["base"]
    for made, factors in zip(info["made"], outs[1:]):
        if len(factors) != len(outs[0]):
            return  # a different structure (data-dependent control flow): nothing to compare
        for fa, fb, site in zip(outs[0], factors, base.names):
            if not _agrees(np.asarray(fa), np.asarray(fb), base.vars, made):
                _refuse(site, np.asarray(fa), base, fn, args, kwargs, handlers, nesting, max_elements)
    if len(_CHECKED) > 256:
        _CHECKED.clear()
    _CHECKED[key] = True


def _agrees(fa: np.ndarray, fb: np.ndarray, vars_: Mapping[int, _Var], made: Mapping[str, np.ndarray]) -> bool:
    """Whether the relabelled run's factor `fb` is the ordinary run's `fa` read at the relabelled indices."""
    nd = max(fa.ndim, fb.ndim, max(-d for d in vars_))
    want = _gathered(fa, vars_, made, nd)
    fb = fb.reshape((1,) * (nd - fb.ndim) + fb.shape)
    try:
        return bool(np.allclose(*np.broadcast_arrays(want, fb), rtol=1e-4, atol=1e-5))
    except ValueError:
        return False


def _refuse(site, fa, base, fn, args, kwargs, handlers, nesting, max_elements):
    """Name the enumerated sites whose relabelling alone changes `site` (on the error path only)."""
    culprits = []
    i = base.names.index(site)
    for v, variant in itertools.product(base.vars.values(), (0, 1, 2)):
        if v in culprits:
            continue
        relabel, made = _relabelling(variant)
        enum = _Enum(-nesting - 1, MAX_ELEMENTS if max_elements is None else max_elements)
        enum.relabel = lambda name, k, shape, v=v, relabel=relabel: (
            relabel(name, k, shape) if name == v.name else np.broadcast_to(
                np.arange(k).reshape((k,) + (1,) * (len(shape) - 1)), tuple(int(s) for s in shape)))
        with jax.ensure_compile_time_eval():
            run(fn, args, kwargs, enum, *handlers)
        if not _agrees(fa, np.asarray(enum.factors[i][0]), {v.dim: v}, made):
            culprits.append(v)
    culprits = culprits or list(base.vars.values())
    desc = ", ".join(f"{v.name!r}" + (f" (plates {sorted(v.ordinal)})" if v.ordinal else "") for v in culprits)
    raise ModelError(
        f"site {site!r} uses the summed-out discrete site(s) {desc} other than element by element: "
        "its value is not, in each plate element, a function of that element's value alone (e.g. "
        "jnp.sum(z), z.mean() or a sort of z across its plate, or a reduction over z's values). "
        "Enumeration sums each element out separately and would give a wrong marginal. Keep every "
        "use of the site inside its plate and elementwise, or sample it with mcmc.Gibbs (exact for "
        "coupled elements)."
    )


class _StandIn(Provide):
    """Concrete stand-ins at latent sites, for the element-by-element check when the values a
    caller holds are traced: a given concrete value is kept; a given traced value, or a
    continuous site not given, becomes ``biject_to(support)(u)`` with u uniform in (-2, 2) (a
    prior draw where the support has no bijection; a key per address; the shape of the given
    value, else the site's); a given discrete one its
    first support value (a draw for an infinite support).  Finite discrete sites not given are
    left to the enumeration.  ``made``: address -> the value put there (None for a site seen
    twice, e.g. in a ``ppl.scan`` step: no stand-in is made for it)."""

    def __init__(self, data: Mapping[str, Any]):
        super().__init__(None, data, strict=False)
        self.made: dict[str, Any] = {}

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg["intervened"] or msg["value"] is not None:
            return
        fn, name = msg["fn"], msg["name"]
        found, v = self.lookup(msg)
        if found and _concrete(v):
            v = jnp.asarray(v)
        elif found or not fn.support.is_discrete:
            try:
                s = self._make(fn, name, tuple(np.shape(v)) if found else tuple(fn.batch_shape) + tuple(fn.event_shape))
            except ModelError:
                raise
            except Exception as e:  # noqa: BLE001 - reported by check_summed_out (a warning)
                raise _NoStandIn(f"no stand-in can be made at site {name!r} ({type(e).__name__}: {e})") from e
            v = s.astype(getattr(v, "dtype", s.dtype)) if found else s
        else:
            return  # a finite discrete site not given: summed out (_Fill gives it a placeholder)
        self.made[name] = None if name in self.made else v
        self.put(msg, v, "latent")

    @staticmethod
    def _make(fn, name: str, shape: tuple) -> jax.Array:
        key = jax.random.key(zlib.crc32(name.encode()))
        if fn.support.is_discrete:
            first = (_support({"fn": fn, "name": name})[0] if getattr(fn, "has_enumerate_support", False)
                     else fn.sample(key).reshape(-1)[0])
            return jnp.broadcast_to(first, shape)
        try:
            t = biject_to(fn.support)
        except NotImplementedError:  # a support without a bijection (ProjectedNormal's sphere): a prior draw
            return jnp.broadcast_to(fn.sample(key), shape)
        return t(jax.random.uniform(key, tuple(t.inverse_shape(shape)), minval=-2.0, maxval=2.0))


class _NoStandIn(Exception):
    """No concrete stand-in can be made at a site (its distribution can neither be sampled nor
    reached by a bijection): the element-by-element check cannot run (check_summed_out warns)."""


def _stand_ins(fn, args, kwargs, values, model_name: str) -> dict | str:
    """address -> stand-in (see _StandIn), from one run of the model compiled as one program
    (run eagerly, each operation would be compiled on its own in a cold process: seconds).
    Returns why not (a str) where no stand-in can be made at some site; raises ``ModelError``
    (naming the model and the cause) where the model itself fails when run at the stand-ins."""

    def go():
        stand = _StandIn(values)
        run(fn, args, kwargs, _Fill(), stand)
        return stand.made

    try:
        return jax.jit(go).lower().compile(_FAST_COMPILE)()
    except ModelError:
        raise
    except Exception:  # noqa: BLE001 - an XLA build without these options, a model closing over a
        pass  # caller's traced values, or one failing anyway (below): eagerly (inside a trace the
    try:  # stand-ins may then be traced)
        return go()
    except ModelError:
        raise
    except _NoStandIn as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - the model is broken at values in its supports
        raise ModelError(
            f"model {model_name!r} raised {type(e).__name__} ({e}) when run at values in its sites' "
            "supports, for the element-by-element check of its summed-out discrete sites "
            "(ppl.enum.check_summed_out). Fix the model: it would fail at such values in inference too."
        ) from e


_ENTRY: contextvars.ContextVar = contextvars.ContextVar("ppl_enum_entry_point", default=None)
_WARNED: set = set()  # (model function, entry point) pairs already warned about


@contextlib.contextmanager
def _entry_point(name: str):
    """Name the entry point (e.g. ``vi.fit(trace_enum_elbo)``) in what check_summed_out says,
    for the checks made inside (the outermost name wins)."""
    token = _ENTRY.set(_ENTRY.get() or name)
    try:
        yield
    finally:
        _ENTRY.reset(token)


def _not_checked(m, why: str) -> bool:
    """Warn (once per model and entry point) that the element-by-element check could not run."""
    entry = _ENTRY.get() or "ppl.enum.check_summed_out"
    if (m.fn, entry) not in _WARNED:
        _WARNED.add((m.fn, entry))
        warnings.warn(
            f"{entry}: the element-by-element check of model {m.name!r}'s summed-out discrete sites "
            f"could not run: {why}. A use of a summed-out site across its plate (e.g. jnp.sum(z)) is "
            "not refused here, and would give a wrong marginal.",
            InferenceWarning, stacklevel=3)
    return False


def check_summed_out(model: Any, args: tuple = (), kwargs: Mapping[str, Any] | None = None,
                     values: Mapping[str, Any] | None = None, max_elements: int | None = None) -> bool:
    """Refuse (``ModelError`` naming the sites) a model that uses a summed-out plated discrete
    site other than element by element (``jnp.sum(z)`` across its plate): the one check that
    every entry point running a model with summed-out sites goes through, at concrete inputs.

    The model is run with the latent sites in `values` held there and its other finite discrete
    latent sites summed out (:func:`marginal_log_density`'s model).  With ``values=None`` every
    continuous latent site, and with traced `values` (e.g. a guide's draw inside a compiled
    objective) each of them, is replaced by a concrete stand-in in its support (concrete
    `values` are used as they are), so the check also runs where only the
    model's inputs `args`, `kwargs` are concrete.  It is a structural check (see
    ``docs/design/enumeration.md``), run once per (model, inputs) and cached.  Returns True when
    the model was checked (or has nothing summed out), False when it cannot be checked here
    because `args` / `kwargs` are traced: a driver then calls it with its concrete inputs.  It
    also returns False, with an ``InferenceWarning`` (once per model and entry point) naming the
    model, the entry point and why, where no concrete stand-ins can be had (a site sampled in
    each step of a ``ppl.scan``, a model closing over its caller's traced values, a site that
    can neither be sampled nor reached by a bijection); a model that fails when run at values
    in its supports is refused (``ModelError`` naming it and the cause).

    Example:
        >>> @ppl.model
        ... def counts(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
        ...     with ppl.plate("data", y.shape[0]):
        ...         z = ppl.sample("z", dist.Bernoulli(0.3))
        ...         ppl.sample("y", dist.Normal(mu[z], 1.0), obs=y)
        ...     ppl.factor("few_ones", -0.5 * jnp.sum(z))    # z reduced across its plate
        >>> try:
        ...     ppl.enum.check_summed_out(counts, (jnp.array([0.1, 2.0]),))
        ... except ppl.ModelError as e:
        ...     print(str(e)[:60])
        site 'few_ones' uses the summed-out discrete site(s) 'z' (pl
    """
    m = as_model(model)
    fn = m.fn
    args, kwargs = tuple(args), dict(kwargs or {})
    if not _concrete((args, kwargs)):
        return False
    # (no ensure_compile_time_eval here: inside a caller's trace the compiled programs below
    # return concrete values, and evaluated op by op they would cost a compile per operation)
    if values is not None and _concrete(values):
        given = dict(values)
    else:
        given = _stand_ins(fn, args, kwargs, dict(values or {}), m.name)
        if isinstance(given, str):
            return _not_checked(m, given)
        twice = [k for k, v in given.items() if v is None]
        if twice:
            return _not_checked(m, f"site(s) {twice} are sampled more than once (in a ppl.scan step), "
                                   "so no one stand-in value can be held there")
        traced = [k for k, v in given.items() if not _concrete(v)]
        if traced:
            return _not_checked(m, f"the stand-ins at {traced} are traced: the site is sampled inside a "
                                   "ppl.scan step, or the model depends on a value "
                                   "traced by its caller's jit/vmap/grad other than through its inputs "
                                   "(e.g. it closes over one)")
    if _digest(fn, (args, kwargs, given)) in _CHECKED:
        return True
    handlers = (_Given(given),)
    fill = _probe(fn, args, kwargs, handlers)
    if fill.discrete:
        _check_elementwise(fn, args, kwargs, handlers, fill.nesting, max_elements, given)
    return True


def _total(enum: _Enum, buckets=None) -> jax.Array:
    t = _contract(enum.factors, enum.vars, enum.plates, set(), frozenset(), enum._op, enum._guard, buckets)
    return jnp.sum(t) + enum.extra


def marginal_log_density(model: Any, values: Mapping[str, Any], *args: Any,
                         max_elements: int | None = None, **kwargs: Any) -> jax.Array:
    """log Σ_z p(values, z, observations): the model's log density at the given latent `values`
    with every other finite discrete latent site z summed out exactly.

    Sites in plates are summed element by element (N·K work, not K^N); sites in ``ppl.scan``
    by the forward algorithm (T·K²).  ``max_elements`` bounds the largest tensor (default
    ``ppl.enum.MAX_ELEMENTS``); a model over it is refused before anything is allocated.

    Example:
        >>> @ppl.model
        ... def coin():
        ...     z = ppl.sample("z", dist.Bernoulli(probs=0.25))
        ...     ppl.sample("y", dist.Bernoulli(probs=0.5 + 0.25 * z), obs=1)
        >>> float(jnp.exp(ppl.marginal_log_density(coin, {})))  # 3/4·1/2 + 1/4·3/4
        0.5625
    """
    m = as_model(model)
    handlers = (_Given(values),)
    nesting = _probe(m.fn, args, kwargs, handlers).nesting
    with _entry_point("ppl.marginal_log_density"):
        check_summed_out(m, args, kwargs, values, max_elements)  # traced values: at concrete stand-ins
    enum, _ = _enumerated(m.fn, args, kwargs, handlers, nesting=nesting, max_elements=max_elements)
    return _total(enum)


def enumerable_sites(model: Any, values: Mapping[str, Any], *args: Any, **kwargs: Any) -> list[str]:
    """The addresses of the finite discrete latent sites that the enumeration sums out, in order.

    Example:
        >>> @ppl.model
        ... def m():
        ...     ppl.sample("z", dist.Bernoulli(probs=0.5))
        >>> ppl.enum.enumerable_sites(m, {})
        ['z']
    """
    m = as_model(model)
    return list(_probe(m.fn, args, kwargs, (_Given(values),)).discrete)


def _values(var: _Var, idx: jax.Array, lead: tuple = ()) -> jax.Array:
    nb = len(var.batch_shape)
    j = idx.reshape(lead + tuple(idx.shape[idx.ndim - nb:]) if nb else lead) if idx.ndim else idx
    j = jnp.broadcast_to(j, lead + var.batch_shape)
    return var.support[j]


def infer_discrete(model: Any, values: Mapping[str, Any], *args: Any, key: Any = None,
                   temperature: int = 1, max_elements: int | None = None, **kwargs: Any) -> dict:
    """Recover the finite discrete latent sites given the others: with ``temperature=1`` a draw
    from p(z | values, observations), with ``temperature=0`` its mode (the MAP assignment).

    The elimination of :func:`marginal_log_density` is run forwards and its buckets are sampled
    backwards (forward-filter backward-sample through ``ppl.scan``; Viterbi at temperature 0).
    `values` holds one value per continuous latent site (e.g. one posterior draw); returns
    address -> value of each enumerated site (with its plate shape, time leading in a scan).
    Draws go through ``ppl.randomness.draw``, so ``semantics.enumerate_paths`` can enumerate
    this sampler.

    Example:
        >>> @ppl.model
        ... def coin():
        ...     z = ppl.sample("z", dist.Bernoulli(probs=0.4))
        ...     ppl.sample("y", dist.Bernoulli(probs=0.5 + 0.5 * z), obs=1)
        >>> int(ppl.infer_discrete(coin, {}, temperature=0)["z"])   # 0.6·0.5 < 0.4·1
        1
    """
    if temperature not in (0, 1):
        raise ModelError(f"infer_discrete: temperature must be 0 (the mode) or 1 (a draw), got {temperature!r}.")
    if temperature == 1:
        key = randomness.check_key(key, "infer_discrete")
    else:
        key = jax.random.key(0) if key is None else key
    m = as_model(model)
    op = "max" if temperature == 0 else "sum"
    handlers = (_Given(values),)
    nesting = _probe(m.fn, args, kwargs, handlers).nesting
    with _entry_point("ppl.infer_discrete"):
        check_summed_out(m, args, kwargs, values, max_elements)  # traced values: at concrete stand-ins
    enum, _ = _enumerated(m.fn, args, kwargs, handlers, op=op, record=True, nesting=nesting,
                          max_elements=max_elements)
    buckets: list = []
    _contract(enum.factors, enum.vars, enum.plates, set(), frozenset(), op, enum._guard, buckets)
    assign: dict = {}
    key = _backward(key, buckets, assign, temperature)
    out = {v.name: _values(v, assign[v.dim]) for v in enum.vars.values() if v.dim in assign}
    for rec in enum.scans:
        key, sub = jax.random.split(key)
        out.update(_backward_scan(sub, rec, assign, temperature))
    return out


def _backward_scan(key, rec, assign, temperature) -> dict:
    """Backward sampling (or Viterbi) of a scan's state given the outer assignment."""
    g, alpha, prev, pairs, nd = rec["g"], rec["alpha"], rec["prev"], rec["pairs"], rec["nd"]
    T = alpha.shape[0]

    def fix(t):  # the outer variables at their chosen values
        for d, idx in assign.items():
            if t.ndim - 1 >= -d and t.shape[d] > 1:
                t = jax.vmap(lambda u, d=d, idx=idx: _select(u, d, idx))(t)
        return t

    g, alpha = fix(g), fix(alpha)
    pdims = list(prev)
    cur_of = {p: c for c, p in pairs}

    def choose(k, logits):
        return tuple(_choose(k, logits, pdims, temperature, f"{rec['name']}/state"))

    def step(nxt, inp):
        k, a_t, g_next = inp
        lg = g_next
        for p, idx in zip(pdims, nxt):
            lg = _select(lg, cur_of[p], _move(idx, p, cur_of[p], nd))
        new = choose(k, _pad(a_t, nd) + _pad(lg, nd))
        return new, new

    keys = jax.random.split(key, T)
    last = choose(keys[T - 1], alpha[T - 1])
    if T == 1:
        hist = [i[None] for i in last]
    elif randomness.requires_eager():
        nxt, out = last, [last]
        for t in range(T - 2, -1, -1):
            nxt, _ = step(nxt, (keys[t], alpha[t], g[t + 1]))
            out.append(nxt)
        out = out[::-1]
        hist = [jnp.stack([o[j] for o in out]) for j in range(len(pdims))]
    else:
        _, h = jax.lax.scan(step, last, (keys[: T - 1], alpha[: T - 1], g[1:]), reverse=True)
        hist = [jnp.concatenate([a, b[None]], 0) for a, b in zip(h, last)]
    return {prev[p].name: _values(prev[p], s, (T,)) for p, s in zip(pdims, hist)}


def _move(idx: jax.Array, src: int, dst: int, nd: int) -> jax.Array:
    """An index tensor laid along dim `src` moved to dim `dst`."""
    idx = _pad(idx, nd)
    return jnp.swapaxes(idx, nd + src, nd + dst)
