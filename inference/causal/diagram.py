"""The string diagram of a model: one box per site, one wire per data dependency.

The dependencies are found by tracing the whole model to a jaxpr with every site's value as an
input, and propagating "which inputs does this variable depend on" forwards through the
equations (into ``pjit``/custom-derivative sub-jaxprs; through any other higher-order primitive
every output is taken to depend on every input, a safe over-approximation).  A site's parents
are the sites its distribution's parameters (or, for a deterministic site, its value; for a
factor, its log weight) depend on.  A site made inside ``ppl.scan``/``ppl.cond`` gets as
parents every site that flows into its combinator (the other sites of the same loop included,
for the feedback through the carry): an over-approximation, flagged on the box.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import numpy as np

import ppl
from ppl.errors import AddressError, ModelError, nearest
from semantics.tables import element_support as _element_support
from semantics.tables import finite_support as _finite_support

from .dependencies import trace_dependencies

__all__ = ["Box", "Wire", "Diagram", "Mechanism", "diagram", "surgery"]


# ---------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class Mechanism:
    """A soft intervention: a new mechanism for a site, as a function of chosen parent sites.

    ``fn(*parent_values)`` returns the site's new distribution; `parents` names the sites whose
    values it receives (default: the box's parents in the diagram, through deterministic boxes).
    A mechanism with ``parents=()`` is a stochastic policy that ignores everything upstream.

    Example:
        >>> from inference.causal.examples import smoking
        >>> d = causal.diagram(smoking)
        >>> policy = causal.Mechanism(lambda: dist.Bernoulli(0.2), parents=())
        >>> follow = causal.Mechanism(lambda h: dist.Bernoulli(0.1 + 0.8 * h), parents=("hidden",))
        >>> causal.surgery(d, {"smoke": policy})["smoke"].parents, causal.surgery(d, {"smoke": follow})["smoke"].parents
        ((), ('hidden',))
    """

    fn: Callable
    parents: tuple | None = None

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", "fn")
        ps = "parents" if self.parents is None else ", ".join(self.parents)
        return f"Mechanism({name}({ps}))"


@dataclass(frozen=True)
class Box:
    """One site of the model.

    Attributes:
        name: the site's address.
        kind: ``"sample"``, ``"deterministic"`` or ``"factor"``.
        parents: the sites this one depends on (execution order).
        observed: whether the site is observed (its value is data).
        plates: the names of the plates the site is in (outermost first).
        dist: the distribution's class name ('' for deterministic and factor sites).
        support: the values of a finite, scalar site (None otherwise).
        shape: the shape of the site's value.
        intervention: None, a value (hard: a point mass) or a :class:`Mechanism` (soft).
        approximate: True when the parents are an over-approximation (inside scan/cond).
        element_support: for a batched site (in a plate, or with a batch shape) whose elements
            are finite scalars, the values each element takes (None otherwise).
    """

    name: str
    kind: str
    parents: tuple
    observed: bool = False
    plates: tuple = ()
    dist: str = ""
    support: tuple | None = None
    shape: tuple = ()
    intervention: Any = None
    approximate: bool = False
    element_support: tuple | None = None

    @property
    def is_hard(self) -> bool:
        return self.intervention is not None and not isinstance(self.intervention, Mechanism)

    @property
    def is_soft(self) -> bool:
        return isinstance(self.intervention, Mechanism)


@dataclass(frozen=True)
class Wire:
    """A data dependency ``src -> dst``; `plates` names the plates it bundles (shared by both)."""

    src: str
    dst: str
    plates: tuple = ()


class Diagram:
    """The string diagram of a model: boxes (sites) in execution order and the wires between them.

    Build one with :func:`diagram`; cut it with :func:`surgery`; interpret it with
    :func:`inference.causal.interpret`; draw it with :meth:`draw`.  ``print(d)`` shows it as
    text.
    """

    def __init__(self, model: ppl.Model, args: tuple, kwargs: dict, boxes: "OrderedDict[str, Box]"):
        self.model = model
        self.args = tuple(args)
        self.kwargs = dict(kwargs)
        self.boxes = boxes

    # -- structure ---------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Box:
        try:
            return self.boxes[name]
        except KeyError:
            raise AddressError(f"the diagram has no box {name!r}{nearest(name, self.boxes)}.") from None

    def __contains__(self, name: object) -> bool:
        return name in self.boxes

    def __iter__(self):
        return iter(self.boxes.values())

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def wires(self) -> list[Wire]:
        """Every wire src -> dst, with the plates both ends share (a bundled wire)."""
        out = []
        for b in self.boxes.values():
            for p in b.parents:
                shared = tuple(pl for pl in self.boxes[p].plates if pl in b.plates)
                out.append(Wire(p, b.name, shared))
        return out

    @property
    def sample_sites(self) -> list[str]:
        return [b.name for b in self.boxes.values() if b.kind == "sample"]

    @property
    def latent(self) -> list[str]:
        """The latent sample sites that are not hard-intervened (the variables of the joint)."""
        return [b.name for b in self.boxes.values() if b.kind == "sample" and not b.observed and not b.is_hard]

    @property
    def interventions(self) -> dict:
        return {b.name: b.intervention for b in self.boxes.values() if b.intervention is not None}

    def effective_parents(self, name: str) -> tuple:
        """The sample sites a box depends on, looking through (non-intervened) deterministic boxes.

        Hard-intervened boxes are constants and are not parents.
        """
        out: list[str] = []

        def visit(p: str) -> None:
            b = self.boxes[p]
            if b.is_hard:
                return
            if b.kind == "deterministic":
                for q in b.parents:
                    visit(q)
            elif p not in out:
                out.append(p)

        box = self.boxes[name]
        if box.is_soft:
            for p in _mechanism_parents(self, box):
                visit(p)
        else:
            for p in box.parents:
                visit(p)
        order = list(self.boxes)
        return tuple(sorted(out, key=order.index))

    def ancestors(self, name: str) -> set:
        out, todo = set(), list(self.boxes[name].parents)
        while todo:
            p = todo.pop()
            if p not in out:
                out.add(p)
                todo.extend(self.boxes[p].parents)
        return out

    def descendants(self, name: str) -> set:
        out, todo = set(), [name]
        while todo:
            v = todo.pop()
            for b in self.boxes.values():
                if v in b.parents and b.name not in out:
                    out.add(b.name)
                    todo.append(b.name)
        return out

    def replace(self, **boxes: Box) -> "Diagram":
        new = OrderedDict(self.boxes)
        new.update(boxes)
        return Diagram(self.model, self.args, self.kwargs, new)

    # -- the program it denotes ------------------------------------------------------------------
    def to_model(self) -> ppl.Model:
        """The program this diagram denotes: the model with its interventions applied.

        Hard cuts become ``ppl.do``, soft ones :func:`intervene`; sampling from it is the
        interpretation of a diagram whose variables are not all finite.
        """
        m = self.model
        hard = {k: v for k, v in self.interventions.items() if not isinstance(v, Mechanism)}
        soft = {k: v for k, v in self.interventions.items() if isinstance(v, Mechanism)}
        if soft:
            from .intervene import intervene

            soft = {k: Mechanism(v.fn, _mechanism_parents(self, self.boxes[k])) for k, v in soft.items()}
            m = intervene(m, soft)
        if hard:
            m = ppl.do(m, hard)
        return m

    # -- display -----------------------------------------------------------------------------------
    def __str__(self) -> str:
        name = getattr(self.model, "name", "model")
        lines = [f"Diagram of {name}: {len(self.boxes)} boxes, {len(self.wires)} wires"]
        width = max((len(b.name) for b in self.boxes.values()), default=4)
        for b in self.boxes.values():
            what = b.dist if b.kind == "sample" else b.kind
            if b.is_hard:
                what = f"do({_fmt_value(b.intervention)})"
            elif b.is_soft:
                what = f"{b.intervention!r}"
            flags = []
            if b.observed:
                flags.append("observed")
            if b.plates:
                flags.append("plates " + ",".join(b.plates))
            if b.approximate:
                flags.append("parents over-approximated")
            if b.is_hard:
                srcs = "(cut)"
            elif b.is_soft:
                srcs = ", ".join(_mechanism_parents(self, b)) or "(none)"
            else:
                srcs = ", ".join(b.parents) or "(none)"
            flag = f"  [{'; '.join(flags)}]" if flags else ""
            lines.append(f"  {b.name:<{width}} <- {srcs:<20} : {what}{flag}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def draw(self, ax: Any = None, figsize: tuple | None = None, marginalise: Any = (), title: str | None = None):
        """A matplotlib Figure of the diagram drawn as a string diagram (Jacobs, Kissinger & Zanasi).

        Wires flow bottom to top; one box per site (observed shaded, soft interventions dashed);
        a copy dot where a variable feeds several boxes or the output; a discard where a
        marginalised variable ends; a hard intervention is a state (a triangle with its value)
        with its input wires cut; plates are frames.  The layout routes every wire around the
        boxes it does not connect (:mod:`inference.causal.layout`).  `marginalise` names
        variables that are not outputs of the diagram; `ax` draws into existing axes.

        Example:
            >>> from inference.causal.examples import smoking
            >>> fig = causal.diagram(smoking).draw(marginalise=["hidden"])
            >>> len(fig.axes)
            1
        """
        from .draw import draw

        return draw(self, ax=ax, figsize=figsize, marginalise=marginalise, title=title)

    def save(self, path: str, marginalise: Any = (), dpi: int = 120) -> str:
        """Write the drawing to `path`, as SVG or PNG by its extension (``.svg``/``.png``); returns the path."""
        import os

        fmt = os.path.splitext(str(path))[1].lower().lstrip(".")
        if fmt not in ("svg", "png"):
            raise ModelError(f"Diagram.save: the file name must end in .svg or .png, got {str(path)!r}.")
        fig = self.draw(marginalise=marginalise)
        fig.savefig(path, format=fmt, dpi=dpi, bbox_inches="tight")
        return str(path)

    def to_svg(self, path: str, marginalise: Any = ()) -> str:
        """Write the drawing to an SVG file; returns the path."""
        return self.save(path if str(path).lower().endswith(".svg") else f"{path}.svg", marginalise=marginalise)

    def to_png(self, path: str, dpi: int = 120, marginalise: Any = ()) -> str:
        """Write the drawing to a PNG file; returns the path."""
        return self.save(path if str(path).lower().endswith(".png") else f"{path}.png", marginalise=marginalise, dpi=dpi)

    def _repr_svg_(self) -> str:
        """The drawing as SVG text (how notebooks show a diagram inline)."""
        import io

        buf = io.StringIO()
        self.draw().savefig(buf, format="svg", bbox_inches="tight")
        return buf.getvalue()

    def _repr_png_(self) -> bytes:
        """The drawing as PNG bytes (for front ends that do not show SVG)."""
        import io

        buf = io.BytesIO()
        self.draw().savefig(buf, format="png", dpi=110, bbox_inches="tight")
        return buf.getvalue()


def _fmt_value(v: Any) -> str:
    a = np.asarray(v)
    if a.ndim == 0:
        x = a.item()
        return f"{x:.4g}" if isinstance(x, float) else str(x)
    return f"{a.dtype}{list(a.shape)}"


def _mechanism_parents(d: Diagram, box: Box) -> tuple:
    mech = box.intervention
    return tuple(mech.parents) if mech.parents is not None else tuple(box.parents)


def diagram(model: Any, *args: Any, **kwargs: Any) -> Diagram:
    """The string diagram of `model` run on `args`: one box per sample/deterministic/factor site.

    A wire ``a -> b`` means b's distribution (for a deterministic site: its value; for a
    factor: its log weight) depends on the value of site a, as found by tracing the whole model
    through its jaxpr, so dependencies through arithmetic, ``jnp`` functions, plates and nested
    models are found.  Observed sites are marked; plates are recorded per box and wires between
    boxes in a plate are bundled wires.  A model made with ``ppl.do`` gives a diagram whose
    intervened boxes are already cut.

    Example:
        >>> @ppl.model
        ... def smoking():
        ...     h = ppl.sample("hidden", dist.Bernoulli(0.3))
        ...     s = ppl.sample("smoke", dist.Bernoulli(0.2 + 0.6 * h))
        ...     t = ppl.sample("tar", dist.Bernoulli(0.1 + 0.8 * s))
        ...     ppl.sample("cancer", dist.Bernoulli(0.1 + 0.5 * t + 0.3 * h))
        >>> d = causal.diagram(smoking)
        >>> d["cancer"].parents
        ('hidden', 'tar')
    """
    model = ppl.as_model(model)
    sites = model.trace_sites(jax.random.key(0), *args, **kwargs)
    values = OrderedDict(
        (n, s["value"]) for n, s in sites.items() if s["type"] in ("sample", "deterministic")
    )
    parents_of, inside, groups = trace_dependencies(model, args, kwargs, values)
    order = list(sites)
    boxes: "OrderedDict[str, Box]" = OrderedDict()
    for pos, (n, s) in enumerate(sites.items()):
        t = s["type"]
        if t not in ("sample", "deterministic", "factor"):
            continue
        approximate = n in inside or n not in parents_of
        # a site inside scan/cond: its value enters the program as an input of its own
        # combinator, the first opaque equation to read it; its distribution is computed inside
        # that equation, so from that equation's inputs only (the other sites of the same loop,
        # later iterations' feedback included, and whatever flows in from outside)
        home = next((g for g in groups if n in g), None) if approximate else None
        if home is not None:
            ps = {m for m in home if m in values and m != n}
        elif approximate:
            ps = {m for m in order[:pos] if m in values}
        else:
            ps = parents_of[n] - {n}
        if s.get("intervened"):
            ps = set()
        parents = tuple(sorted(ps, key=order.index))
        fn = s.get("fn")
        support = element_support = None
        if t == "sample" and fn is not None and not s.get("intervened"):
            support = _finite_support(fn)
            if support is None and np.ndim(s["value"]) > 0:
                element_support = _element_support(fn)
        intervention = None
        if s.get("intervened"):
            intervention = s["value"]
        boxes[n] = Box(
            name=n,
            kind=t,
            parents=parents,
            observed=bool(s.get("is_observed")) and t == "sample",
            plates=tuple(f.name for f in s.get("cond_indep_stack", [])),
            dist=_dist_name(fn) if (t == "sample" and fn is not None) else "",
            support=support,
            shape=tuple(np.shape(s["value"])),
            intervention=intervention,
            approximate=approximate,
            element_support=element_support,
        )
    return Diagram(model, args, kwargs, boxes)


def _dist_name(fn: Any) -> str:
    name = type(fn).__name__
    if name == "ExpandedDistribution":
        name = type(fn.base_dist).__name__
    for suffix in ("Probs", "Logits"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


# ---------------------------------------------------------------------------------------------
# surgery


def surgery(d: Diagram, interventions: Mapping[str, Any]) -> Diagram:
    """Cut the diagram: each named box gets a new mechanism and loses its input wires.

    A value is a hard intervention: the box becomes a point mass at that value (its input wires
    are cut; its output wires carry the value).  A :class:`Mechanism` is a soft intervention:
    the box keeps its place but draws from ``mechanism.fn(*parents)``, with wires from the
    mechanism's parents only.  Cuts compose: ``surgery(surgery(d, a), b)`` is ``surgery(d, a | b)``
    for disjoint a and b, and the later cut wins on a shared box.  Interpreting the cut diagram
    gives the measure of ``ppl.do(model, ...)`` (law ``surgery_commutes``).

    Example:
        >>> from inference.causal.examples import smoking
        >>> cut = causal.surgery(causal.diagram(smoking), {"smoke": 1})
        >>> cut["smoke"].parents
        ()
    """
    if not isinstance(interventions, Mapping):
        raise ModelError(f"causal.surgery expects a mapping from sites to values, got {type(interventions).__name__}.")
    new = {}
    for name, v in interventions.items():
        box = d[name]
        if box.kind == "factor":
            raise ModelError(f"causal.surgery: {name!r} is a factor, which has no value to intervene on.")
        if callable(v) and not isinstance(v, Mechanism) and not hasattr(v, "shape"):
            v = Mechanism(v)
        if isinstance(v, Mechanism):
            if box.kind != "sample":
                raise ModelError(f"causal.surgery: a mechanism replaces a sample site; {name!r} is {box.kind}.")
            parents = tuple(v.parents) if v.parents is not None else tuple(box.parents)
            for p in parents:
                if p not in d.boxes or list(d.boxes).index(p) >= list(d.boxes).index(name):
                    raise AddressError(
                        f"causal.surgery: the mechanism for {name!r} names parent {p!r}, which is not a "
                        f"site that runs before it{nearest(p, d.boxes)}."
                    )
            new[name] = dataclasses.replace(box, intervention=Mechanism(v.fn, parents), parents=parents)
        else:
            if box.support is not None and np.ndim(v) == 0:
                if not any(np.asarray(v).item() == s for s in box.support):
                    raise ModelError(
                        f"causal.surgery: value {v!r} for {name!r} is outside its support {list(box.support)}."
                    )
            new[name] = dataclasses.replace(box, intervention=v, parents=(), observed=False)
    return d.replace(**new)


def __getattr__(name: str) -> Any:
    # `intervene` lived here before it got a module of its own (intervene.py imports Mechanism
    # from this module, so it is re-exported lazily)
    if name == "intervene":
        from .intervene import intervene

        return intervene
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
