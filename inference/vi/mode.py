"""``vi.map``: the posterior mode (MAP) or the maximum-likelihood point, by L-BFGS.

The optimisation runs in the model's unconstrained space u (:func:`ppl.unconstrained`), with
x = T(u) the constrained values, and maximises

* ``jacobian=False`` (the default, "MAP" as in Stan's ``optimize``): log p(x, data), the
  posterior density of the *constrained* values: its maximiser x* is the posterior mode;
* ``jacobian=True``: log p(T(u), data) + log|det J_T(u)|, the density of u: its maximiser is the
  mode in unconstrained space (where :func:`vi.laplace` puts its Gaussian);
* ``mle=True``: the log likelihood alone (observed sites and factors; priors left out): the
  maximum-likelihood estimate.  The Jacobian is never added then.

The optimiser is ``optax.lbfgs`` (backtracking line search) in one compiled ``lax.scan`` of at most
``max_steps`` steps that stops moving once the gradient's sup-norm is below ``gtol`` or a step
improves the objective by less than 1 ulp (relative).  The
initial point is the guides' initialisation strategy (``init="median"``, the prior median, as
NumPyro's ``init_to_median``; or ``"mean"``, ``"sample"``, ``"zeros"``, or a mapping of
constrained values).  :func:`_lbfgs_path` (the iterates and gradients) is shared with
:func:`vi.pathfinder`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ppl
from ppl.errors import ArgumentError, ModelError
from ppl.model import _sum

from .._calling import check_option_clash, given_options
from .._result import to_inference_data
from .guides import _layout

__all__ = ["map", "MAPResult"]


def _log_density_fn(view: Any, jacobian: bool, mle: bool = False):
    """u (flat) -> the objective of the module docstring."""

    def f(x):
        _, sites = view._run(x)
        if mle:
            return _sum([s["log_prob"] for s in sites.values()
                         if s["type"] == "factor" or (s["type"] == "sample" and s["is_observed"])])
        terms = [s["log_prob"] for s in sites.values() if s["type"] in ("sample", "factor")]
        if jacobian:
            terms += [s["log_jac"] for s in sites.values() if s.get("log_jac") is not None]
        return _sum(terms)

    return f


def _init_flat(who: str, model: Any, view: Any, args: tuple, kwargs: dict, init: Any) -> jax.Array:
    """The flat unconstrained initial point of the autoguides' strategy ``init``."""
    if isinstance(init, (np.ndarray, jax.Array)):
        x0 = jnp.asarray(init, dtype=float)
        if x0.shape != (view.dim,):
            raise ArgumentError(f"{who}: an array init must be a flat unconstrained point of shape ({view.dim},), got {x0.shape}.")
        return x0
    _, _, loc0 = _layout(model, args, kwargs, init)
    return jnp.asarray(loc0)


def _lbfgs_path(f, x0, max_steps: int, gtol: float, memory: int):
    """Maximise f from x0 with ``optax.lbfgs``: (xs, fs, gs, num_evals, num_steps) with
    xs/gs the ``max_steps + 1`` iterates and gradients of f (later rows repeat the last once
    converged), fs the values, num_evals the function-and-gradient evaluations made and
    num_steps the steps taken before the sup-norm of the gradient fell below ``gtol``."""
    neg = lambda x: -f(x)
    # a backtracking line search: a much smaller program to compile than the zoom search
    opt = optax.lbfgs(memory_size=memory, linesearch=optax.scale_by_backtracking_linesearch(
        max_backtracking_steps=30, store_grad=True))
    vg = optax.value_and_grad_from_state(neg)

    def step(carry, _):
        x, st, v, g, done, evals, steps = carry
        v_prev = v
        upd, st2 = opt.update(g, st, x, value=v, grad=g, value_fn=neg)
        x2 = optax.apply_updates(x, upd)
        v2, g2 = vg(x2, state=st2)
        n_ls = optax.tree_utils.tree_get(st2, "num_linesearch_steps")
        ok = jnp.all(jnp.isfinite(x2)) & jnp.isfinite(v2)
        move = (~done) & ok
        pick = lambda a, b: jnp.where(move, a, b)
        x, v, g = pick(x2, x), pick(v2, v), pick(g2, g)
        st = jax.tree.map(lambda a, b: jnp.where(move, a, b) if hasattr(a, "dtype") else a, st2, st)
        evals = evals + jnp.where(move, n_ls, 0).astype(jnp.int32)
        steps = steps + move.astype(jnp.int32)
        # converged: a small gradient, or no relative progress (1 ulp of the objective: in
        # float32 a gradient tolerance alone may never be met)
        stalled = move & (jnp.abs(v - v_prev) <= ftol * jnp.maximum(jnp.abs(v), 1.0))
        done = done | (~ok) | (jnp.max(jnp.abs(g)) < gtol) | stalled
        return (x, st, v, g, done, evals, steps), (x, -v, -g)

    ftol = jnp.finfo(jnp.result_type(x0)).eps
    st0 = opt.init(x0)
    v0, g0 = vg(x0, state=st0)
    done0 = jnp.max(jnp.abs(g0)) < gtol
    carry0 = (x0, st0, v0, g0, done0, jnp.asarray(1, jnp.int32), jnp.asarray(0, jnp.int32))
    (x, st, v, g, done, evals, steps), (xs, fs, gs) = jax.lax.scan(step, carry0, None, length=max_steps)
    xs = jnp.concatenate([x0[None], xs])
    fs = jnp.concatenate([-v0[None], fs])
    gs = jnp.concatenate([-g0[None], gs])
    return xs, fs, gs, evals, steps


