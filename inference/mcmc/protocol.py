"""The kernel protocol, the adaptation protocol, and the chain that pairs them (Blackjax's split).

A *bound kernel* (``kernel.bind(model, args, kwargs, num_warmup)`` of a kernel configuration)
is a pair of pure functions on an opaque pytree ``state`` plus three read-outs:

    init(key, init=None)           -> state
    step(key, state, params=None)  -> (state, info)     info: a flat dict of arrays
    samples(state)                 -> dict               address -> constrained value
    log_density(state)             -> array              the target's log density at the state
    explain(state)                 -> str                eager: why that log density is not finite

``params`` are the tuning parameters of the transition (step size, inverse mass matrix, ...);
``None`` means the kernel's own (kernels without tuning ignore it).  With ``params`` fixed a
kernel leaves its target π invariant.

An *adaptation* tunes ``params`` during warmup, as a separate object:

    init(key, state, num_warmup)         -> adapt_state
    params(adapt_state)                  -> params
    update(adapt_state, t, state, info)  -> adapt_state   after warmup step t (0-based)

:class:`Adapted` composes the two into the bound kernel the MCMC driver runs: its state is a
:class:`Chain` ``(state, adapt_state, params)``, its ``step`` uses the chain's params and leaves
the tuning unchanged, its ``warmup_step`` also updates the adaptation.  So the tuning is never
hidden inside a kernel's state, and SMC or Gibbs blocks can step a kernel with params they set.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["BoundKernel", "Adaptation", "Chain", "Adapted"]


@runtime_checkable
class BoundKernel(Protocol):
    """A kernel bound to a target: ``init``, ``step(key, state, params=None)`` and the read-outs
    ``samples``, ``log_density``, ``explain``.  With fixed ``params``, ``step`` leaves the target
    invariant."""

    def init(self, key: Any, init: Any = None) -> Any: ...

    def step(self, key: Any, state: Any, params: Any = None) -> tuple[Any, dict]: ...

    def samples(self, state: Any) -> dict: ...

    def log_density(self, state: Any) -> jax.Array: ...

    def explain(self, state: Any) -> str: ...


@runtime_checkable
class Adaptation(Protocol):
    """Tuning of a kernel's ``params`` during warmup, separate from the kernel:
    ``init(key, state, num_warmup)``, ``params(adapt_state)``, ``update(adapt_state, t, state, info)``."""

    def init(self, key: Any, state: Any, num_warmup: int) -> Any: ...

    def params(self, adapt_state: Any) -> Any: ...

    def update(self, adapt_state: Any, t: Any, state: Any, info: dict) -> Any: ...


class Chain(eqx.Module):
    """The carry of an adapted chain: the kernel's ``state``, the adaptation's ``adapt_state``
    and the ``params`` the next step uses (``adaptation.params(adapt_state)``).  Other attribute
    reads go to ``state`` (e.g. ``chain.x`` is ``chain.state.x`` for a gradient kernel)."""

    state: Any
    adapt_state: Any
    params: Any

    def __getattr__(self, name: str) -> Any:
        """Read-only access to the kernel state's fields (``run.state.x`` as before the split)."""
        if name.startswith("__") or name in ("state", "adapt_state", "params"):
            raise AttributeError(name)
        return getattr(self.state, name)


class Adapted:
    """A bound kernel paired with an adaptation: the bound kernel the driver runs on a
    :class:`Chain`.

    ``init`` starts the kernel and the adaptation (keys split as ``(kernel, adaptation)``);
    ``step`` moves the state with the chain's params (tuning frozen: the kernel's invariance
    holds); ``warmup_step`` then updates the adaptation at step ``t``; ``phase_step`` does either
    by a traced flag with the transition computed once.  ``samples``, ``log_density`` and
    ``explain`` read the chain's state.  Other attributes are the bound kernel's.

    Example:
        >>> bound = mcmc.RWM().bind(ppl.Model(lambda: ppl.sample("x", dist.Normal(0.0, 1.0))), num_warmup=10)
        >>> chain = bound.init(jax.random.key(0))
        >>> chain, info = bound.warmup_step(jax.random.key(1), chain, 0)
        >>> sorted(bound.samples(chain))
        ['x']
    """

    def __init__(self, kernel: Any, adaptation: Any, num_warmup: int = 0):
        self.kernel = kernel
        self.adaptation = adaptation
        self.num_warmup = int(num_warmup)

    def __getattr__(self, name: str) -> Any:
        if name in ("kernel", "adaptation", "num_warmup"):  # not yet set (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.kernel, name)

    def init(self, key: Any, init: Any = None) -> Chain:
        k_state, k_adapt = list(jax.random.split(key, 2))
        searching = getattr(self.kernel, "init_searching", None)
        plan = getattr(self.adaptation, "initial_search", None)
        if searching is not None and plan is not None:
            # the kernel runs the adaptation's initial step-size search in its own init loop
            # (one gradient call site in the program: BoundGradient.init_searching)
            state, step_size = searching(k_state, init, lambda like: plan(k_adapt, like))
            adapt_state = self.adaptation.init(k_adapt, state, self.num_warmup, step_size=step_size)
        else:
            state = self.kernel.init(k_state, init)
            adapt_state = self.adaptation.init(k_adapt, state, self.num_warmup)
        return Chain(state, adapt_state, self.adaptation.params(adapt_state))

    def step(self, key: Any, chain: Chain, params: Any = None) -> tuple[Chain, dict]:
        """One transition with ``params`` (default: the chain's); the tuning is unchanged."""
        params = chain.params if params is None else params
        state, info = self.kernel.step(key, chain.state, params)
        return Chain(state, chain.adapt_state, chain.params), info

    def warmup_step(self, key: Any, chain: Chain, t: Any) -> tuple[Chain, dict]:
        """One transition, then the adaptation's update at warmup step ``t``."""
        state, info = self.kernel.step(key, chain.state, chain.params)
        a = self.adaptation.update(chain.adapt_state, t, state, info)
        return Chain(state, a, self.adaptation.params(a)), info

    def phase_step(self, key: Any, chain: Chain, t: Any, warm: Any) -> tuple[Chain, dict]:
        """``warmup_step`` when ``warm`` (a traced boolean) is true, else ``step``: the
        transition is computed (and compiled) once; only the adaptation is switched."""
        state, info = self.kernel.step(key, chain.state, chain.params)

        def adapt(_):
            a = self.adaptation.update(chain.adapt_state, t, state, info)
            return jax.tree.map(lambda v, o: jnp.asarray(v, o.dtype), a, chain.adapt_state)

        own = getattr(self.adaptation, "phase_update", None)  # keeps big buffers out of the cond
        if own is not None:
            a = own(chain.adapt_state, t, state, info, warm)
        else:
            a = jax.lax.cond(warm, adapt, lambda _: chain.adapt_state, None)
        return Chain(state, a, self.adaptation.params(a)), info

    def samples(self, chain: Chain) -> dict:
        return self.kernel.samples(chain.state)

    def log_density(self, chain: Chain) -> jax.Array:
        return self.kernel.log_density(chain.state)

    def explain(self, chain: Chain) -> str:
        return self.kernel.explain(chain.state)
