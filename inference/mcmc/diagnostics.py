"""Convergence diagnostics on draws shaped (chains, draws, ...): split-R̂, bulk and tail ESS.

Built on ``numpyro.diagnostics`` (``effective_sample_size``, ``gelman_rubin``) with the
rank-normalisation of Vehtari et al. (2021), "Rank-normalization, folding, and localization".
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

# numpyro.diagnostics is imported when first used; scipy.stats is not used at all: importing it
# costs 0.3-1 s, which every fresh process paid at its first run's health check (issue 14: a
# quarter of the cold mixture's time outside compilation).  The ranks and the normal quantile
# below are scipy.stats' own algorithm (`rankdata(method="average")`, `norm.ppf` = `ndtri`) on
# NumPy and scipy.special (imported by JAX already), equal to them bit for bit.

__all__ = ["ess_bulk", "ess_tail", "r_hat", "summary", "Summary"]


def _split(x: np.ndarray) -> np.ndarray:
    c, n = x.shape[:2]
    h = n // 2
    return np.concatenate([x[:, :h], x[:, n - h :]], axis=0)


def _rankdata0(x: np.ndarray) -> np.ndarray:
    """``scipy.stats.rankdata(x, axis=0, method="average")`` (ties share their mean rank; a
    column holding a NaN is all NaN), with scipy's algorithm on NumPy."""
    y = np.moveaxis(x, 0, -1)
    shape = y.shape
    if y.size == 0:
        return np.empty(x.shape, dtype=float)
    j = np.argsort(y, axis=-1, kind="stable")
    ordinal = np.broadcast_to(np.arange(1, shape[-1] + 1, dtype=float), shape)
    ys = np.take_along_axis(y, j, axis=-1)
    first = np.concatenate([np.ones(shape[:-1] + (1,), dtype=bool), ys[..., :-1] != ys[..., 1:]], axis=-1)
    idx = np.arange(ys.size)[first.reshape(-1)]
    counts = np.diff(idx, append=np.asarray([ys.size], dtype=idx.dtype))
    ranks = ordinal[first] + (counts.astype(float) - 1) / 2
    ranks = np.repeat(ranks, counts).reshape(shape)
    out = np.empty(shape, dtype=float)
    np.put_along_axis(out, j, ranks, axis=-1)
    nan = np.isnan(y).any(axis=-1)
    if nan.any():
        out[nan] = np.nan
    return np.moveaxis(out, -1, 0)


def _rank_normalize(x: np.ndarray) -> np.ndarray:
    c, n = x.shape[:2]
    flat = x.reshape((c * n,) + x.shape[2:])
    from scipy.special import ndtri  # scipy.stats.norm.ppf's own function

    r = _rankdata0(flat)
    z = ndtri((r - 0.375) / (c * n + 0.25))
    return z.reshape(x.shape)


def _nd():
    from numpyro import diagnostics

    return diagnostics


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of split chains ``x``; NaN when they hold fewer than 2 draws each (fewer than 4 draws
    per chain before splitting, as in ArviZ), where NumPyro's estimator is undefined."""
    x = np.asarray(x, dtype=float)
    if x.shape[1] < 2:
        return np.full(x.shape[2:], np.nan)
    nd = _nd()
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = np.asarray(nd.effective_sample_size(x))
    # ArviZ's (and Stan's) bound on the autocorrelation time, τ >= 1 / log10(N): ESS at most
    # N log10(N).  NumPyro's estimator has none, and on short chains whose pairs of
    # autocorrelations go below -1 its τ is negative: an ESS of -720 from 24 draws.
    n = x.shape[0] * x.shape[1]
    cap = n * np.log10(n)
    return np.where((ess < 0) | (ess > cap), cap, ess)


def ess_bulk(x: np.ndarray) -> np.ndarray:
    """Bulk effective sample size: ESS of the rank-normalised split chains."""
    return _ess(_rank_normalize(_split(np.asarray(x, dtype=float))))


def ess_tail(x: np.ndarray) -> np.ndarray:
    """Tail ESS: the smaller ESS of the indicators of the 5% and 95% quantiles (split chains).

    The quantiles are those of all the draws (before splitting, which drops the middle draw of
    an odd-length chain), as in Vehtari et al. (2021), the ``posterior`` R package and ArviZ."""
    x = np.asarray(x, dtype=float)
    flat = x.reshape((-1,) + x.shape[2:])
    q05, q95 = np.quantile(flat, 0.05, axis=0), np.quantile(flat, 0.95, axis=0)
    return np.minimum(_ess(_split((x <= q05).astype(float))), _ess(_split((x <= q95).astype(float))))


def r_hat(x: np.ndarray) -> np.ndarray:
    """Rank-normalised split-R̂: the larger of the bulk and the folded (tail) R̂."""
    nd = _nd()
    x = _split(np.asarray(x, dtype=float))
    if x.shape[0] < 2 or x.shape[1] < 2:
        return np.full(x.shape[2:], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        bulk = np.asarray(nd.gelman_rubin(_rank_normalize(x)))
        med = np.median(x.reshape((-1,) + x.shape[2:]), axis=0)
        tail = np.asarray(nd.gelman_rubin(_rank_normalize(np.abs(x - med))))
    return np.maximum(bulk, tail)


STATS = ("mean", "sd", "5%", "50%", "95%", "r_hat", "ess_bulk", "ess_tail")


class Summary(dict):
    """address -> {statistic -> array}; printing shows a table (one row per scalar component)."""

    def rows(self):
        for name, st in self.items():
            shape = np.shape(st["mean"])
            for idx in np.ndindex(*shape):
                label = name + (f"[{','.join(map(str, idx))}]" if idx else "")
                yield label, {k: float(np.asarray(v)[idx]) for k, v in st.items()}

    def __str__(self) -> str:
        rows = list(self.rows())
        w = max([len(r[0]) for r in rows] + [4])
        head = f"{'':<{w}} " + " ".join(f"{s:>9}" for s in STATS)
        lines = [head]
        for label, st in rows:
            lines.append(f"{label:<{w}} " + " ".join(f"{st[s]:>9.3g}" for s in STATS))
        return "\n".join(lines)

    def to_dataframe(self):
        """A ``pandas.DataFrame``: one row per scalar component (``theta[0]``, ...), one column per
        statistic."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - pandas comes with arviz
            raise ImportError("Summary.to_dataframe needs pandas: pip install pandas") from e
        rows = list(self.rows())
        return pd.DataFrame([st for _, st in rows], index=[label for label, _ in rows], columns=list(STATS))

    def _repr_pretty_(self, p, cycle):  # IPython
        p.text(str(self))


def summary(samples: Mapping[str, np.ndarray]) -> Summary:
    """Mean, sd, 5/50/95% quantiles, R̂, bulk and tail ESS of each site (draws (chains, draws, ...))."""
    out = Summary()
    for name, v in samples.items():
        x = np.asarray(v, dtype=float)
        flat = x.reshape((-1,) + x.shape[2:])
        q = np.quantile(flat, [0.05, 0.5, 0.95], axis=0)
        out[name] = {
            "mean": flat.mean(0),
            "sd": flat.std(0, ddof=1) if flat.shape[0] > 1 else np.zeros(flat.shape[1:]),
            "5%": q[0],
            "50%": q[1],
            "95%": q[2],
            "r_hat": r_hat(x),
            "ess_bulk": ess_bulk(x),
            "ess_tail": ess_tail(x),
        }
    return out
