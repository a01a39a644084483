"""Tracing a model's data dependencies: which sites each site's distribution depends on.

The whole model is traced to a jaxpr with every site's value as an input, and "which inputs
does this variable depend on" is propagated forwards through the equations (into
``pjit``/custom-derivative sub-jaxprs; through any other higher-order primitive every output is
taken to depend on every input, a safe over-approximation).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ppl import core  # core.inside_combinator: the public query of the handler stack
from ppl.core import Messenger
from ppl.model import run

__all__ = ["trace_dependencies"]


def _dist_leaves(d: Any) -> list:
    try:
        leaves = jax.tree_util.tree_leaves(d)
    except Exception:  # a distribution that is not a pytree: look at its attributes
        leaves = [v for v in vars(d).values()]
    return [leaf for leaf in leaves if isinstance(leaf, (jax.Array, np.ndarray, float, int)) or hasattr(leaf, "aval")]


class _Inputs(Messenger):
    """Make every site's value an input (so dependencies can be traced) and record parameters.

    A Messenger, not ``ppl.substitute``: it also sets observed and deterministic sites' values
    (which the hook leaves alone) and records each site's distribution parameters, the outputs
    whose dependencies are traced.
    """

    tables = ("values",)

    def __init__(self, values: Mapping[str, Any]):
        super().__init__()
        self.values = dict(values)
        self.outputs: "OrderedDict[str, list]" = OrderedDict()
        self.inside: set[str] = set()

    def process_message(self, msg: dict) -> None:
        t, name = msg["type"], msg["name"]
        if t not in ("sample", "deterministic", "factor"):
            return
        nested = core.inside_combinator()
        if nested:
            self.inside.add(name)
        elif t == "sample":
            self.outputs[name] = [] if msg["intervened"] else _dist_leaves(msg["fn"])
        else:
            self.outputs[name] = [] if msg["intervened"] else [msg["value"]]
        if t != "factor" and name in self.values:
            msg["value"] = self.values[name]


def _forward_deps(jaxpr: Any, in_deps: list, groups: list | None = None) -> list:
    """For each output of `jaxpr`, the union of the input labels it depends on.

    Each equation that is not looked into (``scan``, ``cond``, ``while``, ...) appends the union
    of its inputs' labels to `groups`, in program order: everything computed inside it, the
    sites of a ``ppl.scan``/``ppl.cond`` included, depends on those labels only."""
    env: dict = {}

    def read(a: Any) -> frozenset:
        if type(a).__name__ == "Literal":
            return frozenset()
        return env.get(a, frozenset())

    for v, d in zip(jaxpr.invars, in_deps):
        env[v] = d
    for eqn in jaxpr.eqns:
        ins = [read(a) for a in eqn.invars]
        sub = eqn.params.get("jaxpr", None)
        if sub is None:
            sub = eqn.params.get("call_jaxpr", None)
        inner = getattr(sub, "jaxpr", sub)
        if (
            inner is not None
            and hasattr(inner, "eqns")
            and eqn.primitive.name in ("pjit", "jit", "closed_call", "core_call", "remat", "checkpoint", "custom_jvp_call", "custom_vjp_call")
            and len(inner.invars) == len(ins)
        ):
            outs = _forward_deps(inner, ins, groups)
        else:  # any other primitive (scan, cond, while included): every output from every input
            u = frozenset().union(*ins) if ins else frozenset()
            outs = [u] * len(eqn.outvars)
            if groups is not None and _has_subjaxpr(eqn):
                groups.append(u)
        for v, d in zip(eqn.outvars, outs):
            env[v] = d
    return [read(v) for v in jaxpr.outvars]


def _has_subjaxpr(eqn: Any) -> bool:
    for v in eqn.params.values():
        for x in v if isinstance(v, (tuple, list)) else (v,):
            if hasattr(x, "eqns") or hasattr(getattr(x, "jaxpr", None), "eqns"):
                return True
    return False



def trace_dependencies(model: Any, args: tuple, kwargs: dict, values: Mapping[str, Any]) -> tuple[dict, set, list]:
    """The sites each site of `model` depends on, found through the jaxpr of the whole model.

    `values` maps every sample and deterministic site to a value (they become the inputs).
    Returns ``(parents_of, inside, groups)``: for each site recorded outside a combinator, the
    set of input sites its distribution's parameters (deterministic: its value; factor: its log
    weight) depend on; the sites made inside a ``ppl.scan``/``ppl.cond`` body; and, for each
    opaque equation (scan, cond, ...) in program order, the input sites flowing into it.
    """
    names = list(values)
    captured: dict = {}

    def f(vals: dict):
        h = _Inputs(vals)
        run(model.fn, args, kwargs, h)
        captured["outputs"] = list(h.outputs)
        captured["inside"] = set(h.inside)
        captured["sizes"] = [len(h.outputs[n]) for n in h.outputs]
        return [[jnp.asarray(x) for x in h.outputs[n]] for n in h.outputs]

    closed = jax.make_jaxpr(f)({n: jnp.asarray(v) for n, v in values.items()})
    flat_in = jax.tree_util.tree_leaves({n: jnp.asarray(v) for n, v in values.items()})
    in_names = sorted(names)  # dict pytrees flatten in sorted-key order
    assert len(flat_in) == len(in_names) == len(closed.jaxpr.invars)
    groups: list = []
    deps = _forward_deps(closed.jaxpr, [frozenset([n]) for n in in_names], groups)
    parents_of: dict[str, set] = {}
    i = 0
    for n, k in zip(captured["outputs"], captured["sizes"]):
        ds = set()
        for d_ in deps[i : i + k]:
            ds |= d_
        parents_of[n] = ds
        i += k
    return parents_of, captured["inside"], groups
