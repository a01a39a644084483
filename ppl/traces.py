"""`Trace` and `Selection`: the record of one execution of a model, and sets of addresses.

A :class:`Trace` is what the model operations (``simulate``, ``generate``, ``update``, ...)
return: a pytree of the choices, per-site log densities and the return value, built from the
site records of a run by :func:`make_trace`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .errors import AddressError, ModelError, nearest

__all__ = ["Trace", "make_trace", "Selection", "select"]


# ---------------------------------------------------------------------------------------------
# Trace


class Trace(eqx.Module):
    """One execution of a model: its choices, per-site log densities and return value.

    A pytree (an ``equinox.Module``), so traces can be returned from ``jit``, stacked by ``vmap``
    and carried in ``lax.scan``.

    Attributes:
        choices: address -> value of every sample site (latent and observed; not intervened).
        log_probs: address -> that site's log density (summed over its batch; one entry per step
            for sites inside ``ppl.scan``), for sample sites and factors.
        deterministic: address -> value of deterministic sites and of intervened (``do``) sites.
        params: address -> value of ``param`` sites.
        active: address -> boolean, for sites inside ``ppl.cond``/``ppl.switch`` under ``jit``:
            whether the site exists in this execution (its value is a placeholder otherwise).
        retval: the model's return value.
        args, kwargs: the arguments the model was run with.
        observed: the addresses of observed sites and factors (static).

    Example:
        >>> @ppl.model
        ... def m(y=None):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> tr = m.simulate(jax.random.key(0), 0.5)
        >>> bool(tr.log_density == tr.log_prior + tr.log_likelihood), float(tr["y"])
        (True, 0.5)
    """

    choices: dict
    log_probs: dict
    deterministic: dict
    params: dict
    active: dict
    retval: Any
    args: tuple
    kwargs: dict
    observed: tuple = eqx.field(static=True, default=())

    @property
    def log_density(self) -> jax.Array:
        """Joint log density of the trace: every sample site, observation and factor."""
        return _sum(self.log_probs.values())

    @property
    def log_likelihood(self) -> jax.Array:
        """Log density of the observed sites and factors."""
        return _sum(v for k, v in self.log_probs.items() if k in self.observed)

    @property
    def log_prior(self) -> jax.Array:
        """Log density of the latent sample sites."""
        return _sum(v for k, v in self.log_probs.items() if k not in self.observed)

    @property
    def latent(self) -> dict:
        """address -> value of the latent (unobserved) sample sites."""
        return {k: v for k, v in self.choices.items() if k not in self.observed}

    def __getitem__(self, name: str) -> Any:
        for table in (self.choices, self.deterministic, self.params):
            if name in table:
                return table[name]
        raise AddressError(
            f"the trace has no site {name!r}"
            f"{nearest(name, list(self.choices) + list(self.deterministic) + list(self.params))}."
        )

    def __contains__(self, name: object) -> bool:
        return name in self.choices or name in self.deterministic or name in self.params

    def is_active(self, name: str) -> Any:
        """Whether site `name` exists in this execution (True unless it is in an untaken branch)."""
        return self.active.get(name, True) if name in self else False

    def active_choices(self) -> dict:
        """The choices of the sites that exist in this execution (needs concrete values)."""
        out = {}
        for k, v in self.choices.items():
            a = self.active.get(k)
            if a is None:
                out[k] = v
            else:
                a = np.asarray(a)
                if a.ndim == 0:
                    if bool(a):
                        out[k] = v
                else:
                    raise ModelError(
                        f"site {k!r} is active at some steps only; index the trace per step "
                        "(trace.choices and trace.active) instead."
                    )
        return out

    def nan_sites(self) -> list[str]:
        """Addresses whose log density is NaN, in execution order (needs concrete values)."""
        return [k for k, v in self.log_probs.items() if bool(jnp.any(jnp.isnan(v)))]

    def __repr__(self) -> str:
        def show(d: dict) -> str:
            return "{" + ", ".join(f"{k!r}: {_shape_str(v)}" for k, v in d.items()) + "}"

        lines = [f"Trace(choices={show(self.choices)}"]
        if self.deterministic:
            lines.append(f"      deterministic={show(self.deterministic)}")
        if self.params:
            lines.append(f"      params={show(self.params)}")
        if self.observed:
            lines.append(f"      observed={list(self.observed)}")
        lines.append(f"      log_density={_shape_str(self.log_density, value=True)})")
        return "\n".join(lines)


def _shape_str(v: Any, value: bool = False) -> str:
    try:
        arr = jnp.asarray(v)
    except Exception:
        return type(v).__name__
    if isinstance(v, jax.core.Tracer):
        return f"{arr.dtype}{list(arr.shape)}"
    if arr.ndim == 0 or value:
        try:
            return f"{float(arr):.6g}" if arr.ndim == 0 else f"{arr.dtype}{list(arr.shape)}"
        except Exception:
            pass
    return f"{arr.dtype}{list(arr.shape)}"


def _sum(values: Iterable[Any]) -> jax.Array:
    total = None
    for v in values:
        v = jnp.sum(v)
        total = v if total is None else total + v
    return jnp.zeros(()) if total is None else total


def make_trace(sites: Mapping[str, dict], retval: Any, args: tuple, kwargs: dict) -> Trace:
    choices, log_probs, det, params, active, observed = {}, {}, {}, {}, {}, []
    for name, s in sites.items():
        t = s["type"]
        if t == "sample":
            if s["intervened"]:
                det[name] = s["value"]
                continue
            choices[name] = s["value"]
            log_probs[name] = s["log_prob"]
            if s["is_observed"]:
                observed.append(name)
        elif t == "factor":
            log_probs[name] = s["log_prob"]
            observed.append(name)
        elif t == "deterministic":
            det[name] = s["value"]
        elif t == "param":
            params[name] = s["value"]
        if s.get("active") is not None:
            active[name] = s["active"]
    return Trace(
        choices=choices,
        log_probs=log_probs,
        deterministic=det,
        params=params,
        active=active,
        retval=retval,
        args=tuple(args),
        kwargs=dict(kwargs),
        observed=tuple(observed),
    )


# ---------------------------------------------------------------------------------------------
# selections


class Selection:
    """A set of addresses; an address also selects every address below it ("ts" selects "ts/x")."""

    def __init__(self, *addresses: str):
        flat: list[str] = []
        for a in addresses:
            if isinstance(a, str):
                flat.append(a)
            else:
                flat.extend(a)
        self.addresses = tuple(flat)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(name == a or name.startswith(a + "/") for a in self.addresses)

    def __repr__(self) -> str:
        return f"select{self.addresses}"


def select(*addresses: str) -> Selection:
    """A :class:`Selection` of addresses, for ``Model.regenerate``."""
    return Selection(*addresses)
