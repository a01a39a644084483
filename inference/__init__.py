"""Inference building blocks for :mod:`ppl` models.

Every block transforms one representation of a model into another while preserving the
unnormalised measure the representation denotes (see ``docs/design/index.md``).

Subpackages
-----------
- :mod:`inference.mcmc` -- Markov chain Monte Carlo kernels, adaptation and drivers.
- :mod:`inference.smc` -- sequential Monte Carlo: particles, resampling, tempering, PMCMC.
- :mod:`inference.vi` -- variational inference: objectives as programs, estimators, guides.
- :mod:`inference.causal` -- string diagrams, surgery, identification and estimation.
- :mod:`inference.sharding` -- laying chains, particles and samples out across devices.
- :mod:`inference.amortised` -- amortised inference: the distribution transformer (GMM prior + data -> GMM posterior).

The subpackages are imported lazily, so ``import inference`` stays cheap and a family that
is still being written does not break the others.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["mcmc", "smc", "vi", "causal", "sharding"]
__all__ += ["sequential"]  # issue 20: sequential Bayesian inference
__all__ += ["amortised"]  # issue 20a: the distribution transformer


def __getattr__(name: str) -> Any:
    if name in __all__:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
