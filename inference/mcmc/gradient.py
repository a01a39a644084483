"""Kernels on the unconstrained view: random-walk MH, MALA, HMC and NUTS, with window adaptation.

Every kernel here targets the density of the model's posterior in unconstrained space,
π(x) ∝ exp(−U(x)) with U = ``ppl.unconstrained(model, *args).potential`` (the log-Jacobian of
each site's bijection included), so mapping draws through ``to_constrained`` gives draws of the
posterior.  With adaptation *frozen* (after warmup) each kernel leaves π invariant; during
warmup the step size (dual averaging, Hoffman & Gelman 2014) and the mass matrix (Welford
estimate over Stan's doubling windows) are tuned by the adaptation object
:class:`~inference.mcmc.adaptation.WindowAdaptation`, separate from the kernel.

Options shared by the kernels: ``step_size`` (initial), ``adapt_step_size``,
``adapt_mass_matrix`` (True / False, or ``"diag"``, ``"dense"``: Stan's windows; ``"fisher_diag"``,
``"low_rank"``: :class:`~inference.mcmc.adaptation_fisher.FisherAdaptation`, with
``mass_matrix_rank`` directions), ``dense_mass``, ``target_accept_prob``, ``find_heuristic_step_size``
(search for the initial step size from ``step_size``, Hoffman & Gelman's Algorithm 4),
``step_size_restart`` (where dual averaging restarts at the end of each mass-matrix window:
``"average"``, its averaged step size, as Blackjax; ``"search"``, a new search, as Stan and
NumPyro; with a Fisher adaptation ``"none"``, one dual averaging, or ``"search_first"``, one
after a search at the first metric estimate, as nutpie; None: ``"search_first"`` for
``"low_rank"``, else ``"average"``) and ``init_strategy``.

``kernel.bind(...)`` returns an :class:`~inference.mcmc.protocol.Adapted`: the bound kernel
(``.kernel``, a :class:`BoundGradient` whose state is a :class:`GradState` and whose
``step(key, state, params)`` takes :class:`~inference.mcmc.adaptation.GradParams`) paired with
its ``WindowAdaptation``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import hmc_util
from numpyro.infer.hmc_util import IntegratorState

import ppl
from ppl.errors import ArgumentError

from .._lapack import one_at_a_time
from ._base import Kernel, metropolis_accept, split
from . import metric
from .adaptation import GradParams, WindowAdaptation, WindowAdapter, search_step_size  # noqa: F401  (re-exported)
from .adaptation_fisher import FisherAdaptation
from .metric import LowRankMetric

#: the values of ``adapt_mass_matrix`` besides True / False (Stan's windows, diagonal or dense)
MASS_MATRIX_ADAPTATIONS = ("diag", "dense", "fisher_diag", "low_rank")
#: ``low_rank``'s default rank: every direction up to this many (the velocity costs O(d · rank))
LOW_RANK_MAX_RANK = 100
from . import _bits
from .nuts import nuts_trajectory
from .protocol import Adapted

__all__ = ["GradState", "BoundGradient", "RWM", "MALA", "HMC", "NUTS", "WindowAdapter", "search_step_size"]


class GradState(eqx.Module):
    """Position ``x`` (flat, unconstrained), its potential U(x) and ∇U(x); the tuning is not in
    the state (see :class:`~inference.mcmc.adaptation.GradParams`)."""

    x: jax.Array
    potential_energy: jax.Array
    grad: jax.Array


def _momentum(key: Any, mass_matrix_sqrt: Any) -> jax.Array:
    """r ~ N(0, M) given a square root of the mass matrix M (or a low-rank metric)."""
    d = mass_matrix_sqrt.dim if isinstance(mass_matrix_sqrt, LowRankMetric) else mass_matrix_sqrt.shape[0]
    eps = jax.random.normal(key, (d,))
    return metric.momentum(mass_matrix_sqrt, eps)


def _momentum_and_word(key: Any, mass_matrix_sqrt: Any) -> tuple[jax.Array, jax.Array]:
    """(r ~ N(0, M), one uniform uint32 word) from one hash of ``key`` (block 0 of
    :mod:`inference.mcmc._bits`): the normals as ``jax.random.normal`` makes them from bits, in
    the default float type as :func:`_momentum`, and the block's next word."""
    d = mass_matrix_sqrt.dim if isinstance(mass_matrix_sqrt, LowRankMetric) else mass_matrix_sqrt.shape[0]
    dtype = jnp.zeros(()).dtype  # jax.random.normal's default: float32, float64 under x64
    n = d * _bits.words_per_value(dtype)
    w = _bits.step_words(key, n + 1)
    return metric.momentum(mass_matrix_sqrt, _bits.normal_from_words(w[:n], dtype)), w[n]


