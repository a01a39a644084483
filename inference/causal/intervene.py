"""The program-level soft intervention: a site's mechanism replaced by a function of earlier sites."""

from __future__ import annotations

from typing import Any, Mapping

import ppl
from ppl.model import handled
from ppl.core import Messenger
from ppl.errors import ModelError

from .diagram import Mechanism

__all__ = ["intervene"]


class _Soft(Messenger):
    """Replace the distribution at some sites by a mechanism of earlier site values.

    A Messenger, not ``ppl.substitute``: it replaces a site's distribution (the value is still
    drawn and scored), which a value-providing hook cannot do.
    """

    def __init__(self, mechanisms: Mapping[str, Mechanism]):
        super().__init__()
        self.mechanisms = dict(mechanisms)
        self.seen: dict = {}

    def __enter__(self):
        self.seen = {}
        return super().__enter__()

    def process_message(self, msg: dict) -> None:
        name = msg["name"]
        if msg["type"] == "sample" and name in self.mechanisms and not msg["intervened"]:
            mech = self.mechanisms[name]
            parents = mech.parents or ()
            missing = [p for p in parents if p not in self.seen]
            if missing:
                raise ModelError(
                    f"ppl intervene: the mechanism for {name!r} needs site {missing[0]!r}, which has "
                    "not run before it."
                )
            msg["fn"] = mech.fn(*[self.seen[p] for p in parents])
            msg["is_observed"] = False

    def postprocess_message(self, msg: dict) -> None:
        if msg["type"] in ("sample", "deterministic"):
            self.seen[msg["name"]] = msg["value"]


def intervene(model: Any, mechanisms: Mapping[str, Mechanism]) -> ppl.Model:
    """The program-level soft intervention: `model` with each named site's mechanism replaced.

    Each :class:`Mechanism` must name its parents (sites that run before the intervened one).
    The intervened site stays a random choice (scored under its new distribution).

    Example:
        >>> from inference.causal.examples import smoking
        >>> m2 = causal.intervene(smoking, {"smoke": causal.Mechanism(lambda h: dist.Bernoulli(0.5 * h), ("hidden",))})
        >>> [round(float(p), 4) for p in causal.enumerate_model(m2).marginal(["smoke"]).table]   # P(smoke) = 0.3 * 0.5
        [0.85, 0.15]
    """
    base = ppl.as_model(model)
    for k, m in mechanisms.items():
        if not isinstance(m, Mechanism) or m.parents is None:
            raise ModelError(f"causal.intervene: the mechanism for {k!r} must be a Mechanism with explicit parents.")

    return handled(base, _Soft, mechanisms)
