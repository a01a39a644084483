"""Drawing a :class:`Diagram` with matplotlib (imported only when drawing).

Layered layout: a box's layer is the length of the longest wire path into it, so wires point
downwards (the string-diagram convention of the paper: inputs at the top, outputs at the
bottom).  Observed boxes are shaded; hard-intervened boxes are drawn as a black point mass with
their value; soft-intervened boxes have a dashed border; wires bundled by plates are thick and
labelled with the plate names.
"""

from __future__ import annotations

from typing import Any


def layers(d) -> dict:
    """Box name -> layer (longest path from a box without parents)."""
    out: dict = {}
    for b in d.boxes.values():  # execution order is a topological order
        # a parent not yet placed is a feedback wire (a loop's carry): it does not set the layer
        out[b.name] = 1 + max((out[p] for p in b.parents if p in out), default=-1)
    return out


def layout(d) -> dict:
    """Box name -> (x, y) position: layers top to bottom, boxes centred within a layer."""
    lay = layers(d)
    rows: dict = {}
    for n, l in lay.items():
        rows.setdefault(l, []).append(n)
    pos = {}
    for l, names in rows.items():
        # order a layer by the mean x of its parents (fewer crossings)
        if l > 0:
            def key(n):
                ps = [pos[p][0] for p in d.boxes[n].parents if p in pos]
                return sum(ps) / len(ps) if ps else 0.0

            names = sorted(names, key=key)
        k = len(names)
        for i, n in enumerate(names):
            pos[n] = (i - (k - 1) / 2.0, -float(l))
    return pos


def draw(d, ax: Any = None, figsize: tuple | None = None):
    """A matplotlib Figure of the diagram (see the module docstring for the conventions)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    pos = layout(d)
    width = max((abs(x) for x, _ in pos.values()), default=0.0) * 2 + 2
    height = max((-y for _, y in pos.values()), default=0.0) + 1
    if ax is None:
        fig = Figure(figsize=figsize or (max(3.0, 1.8 * width), max(2.0, 1.3 * height + 0.6)))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    bw, bh = 0.8, 0.36
    for w in d.wires:
        (x0, y0), (x1, y1) = pos[w.src], pos[w.dst]
        thick = 2.8 if w.plates else 1.2
        arrow = FancyArrowPatch(
            (x0, y0 - bh / 2), (x1, y1 + bh / 2), arrowstyle="-|>", mutation_scale=10,
            linewidth=thick, color="0.25", shrinkA=0, shrinkB=0,
        )
        ax.add_patch(arrow)
        if w.plates:
            ax.text((x0 + x1) / 2 + 0.05, (y0 + y1) / 2, ",".join(w.plates), fontsize=7, color="tab:blue")
    for b in d.boxes.values():
        x, y = pos[b.name]
        if b.is_hard:
            ax.plot([x], [y], "o", color="black", markersize=9, zorder=3)
            ax.text(x + 0.12, y, f"{b.name} := {_short(b.intervention)}", va="center", fontsize=9, zorder=4)
            continue
        face = "0.85" if b.observed else ("#fff4d6" if b.kind == "deterministic" else "white")
        style = "--" if b.is_soft else "-"
        patch = FancyBboxPatch(
            (x - bw / 2, y - bh / 2), bw, bh, boxstyle="round,pad=0.02", facecolor=face,
            edgecolor="black", linestyle=style, linewidth=1.2, zorder=2,
        )
        ax.add_patch(patch)
        label = b.name if len(b.name) <= 14 else b.name[:13] + "…"
        ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=3)
        if b.plates:
            ax.text(x + bw / 2, y - bh / 2 - 0.05, "[" + ",".join(b.plates) + "]", fontsize=7,
                    ha="right", va="top", color="tab:blue")
    xs = [p[0] for p in pos.values()] or [0.0]
    ys = [p[1] for p in pos.values()] or [0.0]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 1.2)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"{getattr(d.model, 'name', 'model')}", fontsize=10)
    return fig


def _short(v: Any) -> str:
    import numpy as np

    a = np.asarray(v)
    if a.ndim == 0:
        x = a.item()
        return f"{x:.3g}" if isinstance(x, float) else str(x)
    return f"{a.dtype}{list(a.shape)}"
