"""The distribution transformer: a prior Gaussian mixture and a data set in, the posterior
Gaussian mixture out (after "Distribution Transformers: fast approximate Bayesian inference with
on-the-fly prior adaptation").

Each prior component ``k`` is a token ``[log w_k, loc_k, log scale_k, log(1 + n)]``; each data
point a token of its own.  A block is self-attention over the components, (masked) self-attention
over the data points, cross-attention from the components to the data points, and an MLP, each
with a residual connection.  No positional encodings anywhere, so the map is exactly
*equivariant* in the components (permuting the prior's components permutes the posterior's) and
*invariant* in the data points (and unmasked points only are seen).  The heads produce a change
of each component: ``logits' = log w + a``, ``loc' = loc + scale · b``, ``scale' = scale ·
softplus(c + log(e − 1))`` (positive, and the prior itself when the head outputs zero).
"""

from __future__ import annotations

import json
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl.errors import ArgumentError

from .gmm import GMM

__all__ = ["DistributionTransformer", "save", "load"]

_SOFTPLUS_ONE = float(jnp.log(jnp.expm1(1.0)))  # softplus(_SOFTPLUS_ONE) == 1


class _Block(eqx.Module):
    comp_attn: eqx.nn.MultiheadAttention
    data_attn: eqx.nn.MultiheadAttention
    cross_attn: eqx.nn.MultiheadAttention
    mlp: eqx.nn.MLP
    norms: tuple

    def __init__(self, width: int, heads: int, key: Any):
        k = jax.random.split(key, 4)
        mha = lambda kk: eqx.nn.MultiheadAttention(heads, width, key=kk)  # noqa: E731
        self.comp_attn, self.data_attn, self.cross_attn = mha(k[0]), mha(k[1]), mha(k[2])
        self.mlp = eqx.nn.MLP(width, width, 2 * width, 1, activation=jax.nn.gelu, key=k[3])
        self.norms = tuple(eqx.nn.LayerNorm(width) for _ in range(5))

    def __call__(self, h: Any, e: Any, mask: Any) -> tuple[Any, Any]:
        ln = lambda i, x: jax.vmap(self.norms[i])(x)  # noqa: E731
        a = ln(0, h)
        h = h + self.comp_attn(a, a, a)
        b = ln(1, e)
        e = e + self.data_attn(b, b, b, mask=mask[None, :] & mask[:, None] | jnp.eye(mask.shape[0], dtype=bool))
        c, b = ln(2, h), ln(3, e)
        h = h + self.cross_attn(c, b, b, mask=jnp.broadcast_to(mask[None, :], (h.shape[0], e.shape[0])))
        h = h + jax.vmap(self.mlp)(ln(4, h))
        return h, e