@dataclass
class MAPResult:
    """The result of :func:`map`: a point.

    Attributes:
        point: address -> constrained value at the optimum (latent and deterministic sites).
        u: the optimum as a flat unconstrained vector (``view.unravel(u)`` per site).
        log_density: the maximised objective (see ``jacobian``/``mle``).
        grad_norm: sup-norm of its gradient at ``u``.
        num_steps: L-BFGS steps taken; ``num_evals``: objective-and-gradient evaluations.
        converged: whether ``grad_norm < gtol`` within ``max_steps``.
        jacobian, mle: what was maximised (module docstring).
        view: the model's :class:`ppl.UnconstrainedView`.

    As a :class:`inference.Result` it is a point mass: ``sample`` repeats the point,
    ``draws`` holds it once (a leading axis of 1).
    """

    point: dict
    u: Any
    log_density: float
    grad_norm: float
    num_steps: int
    num_evals: int
    converged: bool
    jacobian: bool
    mle: bool
    view: Any = field(repr=False)

    @property
    def draws(self) -> dict:
        """The point as one draw: address -> array with a leading axis of 1."""
        return {k: jnp.asarray(v)[None] for k, v in self.point.items()}

    @property
    def info(self) -> dict:
        """``log_density``, ``grad_norm``, ``num_steps``, ``num_evals``, ``converged``."""
        return {"log_density": self.log_density, "grad_norm": self.grad_norm, "num_steps": self.num_steps,
                "num_evals": self.num_evals, "converged": self.converged}

    def sample(self, key: Any = None, num_samples: int | None = None) -> dict:
        """The point repeated ``num_samples`` times (a point mass; ``key`` unused)."""
        n = 1 if num_samples is None else int(num_samples)
        out = {k: jnp.broadcast_to(jnp.asarray(v), (n,) + jnp.shape(v)) for k, v in self.point.items()}
        return out if num_samples is not None else {k: v[0] for k, v in out.items()}

    def predictive(self, key: Any, model: Any, *args: Any, num_samples: int | None = None, **kwargs: Any) -> dict:
        """Predictive draws of ``model(*args, **kwargs)`` at the point (``num_samples``, default 1000)."""
        draws = {k: v for k, v in self.sample(None, 1000 if num_samples is None else num_samples).items()
                 if k in self.view.sites}
        if not args and not kwargs:
            args, kwargs = self.view.args, self.view.kwargs
        return ppl.predictive(model, draws, *args, key=key, **kwargs)

    def to_arviz(self) -> Any:
        """An ``arviz.InferenceData`` with the point as one chain of one draw."""
        return to_inference_data({"posterior": {k: np.asarray(v)[None, None] for k, v in self.point.items()}})


def map(  # noqa: A001 - the name users look for: vi.map
    model: Any,
    *args: Any,
    init: Any = "median",
    jacobian: bool = False,
    mle: bool = False,
    max_steps: int = 500,
    gtol: float = 1e-6,
    memory: int = 10,
    **kwargs: Any,
) -> MAPResult:
    """The posterior mode (``jacobian=False``), the mode of the unconstrained density
    (``jacobian=True``), or the maximum-likelihood point (``mle=True``) of ``model(*args,
    **kwargs)``, by L-BFGS in unconstrained space (module docstring).  Deterministic: no key.

    Raises ``ppl.errors.ModelError`` when the optimum's objective or gradient is not finite,
    ``ppl.errors.ArgumentError`` for bad options (a model parameter named like an option too).

    Example:
        >>> @ppl.model
        ... def m(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
        ...     s = ppl.sample("s", dist.HalfNormal(5.0))
        ...     ppl.sample("y", dist.Normal(mu, s).expand((4,)).to_event(1), obs=y)
        >>> res = vi.map(m, jnp.array([1.0, 2.0, 3.0, 4.0]), mle=True)
        >>> round(float(res.point["mu"]), 3), round(float(res.point["s"]) ** 2, 3), res.converged
        (2.5, 1.25, True)
    """
    check_option_clash("vi.map", model, given_options(map, dict(
        init=init, jacobian=jacobian, mle=mle, max_steps=max_steps, gtol=gtol, memory=memory)))
    max_steps, memory = int(max_steps), int(memory)
    if max_steps < 1 or memory < 1:
        raise ArgumentError(f"vi.map: max_steps and memory must be >= 1, got max_steps={max_steps}, memory={memory}.")
    if not float(gtol) > 0:
        raise ArgumentError(f"vi.map: gtol must be > 0, got {gtol!r}.")
    view = ppl.unconstrained(model, *args, **kwargs)
    x0 = _init_flat("vi.map", model, view, args, kwargs, init)
    f = _log_density_fn(view, bool(jacobian) and not mle, bool(mle))
    run = jax.jit(lambda x: _lbfgs_path(f, x, max_steps, float(gtol), memory))
    xs, fs, gs, evals, steps = run(x0)
    u, val, g = xs[-1], float(fs[-1]), gs[-1]
    gnorm = float(jnp.max(jnp.abs(g))) if g.size else 0.0
    if not np.isfinite(val) or not np.isfinite(gnorm):
        raise ModelError(f"vi.map: the log density or its gradient is not finite at the optimum found for model "
                         f"{view.model.name!r} (log density {val}); try another init.")
    return MAPResult(point=view.to_constrained(u), u=u, log_density=val, grad_norm=gnorm, num_steps=int(steps),
                     num_evals=int(evals), converged=gnorm < float(gtol), jacobian=bool(jacobian) and not mle,
                     mle=bool(mle), view=view)
