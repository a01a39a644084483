"""The laws every inference block is checked against, as reusable exact checks.

One criterion underlies them all (Ścibior et al., "Denotational validation of higher-order
Bayesian inference"): a block is valid when, averaged over the block's *own* randomness, the
meaning of its output equals the meaning of its input.  The block under test runs unchanged
under the exact enumerator (:func:`semantics.enumerate_paths`), so each law is an equality of
finite measures in float64 (tolerance ``tol``, relative to the total mass), not a Monte Carlo
estimate.

Each law returns a :class:`LawResult` (``.ok``, ``.message``, ``.details``); ``result.assert_()``
raises :class:`LawViolation` with the message, and every law has an ``assert_<law>`` twin.

Laws:
    properly_weighted   E[Σ_i w_i δ_{x_i}] = μ                  (importance sampling, SMC)
    unbiased_evidence   E[Ẑ] / Z = 1                             (tested on Ẑ/Z, never log Ẑ)
    invariant           π K = π, and K moves (irreducible)       (MCMC kernels)
    detailed_balance    π(x) K(x, y) = π(y) K(y, x), K moves     (reversible MCMC kernels)
    unbiased_gradient   E[ĝ] = ∇ objective                       (VI gradient estimators)
    surgery_commutes    μ_do(model, x) = truncated factorisation (interventions)

Example:
    >>> @ppl.model
    ... def coin():
    ...     z = ppl.sample("z", dist.Bernoulli(probs=0.3))
    ...     ppl.sample("y", dist.Bernoulli(probs=jnp.where(z == 1, 0.9, 0.2)), obs=1)
    >>> res = properly_weighted(lambda key: coin.generate(key, {}), coin)
    >>> res.ok
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import jax
import numpy as np

import ppl
from ppl.errors import ArgumentError, ArgumentTypeError, CheckFailed

from .enumerate import enumerate as _enumerate
from .enumerate import enumerate_paths, enumerate_traces, trace_key
from .measure import Choices, Measure, freeze

__all__ = [
    "LawResult",
    "LawViolation",
    "properly_weighted",
    "unbiased_evidence",
    "transition_matrix",
    "TransitionMatrix",
    "moves_problems",
    "invariant",
    "detailed_balance",
    "unbiased_gradient",
    "surgery_commutes",
    "assert_properly_weighted",
    "assert_unbiased_evidence",
    "assert_invariant",
    "assert_detailed_balance",
    "assert_unbiased_gradient",
    "assert_surgery_commutes",
]


class LawViolation(CheckFailed):
    """A block broke a law; the message says which and where."""


@dataclass
class LawResult:
    """The outcome of checking a law: ``ok``, a readable ``message`` and the computed ``details``."""

    law: str
    ok: bool
    message: str
    details: dict = field(default_factory=dict, repr=False)

    def __bool__(self) -> bool:
        return self.ok

    def assert_(self) -> "LawResult":
        """Raise :class:`LawViolation` (with the message) unless the law holds; return self."""
        if not self.ok:
            raise LawViolation(f"{self.law}: {self.message}")
        return self


def _target_measure(target: Any, args: tuple, kwargs: dict) -> Measure:
    if isinstance(target, Measure):
        return target
    return _enumerate(target, *args, **kwargs)


def _default_atoms(out: Any) -> list[tuple[Any, float]]:
    """(trace, log_w) -> [(atom, log_w)]."""
    if isinstance(out, tuple) and len(out) >= 2:
        x, lw = out[0], out[1]
    else:
        raise ArgumentTypeError(
            "properly_weighted: the block should return (trace, log_weight); pass atoms= to read "
            f"another output (got {type(out).__name__})."
        )
    key = trace_key(x) if isinstance(x, ppl.Trace) else freeze(x)
    return [(key, float(lw))]


# ---------------------------------------------------------------------------------------------
# importance sampling and SMC


def weighted_measure(block: Callable, *args: Any, atoms: Callable | None = None, **kwargs: Any) -> Measure:
    """E_block[Σ_i w_i δ_{x_i}]: the expected weighted empirical measure of a block's output.

    ``atoms(output)`` lists ``(atom, log_weight)`` pairs (default: the output is
    ``(trace, log_weight)``); each path of the block's randomness contributes its probability
    times the weights.
    """
    atoms = atoms or _default_atoms
    pairs = []
    for p in enumerate_paths(block, *args, **kwargs):
        for key, lw in atoms(p.value):
            pairs.append((key, p.log_prob + float(lw), None))
    return Measure.from_pairs(pairs)


def properly_weighted(
    block: Callable, target: Any, *args: Any, tol: float = 1e-12, atoms: Callable | None = None, **kwargs: Any
) -> LawResult:
    """Check E[Σ_i w_i δ_{x_i}] = μ exactly: the block's weighted output is properly weighted.

    `block(key, *args, **kwargs)` is the shipped block (e.g. ``model.generate``); `target` is a
    model (enumerated with the same arguments) or a :class:`Measure`.  ``atoms(output)`` maps the
    block's output to ``(atom, log_weight)`` pairs (default: output is ``(trace, log_weight)``;
    for a particle population return one pair per particle with weight w_i / N).

    Example:
        >>> @ppl.model
        ... def model(n):
        ...     ppl.sample("z", dist.Categorical(probs=jnp.ones(n) / n))
        ...     ppl.sample("y", dist.Bernoulli(probs=0.5), obs=1)
        >>> properly_weighted(lambda key, *a: model.generate(key, {}, *a), model, 3).ok
        True
    """
    mu = _target_measure(target, args, kwargs)
    est = weighted_measure(block, *args, atoms=atoms, **kwargs)
    lines = est.diff(mu, tol)
    if lines:
        return LawResult(
            "properly_weighted",
            False,
            f"E[w δ_x] differs from the target measure (masses {est.total_mass():.17g} vs "
            f"{mu.total_mass():.17g}):\n" + "\n".join(lines),
            {"estimate": est, "target": mu},
        )
    return LawResult("properly_weighted", True, f"E[w δ_x] equals the target on {len(mu)} atoms", {"estimate": est, "target": mu})


def unbiased_evidence(
    block: Callable,
    target: Any,
    *args: Any,
    tol: float = 1e-12,
    log_evidence: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> LawResult:
    """Check E[Ẑ] = Z exactly, as the ratio E[Ẑ]/Z = 1 (never on log Ẑ, which is biased).

    ``log_evidence(output)`` reads log Ẑ from the block's output (default: the last element of
    a tuple output, or the output itself).  `target` is a model or a Measure, or a number Z.

    Example:
        >>> @ppl.model
        ... def coin():
        ...     z = ppl.sample("z", dist.Bernoulli(probs=0.3))
        ...     ppl.sample("y", dist.Bernoulli(probs=jnp.where(z == 1, 0.9, 0.2)), obs=1)
        >>> unbiased_evidence(lambda key: coin.generate(key, {}), coin).ok
        True
    """
    if isinstance(target, (int, float)):
        Z = float(target)
    else:
        Z = _target_measure(target, args, kwargs).total_mass()
    read = log_evidence or (lambda out: out[-1] if isinstance(out, tuple) else out)
    terms = [math.exp(p.log_prob + float(np.asarray(read(p.value)))) for p in enumerate_paths(block, *args, **kwargs)]
    EZ = math.fsum(terms)
    ratio = EZ / Z if Z > 0 else math.nan
    ok = bool(abs(ratio - 1.0) <= tol)
    msg = f"E[Ẑ]/Z = {ratio:.17g} (E[Ẑ] = {EZ:.17g}, Z = {Z:.17g}) over {len(terms)} paths"
    return LawResult("unbiased_evidence", ok, msg, {"E_Zhat": EZ, "Z": Z, "ratio": ratio})


# ---------------------------------------------------------------------------------------------
# MCMC


@dataclass
class TransitionMatrix:
    """The exact transition matrix of a kernel on a finite trace space.

    Attributes:
        states: the atoms (``Choices``) of the target, in a fixed order.
        pi: the target's normalised probabilities, aligned with `states`.
        K: ``K[i, j]`` = P(next state = states[j] | current = states[i]).
        escaped: ``(i, atom, prob)`` for moves to atoms outside the target's support.
    """

    states: list
    pi: np.ndarray
    K: np.ndarray
    escaped: list


def _kernel_key(out: Any) -> Any:
    if isinstance(out, tuple):
        out = out[0]
    return trace_key(out) if isinstance(out, ppl.Trace) else freeze(out)


def transition_matrix(kernel: Callable, model: Any, *args: Any, state_key: Callable | None = None, **kwargs: Any) -> TransitionMatrix:
    """Build K by running ``kernel(key, trace)`` under the enumerator from every state.

    The states are the atoms of the (finite) measure of `model`; a representative trace of each
    is taken from the model's enumeration.  `kernel` returns the next trace (or a tuple whose
    first element is it); ``state_key(output)`` overrides how an output is mapped to a state.
    """
    read = state_key or _kernel_key
    reps: dict[Choices, Any] = {}
    mass: dict[Choices, list] = {}
    for tr, lw, _, _ in enumerate_traces(model, *args, **kwargs):
        if lw == -math.inf:
            continue
        k = trace_key(tr)
        reps.setdefault(k, tr)
        mass.setdefault(k, []).append(lw)
    states = list(reps)
    index = {s: i for i, s in enumerate(states)}
    lws = np.array([np.logaddexp.reduce(np.array(mass[s])) for s in states])
    pi = np.exp(lws - np.logaddexp.reduce(lws))
    n = len(states)
    K = np.zeros((n, n))
    escaped = []
    for i, s in enumerate(states):
        tr = reps[s]
        for p in enumerate_paths(lambda key: kernel(key, tr)):
            j = index.get(read(p.value))
            if j is None:
                escaped.append((i, read(p.value), math.exp(p.log_prob)))
            else:
                K[i, j] += math.exp(p.log_prob)
    return TransitionMatrix(states, pi, K, escaped)


def _reach(adj: np.ndarray, start: int) -> np.ndarray:
    """Boolean vector of the states reachable from `start` along edges adj[i, j] (itself included)."""
    seen = np.zeros(len(adj), bool)
    seen[start] = True
    frontier = [start]
    while frontier:
        nxt = np.flatnonzero(adj[frontier].any(axis=0) & ~seen)
        seen[nxt] = True
        frontier = list(nxt)
    return seen


def _names(states: list, idx: Any, limit: int = 4) -> str:
    idx = list(idx)
    shown = ", ".join(repr(states[i]) for i in idx[:limit])
    return shown + (f" (and {len(idx) - limit} more)" if len(idx) > limit else "")


def _irreducible_problems(states: list, adj: np.ndarray, members: list[int], what: str) -> list[str]:
    """Why the chain restricted to `members` is not irreducible (empty when it is)."""
    if len(members) < 2:
        return []
    sub = adj[np.ix_(members, members)]
    out = []
    stuck = [members[k] for k in range(len(members)) if not np.any(np.delete(sub[k], k))]
    if stuck:
        out.append(f"{what}the kernel never leaves {_names(states, stuck)}")
    fwd = _reach(sub, 0)
    bwd = _reach(sub.T, 0)
    if not fwd.all():
        out.append(f"{what}from {states[members[0]]!r} the chain never reaches "
                   f"{_names(states, [members[k] for k in np.flatnonzero(~fwd)])}")
    if not bwd.all():
        out.append(f"{what}{_names(states, [members[k] for k in np.flatnonzero(~bwd)])} never reach "
                   f"{states[members[0]]!r}")
    return out


def moves_problems(tm: TransitionMatrix, moves: Any = "irreducible") -> list[str]:
    """Why the kernel with matrix ``tm`` does not move as ``moves`` demands (empty when it does).

    ``moves``:

    - ``"irreducible"`` (the default of the MCMC laws): every state of the support reaches every
      other with positive probability in some number of steps.  With π K = π this makes π the
      chain's unique invariant law (so its ergodic averages converge to π-expectations), and
      it rejects the identity kernel and any kernel that never leaves a state;
    - a sequence of addresses (or one address), for a kernel that legitimately updates only
      that *block* (a single-site Gibbs or MH move): the kernel never changes the other
      addresses, and among the states that agree outside the block it is irreducible;
    - ``"some"``: the kernel leaves at least one state with positive probability (K ≠ I);
    - ``None``: no check (a kernel that may legitimately stay put, e.g. on a one-state block).
    """
    if moves is None:
        return []
    states = tm.states
    adj = tm.K > 0
    n = len(states)
    off = adj & ~np.eye(n, dtype=bool)
    if isinstance(moves, str) and moves == "some":
        return [] if n < 2 or off.any() else [f"the kernel never leaves any of the {n} states (K is the identity)"]
    if isinstance(moves, str) and moves == "irreducible":
        return _irreducible_problems(states, adj, list(range(n)), "not irreducible: ")
    block = [moves] if isinstance(moves, str) else list(moves)
    if not block or not all(isinstance(a, str) for a in block):
        raise ArgumentError(f"moves must be 'irreducible', 'some', None or a sequence of addresses, got {moves!r}")
    if not all(isinstance(s, Mapping) for s in states):
        raise ArgumentError("moves=<addresses> needs states that are choice maps (no state_key); got states of type " f"{type(next((s for s in states if not isinstance(s, Mapping)), None)).__name__}")
    unknown = [a for a in block if not any(a in s for s in states)]
    if unknown:
        raise ArgumentError(
            f"moves={moves!r}: no state of the target has the address(es) {unknown}; expected "
            f"'irreducible', 'some', None or addresses of the model, e.g. {sorted(states[0])[:6]}"
        )
    rest = [Choices(s).drop(block) if not isinstance(s, Choices) else s.drop(block) for s in states]
    problems = []
    outside = [(i, j) for i, j in zip(*np.nonzero(off)) if rest[i] != rest[j]]
    if outside:
        i, j = outside[0]
        problems.append(f"the kernel of block {block} changed other addresses: {states[i]!r} -> {states[j]!r}")
    classes: dict = {}
    for i, r in enumerate(rest):
        classes.setdefault(r, []).append(i)
    for members in classes.values():
        problems += _irreducible_problems(states, adj, members, f"not irreducible on block {block}: ")
    return problems


def _worst(vec: np.ndarray, states: list, label: str, limit: int = 5) -> str:
    order = np.argsort(-np.abs(vec))[:limit]
    return "\n".join(f"  {label} {states[i]!r}: {vec[i]:+.3g}" for i in order if vec[i] != 0)


def invariant(kernel: Callable, model: Any, *args: Any, tol: float = 1e-12, moves: Any = "irreducible", **kwargs: Any) -> LawResult:
    """Check π K = π exactly, and that the kernel moves: it leaves the model's normalised
    measure invariant and (by default) is irreducible on its support.

    `kernel(key, trace) -> trace` is one step of the shipped kernel targeting `model` (run with
    `args`); its accept/reject and proposals must draw through ``ppl.randomness.draw``.

    π K = π alone holds for the identity kernel, so the law also checks that the kernel moves
    (``moves``, see :func:`moves_problems`): ``"irreducible"`` (default: π-invariant and
    irreducible, so the chain converges to π), a sequence of addresses for a kernel that
    updates only that block (irreducible within the block, other addresses unchanged),
    ``"some"`` (K ≠ I) or ``None`` (no check).  The message names the states that cannot be
    left or reached.

    Example:
        >>> @ppl.model
        ... def model():
        ...     ppl.sample("z", dist.Categorical(probs=jnp.array([0.2, 0.3, 0.5])))
        >>> def mh(key, tr):                 # independence MH from the prior
        ...     k1, k2 = jax.random.split(key)
        ...     new, w = model.regenerate(k1, tr, ppl.select("z"))
        ...     acc = ppl.randomness.draw(k2, dist.Bernoulli(probs=jnp.minimum(1.0, jnp.exp(w))))
        ...     return new if acc else tr
        >>> invariant(mh, model).ok
        True
    """
    tm = transition_matrix(kernel, model, *args, **kwargs)
    rows = tm.K.sum(axis=1)
    piK = tm.pi @ tm.K
    err = piK - tm.pi
    problems = []
    if tm.escaped:
        problems.append(f"the kernel moved to {len(tm.escaped)} states outside the target's support, e.g. {tm.escaped[0][1]!r}")
    if np.max(np.abs(rows - 1)) > tol:
        problems.append(f"rows of K do not sum to 1 (max error {np.max(np.abs(rows - 1)):.3g})")
    if np.max(np.abs(err)) > tol:
        problems.append(f"πK ≠ π (max |πK − π| = {np.max(np.abs(err)):.3g}):\n" + _worst(err, tm.states, "πK − π at"))
    problems += moves_problems(tm, moves)
    details = {"matrix": tm, "max_error": float(np.max(np.abs(err))) if len(err) else 0.0}
    if problems:
        return LawResult("invariant", False, "; ".join(problems), details)
    return LawResult("invariant", True, f"πK = π on {len(tm.states)} states (max error {details['max_error']:.3g}); {_moves_word(moves)}", details)


def detailed_balance(kernel: Callable, model: Any, *args: Any, tol: float = 1e-12, moves: Any = "irreducible", **kwargs: Any) -> LawResult:
    """Check π(x) K(x, y) = π(y) K(y, x) for all states: the kernel is reversible w.r.t. π;
    and that it moves, as in :func:`invariant` (``moves``: ``"irreducible"`` by default, a block
    of addresses, ``"some"`` or ``None``).

    Example:
        >>> @ppl.model
        ... def model():
        ...     ppl.sample("z", dist.Categorical(probs=jnp.array([0.2, 0.3, 0.5])))
        >>> def mh(key, tr):                 # independence MH from the prior
        ...     k1, k2 = jax.random.split(key)
        ...     new, w = model.regenerate(k1, tr, ppl.select("z"))
        ...     acc = ppl.randomness.draw(k2, dist.Bernoulli(probs=jnp.minimum(1.0, jnp.exp(w))))
        ...     return new if acc else tr
        >>> detailed_balance(mh, model).ok
        True
    """
    tm = transition_matrix(kernel, model, *args, **kwargs)
    flow = tm.pi[:, None] * tm.K
    err = flow - flow.T
    m = float(np.max(np.abs(err))) if err.size else 0.0
    details = {"matrix": tm, "max_error": m}
    stuck = moves_problems(tm, moves)
    if tm.escaped or m > tol or stuck:
        parts = []
        if m > tol:
            i, j = np.unravel_index(np.argmax(np.abs(err)), err.shape)
            parts.append(
                f"π(x)K(x,y) ≠ π(y)K(y,x): max difference {m:.3g} at x={tm.states[i]!r}, "
                f"y={tm.states[j]!r} ({flow[i, j]:.17g} vs {flow[j, i]:.17g})"
            )
        if tm.escaped:
            parts.append(f"the kernel moved outside the support, e.g. to {tm.escaped[0][1]!r}")
        return LawResult("detailed_balance", False, "; ".join(parts + stuck), details)
    return LawResult("detailed_balance", True, f"detailed balance holds on {len(tm.states)} states (max error {m:.3g}); {_moves_word(moves)}", details)


def _moves_word(moves: Any) -> str:
    if moves is None:
        return "moves not checked"
    if moves == "irreducible":
        return "the kernel is irreducible"
    if moves == "some":
        return "the kernel moves (K ≠ I)"
    return f"the kernel is irreducible on block {[moves] if isinstance(moves, str) else list(moves)}"


# ---------------------------------------------------------------------------------------------
# gradients


def unbiased_gradient(
    estimator: Callable, exact_grad: Any, *args: Any, tol: float = 1e-10, **kwargs: Any
) -> LawResult:
    """Check E[ĝ] = ∇L exactly: the gradient estimator is unbiased.

    `estimator(key, *args, **kwargs)` returns a gradient estimate (a pytree of arrays) and draws
    its randomness through ``ppl.randomness.draw`` from finite distributions; `exact_grad` is the
    true gradient (a pytree, or a function of ``*args, **kwargs`` returning one), e.g. the
    ``jax.grad`` of an objective computed by enumeration or quadrature.

    Example:
        >>> def objective(theta):            # E_{z ~ Bernoulli(σ(θ))}[z] = σ(θ)
        ...     return jax.nn.sigmoid(theta)
        >>> def score_function_estimator(key, theta):
        ...     p = jax.lax.stop_gradient(jax.nn.sigmoid(theta))
        ...     z = ppl.randomness.draw(key, dist.Bernoulli(probs=p), name="z")
        ...     return jax.grad(lambda t: z * dist.Bernoulli(probs=jax.nn.sigmoid(t)).log_prob(z))(theta)
        >>> unbiased_gradient(score_function_estimator, jax.grad(objective), 0.3).ok
        True
    """
    paths = enumerate_paths(estimator, *args, **kwargs)
    leaves0, treedef = jax.tree_util.tree_flatten(paths[0].value)
    acc = [np.zeros(np.shape(x)) for x in leaves0]
    for p in paths:
        leaves = jax.tree_util.tree_leaves(p.value)
        w = math.exp(p.log_prob)
        for a, x in zip(acc, leaves):
            a += w * np.asarray(x, dtype=np.float64)
    mean = jax.tree_util.tree_unflatten(treedef, acc)
    truth = exact_grad(*args, **kwargs) if callable(exact_grad) else exact_grad
    t_leaves = [np.asarray(x, dtype=np.float64) for x in jax.tree_util.tree_leaves(truth)]
    errs = [float(np.max(np.abs(a - t))) if np.size(a) else 0.0 for a, t in zip(acc, t_leaves)]
    scale = max([1.0] + [float(np.max(np.abs(t))) for t in t_leaves if np.size(t)])
    m = max(errs) if errs else 0.0
    ok = m <= tol * scale and len(t_leaves) == len(acc)
    msg = f"max |E[ĝ] − ∇L| = {m:.3g} over {len(paths)} paths; E[ĝ] = {mean}, ∇L = {truth}"
    return LawResult("unbiased_gradient", ok, msg, {"mean": mean, "exact": truth, "max_error": m})


# ---------------------------------------------------------------------------------------------
# interventions


def truncated_factorisation(model: Any, interventions: Mapping[str, Any], *args: Any, **kwargs: Any) -> Measure:
    """The measure of do(model, x) computed from the *unintervened* model's enumeration.

    p(v | do(x)) = Π_{i ∉ X} p(v_i | pa_i) evaluated at x: keep the model's executions whose
    intervened sites equal x, divide out those sites' conditional probabilities p(x_i | pa_i)
    (read from ``trace.log_probs``) and drop them from the atoms.  Requires p(x_i | pa_i) > 0 for
    every parent configuration; an intervened site absent from an execution (inside an untaken
    branch) constrains nothing there.
    """
    fixed = {k: freeze(v) for k, v in interventions.items()}
    pairs = []
    for tr, lw, _, _ in enumerate_traces(model, *args, **kwargs):
        if lw == -math.inf:
            continue
        key = trace_key(tr)
        if any(k in key and key[k] != v for k, v in fixed.items()):
            continue
        for k in fixed:
            if k in tr.log_probs and k in key:
                lw -= float(np.sum(np.asarray(tr.log_probs[k])))
            elif k in tr.deterministic:
                raise ArgumentError(f"truncated_factorisation: interventions must name sample sites; {k!r} is a deterministic site.")
        pairs.append((key.drop(fixed), lw, None))
    return Measure.from_pairs(pairs)


def surgery_commutes(
    model: Any,
    interventions: Mapping[str, Any],
    *args: Any,
    surgery: Callable = ppl.do,
    tol: float = 1e-12,
    **kwargs: Any,
) -> LawResult:
    """Check that the surgered model's measure equals the truncated factorisation.

    ``surgery(model, interventions)`` is the block under test (default :func:`ppl.do`; an
    interpretation of a cut diagram can be passed as a function returning a model or a
    :class:`Measure`).  Its measure, with the intervened addresses dropped from the atoms, must
    equal :func:`truncated_factorisation` of the original model.

    Example:
        >>> @ppl.model
        ... def smoking():
        ...     gene = ppl.sample("gene", dist.Bernoulli(probs=0.3))
        ...     smoke = ppl.sample("smoke", dist.Bernoulli(probs=jnp.where(gene == 1, 0.8, 0.2)))
        ...     ppl.sample("cancer", dist.Bernoulli(probs=0.1 + 0.3 * smoke + 0.2 * gene))
        >>> surgery_commutes(smoking, {"smoke": 1}).ok
        True
    """
    tf = truncated_factorisation(model, interventions, *args, **kwargs)
    cut = surgery(model, dict(interventions))
    mu = cut if isinstance(cut, Measure) else _enumerate(cut, *args, **kwargs)
    names = list(interventions)
    mu = mu.pushforward(lambda c: c.drop(names) if isinstance(c, Choices) else c)
    lines = mu.diff(tf, tol)
    if lines:
        return LawResult(
            "surgery_commutes",
            False,
            f"the surgered model's measure (mass {mu.total_mass():.17g}) differs from the truncated "
            f"factorisation (mass {tf.total_mass():.17g}):\n" + "\n".join(lines),
            {"surgery": mu, "truncated": tf},
        )
    return LawResult("surgery_commutes", True, f"surgery equals the truncated factorisation on {len(tf)} atoms", {"surgery": mu, "truncated": tf})


def _asserting(law: Callable) -> Callable:
    def check(*args: Any, **kwargs: Any) -> LawResult:
        return law(*args, **kwargs).assert_()

    check.__name__ = f"assert_{law.__name__}"
    check.__doc__ = f"Like :func:`{law.__name__}`, but raise :class:`LawViolation` when the law fails."
    return check


assert_properly_weighted = _asserting(properly_weighted)
assert_unbiased_evidence = _asserting(unbiased_evidence)
assert_invariant = _asserting(invariant)
assert_detailed_balance = _asserting(detailed_balance)
assert_unbiased_gradient = _asserting(unbiased_gradient)
assert_surgery_commutes = _asserting(surgery_commutes)
