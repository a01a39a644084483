"""``arviz.InferenceData`` from groups of arrays, with ArviZ 0.x (``from_dict(posterior=...)``)
or 1.x (``from_dict({"posterior": ...})``); ArviZ is imported only when called."""

from __future__ import annotations

import numpy as np

from ppl.errors import PPLError

__all__ = ["from_groups"]


def from_groups(who: str, **groups: dict):
    """An ``arviz.InferenceData`` with one group per keyword (``posterior``, ``sample_stats``,
    ...), each address -> array shaped (chains, draws, ...); empty groups are left out."""
    try:
        import arviz as az
    except ImportError as e:  # pragma: no cover - arviz is a test dependency
        raise PPLError(f"{who} needs arviz: pip install arviz") from e
    groups = {g: {k: np.asarray(v) for k, v in d.items()} for g, d in groups.items() if d}
    major = int(str(getattr(az, "__version__", "0")).split(".")[0] or 0)
    if major >= 1:
        return az.from_dict(groups)
    return az.from_dict(**groups)