def _scaled_noise(params: Any, xi: jax.Array) -> jax.Array:
    """S ξ with S Sᵀ = A, the inverse mass matrix: ξ ~ N(0, I) gives N(0, A).

    NumPyro's dense ``mass_matrix_sqrt_inv`` is a lower-triangular T with Tᵀ T = A, so S = Tᵀ.
    """
    return metric.noise(params.mass_matrix_sqrt_inv, xi)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _is_positive(v: Any) -> bool:
    return _is_number(v) and v > 0


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check(kernel: str, arg: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise ArgumentError(f"{kernel}: {arg} must be {expected}, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class _GradientKernel(Kernel):
    step_size: float = 1.0
    adapt_step_size: bool = True
    adapt_mass_matrix: bool | str = True
    dense_mass: bool = False
    target_accept_prob: float = 0.8
    find_heuristic_step_size: bool = True
    step_size_restart: str | None = None
    init_strategy: str = "uniform"
    mass_matrix_rank: int | None = None
    mass_matrix_update_every: int | None = None
    mass_matrix_min_draws: int | None = None
    mass_matrix_estimate_rows: int | None = None
    early_max_tree_depth: int | None = None

    adaptive = True

    def __post_init__(self):
        name = type(self).__name__
        _check(name, "step_size", self.step_size, _is_positive(self.step_size), "a positive finite number")
        _check(name, "target_accept_prob", self.target_accept_prob,
               _is_number(self.target_accept_prob) and 0 < self.target_accept_prob < 1, "a number in (0, 1)")
        mm = self.adapt_mass_matrix
        fisher = mm in ("fisher_diag", "low_rank")
        _check(name, "step_size_restart", self.step_size_restart, self.step_size_restart is None or
               self.step_size_restart in (("average", "none", "search_first") if fisher else ("average", "search")),
               "'average' (Blackjax), or 'none' or 'search_first' (nutpie) with a Fisher adaptation" if fisher
               else "'average' (Blackjax) or 'search' (Stan, NumPyro)")
        ue = self.mass_matrix_update_every
        _check(name, "mass_matrix_update_every", ue, ue is None or (fisher and _is_int(ue) and ue >= 1),
               "None, or a positive integer with adapt_mass_matrix='fisher_diag' or 'low_rank'")
        md = self.mass_matrix_min_draws
        _check(name, "mass_matrix_min_draws", md, md is None or (mm == "low_rank" and _is_int(md) and md >= 0),
               "None, or an integer >= 0 with adapt_mass_matrix='low_rank'")
        er = self.mass_matrix_estimate_rows
        _check(name, "mass_matrix_estimate_rows", er, er is None or (mm == "low_rank" and _is_int(er) and er >= 0),
               "None, or an integer >= 0 with adapt_mass_matrix='low_rank'")
        ed = self.early_max_tree_depth
        _check(name, "early_max_tree_depth", ed, ed is None or (mm == "low_rank" and hasattr(self, "max_tree_depth")
                                                               and _is_int(ed) and ed >= 1),
               "None, or a positive integer with NUTS(adapt_mass_matrix='low_rank') (a kernel without trees has no depth to cap)")
        _check(name, "adapt_mass_matrix", mm, isinstance(mm, bool) or mm in MASS_MATRIX_ADAPTATIONS,
               f"True, False or one of {MASS_MATRIX_ADAPTATIONS}")
        rank = self.mass_matrix_rank
        _check(name, "mass_matrix_rank", rank, rank is None or (_is_int(rank) and rank >= 1),
               "None (every direction, up to 100) or a positive integer")
        if mm == "dense":
            object.__setattr__(self, "dense_mass", True)
        elif isinstance(mm, str) and self.dense_mass:
            raise ArgumentError(f"{name}: dense_mass=True asks for a dense mass matrix but adapt_mass_matrix={mm!r} "
                                "adapts another form; drop dense_mass or use adapt_mass_matrix='dense'.")

    def bind(self, model, args=(), kwargs=None, num_warmup=0):
        """The bound kernel (:class:`BoundGradient`) paired with its window adaptation."""
        bound = BoundGradient(self, model, args, kwargs or {})
        return Adapted(bound, self.adaptation(bound), num_warmup)

    def adaptation(self, bound: "BoundGradient") -> WindowAdaptation | FisherAdaptation:
        """The adaptation of this kernel's step size and mass matrix on ``bound``'s target:
        Stan's windows (``adapt_mass_matrix`` True, False, ``"diag"`` or ``"dense"``) or the
        Fisher-divergence estimates (``"fisher_diag"``, ``"low_rank"``; :mod:`~inference.mcmc.adaptation_fisher`)."""
        if self.adapt_mass_matrix in ("fisher_diag", "low_rank"):
            o = self.fisher_options(bound.view.dim)
            return FisherAdaptation(
                bound.vg, bound.view.dim, kind=self.adapt_mass_matrix, step_size=self.step_size,
                adapt_step_size=self.adapt_step_size, target_accept_prob=self.target_accept_prob,
                find_heuristic_step_size=self.find_heuristic_step_size, max_rank=o["mass_matrix_rank"],
                update_every=o["mass_matrix_update_every"], step_size_restart=o["step_size_restart"] == "average",
                step_size_search_first=o["step_size_restart"] == "search_first",
                low_rank_min_draws=o["mass_matrix_min_draws"],
                estimate_min_rows=o["mass_matrix_estimate_rows"] or 0,
                early_max_tree_depth=o["early_max_tree_depth"] if hasattr(self, "max_tree_depth") else None,
            )
        return WindowAdaptation(
            bound.vg, bound.view.dim, step_size=self.step_size, adapt_step_size=self.adapt_step_size,
            adapt_mass_matrix=self.adapt_mass_matrix is not False, dense_mass=self.dense_mass,
            target_accept_prob=self.target_accept_prob, restart=self.step_size_restart or "average",
            find_heuristic_step_size=self.find_heuristic_step_size,
        )

    def fisher_options(self, dim: int) -> dict:
        """The Fisher adaptation's options on a ``dim``-dimensional target, the ``None`` ones
        resolved.  ``"low_rank"``'s defaults (measured, ``benchmarks/RESULTS.md``, issue 15
        third pass): every direction up to 100 (``mass_matrix_rank``), the metric re-estimated
        every max(1, round(dim / 10)) warmup draws (``mass_matrix_update_every``: every draw for
        small targets, as nutpie; the estimate costs O(dim³)), directions from the first window
        (``mass_matrix_min_draws=0``) and one dual averaging through warmup after a step-size
        search at the first metric estimate (``step_size_restart="search_first"``, nutpie's: with
        200 warmup steps ``"none"`` left a kilpisjarvi chain unconverged, equal at 1000).
        ``mass_matrix_estimate_rows`` (``"low_rank"``: dim + 1; issue 15, h15c): each estimate
        takes the draws from the latest window that starts at least that many steps before the
        current one (nutpie: the previous window), so that from step dim + 1 on it has more draws
        than dimensions (on the 100-d Gaussian: 286k -> 125k gradients for the same ESS; windows
        of 10 draws had kept its estimates from <= 20 draws for 300 steps).
        ``early_max_tree_depth`` (``"low_rank"``: 4; NUTS only): NUTS's tree depth is capped at
        that in warmup until the first estimate from more than dim draws (at most 30 % of
        warmup): the estimate needs draws and gradients, not long trajectories, before then
        (on the 100-d Gaussian 125k -> 68k gradients for the same ESS).
        ``"fisher_diag"``: window ends, restarts from the average.

        Example:
            >>> o = mcmc.NUTS(adapt_mass_matrix="low_rank").fisher_options(26)
            >>> o["mass_matrix_rank"], o["mass_matrix_update_every"], o["step_size_restart"], o["mass_matrix_estimate_rows"]
            (26, 3, 'search_first', 27)
        """
        low = self.adapt_mass_matrix == "low_rank"
        pick = lambda v, default: default if v is None else v  # noqa: E731
        return {
            "mass_matrix_rank": pick(self.mass_matrix_rank, min(int(dim), LOW_RANK_MAX_RANK) if low else 10),
            "mass_matrix_update_every": pick(self.mass_matrix_update_every, max(1, round(dim / 10)) if low else None),
            "mass_matrix_min_draws": pick(self.mass_matrix_min_draws, 0 if low else None),
            "step_size_restart": pick(self.step_size_restart, "search_first" if low else "average"),
            "mass_matrix_estimate_rows": pick(self.mass_matrix_estimate_rows, int(dim) + 1 if low else None),
            "early_max_tree_depth": pick(self.early_max_tree_depth, 4 if low else None),
        }

    # -- hooks (overridden by subclasses; tests plant bugs here) ----------------------------------

    def target_potential(self, view: Any):
        """The potential U the kernel targets (π ∝ exp(−U)): the view's potential energy."""
        return view.potential

    def transition(self, bound: "BoundGradient", key: Any, state: GradState, params: GradParams) -> tuple[GradState, dict]:
        raise NotImplementedError

    def log_accept_ratio(self, log_target_ratio, log_q_reverse, log_q_forward):
        """log α of a Metropolis–Hastings move: log π(x')/π(x) + log q(x|x') − log q(x'|x)."""
        return log_target_ratio + log_q_reverse - log_q_forward


class BoundGradient:
    """A gradient kernel bound to a model: the protocol of :mod:`inference.mcmc.protocol` on
    :class:`GradState` (x unconstrained, with U(x), ∇U(x)); ``step(key, state, params)`` makes
    one transition with the tuning ``params`` (:class:`~inference.mcmc.adaptation.GradParams`),
    which leaves π ∝ exp(−U) invariant.

    ``view`` (optional) is the target to bind instead of the model's unconstrained view: any
    object with that view's interface (``dim``, ``sites``, ``potential``, ``log_density``,
    ``init_point``, ``to_constrained``, ...), whose ``potential`` is then U.  Tempered SMC binds
    its kernels this way to the tempered path of a model with summed-out discrete sites
    (:class:`inference.smc.tempering.TemperedView`), which is not the view of any one model."""

    def __init__(self, kernel: _GradientKernel, model: Any, args: tuple, kwargs: dict, view: Any = None):
        self.kernel = kernel
        self.model = ppl.as_model(model)
        self.args, self.kwargs = tuple(args), dict(kwargs)
        self.view = ppl.unconstrained(self.model, *self.args, **self.kwargs) if view is None else view
        self.potential = kernel.target_potential(self.view)
        self.vg = jax.value_and_grad(self.potential)

    # -- protocol ----------------------------------------------------------------------------------

    def init(self, key: Any, init: Any = None) -> GradState:
        """Start at the given constrained values, or at a point from ``init`` / the kernel's
        ``init_strategy`` ("uniform" in (−2, 2), "prior", "zeros"), retried (up to 100 times)
        while U or ∇U is not finite."""
        return self.init_searching(key, init, lambda like: None)[0]

    def init_searching(self, key: Any, init: Any, make_search: Any) -> tuple[GradState, Any]:
        """:meth:`init`, then the step-size search ``make_search(like)`` returns (a
        :class:`~inference.mcmc.adaptation.StepSizeSearch` for a position shaped like ``like``,
        or None: no search) from the initial state: ``(state, step size found or None)``.

        The retries of the initial point and the search's trial steps run in **one** loop
        whose body evaluates U and ∇U once, at the next proposal while the point is not
        finite, then at the search's next trial point, so the model's gradient appears once in
        the ``init`` program (issue 14: the search's own copy was half of it).  Keys and
        arithmetic are those of :meth:`init` followed by the search on its own (tested equal).
        :class:`~inference.mcmc.protocol.Adapted` calls this with its adaptation's
        ``initial_search``.

        Example:
            >>> from inference.mcmc.adaptation import StepSizeSearch
            >>> bound = mcmc.NUTS().bind(ppl.Model(lambda: ppl.sample("x", dist.Normal(0.0, 2.0)))).kernel
            >>> xi = jax.random.normal(jax.random.key(1), (16, 1))
            >>> state, eps = bound.init_searching(jax.random.key(0), None, lambda like: StepSizeSearch(1.0, jnp.ones(1), xi))
            >>> bool(jnp.isfinite(state.potential_energy)), bool(eps > 0)
            (True, True)
        """
        values = init if isinstance(init, Mapping) else None
        if values is not None and all(a in values for a in self.view.sites):
            state = self.state_at(self.view.to_unconstrained(values))
            search = make_search(jax.ShapeDtypeStruct(state.x.shape, state.x.dtype))
            if search is None:
                return state, None
            return state, _run_search(search, self.vg, state)
        strategy = (None if values is not None else init) or self.kernel.init_strategy

        def bad(c):
            return ~(jnp.isfinite(c[2]) & jnp.all(jnp.isfinite(c[3])))

        def retrying(c):
            return (c[0] < 101) & bad(c)

        k0, k_x = jax.random.split(key)
        # one loop whose body proposes (first with k0, then retry i with fold_in(k_x, i)), started
        # from a non-finite placeholder so the body always runs: the model's gradient appears
        # once in the init program instead of twice (a third of its size: issue 14, compile time)
        def point(k):  # the proposal's types without tracing the gradient (∇U has x's type)
            x = self.view.init_point(k, strategy, values=values)
            return x, self.potential(x), x

        shapes = jax.eval_shape(point, k0)
        search = make_search(shapes[0])
        c0 = (0,) + tuple(jnp.full(s.shape, jnp.nan, s.dtype) for s in shapes) + (k0, k_x)
        if search is None:
            def body(c):
                i, k_x = c[0], c[5]
                x = self.view.init_point(c[4], strategy, values=values)
                return (i + 1, x) + tuple(self.vg(x)) + (jax.random.fold_in(k_x, i), k_x)

            c = jax.lax.while_loop(retrying, body, c0)
            _, x, pe, g, _, _ = c
            return GradState(x, pe, g), None

        # with a search: the same loop goes on after the point is found, its body now taking
        # the search's trial steps from that point (one ``vg`` call site for both)
        def body_searching(c):
            i, x, pe, g, k, k_x, sc = c
            proposing = retrying(c)
            x_prop = self.view.init_point(k, strategy, values=values)
            x_try, aux = search.trial(sc, x, g)
            pe1, g1 = self.vg(jnp.where(proposing, x_prop, x_try))
            sc_next = search.next(sc, aux, pe, pe1, g1)
            sc = jax.tree.map(lambda old, new: jnp.where(proposing, old, new), sc, sc_next)
            x, pe, g = (jnp.where(proposing, new, old) for new, old in ((x_prop, x), (pe1, pe), (g1, g)))
            return (jnp.where(proposing, i + 1, i), x, pe, g, jax.random.fold_in(k_x, i), k_x, sc)

        c = jax.lax.while_loop(lambda c: retrying(c) | search.running(c[6]), body_searching,
                               (jnp.int32(0),) + c0[1:] + (search.start(shapes[0].dtype),))
        _, x, pe, g, _, _, sc = c
        return GradState(x, pe, g), sc[0]

    def state_at(self, x: jax.Array) -> GradState:
        """The state at the unconstrained point ``x`` (U and ∇U evaluated there)."""
        pe, g = self.vg(x)
        return GradState(x, pe, g)

    def params(self, step_size: Any, inverse_mass_matrix: jax.Array | None = None) -> GradParams:
        """Tuning parameters for this target: ``step_size`` and ``inverse_mass_matrix`` (default:
        the identity, dense when the kernel has ``dense_mass``)."""
        if inverse_mass_matrix is None:
            d = self.view.dim
            inverse_mass_matrix = jnp.eye(d) if self.kernel.dense_mass else jnp.ones(d)
        return GradParams.make(step_size, inverse_mass_matrix, dense_mass=self.kernel.dense_mass)

    def step(self, key: Any, state: GradState, params: GradParams | None = None) -> tuple[GradState, dict]:
        """One transition with ``params`` (default: the kernel's initial step size and a unit
        mass matrix); info has ``accept_prob``, ``diverging``, ``step_size``, ..."""
        if params is None:
            d, dt = self.view.dim, state.x.dtype
            eye = jnp.eye(d, dtype=dt) if self.kernel.dense_mass else jnp.ones(d, dt)
            params = self.params(jnp.asarray(self.kernel.step_size, dt), eye)
        new, info = self.kernel.transition(self, key, state, params)
        info["step_size"] = params.step_size
        return new, info

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
        return hmc_util.velocity_verlet(self.potential, metric.kinetic_energy)


def _run_search(search: Any, vg: Any, state: GradState) -> jax.Array:
    """The step size found by ``search`` (a :class:`~inference.mcmc.adaptation.StepSizeSearch`)
    from ``state``, in a loop of its own."""
    def body(c):
        x1, aux = search.trial(c, state.x, state.grad)
        return search.next(c, aux, state.potential_energy, *vg(x1))

    return jax.lax.while_loop(search.running, body, search.start(state.x.dtype))[0]


def _mh_update(kernel, key, state: GradState, x_new, pe_new, g_new, log_alpha) -> tuple[GradState, dict]:
    acc, p = metropolis_accept(key, log_alpha)
    new = GradState(
        jnp.where(acc, x_new, state.x),
        jnp.where(acc, pe_new, state.potential_energy),
        jnp.where(acc, g_new, state.grad),
    )
    return new, {"accept_prob": p, "accepted": acc}


# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RWM(_GradientKernel):
    """Random-walk Metropolis on the unconstrained view; leaves π ∝ exp(−U) invariant.

    Proposal x' = x + ε A^{1/2} ξ, ξ ~ N(0, I), A the (adapted) inverse mass matrix; it is
    symmetric, so α = min(1, π(x')/π(x)).  Warmup tunes ε towards acceptance 0.234.

    Example:
        >>> @ppl.model
        ... def normal_mean(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> run = mcmc.sample(jax.random.key(0), mcmc.RWM(), normal_mean, 0.5, num_warmup=50,
        ...                   num_samples=50, num_chains=2, progress=False)
        >>> run.samples["mu"].shape
        (2, 50)
    """

    target_accept_prob: float = 0.234
    find_heuristic_step_size: bool = False
    step_size: float = 0.5

    def transition(self, bound, key, state, params):
        k_prop, k_acc = split(key, 2)
        a = params
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
        >>> @ppl.model
        ... def normal_mean(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> bound = mcmc.MALA(step_size=0.5, find_heuristic_step_size=False).bind(normal_mean, (0.5,))
        >>> chain = bound.init(jax.random.key(0))          # a Chain: state, adapt_state, params
        >>> chain, info = bound.step(jax.random.key(1), chain)
        >>> sorted(info)
        ['accept_prob', 'accepted', 'diverging', 'step_size']
    """

    target_accept_prob: float = 0.574

    def _mean_and_logq(self, a, x, g, x_to):
        eps = a.step_size
        A = a.inverse_mass_matrix
        if isinstance(A, LowRankMetric):
            d = x_to - (x - 0.5 * eps**2 * A.velocity(g))
            return -0.5 * jnp.dot(d, A.solve(d)) / eps**2
        if A.ndim == 1:
            mean = x - 0.5 * eps**2 * A * g
            d = x_to - mean
            return -0.5 * jnp.sum(d * d / A) / eps**2
        mean = x - 0.5 * eps**2 * A @ g
        d = x_to - mean
        return -0.5 * d @ one_at_a_time(jnp.linalg.solve)(A, d) / eps**2  # inference._lapack

    def transition(self, bound, key, state, params):
        k_prop, k_acc = split(key, 2)
        a = params
        eps, A = a.step_size, a.inverse_mass_matrix
        xi = jax.random.normal(k_prop, state.x.shape)
        drift = metric.velocity(A, state.grad)
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
        >>> @ppl.model
        ... def normal_mean(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> bound = mcmc.HMC(num_steps=3).bind(normal_mean, (0.5,)).kernel   # the transition alone
        >>> state = bound.state_at(jnp.zeros(1))
        >>> state, info = bound.step(jax.random.key(0), state, bound.params(0.3, jnp.ones(1)))
        >>> int(info["num_steps"])
        3
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

    def transition(self, bound, key, state, params):
        k_r, k_acc = split(key, 2)
        a = params
        r = _momentum(k_r, a.mass_matrix_sqrt)
        _, vv_update = bound.integrator()
        if self.num_steps is not None:
            L = jnp.asarray(self.num_steps)
        else:
            L = jnp.maximum(1, jnp.ceil(self.trajectory_length / a.step_size)).astype(int)
            L = jnp.minimum(L, 1024)
        z0 = IntegratorState(state.x, r, state.potential_energy, state.grad)
        z1 = jax.lax.fori_loop(0, L, lambda i, z: vv_update(a.step_size, a.inverse_mass_matrix, z), z0)
        K = metric.kinetic_energy
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

    The mass matrix is adapted during warmup by ``adapt_mass_matrix``: ``True`` or ``"diag"``
    (Stan's windowed variance of the draws), ``"dense"`` (their covariance, shrunk as Stan does),
    ``"fisher_diag"`` (sqrt(var(x) / var(∇log p)) from the draws *and their gradients*) or
    ``"low_rank"`` (diagonal plus ``mass_matrix_rank`` directions, estimated the same way;
    nutpie's adaptation), ``False`` for none; see :mod:`inference.mcmc.adaptation_fisher`.

    Which to pick: ``"low_rank"`` for correlated or badly scaled posteriors (measured 150× and more
    effective draws per gradient than the default on regressions with correlated coefficients,
    and ahead of nutpie's low-rank adaptation per gradient: ``benchmarks/RESULTS.md``, issue 15);
    the default (Stan's diagonal windows) for sparse, funnel-like posteriors, where it beat every
    Fisher estimate (``docs/design/mcmc.md``, "Which adaptation to pick").  ``"low_rank"``'s
    defaults (:meth:`fisher_options`): every direction up to 100, the metric re-estimated every
    max(1, round(d / 10)) warmup draws, directions from the first window, one dual averaging
    through warmup after a new step-size search at the first metric estimate.  Each can be set: ``mass_matrix_rank``, ``mass_matrix_update_every=k`` (every
    k draws; nutpie: 1), ``mass_matrix_min_draws`` (directions only from at least that many
    draws), ``mass_matrix_estimate_rows`` (each estimate from at least that many warmup steps'
    draws before the current window; default d + 1, nutpie: the previous window),
    ``early_max_tree_depth`` (warmup's tree depth until the first estimate from more than d
    draws; default 4; ``max_tree_depth`` for no cap), ``step_size_restart`` (``"average"``: restart dual averaging from its average at
    every window end, ``fisher_diag``'s default; ``"none"``; ``"search_first"``: one dual
    averaging after a new step-size search at the first metric estimate, as nutpie).  Every
    choice leaves the sampling phase exact: it only picks the (fixed) metric.

    Example:
        >>> @ppl.model
        ... def normal_mean(y):
        ...     mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        ...     ppl.sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> run = mcmc.sample(jax.random.key(0), mcmc.NUTS(), normal_mean, 0.5, num_warmup=50,
        ...                   num_samples=50, num_chains=2, progress=False)
        >>> run.samples["mu"].shape
        (2, 50)
        >>> run = mcmc.sample(jax.random.key(0), mcmc.NUTS(adapt_mass_matrix="low_rank"), normal_mean, 0.5,
        ...                   num_warmup=50, num_samples=50, num_chains=2, progress=False)
        >>> type(run.state.params.inverse_mass_matrix).__name__
        'LowRankMetric'
    """

    max_tree_depth: int = 10
    max_delta_energy: float = 1000.0

    def __post_init__(self):
        super().__post_init__()
        _check(type(self).__name__, "max_tree_depth", self.max_tree_depth, _is_int(self.max_tree_depth) and 1 <= self.max_tree_depth <= 30,
               "an integer from 1 to 30")
        _check(type(self).__name__, "max_delta_energy", self.max_delta_energy, _is_positive(self.max_delta_energy), "a positive finite number")

    def transition(self, bound, key, state, params):
        # one hash of the key gives the momentum and the doubling directions, one per leapfrog
        # step the step's uniforms (inference.mcmc._bits: fewer inlined threefry calls)
        a = params
        r, directions = _momentum_and_word(key, a.mass_matrix_sqrt)
        tree = nuts_trajectory(
            bound.vg, state.x, state.potential_energy, state.grad, r, a.inverse_mass_matrix, a.step_size, key,
            max_tree_depth=self.max_tree_depth, max_delta_energy=self.max_delta_energy,
            depth_limit=getattr(a, "max_tree_depth", None), directions=directions,
        )
        new = GradState(tree.x, tree.potential_energy, tree.grad)
        info = {
            "accept_prob": tree.accept_prob,
            "diverging": tree.diverging,
            "tree_depth": tree.depth,
            "num_steps": tree.num_steps,
            "energy": tree.energy,
        }
        return new, info
