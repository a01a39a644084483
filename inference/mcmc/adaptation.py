"""Tuning of the gradient kernels: their parameters and Stan's window adaptation.

:class:`GradParams` are the tuning parameters a gradient kernel's step takes (step size and
inverse mass matrix, with the mass matrix's square roots); :class:`WindowAdaptation` is the
adaptation object (protocol of :mod:`inference.mcmc.protocol`) that tunes them during warmup:
dual averaging of the step size (Hoffman & Gelman 2014) and a Welford estimate of the mass
matrix over Stan's doubling windows, computed by :class:`WindowAdapter` (NumPyro's ``hmc_util``
pieces, with branches that stay branches under ``vmap`` over chains).  With the parameters
fixed (after warmup, or set by SMC) each gradient kernel leaves its target invariant; the
adaptation only chooses which valid kernel runs.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import hmc_util
from numpyro.infer.hmc_util import IntegratorState

from ppl.errors import ArgumentError

from .._lapack import one_at_a_time
from .metric import LowRankMetric

__all__ = ["GradParams", "WindowAdaptation", "WindowAdapter", "search_step_size", "StepSizeSearch"]


class GradParams(eqx.Module):
    """The tuning parameters of a gradient kernel's step: the step size ε and the inverse mass
    matrix A (diagonal: a vector; dense: a matrix), with NumPyro's square roots of the mass
    matrix M = A⁻¹ (``mass_matrix_sqrt``, for momenta r ~ N(0, M)) and of A
    (``mass_matrix_sqrt_inv``).  Build them with :meth:`make`.
    """

    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    mass_matrix_sqrt: jax.Array
    mass_matrix_sqrt_inv: jax.Array
    #: a cap on NUTS's tree depth below its ``max_tree_depth`` (traced), or None: set by an
    #: adaptation for its early warmup steps (``FisherAdaptation(early_max_tree_depth=...)``)
    max_tree_depth: Any = None

    @classmethod
    def make(cls, step_size: Any, inverse_mass_matrix: jax.Array, dense_mass: bool | None = None) -> "GradParams":
        """The parameters for step size ``step_size`` and inverse mass matrix
        ``inverse_mass_matrix`` (its square roots computed as NumPyro does).

        Example:
            >>> p = mcmc.GradParams.make(0.1, jnp.ones(3))
            >>> p.mass_matrix_sqrt.shape
            (3,)
        """
        if isinstance(inverse_mass_matrix, LowRankMetric):  # its own exact factors (metric.py)
            return cls(step_size, inverse_mass_matrix, inverse_mass_matrix, inverse_mass_matrix)
        A = jnp.asarray(inverse_mass_matrix)
        dense = A.ndim == 2 if dense_mass is None else bool(dense_mass)
        A, sqrt, sqrt_inv = hmc_util._initialize_mass_matrix(jnp.zeros(A.shape[-1], A.dtype), A, dense)
        return cls(step_size, A, sqrt, sqrt_inv)

    @classmethod
    def of(cls, adapt_state: Any) -> "GradParams":
        """The parameters held in a NumPyro ``HMCAdaptState``."""
        return cls(adapt_state.step_size, adapt_state.inverse_mass_matrix, adapt_state.mass_matrix_sqrt,
                   adapt_state.mass_matrix_sqrt_inv)


#: momenta drawn per step-size search (reused in turn if a search needs more iterations)
_SEARCH_MOMENTA = 16


def search_step_size(value_and_grad, step_size, inverse_mass_matrix, z_info, key):
    """A reasonable initial step size (Hoffman & Gelman 2014, Algorithm 4, as Stan and NumPyro do
    it): from ``step_size``, keep doubling (or halving) it while the acceptance probability of one
    leapfrog step from ``z_info`` (position, _, U, ∇U) with a fresh momentum r ~ N(0, M)
    (M = ``inverse_mass_matrix``⁻¹) stays above (below) 0.8; return the last step size tried.

    Only a heuristic starting point for dual averaging (the chain's validity does not depend on
    it).  Written for the compiler: the momenta are drawn before the loop (one random call; see
    :func:`_search_with_momenta`), so the loop body is one leapfrog step.

    Example:
        >>> from inference.mcmc.adaptation import search_step_size
        >>> vg = jax.value_and_grad(lambda x: 0.5 * jnp.sum(x**2))
        >>> x = jnp.ones(2)
        >>> eps = search_step_size(vg, 1.0, jnp.ones(2), (x, None, *vg(x)), jax.random.key(0))
        >>> bool(eps > 0)
        True
    """
    x = z_info[0]
    xi = jax.random.normal(key, (_SEARCH_MOMENTA,) + x.shape, x.dtype)
    return _search_with_momenta(value_and_grad, step_size, inverse_mass_matrix, z_info, xi)


def _dense_momenta(A, xi):
    """Rows L⁻ᵀ ξ for A = L Lᵀ: momenta with covariance A⁻¹ from standard normal rows ``xi``."""
    L = jnp.linalg.cholesky(A)
    return jax.scipy.linalg.solve_triangular(L.T, xi.T, lower=False).T


def _search_with_momenta(value_and_grad, step_size, inverse_mass_matrix, z_info, xi):
    """:func:`search_step_size` with standard normal draws ``xi`` (rows; used in turn)."""
    x, _, pe, g = z_info
    search = StepSizeSearch(step_size, inverse_mass_matrix, xi)

    def body(c):
        x1, aux = search.trial(c, x, g)
        return search.next(c, aux, pe, *value_and_grad(x1))

    eps, *_ = jax.lax.while_loop(search.running, body, search.start(x.dtype))
    return eps


class StepSizeSearch:
    """:func:`search_step_size` as a state machine, so that a caller can run its leapfrog steps
    through a gradient call it already has (``BoundGradient.init`` runs the initial point's
    retries and the initial search in one loop: the model's gradient appears once in the
    ``init`` program instead of twice; issue 14, compile time).

    ``start(dtype)`` is the search's carry; while ``running(carry)``: ``x1, aux = trial(carry,
    x, g)`` is the point where the next trial step needs U and ∇U (from the point ``x`` with
    gradient ``g``), ``next(carry, aux, U(x), U(x1), ∇U(x1))`` the carry after it; the step size
    found is ``carry[0]``.  ``inverse_mass_matrix`` may be a function of ``g`` (an adaptation
    whose first metric comes from the initial gradient): it is then evaluated at each trial, on
    the same ``g``.  The same arithmetic as :func:`search_step_size`, step by step.

    Example:
        >>> from inference.mcmc.adaptation import StepSizeSearch
        >>> vg = jax.value_and_grad(lambda x: 0.5 * jnp.sum(x**2))
        >>> x = jnp.ones(2); pe, g = vg(x)
        >>> s = StepSizeSearch(1.0, jnp.ones(2), jax.random.normal(jax.random.key(0), (16, 2)))
        >>> c = s.start(x.dtype)
        >>> while bool(s.running(c)):
        ...     x1, aux = s.trial(c, x, g)
        ...     c = s.next(c, aux, pe, *vg(x1))
        >>> bool(c[0] > 0)
        True
    """

    def __init__(self, step_size: Any, inverse_mass_matrix: Any, xi: jax.Array):
        self.step_size, self.inverse_mass_matrix, self.xi = step_size, inverse_mass_matrix, xi

    def _metric(self, g):
        """(the search's inverse mass matrix A, its momenta: rows r = M^{1/2} ξ with M = A⁻¹)."""
        A = self.inverse_mass_matrix(g) if callable(self.inverse_mass_matrix) else self.inverse_mass_matrix
        xi = self.xi
        if isinstance(A, LowRankMetric):
            return A, A.momentum(xi)
        if A.ndim == 1:
            return A, xi / jnp.sqrt(A)  # r ~ N(0, A⁻¹)
        # A = L Lᵀ: r = L⁻ᵀ ξ has covariance A⁻¹ (one chain at a time: :mod:`inference._lapack`)
        return A, one_at_a_time(_dense_momenta)(A, xi)

    @staticmethod
    def _velocity(A, r):
        if isinstance(A, LowRankMetric):
            return A.velocity(r)
        return A * r if A.ndim == 1 else A @ r

    @staticmethod
    def _kinetic(A, r):
        if isinstance(A, LowRankMetric):
            return 0.5 * jnp.dot(r, A.velocity(r))
        return 0.5 * jnp.sum(A * r * r) if A.ndim == 1 else 0.5 * r @ (A @ r)

    def start(self, dtype) -> tuple:
        """The carry before the first trial: (step size, last direction, direction, trials)."""
        zero = jnp.zeros((), jnp.int32)
        return jnp.asarray(self.step_size, dtype), zero, zero, zero

    def running(self, c) -> jax.Array:
        """Whether another trial is due: the direction has not changed and the step size is
        not at the type's extremes."""
        eps, last, direction, _ = c
        finfo = jnp.finfo(eps.dtype)
        not_extreme = ((eps > finfo.tiny) | (direction >= 0)) & ((eps < finfo.max) | (direction <= 0))
        return not_extreme & ((last == 0) | (direction == last))

    def trial(self, c, x, g) -> tuple[jax.Array, tuple]:
        """The point of the next trial's leapfrog step, and what :meth:`next` needs of it."""
        eps, _, direction, i = c
        A, momenta = self._metric(g)
        eps = jnp.where(direction == 1, 2.0 * eps, jnp.where(direction == -1, 0.5 * eps, eps))
        r = momenta[i % self.xi.shape[0]]
        r_half = r - 0.5 * eps * g
        return x + eps * self._velocity(A, r_half), (eps, r, r_half, A)

    def next(self, c, aux, pe, pe1, g1) -> tuple:
        """The carry after the trial ``aux`` reached U = ``pe1``, ∇U = ``g1`` (``pe``: U at the
        start point)."""
        _, _, direction, i = c
        eps, r, r_half, A = aux
        log_target = jnp.log(jnp.asarray(0.8, eps.dtype))
        r1 = r_half - 0.5 * eps * g1
        delta = (pe1 + self._kinetic(A, r1)) - (pe + self._kinetic(A, r))
        new_direction = jnp.where(log_target < -delta, 1, -1).astype(jnp.int32)  # a NaN delta halves
        return eps, direction, new_direction, i + 1


class WindowAdapter:
    """Stan's windowed adaptation, with NumPyro's ``HMCAdaptState``: dual averaging of the step
    size towards ``target_accept_prob``; a Welford estimate of the (co)variance over Stan's
    doubling windows (75 + 25, 50, 100, ... + 50 steps for 1000), regularised as in Stan,
    becoming the inverse mass matrix at the end of each middle window.

    At the end of a window dual averaging restarts, from

    - ``restart="search"``: a step size found by ``find_reasonable_step_size`` (a search by
      leapfrog steps; Stan and NumPyro). ``init`` and ``update`` then make the updates of
      NumPyro's ``warmup_adapter`` pair (``tests/test_mcmc_nuts.py`` checks the states are equal at every
      step);
    - ``restart="average"``: its own averaged step size (Blackjax), no search (the search is a
      second copy of the model's gradient in every compiled warmup program); the state's
      ``rng_key`` is then left as it is (NumPyro splits it at every update for the search).

    The initial step size is searched for in ``init`` (unless ``search=False``) in both modes.

    Every branch (a window's end, inside a window or not) is decided by the step ``t`` alone,
    never by the state.  ``t`` is the same for every chain, so under ``vmap`` over chains each
    ``cond`` stays a branch.  (NumPyro reads the window index from the per-chain state: under
    ``vmap`` its ``cond``s become ``select``s that run the window-end search at every step of
    every chain.)
    """

    def __init__(self, num_warmup: int, find_reasonable_step_size=None, adapt_step_size: bool = True,
                 adapt_mass_matrix: bool = True, dense_mass: bool = False, target_accept_prob: float = 0.8,
                 restart: str = "search"):
        if restart not in ("search", "average"):
            raise ArgumentError(f"WindowAdapter: restart must be 'search' or 'average', got {restart!r}.")
        self.num_warmup = int(num_warmup)
        self.adapt_step_size, self.adapt_mass_matrix = bool(adapt_step_size), bool(adapt_mass_matrix)
        self.dense_mass = bool(dense_mass)
        self.target_accept_prob, self.restart = target_accept_prob, restart
        self.ss_init, self.ss_update = hmc_util.dual_averaging()
        self.mm_init, self.mm_update, self.mm_final = hmc_util.welford_covariance(diagonal=not dense_mass)
        schedule = hmc_util.build_adaptation_schedule(self.num_warmup)
        self.num_windows = len(schedule)
        self.ends = np.asarray([w.end for w in schedule])
        self.find_ss = find_reasonable_step_size or (lambda step_size, *_: step_size)
        kw = dict(adapt_step_size=adapt_step_size, adapt_mass_matrix=adapt_mass_matrix, dense_mass=dense_mass,
                  target_accept_prob=target_accept_prob)
        self._init_search, _ = hmc_util.warmup_adapter(self.num_warmup, find_reasonable_step_size=find_reasonable_step_size, **kw)
        self._init_plain, _ = hmc_util.warmup_adapter(self.num_warmup, find_reasonable_step_size=None, **kw)

    def init(self, z_info, rng_key, step_size=1.0, inverse_mass_matrix=None, mass_matrix_size=None, search: bool = True):
        """The adaptation state at the initial point (the step size from a search started at
        ``step_size``, unless ``search=False``)."""
        f = self._init_search if search else self._init_plain
        return f(z_info, rng_key, step_size, inverse_mass_matrix=inverse_mass_matrix, mass_matrix_size=mass_matrix_size)

    def _window(self, t):
        """(index of the window of step t, whether it is a middle window, whether t ends it)."""
        ends = jnp.asarray(self.ends)
        w = jnp.minimum(jnp.sum(ends < t), self.num_windows - 1)
        middle = (w > 0) & (w < self.num_windows - 1)
        return w, middle, t == ends[w]

    def _window_end(self, z_info, key, state):
        if self.adapt_mass_matrix:
            final = lambda mm_state: self.mm_final(mm_state, regularize=True)  # noqa: E731
            if self.dense_mass:  # Cholesky factors: one chain at a time (:mod:`inference._lapack`)
                final = one_at_a_time(final)
            inv_mm, mm_sqrt, mm_sqrt_inv = final(state.mm_state)
            state = state._replace(inverse_mass_matrix=inv_mm, mass_matrix_sqrt=mm_sqrt, mass_matrix_sqrt_inv=mm_sqrt_inv,
                                   mm_state=self.mm_init(inv_mm.shape[-1]))
        if self.adapt_step_size:
            if self.restart == "search":
                step_size = self.find_ss(state.step_size, state.inverse_mass_matrix, z_info, key)
            else:
                step_size = jnp.exp(state.ss_state[1])  # the averaged log step size
            state = state._replace(step_size=step_size, ss_state=self.ss_init(jnp.log(10) + jnp.log(step_size)))
        return state

    def update(self, t, accept_prob, z_info, state):
        """The adaptation state after warmup step ``t`` (0-based) with acceptance ``accept_prob``
        and new integrator state ``z_info``."""
        key_ss = None
        if self.restart == "search":  # only a window-end search uses a key: no random call
            # per step otherwise (a threefry hash in every chunk program; issue 14, compile time)
            key, key_ss = jax.random.split(state.rng_key)
            state = state._replace(rng_key=key)
        if self.adapt_step_size:
            ss_state = self.ss_update(self.target_accept_prob - accept_prob, state.ss_state)
            log_step_size, log_step_size_avg, *_ = ss_state
            step_size = jnp.where(t == self.num_warmup - 1, jnp.exp(log_step_size_avg), jnp.exp(log_step_size))
            finfo = jnp.finfo(jnp.result_type(step_size))
            state = state._replace(ss_state=ss_state, step_size=jnp.clip(step_size, finfo.tiny, finfo.max))
        window, middle, at_end = self._window(t)
        if self.adapt_mass_matrix:
            mm_state = jax.lax.cond(middle, lambda: self.mm_update(z_info[0], state.mm_state), lambda: state.mm_state)
            state = state._replace(mm_state=mm_state)
        state = state._replace(window_idx=jnp.where(at_end, window + 1, window).astype(jnp.asarray(state.window_idx).dtype))
        return jax.lax.cond(at_end & middle, lambda: self._window_end(z_info, key_ss, state), lambda: state)



class WindowState(eqx.Module):
    """The state of :class:`WindowAdaptation`: NumPyro's ``HMCAdaptState`` and the warmup length
    (static) whose window schedule it follows."""

    hmc: Any
    num_warmup: int = eqx.field(static=True)


class WindowAdaptation:
    """Stan's window adaptation as an adaptation object (see :mod:`inference.mcmc.protocol`):
    ``init(key, state, num_warmup)`` searches the initial step size (unless
    ``find_heuristic_step_size`` is false) at the chain's first state, ``update`` makes one
    :class:`WindowAdapter` update after each warmup step (acceptance ``info["accept_prob"]``),
    ``params`` reads the current :class:`GradParams`.

    ``value_and_grad`` is the kernel's x ↦ (U(x), ∇U(x)) (used by the step-size search), ``dim``
    the length of the flat position; the options are the gradient kernels' (``step_size``,
    ``adapt_step_size``, ``adapt_mass_matrix``, ``dense_mass``, ``target_accept_prob``,
    ``restart``).

    Example:
        >>> U = lambda x: 0.5 * jnp.sum(x**2)
        >>> wa = mcmc.WindowAdaptation(jax.value_and_grad(U), 2, step_size=0.5)
        >>> x = jnp.ones(2); s = mcmc.GradState(x, *jax.value_and_grad(U)(x))
        >>> a = wa.init(jax.random.key(0), s, 50)
        >>> a = wa.update(a, 0, s, {"accept_prob": jnp.asarray(0.9)})
        >>> wa.params(a).inverse_mass_matrix.shape
        (2,)
    """

    def __init__(self, value_and_grad: Any, dim: int, *, step_size: float = 1.0, adapt_step_size: bool = True,
                 adapt_mass_matrix: bool = True, dense_mass: bool = False, target_accept_prob: float = 0.8,
                 restart: str = "average", find_heuristic_step_size: bool = True):
        if restart not in ("search", "average"):
            raise ArgumentError(f"WindowAdaptation: restart must be 'search' or 'average', got {restart!r}.")
        self.value_and_grad, self.dim = value_and_grad, int(dim)
        self.step_size = step_size
        self.options = dict(adapt_step_size=adapt_step_size, adapt_mass_matrix=adapt_mass_matrix, dense_mass=dense_mass,
                            target_accept_prob=target_accept_prob, restart=restart)
        self.find_heuristic_step_size = bool(find_heuristic_step_size)
        self._adapters: dict = {}

    def adapter(self, num_warmup: int) -> WindowAdapter:
        """The :class:`WindowAdapter` for a warmup of ``num_warmup`` steps (at least 1)."""
        n = max(int(num_warmup), 1)
        if n not in self._adapters:
            find = functools.partial(search_step_size, self.value_and_grad) if self.find_heuristic_step_size else None
            self._adapters[n] = WindowAdapter(n, find_reasonable_step_size=find, **self.options)
        return self._adapters[n]

    def init(self, key: Any, state: Any, num_warmup: int, step_size: Any = None) -> WindowState:
        """The adaptation state at the chain's first state (a ``GradState``); ``step_size``:
        the result of :meth:`initial_search` run by the caller (then not searched again)."""
        z_info = IntegratorState(state.x, None, state.potential_energy, state.grad)
        n = max(int(num_warmup), 1)
        if step_size is not None:
            hmc = self.adapter(n).init(z_info, key, step_size, mass_matrix_size=self.dim, search=False)
            return WindowState(hmc, n)
        step_size = jnp.asarray(self.step_size, dtype=state.x.dtype)
        hmc = self.adapter(n).init(z_info, key, step_size, mass_matrix_size=self.dim)
        return WindowState(hmc, n)

    def initial_search(self, key: Any, like: Any) -> "StepSizeSearch | None":
        """The step-size search :meth:`init` (with ``key``) makes at a position shaped like
        ``like``, as a :class:`StepSizeSearch` for a caller to run (``BoundGradient.init_searching``),
        or None when there is none.  Its key is the one NumPyro's ``warmup_adapter`` gives the
        search (the second half of ``key``), its metric the initial (unit) one."""
        if not (self.find_heuristic_step_size and self.options["adapt_step_size"]):
            return None
        _, key_ss = jax.random.split(key)
        dense = self.options["dense_mass"]
        A = hmc_util._initialize_mass_matrix(jnp.zeros(like.shape, like.dtype), None, dense)[0]
        xi = jax.random.normal(key_ss, (_SEARCH_MOMENTA,) + tuple(like.shape), like.dtype)
        return StepSizeSearch(jnp.asarray(self.step_size, like.dtype), A, xi)

    def params(self, adapt_state: WindowState) -> GradParams:
        """The step size and inverse mass matrix the next step uses."""
        return GradParams.of(adapt_state.hmc)

    def update(self, adapt_state: WindowState, t: Any, state: Any, info: dict) -> WindowState:
        """The adaptation state after warmup step ``t`` (0-based) that reached ``state``."""
        z_info = IntegratorState(state.x, None, state.potential_energy, state.grad)
        hmc = self.adapter(adapt_state.num_warmup).update(t, info["accept_prob"], z_info, adapt_state.hmc)
        return WindowState(hmc, adapt_state.num_warmup)
