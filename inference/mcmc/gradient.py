"""Kernels on the unconstrained view: random-walk MH, MALA, HMC and NUTS, with window adaptation.

Every kernel here targets the density of the model's posterior in unconstrained space,
π(x) ∝ exp(−U(x)) with U = ``ppl.unconstrained(model, *args).potential`` (the log-Jacobian of
each site's bijection included), so mapping draws through ``to_constrained`` gives draws of the
posterior.  With adaptation *frozen* (after warmup) each kernel leaves π invariant; during
warmup the step size (dual averaging, Hoffman & Gelman 2014) and the mass matrix (Welford
estimate over Stan's doubling windows) are tuned by :class:`WindowAdapter` (NumPyro's
``hmc_util`` pieces, with branches that stay branches under ``vmap`` over chains).

Options shared by the kernels: ``step_size`` (initial), ``adapt_step_size``,
``adapt_mass_matrix``, ``dense_mass``, ``target_accept_prob``, ``find_heuristic_step_size``
(search for the initial step size from ``step_size``, Hoffman & Gelman's Algorithm 4),
``step_size_restart`` (where dual averaging restarts at the end of each mass-matrix window:
``"average"``, its averaged step size, as Blackjax; ``"search"``, a new search, as Stan and
NumPyro) and ``init_strategy``.

The state is a :class:`GradState`; the tuning parameters (step size, inverse mass matrix) live
in ``state.adapt`` (NumPyro's ``HMCAdaptState``).
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import hmc_util
from numpyro.infer.hmc_util import IntegratorState, euclidean_kinetic_energy

import ppl

from ._base import Kernel, metropolis_accept, split
from .nuts import nuts_trajectory

__all__ = ["GradState", "RWM", "MALA", "HMC", "NUTS", "WindowAdapter", "search_step_size"]


class GradState(eqx.Module):
    """Position ``x`` (flat, unconstrained), its potential U(x) and ∇U(x), and the tuning state."""

    x: jax.Array
    potential_energy: jax.Array
    grad: jax.Array
    adapt: Any  # numpyro.infer.hmc_util.HMCAdaptState


def _momentum(key: Any, mass_matrix_sqrt: jax.Array) -> jax.Array:
    """r ~ N(0, M) given a square root of the mass matrix M."""
    eps = jax.random.normal(key, mass_matrix_sqrt.shape[:1])
    return mass_matrix_sqrt * eps if mass_matrix_sqrt.ndim == 1 else mass_matrix_sqrt @ eps


def _scaled_noise(adapt: Any, xi: jax.Array) -> jax.Array:
    """S ξ with S Sᵀ = A, the inverse mass matrix: ξ ~ N(0, I) gives N(0, A).

    NumPyro's dense ``mass_matrix_sqrt_inv`` is a lower-triangular T with Tᵀ T = A, so S = Tᵀ.
    """
    t = adapt.mass_matrix_sqrt_inv
    return t * xi if t.ndim == 1 else t.T @ xi


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
        >>> eps = search_step_size(jax.value_and_grad(U), 1.0, jnp.ones(d), (x, None, *vg(x)), key)
    """
    x = z_info[0]
    xi = jax.random.normal(key, (_SEARCH_MOMENTA,) + x.shape, x.dtype)
    return _search_with_momenta(value_and_grad, step_size, inverse_mass_matrix, z_info, xi)


