"""Block Gibbs: gradient kernels on some sites, trace kernels on the others, in one sweep.

A gradient kernel (HMC, NUTS, MALA, RWM) works on the flat unconstrained vector of a model's
continuous latent sites; a trace kernel (:class:`Gibbs`, :class:`MH`, :class:`Regenerate`) works
on a :class:`ppl.Trace`.  :class:`BlockGibbs` lets them share one chain whose state is the trace:

- a trace-kernel block moves the trace as usual;
- a :class:`Within` block runs its gradient kernel on the unconstrained view of the model with
  every *other* latent site substituted from the current trace (``ppl.substitute``), i.e. on the
  full conditional  π(x_B | x_rest) ∝ p(x_B, x_rest),  and writes the new values of x_B back
  into the trace (``model.update``).

Each block leaves the joint posterior π ∝ p invariant (a kernel that leaves the conditional of
x_B invariant, applied with x_rest fixed, leaves the joint invariant), so the sweep does too.
The view is rebuilt inside the compiled step (its construction is trace-time Python), and the
potential and gradient are re-evaluated at the start of every block step, because the other
blocks changed the conditional since the block last ran; only the block's tuning (its
adaptation state and params, kept in a :class:`~inference.mcmc.protocol.Chain`) is carried from
step to step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

import ppl
from ppl.errors import ModelError
from ppl.model import Trace

from ._base import Kernel, phase_step, split
from .gradient import _GradientKernel
from .protocol import Chain
from .trace_kernels import TraceState, _BoundTraceKernel

__all__ = ["BlockGibbs", "BlockState", "Within", "block_gibbs"]


class BlockState(eqx.Module):
    """State of a block-Gibbs chain: the trace, and per block the gradient kernel's
    :class:`~inference.mcmc.protocol.Chain` (only its adaptation state and params are carried
    over between sweeps) or None."""

    trace: Trace
    blocks: tuple


@dataclasses.dataclass(frozen=True)
class Within(Kernel):
    """A gradient kernel run on the sites ``addresses`` with every other latent site held fixed.

    Used as a block of :class:`BlockGibbs`; on its own it is ``BlockGibbs((self,))``.  It
    leaves the full conditional π(x_B | rest), hence the joint posterior, invariant (with its
    tuning frozen, i.e. after warmup).

    Example:
        >>> kern = mcmc.block_gibbs(mcmc.Within(mcmc.NUTS(), "mu"), mcmc.Gibbs("z"))
        >>> kern.adaptive
        True
    """

    kernel: Kernel
    addresses: tuple

    def __post_init__(self):
        a = self.addresses
        object.__setattr__(self, "addresses", (a,) if isinstance(a, str) else tuple(a))
        if not isinstance(self.kernel, _GradientKernel):
            raise ModelError(
                f"Within: expected a gradient kernel (NUTS, HMC, MALA, RWM), got "
                f"{type(self.kernel).__name__}; trace kernels are blocks of BlockGibbs as they are."
            )
        if not self.addresses:
            raise ModelError("Within: give at least one address.")

    @property
    def adaptive(self) -> bool:  # type: ignore[override]
        return self.kernel.adaptive

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return BlockGibbs((self,)).bind(model, args, kwargs, num_warmup)


@dataclasses.dataclass(frozen=True)
class BlockGibbs(Kernel):
    """A systematic sweep over blocks sharing a trace; leaves the posterior π ∝ p invariant.

    Each block is a trace kernel (``Gibbs("z")``, ``MH(q)``, ``Regenerate(...)``, a ``cycle`` or
    ``mixture`` of them) or ``Within(gradient_kernel, addresses)``.  Since every block leaves π
    invariant, so does their composition (see the module docstring).  Gradient blocks are tuned
    during warmup (their own step size and mass matrix); the discrete sites may change which
    values the continuous ones are conditioned on, never which continuous sites exist.

    Example:
        >>> @ppl.model
        ... def mixture_model(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 3.0))
        ...     with ppl.plate("n", y.shape[0]):
        ...         z = ppl.sample("z", dist.Bernoulli(probs=0.2))
        ...         ppl.sample("y", dist.Normal(jnp.where(z == 1, 0.0, mu), jnp.where(z == 1, 10.0, 1.0)), obs=y)
        >>> y = jnp.array([0.5, 1.2, -8.0, 0.9])
        >>> kern = mcmc.block_gibbs(mcmc.Within(mcmc.NUTS(), "mu"), mcmc.Gibbs("z"))
        >>> run = mcmc.sample(jax.random.key(0), kern, mixture_model, y, num_warmup=20, num_samples=20,
        ...                   num_chains=2, progress=False)
        >>> run.samples["z"].shape, run.diagnostics["divergences"].shape
        ((2, 20, 4), (2,))
    """

    blocks: tuple

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if not self.blocks:
            raise ModelError("BlockGibbs: give at least one block.")
        for b in self.blocks:
            if isinstance(b, _GradientKernel):
                raise ModelError(
                    f"BlockGibbs: the gradient kernel {type(b).__name__} needs the addresses it "
                    f"moves: write mcmc.Within({type(b).__name__}(...), ('site', ...))."
                )
            if not isinstance(b, Kernel):
                raise ModelError(f"BlockGibbs: expected kernels as blocks, got {type(b).__name__}.")

    @property
    def adaptive(self) -> bool:  # type: ignore[override]
        return any(b.adaptive for b in self.blocks)

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _BoundBlockGibbs(self, model, args, kwargs, num_warmup)


def block_gibbs(*blocks: Kernel) -> BlockGibbs:
    """The sweep that applies ``blocks`` in order (see :class:`BlockGibbs`)."""
    if len(blocks) == 1 and isinstance(blocks[0], (list, tuple)):
        blocks = tuple(blocks[0])
    return BlockGibbs(tuple(blocks))


class _BoundBlockGibbs(_BoundTraceKernel):
    def __init__(self, kernel: BlockGibbs, model, args, kwargs, num_warmup):
        super().__init__(kernel, model, args, kwargs)
        self.num_warmup = int(num_warmup)
        self.parts = [
            None if isinstance(b, Within) else b.bind(self.model, self.args, self.kwargs, num_warmup)
            for b in kernel.blocks
        ]

    # -- the conditional view of a Within block -----------------------------------------------------

    def conditional(self, trace: Trace, w: Within):
        """The gradient kernel bound to the model with every latent site outside ``w.addresses``
        substituted from ``trace`` (its view's sites must be exactly ``w.addresses``): an
        :class:`~inference.mcmc.protocol.Adapted` whose ``kernel`` is the conditional's."""
        for a in w.addresses:
            if a not in trace.latent:
                raise ModelError(
                    f"Within: {a!r} is not a latent sample site of the model (latent sites: "
                    f"{sorted(trace.latent)})."
                )
        fixed = {a: v for a, v in trace.latent.items() if a not in w.addresses}
        cond = ppl.substitute(self.model, data=fixed, strict=False)
        try:
            bound = w.kernel.bind(cond, self.args, self.kwargs, self.num_warmup)
        except ModelError as e:
            raise ModelError(f"Within({type(w.kernel).__name__}, {w.addresses}): {e}") from None
        disc = [a for a in w.addresses if a in bound.view.discrete]
        if disc:  # the view would sum it out (ppl.enum): a gradient block cannot move it
            raise ModelError(
                f"Within({type(w.kernel).__name__}, {w.addresses}): site {disc[0]!r} is discrete; a "
                "gradient block moves continuous sites only: update it with a Gibbs block (mcmc.Gibbs)."
            )
        extra = [a for a in bound.view.sites if a not in w.addresses]
        if extra:
            raise ModelError(f"Within: the model has latent site {extra[0]!r} that no block fixes.")
        return bound

    def refresh(self, bound, trace: Trace, w: Within, stored: Chain) -> Chain:
        """The block's chain at the trace's current values: x, and U(x), ∇U(x) under the
        *current* conditional (the other blocks moved since), with the stored tuning."""
        x = bound.view.to_unconstrained({a: trace.choices[a] for a in w.addresses})
        return Chain(bound.kernel.state_at(x), stored.adapt_state, stored.params)

    def _write(self, key, trace: Trace, values: dict, w: Within) -> Trace:
        new, _, _ = self.model.update(key, trace, {a: values[a] for a in w.addresses})
        return new

    # -- protocol -------------------------------------------------------------------------------------

    def init(self, key: Any, init: Any = None) -> BlockState:
        """A prior draw of the trace (or the given values, the rest from the prior); with a
        strategy such as ``"uniform"`` the gradient blocks' sites then start there."""
        k_tr, k_blocks = split(key, 2)
        kind = getattr(init, "kind", init)  # a name or a ppl.initialization.InitStrategy
        strategy = init if isinstance(kind, str) and kind != "prior" and not isinstance(init, dict) else None
        tr = super().init(k_tr, None if strategy else init).trace
        states = []
        for b, k in zip(self.kernel.blocks, split(k_blocks, len(self.kernel.blocks))):
            if not isinstance(b, Within):
                states.append(None)
                continue
            k1, k2, k3 = split(k, 3)
            bound = self.conditional(tr, b)
            if strategy is not None:
                x = bound.view.init_point(k1, strategy)
                tr = self._write(k3, tr, bound.view.to_constrained(x), b)
            states.append(bound.init(k2, {a: tr.choices[a] for a in b.addresses}))
        return BlockState(tr, tuple(states))

    def _sweep(self, key, state: BlockState, t=None, warm=True):
        tr = state.trace
        states = list(state.blocks)
        info: dict = {}
        keys = split(key, len(self.kernel.blocks))
        for i, (b, part, k) in enumerate(zip(self.kernel.blocks, self.parts, keys)):
            if part is not None:
                s = TraceState(tr)
                s, inf = part.step(k, s) if t is None else phase_step(part, k, s, t, warm)
                tr = s.trace
            else:
                k_step, k_write = split(k, 2)
                bound = self.conditional(tr, b)
                chain = self.refresh(bound, tr, b, states[i])
                chain, inf = bound.step(k_step, chain) if t is None else phase_step(bound, k_step, chain, t, warm)
                tr = self._write(k_write, tr, bound.samples(chain), b)
                states[i] = chain
            info.update({f"{i}/{n}": v for n, v in inf.items()})
        return BlockState(tr, tuple(states)), info

    def step(self, key: Any, state: BlockState, params: Any = None) -> tuple[BlockState, dict]:
        """One sweep with every block's tuning frozen (``params`` is not used: each gradient
        block's tuning travels in ``state.blocks``)."""
        return self._sweep(key, state)

    def warmup_step(self, key: Any, state: BlockState, t: Any) -> tuple[BlockState, dict]:
        return self._sweep(key, state, t)

    def phase_step(self, key: Any, state: BlockState, t: Any, warm: Any) -> tuple[BlockState, dict]:
        return self._sweep(key, state, t, warm)
