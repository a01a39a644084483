"""Neural networks (``equinox.Module``) as parameters of guides and models: amortised VI.

:func:`network` is called inside a model or guide: it registers every floating-point array of
an ``eqx.Module`` as a ``ppl.param`` site (address ``"<name>/<path of the leaf>"``) and returns
the module with those leaves set to the parameters' current values.  So an encoder's weights
are trained by :func:`vi.fit` like any other parameter (and a decoder's, when the *model* calls
:func:`network`), and one guide serves every data point: amortised inference.  The module's
structure and non-array fields are static; its arrays' initial values are the module's own.
:func:`network_from_params` rebuilds the trained module from ``result.params``.

Example:
    >>> import equinox as eqx
    >>> encoder = eqx.nn.MLP(1, 2, 8, 1, key=jax.random.key(0))
    >>> model = ppl.model(lambda x: ppl.sample("x", dist.Normal(ppl.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x))
    >>> @ppl.model
    ... def guide(x):
    ...     out = vi.network("encoder", encoder)(jnp.reshape(x, (1,)))
    ...     ppl.sample("z", dist.Normal(out[0], jnp.exp(out[1])))
    >>> obj = vi.elbo(model, guide)
    >>> u = obj.init_params(jax.random.key(1), 0.5)
    >>> value, g = obj.grad(jax.random.key(2), u, 0.5)
    >>> trained = vi.network_from_params(obj.constrain(u), "encoder", encoder)
    >>> trained(jnp.ones(1)).shape
    (2,)
"""

from __future__ import annotations

from typing import Any, Mapping

import equinox as eqx
import jax

import ppl

from .terms import VIError

__all__ = ["network", "network_from_params"]


def _leaves(name: str, module: Any):
    if not isinstance(name, str) or not name:
        raise VIError(f"vi.network: name must be a non-empty string, got {name!r}.")
    arrays, static = eqx.partition(module, eqx.is_inexact_array)
    flat, treedef = jax.tree_util.tree_flatten_with_path(arrays)
    if not flat:
        raise VIError(f"vi.network({name!r}): the module has no floating-point arrays to train.")
    addresses = [f"{name}/{jax.tree_util.keystr(path).lstrip('.')}" for path, _ in flat]
    return addresses, [leaf for _, leaf in flat], treedef, static


def network(name: str, module: Any) -> Any:
    """Inside a model or guide: `module` with its floating-point arrays as ``ppl.param`` sites.

    Each array leaf becomes the param ``"<name>/<path>"`` (e.g. ``"encoder/layers[0].weight"``),
    initialised to the leaf's value, unconstrained.  Returns a module of the same structure
    holding the parameters' current values (differentiable inside an objective).

    Example:
        >>> import equinox as eqx
        >>> encoder = eqx.nn.MLP(1, 2, 8, 1, key=jax.random.key(0))
        >>> guide = ppl.model(lambda: ppl.sample("z", dist.Normal(vi.network("encoder", encoder)(jnp.ones(1))[0], 1.0)))
        >>> sorted(guide.simulate(jax.random.key(1)).params)[:2]
        ['encoder/layers[0].bias', 'encoder/layers[0].weight']
    """
    addresses, leaves, treedef, static = _leaves(name, module)
    values = [ppl.param(a, leaf) for a, leaf in zip(addresses, leaves)]
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, values), static)


def network_from_params(params: Mapping[str, Any], name: str, module: Any) -> Any:
    """`module` with its arrays replaced by ``params["<name>/<path>"]`` (e.g. ``result.params``).

    Example:
        >>> import equinox as eqx
        >>> encoder = eqx.nn.MLP(1, 2, 8, 1, key=jax.random.key(0))
        >>> params = {"encoder/layers[0].weight": jnp.zeros((8, 1)), "encoder/layers[0].bias": jnp.zeros(8),
        ...           "encoder/layers[1].weight": jnp.zeros((2, 8)), "encoder/layers[1].bias": jnp.ones(2)}
        >>> vi.network_from_params(params, "encoder", encoder)(jnp.ones(1)).tolist()
        [1.0, 1.0]
    """
    addresses, _, treedef, static = _leaves(name, module)
    missing = [a for a in addresses if a not in params]
    if missing:
        raise VIError(f"vi.network_from_params: no parameter {missing[0]!r} (is the name {name!r} right?).")
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, [params[a] for a in addresses]), static)
