"""The exact joint of a finite model as a tensor: one axis per latent finite site.

Where :func:`semantics.enumerate` walks a program's paths one by one (any structure, exact
fractions), this enumerator evaluates a model with a *fixed* set of addresses on the whole
product grid of its latent sites' supports at once: one ``vmap`` of the model's density, run
under ``ppl.substitute``, compiled once.  The result is a :class:`Table`: the log weight
``log p(latents, observations)`` of every assignment, laid out as a tensor with one axis per
latent site (execution order, support order), and the values of any sites asked for.

``inference.causal`` builds its joints on this module (its factor tables use the same supports
and grids; ``causal.enumerate_model`` and the exact counterfactuals are tables of this kind).

Example:
    >>> @ppl.model
    ... def coin():
    ...     z = ppl.sample("z", dist.Bernoulli(probs=0.25))
    ...     ppl.deterministic("w", 2 * z)
    >>> t = semantics.enumerate_table(coin, read=["w"])
    >>> t.names, [round(float(w), 4) for w in np.exp(np.asarray(t.log_weight))], np.asarray(t.values["w"]).tolist()
    (('z',), [0.75, 0.25], [0, 2])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.errors import AddressError, nearest
from ppl.model import run

from .paths import NotEnumerableError

__all__ = [
    "Table",
    "enumerate_table",
    "finite_support",
    "element_support",
    "product_grid",
    "latent_finite_sites",
    "sites_at",
]

MAX_GRID = 1 << 20  # assignments of a table (product of the supports' sizes)


def finite_support(fn: Any) -> tuple | None:
    """The values of a *scalar* distribution with an enumerable support (a tuple), else None.

    Example:
        >>> finite_support(dist.Categorical(probs=jnp.ones(3) / 3))
        (0, 1, 2)
    """
    try:
        if not fn.has_enumerate_support or tuple(fn.batch_shape) or tuple(fn.event_shape):
            return None
        vals = np.asarray(fn.enumerate_support(expand=False)).reshape(-1)
        return tuple(v.item() for v in vals)
    except Exception:
        return None


def element_support(fn: Any) -> tuple | None:
    """The values each element of a batched distribution with scalar, enumerable elements takes.

    Example:
        >>> element_support(dist.Bernoulli(probs=jnp.full(3, 0.5)))
        (0, 1)
    """
    try:
        if not fn.has_enumerate_support or tuple(fn.event_shape):
            return None
        vals = np.asarray(fn.enumerate_support(expand=False)).reshape(-1)
        return tuple(v.item() for v in vals)
    except Exception:
        return None


def product_grid(supports: Sequence[Sequence[Any]]) -> tuple[list, tuple]:
    """Every assignment of the product of `supports`, as flat columns in row-major order.

    Returns ``(columns, shape)``: ``columns[i][k]`` is variable i's value in assignment k, and
    reshaping anything computed per assignment to `shape` gives one axis per variable.

    Example:
        >>> cols, shape = product_grid([(0, 1), (0, 1, 2)])
        >>> shape, np.asarray(cols[1]).tolist()
        ((2, 3), [0, 1, 2, 0, 1, 2])
    """
    sups = [np.asarray(s) for s in supports]
    shape = tuple(len(s) for s in sups)
    if not sups:
        return [], shape
    mesh = np.meshgrid(*sups, indexing="ij")
    return [jnp.asarray(m.reshape(-1)) for m in mesh], shape


def latent_finite_sites(sites: Mapping[str, dict], what: str = "exact enumeration") -> tuple[list, list]:
    """The latent sample sites of a trace (not observed, not intervened) and their supports.

    Raises :class:`NotEnumerableError` (a ``ppl.ModelError``) naming the first latent site that
    is not a finite scalar; `what` names the caller in that message.
    """
    names, sups = [], []
    for n, s in sites.items():
        if s["type"] == "sample" and not s["is_observed"] and not s["intervened"]:
            sup = finite_support(s["fn"])
            if sup is None:
                raise NotEnumerableError(
                    f"{what}: every latent site must be a finite scalar; site {n!r} "
                    f"({type(s['fn']).__name__}, shape {np.shape(s['value'])}) is not."
                )
            names.append(n)
            sups.append(sup)
    return names, sups


def sites_at(
    model: Any, args: tuple, kwargs: dict, values: Mapping[str, Any], interventions: Mapping[str, Any] | None = None
) -> dict:
    """The site records of one run of `model` at a point of the grid: latent sample sites take
    `values` (through ``ppl.substitute``, so they are scored at those values) and the sites in
    `interventions` are set by ``ppl.do`` (not scored).  Pure: ``vmap`` it over a grid.

    Example:
        >>> @ppl.model
        ... def two():
        ...     a = ppl.sample("a", dist.Bernoulli(probs=0.5))
        ...     ppl.sample("b", dist.Bernoulli(probs=0.25 + 0.5 * a))
        >>> s = sites_at(ppl.as_model(two), (), {}, {"b": 1}, interventions={"a": 1})
        >>> round(float(jnp.exp(s["b"]["log_prob"])), 4), float(s["a"]["log_prob"])
        (0.75, 0.0)
    """
    handlers = [ppl.do(None, dict(interventions), strict=False)] if interventions else []
    _, sites = run(model.fn, args, kwargs, *handlers, ppl.substitute(None, dict(values), strict=False))
    return sites


@dataclass
class Table:
    """The exact joint of a finite model over the product grid of its latent sites.

    Attributes:
        names: the latent sample sites (execution order): one axis each.
        supports: the values of each, in axis order.
        log_weight: ``log p`` of every assignment (latent prior × likelihood × factors), shape
            ``tuple(len(s) for s in supports)``.
        values: site -> its value on every assignment (same leading shape), for the sites read.
    """

    names: tuple
    supports: tuple
    log_weight: Any
    values: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return tuple(len(s) for s in self.supports)


def enumerate_table(
    model: Any,
    *args: Any,
    read: Sequence[str] = (),
    max_size: int = MAX_GRID,
    what: str = "semantics.enumerate_table",
    **kwargs: Any,
) -> Table:
    """The exact joint of `model` as a :class:`Table` (one ``vmap`` over every assignment).

    Every latent sample site must be a scalar with an enumerable support, and the set of
    addresses must not depend on the values (use :func:`semantics.enumerate` otherwise).
    Observed sites and factors multiply in; intervened (``ppl.do``) sites are not variables.
    `read` names sample or deterministic sites whose value on each assignment is returned in
    ``values``.  Raises :class:`NotEnumerableError` when a latent site is not finite or the
    grid has more than `max_size` assignments; `what` names the caller in error messages.

    Example:
        >>> @ppl.model
        ... def two():
        ...     a = ppl.sample("a", dist.Bernoulli(probs=0.5))
        ...     ppl.sample("b", dist.Bernoulli(probs=0.25 + 0.5 * a))
        >>> w = np.exp(np.asarray(semantics.enumerate_table(two).log_weight))
        >>> [[round(float(x), 4) for x in row] for row in w]
        [[0.375, 0.125], [0.125, 0.375]]
    """
    model = ppl.as_model(model)
    sites = model.trace_sites(jax.random.key(0), *args, **kwargs)
    read = [read] if isinstance(read, str) else list(read)
    for n in read:
        if n not in sites or sites[n]["type"] not in ("sample", "deterministic"):
            raise AddressError(f"{what}: no sample or deterministic site {n!r}{nearest(n, sites)}.")
    names, sups = latent_finite_sites(sites, what)
    size = int(np.prod([len(s) for s in sups])) if sups else 1
    if size > max_size:
        raise NotEnumerableError(
            f"{what}: {size} joint assignments of {len(names)} latent sites is too many to enumerate "
            f"(more than {max_size})."
        )
    cols, shape = product_grid(sups)

    def one(*vals: Any):
        ss = sites_at(model, args, kwargs, dict(zip(names, vals)))
        lp = sum(jnp.sum(s["log_prob"]) for s in ss.values() if s["type"] in ("sample", "factor"))
        return lp, {n: jnp.asarray(ss[n]["value"]) for n in read}

    if names:
        lp, vals = jax.jit(jax.vmap(one))(*cols)
        lp = lp.reshape(shape)
        vals = {k: v.reshape(shape + v.shape[1:]) for k, v in vals.items()}
    else:
        lp, vals = jax.jit(one)()
    return Table(tuple(names), tuple(sups), lp, vals)
