"""Planted bugs in VI's gradient estimators, shared by the VI test modules.

Each function takes pytest's ``monkeypatch`` and breaks one estimator subtly inside
``inference.vi.strategies`` (or ``inference.vi.reparam``); a test runs its real check, then the same check (same seed) with the
twin planted, and asserts that the twin fails.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from inference.vi import reparam as vi_reparam
from inference.vi import strategies as vi_strategies

sg = jax.lax.stop_gradient


def no_score(monkeypatch):
    """reinforce without its score term."""
    monkeypatch.setattr(vi_strategies, "_score_term", lambda d, value, site: sg(jnp.sum(d.log_prob(value))))


def loc_detached(monkeypatch):
    """reparam: z = sg(μ) + σ ε, the pathwise derivative through the location is lost (only the
    guide density's explicit dependence on μ is left)."""
    orig = vi_reparam._reparam

    def bad(d, V):
        rep = orig(d, V)
        if type(d).__name__ == "Normal":
            return rep[0], lambda e: sg(d.loc) + d.scale * e
        return rep

    monkeypatch.setattr(vi_reparam, "_reparam", bad)


def enum_weight_detached(monkeypatch):
    """enum: the weight q(v) of each enumerated value carries no gradient (its log-prob term is
    missing from the surrogate), so Σ_v ∇q(v) E[F | v] is lost."""
    orig = vi_strategies.Enumerate.replay

    def bad(self, run, c, rec):
        value = orig(self, run, c, rec)
        run.enum_logq[-1] = sg(run.enum_logq[-1])
        return value

    monkeypatch.setattr(vi_strategies.Enumerate, "replay", bad)


def mvd_weight_off(monkeypatch):
    """mvd: the weak-derivative constant c of every branch is 0.9 c."""
    orig = vi_strategies._mvd_alternatives
    monkeypatch.setattr(
        vi_strategies, "_mvd_alternatives", lambda *a: [(p, i, 0.9 * c, vp, vm) for p, i, c, vp, vm in orig(*a)]
    )
