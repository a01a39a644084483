"""Loop and branch combinators that keep addresses and compile to one XLA loop or branch.

* :func:`scan` unrolls a step model over time inside one ``lax.scan``; each site of the step is
  one address (``"<name>/<site>"``) whose value is stacked on a leading time axis and whose log
  density is kept per step.
* :func:`switch` / :func:`cond` choose a branch with ``lax.switch``.  Branches may have different
  sites: the trace then holds the union of their addresses, and ``trace.active[address]`` says
  whether the site exists in this execution (its density counts only then).  When the index is
  a concrete value (no ``jit``), only the taken branch runs, so the set of addresses really
  depends on the random choices; both forms denote the same measure.

Under an eager interpreter (the exact enumerator of ``semantics``) both run as Python loops and
branches, so every random choice is visible to it.

Handlers outside a combinator apply inside it: data given to ``condition``/``substitute``/``do``
for a scanned address (shape ``(T, ...)``) is sliced step by step, and random keys are split.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import core, randomness
from .core import Messenger, emit, new_message, site_log_prob
from .errors import AddressError, ModelError, OutsideModelError
from .messengers import current_prefix, scope, seed

__all__ = ["scan", "switch", "cond"]

_FIELDS = ("value", "log_prob", "active", "fresh", "log_jac", "u")


class _Collector(Messenger):
    """Records the sites made inside a combinator body and hides them from outer recorders."""

    combinator_body = True

    def __init__(self) -> None:
        super().__init__()
        self.sites: "OrderedDict[str, dict]" = OrderedDict()

    def blocks(self, msg: dict) -> bool:
        return True

    def postprocess_message(self, msg: dict) -> None:
        t = msg["type"]
        if t == "param":
            raise ModelError(
                f"param {msg['name']!r} is declared inside ppl.scan/ppl.cond; declare params outside "
                "the combinator and pass them in."
            )
        if t not in ("sample", "factor", "deterministic"):
            return
        name = msg["name"]
        if name in self.sites:
            raise AddressError(
                f"address {name!r} is used twice in one step of a combinator: every site needs its "
                "own address."
            )
        rec = {
            "type": t,
            "is_observed": bool(msg["is_observed"]),
            "intervened": bool(msg["intervened"]),
            "constrained": bool(msg.get("constrained", False)),
            "value": jnp.asarray(msg["value"]),
            "log_prob": jnp.asarray(site_log_prob(msg)),
            "active": None if msg.get("active") is None else jnp.asarray(msg["active"]),
            "fresh": None if msg.get("fresh") is None else jnp.asarray(msg["fresh"]),
            "log_jac": None if msg.get("log_jac") is None else jnp.asarray(msg["log_jac"]),
            "u": None if msg.get("u") is None else jnp.asarray(msg["u"]),
        }
        self.sites[name] = rec


def _require_stack(what: str) -> list[Messenger]:
    stack = core._stack()
    if not stack:
        raise OutsideModelError(
            f"ppl.{what} was called outside a model: use it inside a @ppl.model function and run "
            "the model through model.simulate(key, ...) or another operation."
        )
    return stack


class _Localizer:
    """Swap handler state (random keys, per-address tables) for a combinator body, and back."""

    def __init__(self, stack: list[Messenger]):
        self.seeds = [h for h in stack if isinstance(h, seed)]
        self.tables = [(h, a) for h in stack for a in h.tables]

    def split_keys(self, num: int | None) -> list[Any]:
        out = []
        for s in self.seeds:
            k = s.next_key()
            out.append(jax.random.split(k, num) if num is not None else k)
        return out

    def install(self, keys: Sequence[Any], slices: Sequence[dict] | None, prefix: str | None = None) -> list:
        """Install one step's keys and table slices; with `prefix`, the tables' entries under it
        are replaced by the slices (an address given for a prefix of the steps only is absent from
        the steps after it)."""
        saved: list = []
        for s, k in zip(self.seeds, keys):
            saved.append((s, "key", s.key))
            s.key = k
        if slices is not None:
            for (h, a), sl in zip(self.tables, slices):
                d = getattr(h, a)
                saved.append((h, a, d))
                kept = d if prefix is None else {k: v for k, v in d.items() if not k.startswith(prefix)}
                setattr(h, a, {**kept, **sl})
        return saved

    @staticmethod
    def restore(saved: list) -> None:
        for obj, attr, val in reversed(saved):
            setattr(obj, attr, val)


def _emit_site(name: str, meta: dict, fields: dict) -> None:
    msg = new_message(meta["type"], name)
    msg["is_observed"] = meta["is_observed"]
    msg["intervened"] = meta["intervened"]
    if meta.get("constrained"):
        msg["constrained"] = True
    for f in _FIELDS:
        if fields.get(f) is not None:
            msg[f] = fields[f]
    if msg["log_prob"] is None:
        msg["log_prob"] = jnp.zeros(())
    emit(msg)


def _static_meta(rec: dict) -> dict:
    return {
        "type": rec["type"],
        "is_observed": rec["is_observed"],
        "intervened": rec["intervened"],
        "constrained": rec["constrained"],
    }


def _fields(rec: dict) -> dict:
    return {f: rec[f] for f in _FIELDS if rec.get(f) is not None}


# ---------------------------------------------------------------------------------------------
# scan


def scan(
    step: Callable,
    init: Any,
    xs: Any = None,
    length: int | None = None,
    *,
    name: str | None = None,
) -> tuple[Any, Any]:
    """Run ``carry, y = step(carry, x)`` over time, as one ``lax.scan``, keeping addresses.

    Each site ``"s"`` of the step becomes the address ``"<name>/s"`` whose value has a leading
    time axis of length T (and whose log density is kept per step in ``trace.log_probs``).
    Returns ``(final_carry, ys)`` like ``lax.scan``.  To observe data, condition on the stacked
    address (``ppl.condition(model, {"hmm/y": ys})``) or pass the data as `xs`.

    Forecasting: a value given (by ``condition``, ``substitute``, ``do``, ...) for a scanned
    address with a leading axis ``T0 < T`` covers the first ``T0`` steps only; the later steps
    draw the site from the step's distribution given the carry the prefix left (the observed or
    substituted prefix conditions, the rest is simulated).  A site given for a prefix only is not
    an observation of the whole trace (``trace.observed`` leaves it out; ``ppl.predictive``
    returns its full path, the given prefix followed by the draws).  This is for simulation and
    prediction; to fit a model (MCMC, VI, SMC), give its observations for every step it runs.

    The step's measure is applied T times with the carry threaded through: the model's density
    is the product of the per-step densities (a Markov chain when the carry is the state).

    Example:
        >>> @ppl.model
        ... def ar1(T, y=None):
        ...     def step(x_prev, y_t):
        ...         x = ppl.sample("x", dist.Normal(0.9 * x_prev, 1.0))
        ...         ppl.sample("y", dist.Normal(x, 0.5), obs=y_t)
        ...         return x, x
        ...     return ppl.scan(step, 0.0, xs=y, length=T, name="ts")
    """
    stack = _require_stack("scan")
    if name is None:
        name = getattr(step, "name", None) or getattr(step, "__name__", None)
        if not name or name == "<lambda>":
            raise ModelError("ppl.scan needs name='...' (the address prefix of the step's sites).")
    step_fn = step.fn if hasattr(step, "fn") and hasattr(step, "simulate") else step
    # time length
    xs_leaves = jax.tree_util.tree_leaves(xs)
    if xs_leaves:
        lens = {int(np.shape(leaf)[0]) if np.ndim(leaf) > 0 else -1 for leaf in xs_leaves}
        if -1 in lens or len(lens) != 1:
            raise ModelError(f"ppl.scan {name!r}: every leaf of xs needs the same leading (time) axis.")
        T = lens.pop()
        if length is not None and int(length) != T:
            raise ModelError(f"ppl.scan {name!r}: length={length} but xs has {T} steps.")
    else:
        if length is None:
            raise ModelError(f"ppl.scan {name!r}: give xs or length.")
        T = int(length)
    prefix = current_prefix() + name + "/"
    loc = _Localizer(stack)
    scanned = []
    cuts = {0, T}
    for h, a in loc.tables:
        part = {}
        for k, v in getattr(h, a).items():
            if k.startswith(prefix):
                shape = np.shape(v)
                if not shape or shape[0] > T:
                    raise ModelError(
                        f"the value given for the scanned address {k!r} has shape {tuple(shape)}; "
                        f"ppl.scan {name!r} runs {T} steps, so its leading axis must be {T} (or "
                        f"less, to give the first steps only)."
                    )
                cuts.add(int(shape[0]))
                part[k] = v
        scanned.append(part)
    keys = loc.split_keys(T)
    # a handler that runs the loop itself (ppl.enum sums the step's discrete sites out)
    hook = next((h for h in reversed(stack) if hasattr(h, "scan_hook")), None)
    if hook is not None:
        return hook.scan_hook(step_fn, init, xs, T, name, loc, keys, scanned)

    if randomness.requires_eager():
        return _scan_eager(step_fn, init, xs, T, name, loc, keys, scanned, prefix)

    def segment(carry, a: int, b: int):
        """Steps a..b-1 as one lax.scan, with the table entries that cover them."""
        meta: dict[str, dict] = {}
        parts = [{k: v[a:b] for k, v in part.items() if np.shape(v)[0] >= b} for part in scanned]

        def body(carry, inp):
            x, slices, ks = inp
            saved = loc.install(ks, slices, prefix)
            col = _Collector()
            try:
                with col, scope(prefix=name):
                    carry, y = step_fn(carry, x)
            finally:
                _Localizer.restore(saved)
            out = {}
            for n, rec in col.sites.items():
                meta[n] = _static_meta(rec)
                out[n] = _fields(rec)
            return carry, (y, out)

        seg_xs = jax.tree_util.tree_map(lambda leaf: leaf[a:b], xs)
        carry, (ys, sites) = jax.lax.scan(body, carry, (seg_xs, parts, [k[a:b] for k in keys]), length=b - a)
        return carry, ys, sites, meta

    bounds = sorted(cuts)
    carry, segs = init, []
    for a, b in zip(bounds[:-1], bounds[1:]):
        # each segment starts from the carry the previous one left (the filtered state)
        carry, ys, sites, meta = segment(carry, a, b)
        segs.append((b - a, ys, sites, meta))
    if len(segs) == 1:
        _, ys, sites, meta = segs[0]
        for n, fields in sites.items():
            _emit_site(n, meta[n], fields)
        return carry, ys
    for n, (meta, fields) in _join_segments([(L, s, m) for L, _, s, m in segs]).items():
        _emit_site(n, meta, fields)
    parts_ys = [ys for _, ys, _, _ in segs]
    ys = None if parts_ys[0] is None else jax.tree_util.tree_map(lambda *p: jnp.concatenate(p), *parts_ys)
    return carry, ys


def _join_meta(metas: list) -> dict:
    """A site's flags over the pieces of a scan: observed (intervened, constrained) only when it
    is in every piece."""
    out = dict(metas[0])
    for f in ("is_observed", "intervened", "constrained"):
        out[f] = all(m[f] for m in metas)
    return out


def _join_segments(segs: list) -> "OrderedDict[str, tuple]":
    """Concatenate per-segment site fields ``[(length, sites, meta)]`` along time; a site missing
    from a segment is inactive there."""
    order: list[str] = []
    for _, sites, _ in segs:
        order += [n for n in sites if n not in order]
    out: "OrderedDict[str, tuple]" = OrderedDict()
    for n in order:
        present = [(L, sites.get(n)) for L, sites, _ in segs]
        proto = next(f for _, f in present if f is not None)
        fields: dict[str, Any] = {}
        for f in _FIELDS:
            if all(fl is None or f not in fl for _, fl in present):
                continue
            lp = proto["log_prob"]
            like = next(fl[f] for _, fl in present if fl is not None and f in fl)
            vals = []
            for L, fl in present:
                if fl is not None and f in fl:
                    vals.append(fl[f])
                elif f == "active":
                    vals.append(jnp.full((L,) + lp.shape[1:], fl is not None))
                elif f == "fresh":
                    vals.append(jnp.zeros((L,) + like.shape[1:], bool))
                else:
                    vals.append(jnp.zeros((L,) + like.shape[1:], like.dtype))
            fields[f] = jnp.concatenate(vals)
        if any(fl is None for _, fl in present) and "active" not in fields:
            fields["active"] = jnp.concatenate([jnp.full((L,), fl is not None) for L, fl in present])
        out[n] = (_join_meta([m[n] for _, s, m in segs if n in s]), fields)
    return out


def _scan_eager(step_fn, init, xs, T, name, loc, keys, scanned, prefix):
    carry = init
    ys = []
    per_step: list[OrderedDict] = []
    for t in range(T):
        x = jax.tree_util.tree_map(lambda a: a[t], xs)
        slices = [{k: v[t] for k, v in part.items() if t < np.shape(v)[0]} for part in scanned]
        saved = loc.install([k[t] for k in keys], slices, prefix)
        col = _Collector()
        try:
            with col, scope(prefix=name):
                carry, y = step_fn(carry, x)
        finally:
            _Localizer.restore(saved)
        ys.append(y)
        per_step.append(col.sites)
    order: list[str] = []
    for sites in per_step:
        for n in sites:
            if n not in order:
                order.append(n)
    for n in order:
        recs = [sites.get(n) for sites in per_step]
        proto = next(r for r in recs if r is not None)
        fields: dict[str, Any] = {}
        present = [r is not None for r in recs]
        for f in _FIELDS:
            if all(r is None or r.get(f) is None for r in recs):
                continue
            vals = []
            for r in recs:
                if r is not None and r.get(f) is not None:
                    vals.append(r[f])
                elif f == "active":
                    vals.append(jnp.asarray(r is not None))
                elif f == "fresh":
                    vals.append(jnp.asarray(False))
                else:
                    vals.append(jnp.zeros_like(proto[f]))
            fields[f] = jnp.stack(vals)
        if not all(present) and "active" not in fields:
            fields["active"] = jnp.asarray(present)
        _emit_site(n, _join_meta([_static_meta(r) for r in recs if r is not None]), fields)
    ys_out = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ys) if ys and ys[0] is not None else None
    return carry, ys_out


# ---------------------------------------------------------------------------------------------
# branches


def switch(index: Any, branches: Sequence[Callable], *operands: Any) -> Any:
    """Run ``branches[index](*operands)``; the branches may have different sites.

    The measure is the mixture over branches selected by `index` (itself usually a random
    choice); a site exists only when its branch is taken.  Under ``jit`` all branches are traced
    and the trace holds the union of their addresses with ``trace.active`` flags; branches must
    then return values of the same structure, and a site present in several branches must have
    the same shape in each.

    Example:
        >>> @ppl.model
        ... def m():
        ...     k = ppl.sample("k", dist.Categorical(probs=jnp.ones(2) / 2))
        ...     return ppl.switch(k, [lambda: ppl.sample("a", dist.Normal()), lambda: jnp.zeros(())])
        >>> sorted(jax.jit(lambda key: m.simulate(key).active)(jax.random.key(0)))
        ['a']
    """
    stack = _require_stack("switch")
    branches = [b.fn if hasattr(b, "fn") and hasattr(b, "simulate") else b for b in branches]
    if not branches:
        raise ModelError("ppl.switch needs at least one branch.")
    loc = _Localizer(stack)
    keys = loc.split_keys(None)
    if core.is_concrete(index) or randomness.requires_eager():
        i = int(np.asarray(index))
        if not 0 <= i < len(branches):
            raise ModelError(f"ppl.switch: index {i} is out of range for {len(branches)} branches.")
        core._STATE.dynamic_structure += 1
        saved = loc.install(keys, None)
        try:
            return branches[i](*operands)
        finally:
            _Localizer.restore(saved)

    def run_branch(b: int, ks, ops):
        saved = loc.install(ks, None)
        col = _Collector()
        try:
            with col:
                ret = branches[b](*ops)
        finally:
            _Localizer.restore(saved)
        return ret, col.sites

    # first pass: the shapes and kinds of every branch's sites
    shapes: list[dict] = []
    metas: dict[str, dict] = {}
    order: list[str] = []
    for b in range(len(branches)):
        out = {}

        def probe(ks, ops, b=b, out=out):
            ret, sites = run_branch(b, ks, ops)
            for n, rec in sites.items():
                out[n] = (rec, _fields(rec))
            return ret, {n: _fields(rec) for n, rec in sites.items()}

        _, struct = jax.eval_shape(probe, keys, operands)
        for n, (rec, _) in out.items():
            m = _static_meta(rec)
            if n in metas and metas[n] != m:
                raise ModelError(f"ppl.switch: site {n!r} is {metas[n]} in one branch and {m} in another.")
            metas[n] = m
            if n not in order:
                order.append(n)
        shapes.append(struct)
    union: dict[str, dict] = {}
    for b, struct in enumerate(shapes):
        for n, fields in struct.items():
            spec = {f: (v.shape, v.dtype) for f, v in fields.items()}
            if n in union:
                prev = union[n]
                if prev["value"][0] != spec["value"][0]:
                    raise ModelError(
                        f"ppl.switch: site {n!r} has shape {prev['value'][0]} in one branch and "
                        f"{spec['value'][0]} in branch {b}; a site shared by branches needs one shape."
                    )
                for f, s in spec.items():
                    prev.setdefault(f, s)
            else:
                union[n] = dict(spec)

    def padded(b: int):
        def f(ks, ops):
            ret, sites = run_branch(b, ks, ops)
            out = {}
            for n in order:
                spec = union[n]
                rec = sites.get(n)
                fields = {}
                for fname in ("value", "log_prob", "log_jac", "fresh", "u"):
                    if fname not in spec:
                        continue
                    shp, dt = spec[fname]
                    if rec is not None and rec.get(fname) is not None:
                        fields[fname] = jnp.asarray(rec[fname], dt)
                    else:
                        fields[fname] = jnp.zeros(shp, dt)
                present = rec is not None
                act = rec.get("active") if present else None
                lp_shape = spec["log_prob"][0]
                base = jnp.full(lp_shape, present, bool)
                fields["active"] = base if act is None else (base & jnp.asarray(act, bool))
                out[n] = fields
            return ret, out

        return f

    idx = jnp.clip(jnp.asarray(index).astype(jnp.int32), 0, len(branches) - 1)
    try:
        ret, sites = jax.lax.switch(idx, [padded(b) for b in range(len(branches))], keys, operands)
    except TypeError as e:
        raise ModelError(
            f"ppl.switch: the branches must return values of the same structure, shape and dtype ({e})"
        ) from None
    for n in order:
        _emit_site(n, metas[n], sites[n])
    return ret


def cond(pred: Any, true_fn: Callable, false_fn: Callable, *operands: Any) -> Any:
    """``true_fn(*operands)`` if `pred` else ``false_fn(*operands)``; see :func:`switch`."""
    if core.is_concrete(pred):
        index = int(bool(np.asarray(pred)))
    else:
        index = jnp.asarray(pred).astype(jnp.int32)
    return switch(index, [false_fn, true_fn], *operands)