class DistributionTransformer(eqx.Module):
    """``dt(prior, data, mask=None) -> posterior``: a prior :class:`GMM` on R^``dim`` and a data
    set ``(N, data_dim)`` mapped to a posterior :class:`GMM` with as many components.

    Untrained, it returns (nearly) the prior; train it with :func:`inference.amortised.train`.
    ``mask`` ``(N,)`` (booleans) marks the data points that count (default: all), so one compiled
    program serves every data set size up to ``N``.  The map is equivariant in the components and
    invariant under permutations of the (unmasked) data points, exactly.

    Example:
        >>> from inference.amortised import GMM, DistributionTransformer
        >>> dt = DistributionTransformer(jax.random.key(0), dim=1, data_dim=1, width=16, depth=1, heads=2)
        >>> prior = GMM.from_weights([0.5, 0.5], [[-1.0], [1.0]], [[1.0], [1.0]])
        >>> post = dt(prior, jnp.ones((5, 1)))
        >>> post.loc.shape, round(float(post.weights.sum()), 6)
        ((2, 1), 1.0)
    """

    comp_embed: eqx.nn.MLP
    data_embed: eqx.nn.MLP
    blocks: tuple
    head: eqx.nn.Linear
    dim: int = eqx.field(static=True)
    data_dim: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    heads: int = eqx.field(static=True)

    def __init__(self, key: Any, dim: int, data_dim: int, width: int = 64, depth: int = 2, heads: int = 4):
        if width % heads:
            raise ArgumentError(f"DistributionTransformer: width={width} must be a multiple of heads={heads}")
        if min(dim, data_dim, width, depth, heads) < 1:
            raise ArgumentError(f"DistributionTransformer: dim, data_dim, width, depth and heads must be positive; "
                                f"given {dim}, {data_dim}, {width}, {depth}, {heads}")
        self.dim, self.data_dim, self.width, self.depth, self.heads = int(dim), int(data_dim), int(width), int(depth), int(heads)
        k = jax.random.split(key, depth + 3)
        self.comp_embed = eqx.nn.MLP(2 + 2 * dim, width, width, 1, activation=jax.nn.gelu, key=k[0])
        self.data_embed = eqx.nn.MLP(data_dim, width, width, 1, activation=jax.nn.gelu, key=k[1])
        self.blocks = tuple(_Block(width, heads, k[3 + i]) for i in range(depth))
        head = eqx.nn.Linear(width, 1 + 2 * dim, key=k[2])
        # a small head: the untrained map starts near the identity (posterior = prior)
        self.head = eqx.tree_at(lambda l: (l.weight, l.bias), head, (head.weight * 0.01, jnp.zeros_like(head.bias)))

    def hyperparameters(self) -> dict:
        """What :func:`load` needs to rebuild the network's shape."""
        return {"dim": self.dim, "data_dim": self.data_dim, "width": self.width, "depth": self.depth, "heads": self.heads}

    def _check(self, prior: Any, data: Any) -> tuple[GMM, Any]:
        if not isinstance(prior, GMM):
            raise ArgumentError(f"DistributionTransformer: the prior must be an inference.amortised.GMM; given {type(prior).__name__}")
        data = jnp.asarray(data)
        if data.ndim == 1 and self.data_dim == 1:
            data = data[:, None]
        if prior.loc.ndim != 2 or prior.loc.shape[-1] != self.dim:
            raise ArgumentError(f"DistributionTransformer: the prior must be one mixture on R^{self.dim} (loc (K, {self.dim})); "
                                f"given loc {tuple(prior.loc.shape)}")
        if data.ndim != 2 or data.shape[-1] != self.data_dim or data.shape[0] < 1:
            raise ArgumentError(f"DistributionTransformer: data must have shape (N, {self.data_dim}) with N >= 1; given {tuple(data.shape)}")
        return prior, data

    @eqx.filter_jit
    def __call__(self, prior: GMM, data: Any, mask: Any = None) -> GMM:
        """The posterior mixture (one compiled call; inside ``jit``/``vmap``/``scan`` it is inlined)."""
        prior, data = self._check(prior, data)
        n_max = data.shape[0]
        mask = jnp.ones((n_max,), bool) if mask is None else jnp.asarray(mask, bool)
        if mask.shape != (n_max,):
            raise ArgumentError(f"DistributionTransformer: mask must have shape ({n_max},) like the data's first axis; given {tuple(mask.shape)}")
        logw = jax.nn.log_softmax(prior.logits)
        logw_feature = jnp.maximum(logw, -10.0)  # a negligible component is a negligible component
        log_s = jnp.log(prior.scale)
        logn = jnp.log1p(jnp.sum(mask)).astype(prior.loc.dtype)
        K = prior.logits.shape[0]
        feats = jnp.concatenate([logw_feature[:, None], prior.loc, log_s, jnp.full((K, 1), logn)], axis=1)
        h = jax.vmap(self.comp_embed)(feats)
        e = jax.vmap(self.data_embed)(data.astype(prior.loc.dtype))
        for blk in self.blocks:
            h, e = blk(h, e, mask)
        out = jax.vmap(self.head)(h)
        a, b, c = out[:, 0], out[:, 1:1 + self.dim], out[:, 1 + self.dim:]
        return GMM(logw + a, prior.loc + prior.scale * b, prior.scale * jax.nn.softplus(c + _SOFTPLUS_ONE))

    @eqx.filter_jit
    def sequential(self, prior: GMM, batches: Any, masks: Any = None) -> GMM:
        """Repeated application over batches ``(T, N, data_dim)``: posterior t is the prior of
        t + 1 (one ``lax.scan``).  Returns the T posteriors stacked (a GMM with a leading axis).

        Example:
            >>> from inference.amortised import GMM, DistributionTransformer
            >>> dt = DistributionTransformer(jax.random.key(0), dim=1, data_dim=1, width=16, depth=1, heads=2)
            >>> posts = dt.sequential(GMM.from_weights([1.0], [[0.0]], [[1.0]]), jnp.zeros((3, 4, 1)))
            >>> posts.loc.shape
            (3, 1, 1)
        """
        batches = jnp.asarray(batches)
        if batches.ndim == 2 and self.data_dim == 1:
            batches = batches[..., None]
        if batches.ndim != 3:
            raise ArgumentError(f"DistributionTransformer.sequential: batches must have shape (T, N, {self.data_dim}); given {tuple(batches.shape)}")
        masks = jnp.ones(batches.shape[:2], bool) if masks is None else jnp.asarray(masks, bool)

        def step(p, xm):
            q = self(p, xm[0], xm[1])
            return q, q

        return jax.lax.scan(step, prior, (batches, masks))[1]


def save(path: Any, dt: DistributionTransformer) -> None:
    """Write the network to ``path``: one JSON line of hyperparameters, then the parameters
    (``equinox.tree_serialise_leaves``).  :func:`load` reads it back.

    Example:
        >>> import tempfile, os
        >>> from inference.amortised import DistributionTransformer, save, load
        >>> dt = DistributionTransformer(jax.random.key(0), dim=1, data_dim=1, width=8, depth=1, heads=2)
        >>> p = os.path.join(tempfile.mkdtemp(), "dt.eqx"); save(p, dt)
        >>> bool(jnp.all(load(p).head.weight == dt.head.weight))
        True
    """
    with open(path, "wb") as f:
        dtype = str(jax.tree.leaves(eqx.filter(dt, eqx.is_inexact_array))[0].dtype)
        f.write((json.dumps({**dt.hyperparameters(), "dtype": dtype}) + "\n").encode())
        eqx.tree_serialise_leaves(f, dt)


def load(path: Any) -> DistributionTransformer:
    """The network :func:`save` wrote to ``path``."""
    with open(path, "rb") as f:
        line = f.readline()
        try:
            hyper = json.loads(line)
        except ValueError as err:
            raise ArgumentError(f"amortised.load: {path} does not start with the hyperparameter line save() writes") from err
        dtype = hyper.pop("dtype", None)
        like = DistributionTransformer(jax.random.key(0), **hyper)
        if dtype is not None:  # the parameters keep the precision they were saved in
            like = jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, like)
        return eqx.tree_deserialise_leaves(f, like)
