"""Drawing a :class:`Diagram` as a string diagram with matplotlib (imported only when drawing).

The conventions are those of Jacobs, Kissinger & Zanasi (see :mod:`inference.causal.layout`,
which computes the geometry): wires flow from the bottom to the top; a box per mechanism
(observed sites shaded, deterministic ones tinted, soft interventions dashed); a black **copy
dot** where a variable feeds several boxes or the output; a **discard** (ground) symbol where a
marginalised variable ends; a hard intervention is a **state**, a triangle labelled with its value,
with no input wire; the outputs leave at the top, labelled; plates are frames; wires bundled by a
plate are thick; a loop's feedback wire is dashed with an arrow.

Example:
    >>> from inference.causal.examples import smoking
    >>> fig = causal.surgery(causal.diagram(smoking), {"smoke": 1}).draw(marginalise=["hidden"])
    >>> type(fig).__name__
    'Figure'
"""

from __future__ import annotations

from typing import Any, Iterable

from .layout import DOT, layers, layout  # noqa: F401  (layers: the layering, re-exported)

_INK = "0.15"
_SCALE = 0.95  #: inches per layout unit


def draw(d, ax: Any = None, figsize: tuple | None = None, marginalise: Iterable = (), title: str | None = None):
    """A matplotlib Figure of the diagram drawn as a string diagram (conventions above).

    `ax` draws into an existing axes (its figure is returned); `marginalise` names variables
    that are not outputs of the diagram; `title` defaults to the model's name.
    """
    from matplotlib.figure import Figure

    g = layout(d, marginalise=marginalise)
    x0, y0, x1, y1 = g.bounds
    y1 += 0.35  # room for the output labels
    pad = 0.25
    if ax is None:
        w, h = (x1 - x0 + 2 * pad) * _SCALE, (y1 - y0 + 2 * pad) * _SCALE + 0.35
        fig = Figure(figsize=figsize or (max(2.5, w), max(2.0, h)))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    _render(ax, g, d)
    ax.set_xlim(x0 - pad, x1 + pad)
    ax.set_ylim(y0 - pad, y1 + pad)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(g.title if title is None else title, fontsize=10)
    return fig


def _render(ax, g, d) -> None:
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Polygon, Rectangle

    for p in g.plates:
        px0, py0, px1, py1 = p.rect
        ax.add_patch(Rectangle((px0, py0), px1 - px0, py1 - py0, fill=False, edgecolor="tab:blue",
                               linewidth=1.0, zorder=0.5))
        ax.text(px1 - 0.05, py0 + 0.05, p.name, fontsize=8, color="tab:blue", ha="right", va="bottom", zorder=0.6)
    for w in g.wires:
        xs = [q[0] for q in w.points]
        ys = [q[1] for q in w.points]
        lw = 2.6 if w.plates else 1.3
        if w.feedback:
            ax.plot(xs, ys, color="0.45", linewidth=lw, linestyle="--", zorder=1)
            ax.add_patch(FancyArrowPatch(w.points[1], w.points[0], arrowstyle="-|>", mutation_scale=9,
                                         color="0.45", shrinkA=0, shrinkB=0, zorder=1))
        else:
            ax.plot(xs, ys, color=_INK, linewidth=lw, solid_capstyle="butt", zorder=1)
    for n, (x, y) in g.dots.items():
        ax.plot([x, x], [y - DOT, y], color=_INK, linewidth=1.3, zorder=1)
        ax.plot([x], [y], "o", color=_INK, markersize=6, zorder=3)
    for n, (x, y) in g.discards.items():
        ax.plot([x, x], [y - DOT, y], color=_INK, linewidth=1.3, zorder=1)
        for k, half in enumerate((0.16, 0.1, 0.04)):
            ax.plot([x - half, x + half], [y + 0.055 * k] * 2, color=_INK, linewidth=1.5, zorder=3)
    for n, (x, y) in g.outputs.items():
        ax.text(x, y + 0.06, n, ha="center", va="bottom", fontsize=9, zorder=3)
    for n, b in g.boxes.items():
        box = d.boxes[n]
        bx0, by0, bx1, by1 = b.rect
        if b.shape == "state":
            tri = Polygon([(bx0, by1), (bx1, by1), (b.x, by0 - 0.12)], closed=True, facecolor="white",
                          edgecolor="black", linewidth=1.3, zorder=2)
            ax.add_patch(tri)
            ax.text(b.x, b.y + 0.07, b.label, ha="center", va="center", fontsize=9, zorder=4)
            continue
        face = "0.85" if box.observed else ("#fff4d6" if box.kind == "deterministic" else
                                            ("#eef3fb" if box.kind == "factor" else "white"))
        patch = FancyBboxPatch((bx0, by0), bx1 - bx0, by1 - by0, boxstyle="round,pad=0,rounding_size=0.06",
                               facecolor=face, edgecolor="black", linestyle="--" if b.shape == "soft" else "-",
                               linewidth=1.3, zorder=2)
        ax.add_patch(patch)
        ax.text(b.x, b.y, b.label, ha="center", va="center", fontsize=9, zorder=4)