def _search_with_momenta(value_and_grad, step_size, inverse_mass_matrix, z_info, xi):
    """:func:`search_step_size` with standard normal draws ``xi`` (rows; used in turn)."""
    x, _, pe, g = z_info
    A = inverse_mass_matrix
    dtype = x.dtype
    if A.ndim == 1:
        momenta = xi / jnp.sqrt(A)  # r ~ N(0, A⁻¹)
        kinetic = lambda r: 0.5 * jnp.sum(A * r * r)  # noqa: E731
        velocity = lambda r: A * r  # noqa: E731
    else:  # A = L Lᵀ: r = L⁻ᵀ ξ has covariance A⁻¹
        L = jnp.linalg.cholesky(A)
        momenta = jax.scipy.linalg.solve_triangular(L.T, xi.T, lower=False).T
        kinetic = lambda r: 0.5 * r @ (A @ r)  # noqa: E731
        velocity = lambda r: A @ r  # noqa: E731
    log_target = jnp.log(jnp.asarray(0.8, dtype))
    finfo = jnp.finfo(dtype)

    def body(c):
        eps, _, direction, i = c
        eps = jnp.where(direction == 1, 2.0 * eps, jnp.where(direction == -1, 0.5 * eps, eps))
        r = momenta[i % xi.shape[0]]
        r_half = r - 0.5 * eps * g
        pe1, g1 = value_and_grad(x + eps * velocity(r_half))
        r1 = r_half - 0.5 * eps * g1
        delta = (pe1 + kinetic(r1)) - (pe + kinetic(r))
        new_direction = jnp.where(log_target < -delta, 1, -1).astype(jnp.int32)  # a NaN delta halves
        return eps, direction, new_direction, i + 1

    def cond(c):
        eps, last, direction, _ = c
        not_extreme = ((eps > finfo.tiny) | (direction >= 0)) & ((eps < finfo.max) | (direction <= 0))
        return not_extreme & ((last == 0) | (direction == last))

    zero = jnp.zeros((), jnp.int32)
    eps, *_ = jax.lax.while_loop(cond, body, (jnp.asarray(step_size, dtype), zero, zero, zero))
    return eps


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
    - ``restart="average"``: its own averaged step size (Blackjax), no search.  Measured on the
      benchmark models, the two give the same ESS per gradient; the search is a second copy of
      the model's gradient in every compiled warmup program (~0.25 s of XLA time on CPU).

    The initial step size is searched for in ``init`` (unless ``search=False``) in both modes.

    Every branch (a window's end, inside a window or not) is decided by the step ``t`` alone,
    never by the state.  ``t`` is the same for every chain, so under ``vmap`` over chains each
    ``cond`` stays a branch.  (NumPyro reads the window index from the per-chain state: under
    ``vmap`` its ``cond``s become ``select``s that run the window-end search at every step of
    every chain, which made a warmup step of NUTS cost twice a sampling step.)
    """

    def __init__(self, num_warmup: int, find_reasonable_step_size=None, adapt_step_size: bool = True,
                 adapt_mass_matrix: bool = True, dense_mass: bool = False, target_accept_prob: float = 0.8,
                 restart: str = "search"):
        if restart not in ("search", "average"):
            raise ValueError(f"WindowAdapter: restart must be 'search' or 'average', got {restart!r}.")
        self.num_warmup = int(num_warmup)
        self.adapt_step_size, self.adapt_mass_matrix = bool(adapt_step_size), bool(adapt_mass_matrix)
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
            inv_mm, mm_sqrt, mm_sqrt_inv = self.mm_final(state.mm_state, regularize=True)
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


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _is_positive(v: Any) -> bool:
    return _is_number(v) and v > 0


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check(kernel: str, arg: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"{kernel}: {arg} must be {expected}, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class _GradientKernel(Kernel):
    step_size: float = 1.0
    adapt_step_size: bool = True
    adapt_mass_matrix: bool = True
    dense_mass: bool = False
    target_accept_prob: float = 0.8
    find_heuristic_step_size: bool = True
    step_size_restart: str = "average"
    init_strategy: str = "uniform"

    adaptive = True

    def __post_init__(self):
        name = type(self).__name__
        _check(name, "step_size", self.step_size, _is_positive(self.step_size), "a positive finite number")
        _check(name, "target_accept_prob", self.target_accept_prob,
               _is_number(self.target_accept_prob) and 0 < self.target_accept_prob < 1, "a number in (0, 1)")
        _check(name, "step_size_restart", self.step_size_restart, self.step_size_restart in ("average", "search"),
               "'average' (Blackjax) or 'search' (Stan, NumPyro)")

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        return _BoundGradient(self, model, args, kwargs or {}, num_warmup)

    # -- hooks (overridden by subclasses; tests plant bugs here) ----------------------------------

    def target_potential(self, view: Any):
        """The potential U the kernel targets (π ∝ exp(−U)): the view's potential energy."""
        return view.potential

    def transition(self, bound: "_BoundGradient", key: Any, state: GradState) -> tuple[GradState, dict]:
        raise NotImplementedError

    def log_accept_ratio(self, log_target_ratio, log_q_reverse, log_q_forward):
        """log α of a Metropolis–Hastings move: log π(x')/π(x) + log q(x|x') − log q(x'|x)."""
        return log_target_ratio + log_q_reverse - log_q_forward


class _BoundGradient:
    def __init__(self, kernel: _GradientKernel, model: Any, args: tuple, kwargs: dict, num_warmup: int):
        self.kernel = kernel
        self.model = ppl.as_model(model)
        self.args, self.kwargs = tuple(args), dict(kwargs)
        self.view = ppl.unconstrained(self.model, *self.args, **self.kwargs)
        self.num_warmup = int(num_warmup)
        self.potential = kernel.target_potential(self.view)
        self.vg = jax.value_and_grad(self.potential)
        find_ss = partial(search_step_size, self.vg) if kernel.find_heuristic_step_size else None
        self.adapter = WindowAdapter(
            max(self.num_warmup, 1),
            find_reasonable_step_size=find_ss,
            adapt_step_size=kernel.adapt_step_size,
            adapt_mass_matrix=kernel.adapt_mass_matrix,
            dense_mass=kernel.dense_mass,
            target_accept_prob=kernel.target_accept_prob,
            restart=kernel.step_size_restart,
        )
        # the adaptation state at a point (initial search included): tempered SMC's moves use it
        self.wa_init = self.adapter.init

    # -- protocol ----------------------------------------------------------------------------------

    def init(self, key: Any, init: Any = None) -> GradState:
        """Start at the given constrained values, or at a point from ``init`` / the kernel's
        ``init_strategy`` ("uniform" in (−2, 2), "prior", "zeros"), retried (up to 100 times)
        while U or ∇U is not finite."""
        k_x, k_wa = split(key, 2)
        if isinstance(init, dict):
            x = self.view.to_unconstrained(init)
            pe, g = self.vg(x)
        else:
            strategy = init or self.kernel.init_strategy

            def propose(k):
                x = self.view.init_point(k, strategy)
                return (x,) + tuple(self.vg(x))

            def bad(c):
                return ~(jnp.isfinite(c[2]) & jnp.all(jnp.isfinite(c[3])))

            k0, k_x = jax.random.split(k_x)
            c0 = (0,) + propose(k0) + (k_x,)
            c = jax.lax.while_loop(
                lambda c: (c[0] < 100) & bad(c),
                lambda c: (c[0] + 1,) + propose(jax.random.fold_in(c[4], c[0])) + (c[4],),
                c0,
            )
            _, x, pe, g, _ = c
        z_info = IntegratorState(x, None, pe, g)
        step_size = jnp.asarray(self.kernel.step_size, dtype=x.dtype)
        adapt = self.adapter.init(z_info, k_wa, step_size, mass_matrix_size=self.view.dim)
        return GradState(x, pe, g, adapt)

    def step(self, key: Any, state: GradState) -> tuple[GradState, dict]:
        new, info = self.kernel.transition(self, key, state)
        info["step_size"] = state.adapt.step_size
        return new, info

    def _update(self, t, info, new: GradState, adapt):
        z_info = IntegratorState(new.x, None, new.potential_energy, new.grad)
        return self.adapter.update(t, info["accept_prob"], z_info, adapt)

    def warmup_step(self, key: Any, state: GradState, t: Any) -> tuple[GradState, dict]:
        new, info = self.step(key, state)
        return eqx.tree_at(lambda s: s.adapt, new, self._update(t, info, new, state.adapt)), info

    def phase_step(self, key: Any, state: GradState, t: Any, warm: Any) -> tuple[GradState, dict]:
        """``warmup_step`` when ``warm`` (a traced boolean) is true, else ``step``: the
        transition is computed (and compiled) once; only the adaptation is switched."""
        new, info = self.step(key, state)

        def adapt(_):
            a = self._update(t, info, new, state.adapt)
            return jax.tree.map(lambda v, o: jnp.asarray(v, o.dtype), a, state.adapt)

        a = jax.lax.cond(warm, adapt, lambda _: state.adapt, None)
        return eqx.tree_at(lambda s: s.adapt, new, a), info

    def samples(self, state: GradState) -> dict:
        return self.view.to_constrained(state.x)

    def log_density(self, state: GradState) -> jax.Array:
        ok = jnp.all(jnp.isfinite(state.grad))
        return jnp.where(ok, -state.potential_energy, jnp.nan)

    def explain(self, state: GradState) -> str:
        """Name the site whose log density (or gradient) is not finite at the state (eager)."""
        x = state.x
        values = self.view.to_constrained(x)
        latent = {k: v for k, v in values.items() if k in self.view.sites}
        try:
            tr, _ = self.model.generate(jax.random.key(0), latent, *self.args, **self.kwargs)
        except ppl.PPLError as e:  # the language names the site itself (e.g. a SupportError)
            return str(e)
        for name, lp in tr.log_probs.items():
            if not bool(jnp.all(jnp.isfinite(jnp.sum(lp)))):
                kind = "observed" if name in tr.observed else "latent"
                return (
                    f"{kind} site {name!r} has log density {float(jnp.sum(lp))} at "
                    f"{name} = {tr.choices.get(name, values.get(name))}"
                )
        g = self.view.unravel(state.grad)
        for name, gv in g.items():
            if not bool(jnp.all(jnp.isfinite(gv))):
                return f"the gradient of the log density with respect to site {name!r} is not finite ({gv})"
        return f"the log density at the initial point is {-float(state.potential_energy)}"

    # -- helpers for transitions ---------------------------------------------------------------------

    def integrator(self):
        return hmc_util.velocity_verlet(self.potential, euclidean_kinetic_energy)


def _mh_update(kernel, key, state: GradState, x_new, pe_new, g_new, log_alpha) -> tuple[GradState, dict]:
    acc, p = metropolis_accept(key, log_alpha)
    new = GradState(
        jnp.where(acc, x_new, state.x),
        jnp.where(acc, pe_new, state.potential_energy),
        jnp.where(acc, g_new, state.grad),
        state.adapt,
    )
    return new, {"accept_prob": p, "accepted": acc}


# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RWM(_GradientKernel):
    """Random-walk Metropolis on the unconstrained view; leaves π ∝ exp(−U) invariant.

    Proposal x' = x + ε A^{1/2} ξ, ξ ~ N(0, I), A the (adapted) inverse mass matrix; it is
    symmetric, so α = min(1, π(x')/π(x)).  Warmup tunes ε towards acceptance 0.234.

    Example:
        >>> run = mcmc.sample(key, mcmc.RWM(), posterior, num_samples=2000)
    """

    target_accept_prob: float = 0.234
    find_heuristic_step_size: bool = False
    step_size: float = 0.5

    def transition(self, bound, key, state):
        k_prop, k_acc = split(key, 2)
        a = state.adapt
        xi = jax.random.normal(k_prop, state.x.shape)
        x_new = state.x + a.step_size * _scaled_noise(a, xi)
        pe_new, g_new = bound.vg(x_new)
        log_alpha = self.log_accept_ratio(state.potential_energy - pe_new, 0.0, 0.0)
        new, info = _mh_update(self, k_acc, state, x_new, pe_new, g_new, log_alpha)
        info["diverging"] = ~jnp.isfinite(pe_new)
        return new, info


@dataclasses.dataclass(frozen=True)
class MALA(_GradientKernel):
    """Metropolis-adjusted Langevin on the unconstrained view; leaves π ∝ exp(−U) invariant.

    Proposal x' ~ N(x − ε²/2 A ∇U(x), ε² A) (A the inverse mass matrix), accepted with
    α = min(1, π(x') q(x | x') / (π(x) q(x' | x))).  Warmup tunes ε towards acceptance 0.574.

    Example:
        >>> run = mcmc.sample(key, mcmc.MALA(), posterior, num_samples=2000)
    """

    target_accept_prob: float = 0.574

    def _mean_and_logq(self, a, x, g, x_to):
        eps = a.step_size
        A = a.inverse_mass_matrix
        if A.ndim == 1:
            mean = x - 0.5 * eps**2 * A * g
            d = x_to - mean
            return -0.5 * jnp.sum(d * d / A) / eps**2
        mean = x - 0.5 * eps**2 * A @ g
        d = x_to - mean
        return -0.5 * d @ jnp.linalg.solve(A, d) / eps**2

    def transition(self, bound, key, state):
        k_prop, k_acc = split(key, 2)
        a = state.adapt
        eps, A = a.step_size, a.inverse_mass_matrix
        xi = jax.random.normal(k_prop, state.x.shape)
        drift = A * state.grad if A.ndim == 1 else A @ state.grad
        x_new = state.x - 0.5 * eps**2 * drift + eps * _scaled_noise(a, xi)
        pe_new, g_new = bound.vg(x_new)
        log_q_fwd = self._mean_and_logq(a, state.x, state.grad, x_new)
        log_q_rev = self._mean_and_logq(a, x_new, g_new, state.x)
        log_alpha = self.log_accept_ratio(state.potential_energy - pe_new, log_q_rev, log_q_fwd)
        new, info = _mh_update(self, k_acc, state, x_new, pe_new, g_new, log_alpha)
        info["diverging"] = ~jnp.isfinite(pe_new)
        return new, info


@dataclasses.dataclass(frozen=True)
class HMC(_GradientKernel):
    """Hamiltonian Monte Carlo with a fixed number of leapfrog steps; leaves π ∝ exp(−U) invariant.

    Momentum r ~ N(0, M); ``num_steps`` leapfrog steps of size ε (or ⌈trajectory_length / ε⌉
    when ``num_steps`` is None); accepted with α = min(1, exp(H(x, r) − H(x', r'))).  Leapfrog
    is volume preserving and reversible, so this is an MH move with a symmetric proposal on
    (x, r).  A trajectory whose energy error exceeds ``max_delta_energy`` is reported as divergent.

    Example:
        >>> run = mcmc.sample(key, mcmc.HMC(num_steps=10), posterior, num_samples=1000)
    """

    num_steps: int | None = None
    trajectory_length: float = 2 * math.pi
    max_delta_energy: float = 1000.0

    def __post_init__(self):
        super().__post_init__()
        _check(type(self).__name__, "num_steps", self.num_steps, self.num_steps is None or (_is_int(self.num_steps) and self.num_steps >= 1),
               "a positive integer or None")
        _check(type(self).__name__, "trajectory_length", self.trajectory_length, _is_positive(self.trajectory_length), "a positive finite number")
        _check(type(self).__name__, "max_delta_energy", self.max_delta_energy, _is_positive(self.max_delta_energy), "a positive finite number")

    def transition(self, bound, key, state):
        k_r, k_acc = split(key, 2)
        a = state.adapt
        r = _momentum(k_r, a.mass_matrix_sqrt)
        _, vv_update = bound.integrator()
        if self.num_steps is not None:
            L = jnp.asarray(self.num_steps)
        else:
            L = jnp.maximum(1, jnp.ceil(self.trajectory_length / a.step_size)).astype(int)
            L = jnp.minimum(L, 1024)
        z0 = IntegratorState(state.x, r, state.potential_energy, state.grad)
        z1 = jax.lax.fori_loop(0, L, lambda i, z: vv_update(a.step_size, a.inverse_mass_matrix, z), z0)
        K = euclidean_kinetic_energy
        h0 = state.potential_energy + K(a.inverse_mass_matrix, r)
        h1 = z1.potential_energy + K(a.inverse_mass_matrix, z1.r)
        delta = jnp.where(jnp.isnan(h1), jnp.inf, h1 - h0)
        log_alpha = self.log_accept_ratio(-delta, 0.0, 0.0)
        new, info = _mh_update(self, k_acc, state, z1.z, z1.potential_energy, z1.z_grad, log_alpha)
        info["diverging"] = delta > self.max_delta_energy
        info["num_steps"] = L
        return new, info


@dataclasses.dataclass(frozen=True)
class NUTS(_GradientKernel):
    """The No-U-Turn sampler (multinomial, Betancourt 2017); leaves π ∝ exp(−U) invariant.

    The trajectory doubles in a random direction until a U-turn, a divergence (energy error
    above ``max_delta_energy``) or ``max_tree_depth`` doublings; the next state is drawn from
    the trajectory with probability ∝ exp(−H), biased towards the last doubling: the transition
    of NumPyro's ``hmc_util.build_tree``, computed by :func:`~inference.mcmc.nuts.nuts_trajectory`
    (one flat loop over leapfrog steps, cheaper to compile and to run over many chains).  Info: ``accept_prob`` (mean over the trajectory, what
    dual averaging targets), ``diverging``, ``tree_depth``, ``num_steps`` (leapfrog steps).

    Example:
        >>> run = mcmc.sample(key, mcmc.NUTS(), posterior, sigma, num_warmup=1000, num_samples=1000, num_chains=4)
    """

    max_tree_depth: int = 10
    max_delta_energy: float = 1000.0

    def __post_init__(self):
        super().__post_init__()
        _check(type(self).__name__, "max_tree_depth", self.max_tree_depth, _is_int(self.max_tree_depth) and 1 <= self.max_tree_depth <= 30,
               "an integer from 1 to 30")
        _check(type(self).__name__, "max_delta_energy", self.max_delta_energy, _is_positive(self.max_delta_energy), "a positive finite number")

    def transition(self, bound, key, state):
        k_r, k_tree = split(key, 2)
        a = state.adapt
        r = _momentum(k_r, a.mass_matrix_sqrt)
        tree = nuts_trajectory(
            bound.vg, state.x, state.potential_energy, state.grad, r, a.inverse_mass_matrix, a.step_size, k_tree,
            max_tree_depth=self.max_tree_depth, max_delta_energy=self.max_delta_energy,
        )
        new = GradState(tree.x, tree.potential_energy, tree.grad, state.adapt)
        info = {
            "accept_prob": tree.accept_prob,
            "diverging": tree.diverging,
            "tree_depth": tree.depth,
            "num_steps": tree.num_steps,
            "energy": tree.energy,
        }
        return new, info
