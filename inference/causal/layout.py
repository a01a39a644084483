"""Where each piece of a string diagram goes: a layered layout with routed wires (no matplotlib).

The picture follows Jacobs, Kissinger & Zanasi ("Causal inference by string diagram surgery"):
wires flow from the **bottom to the top**; each site is a box (a channel) whose input wires are
its parents; a variable used more than once (by several boxes, or by a box and the diagram's
output) leaves its box through a **copy dot**; a marginalised variable that nothing uses ends in a
**discard** (ground) symbol; a hard-intervened box is a **state** (a triangle with its value) with
no input wire; the outputs of the diagram leave at the top, labelled.

The layout is Sugiyama's: a box's layer is the length of the longest wire path into it; a wire
that skips layers gets a dummy node in every layer it crosses (wires to the diagram's output go
through every layer above their box); boxes and dummies are ordered within their layer by
repeated barycentre sweeps (keeping the order with the fewest crossings), then placed by
weighted least squares under the minimum spacing (isotonic regression).  Inside a layer's band a
wire runs straight up through its dummy, which keeps its distance from every box; between two
layers it is a cubic curve with vertical ends, which stays inside the box-free channel between
the bands.  So **no wire passes through a box it does not connect**, by construction, and the
test of this module checks it on generated diagrams.

Plates are frames around their boxes: the boxes (and bundled wires) of a plate are kept together
within each layer; with one plate per level its block floats among the other boxes and any other
box that would fall inside the frame is pushed out; with sibling plates the blocks keep one order
in every layer and are moved apart frame by frame, so no frame holds a box outside its plate.

Example:
    >>> from inference.causal.examples import smoking
    >>> from inference.causal.layout import layout
    >>> g = layout(causal.diagram(smoking))
    >>> sorted(g.dots)  # hidden feeds smoke, cancer and the output
    ['hidden', 'smoke', 'tar']
    >>> [w.dst for w in g.wires if w.src == "hidden"]
    ['smoke', 'cancer', None]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ppl.errors import AddressError, ModelError, nearest

from .diagram import _fmt_value

__all__ = ["BoxGeom", "WireGeom", "PlateGeom", "Geometry", "layout", "layers"]

LAYER = 1.5  #: distance between the centres of two layers
BOX_H = 0.5  #: height of a box
DOT = 0.24  #: how far above its box a copy dot (or a discard) sits
_GAP_BOX, _GAP_MIX, _GAP_DUMMY, _GAP_PLATE = 0.45, 0.28, 0.2, 0.2
_CURVE_POINTS = 12


@dataclass(frozen=True)
class BoxGeom:
    """A box: centre (x, y), width w, height h; shape ``"box"``, ``"state"`` (hard cut), ``"soft"``."""

    name: str
    x: float
    y: float
    w: float
    h: float
    shape: str
    label: str
    layer: int

    @property
    def rect(self) -> tuple:
        """(x0, y0, x1, y1)."""
        return (self.x - self.w / 2, self.y - self.h / 2, self.x + self.w / 2, self.y + self.h / 2)


@dataclass(frozen=True)
class WireGeom:
    """A wire from box `src` to box `dst` (None: the diagram's output), as a polyline.

    `points` samples the drawn path (curves included) from the source's top to the destination's
    bottom; `feedback` marks a wire into an earlier box (a loop's carry), drawn against the flow.
    """

    src: str
    dst: str | None
    points: tuple
    plates: tuple = ()
    feedback: bool = False


@dataclass(frozen=True)
class PlateGeom:
    name: str
    rect: tuple  #: (x0, y0, x1, y1)
    members: tuple


@dataclass
class Geometry:
    """The laid-out diagram: boxes, wires, copy dots, discards, outputs and plate frames."""

    boxes: dict
    wires: list
    dots: dict  #: variable -> (x, y) of its copy dot
    discards: dict  #: variable -> (x, y) of its discard symbol
    outputs: dict  #: variable -> (x, y) where its wire leaves the diagram (the top)
    plates: list = field(default_factory=list)
    title: str = ""

    @property
    def bounds(self) -> tuple:
        xs, ys = [], []
        for b in self.boxes.values():
            x0, y0, x1, y1 = b.rect
            xs += [x0, x1]
            ys += [y0, y1]
        for w in self.wires:
            xs += [p[0] for p in w.points]
            ys += [p[1] for p in w.points]
        for p in self.plates:
            xs += [p.rect[0], p.rect[2]]
            ys += [p.rect[1], p.rect[3]]
        if not xs:
            return (0.0, 0.0, 1.0, 1.0)
        return (min(xs), min(ys), max(xs), max(ys))


def layers(d) -> dict:
    """Box name -> layer: the longest wire path into the box (wires point to later layers).

    A wire from a later site into an earlier one (a loop's feedback through its carry) is laid
    out reversed, so it does not loop the layout.
    """
    order = {n: i for i, n in enumerate(d.boxes)}
    preds: dict = {n: set() for n in d.boxes}
    for b in d.boxes.values():
        for p in b.parents:
            if p == b.name or p not in order:
                continue
            u, v = (p, b.name) if order[p] < order[b.name] else (b.name, p)
            preds[v].add(u)
    out: dict = {}
    for n in d.boxes:  # execution order is a topological order of the (reversed) graph
        out[n] = 1 + max((out[p] for p in preds[n]), default=-1)
    return out


def _label(b) -> str:
    name = b.name if len(b.name) <= 16 else b.name[:15] + "…"
    if b.is_hard:
        return f"{name} = {_fmt_value(b.intervention)}"
    return name


def _width(label: str) -> float:
    return max(0.9, 0.105 * len(label) + 0.4)


def _check_names(d, names: Iterable, what: str) -> tuple:
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    for n in names:
        if n not in d.boxes:
            raise AddressError(f"draw: {what} names {n!r}, which is not a box of the diagram{nearest(n, d.boxes)}.")
    return names


def layout(d, marginalise: Iterable = (), route: bool = True) -> Geometry:
    """Lay the diagram out: positions of boxes, copy dots, discards, outputs, plates; wire paths.

    `marginalise` names variables whose value is not an output of the diagram (their wire ends
    in a discard when no box uses them).  Factor sites have no output.  ``route=False`` draws
    every wire as one straight curve from box to box (for comparison; it may cross boxes).
    """
    marg = set(_check_names(d, marginalise, "marginalise"))
    if not isinstance(route, bool):
        raise ModelError(f"draw: route must be True or False, got {route!r}.")
    boxes = d.boxes
    order = {n: i for i, n in enumerate(boxes)}
    lay = layers(d)

    # the wires of the layout graph, earlier -> later; feedback wires are reversed
    edges: list = []  # (u, v, real_src, real_dst, plates, feedback)
    for w in d.wires:
        if w.src == w.dst or w.src not in order:
            continue
        if order[w.src] < order[w.dst]:
            edges.append((w.src, w.dst, w.src, w.dst, w.plates, False))
        else:
            edges.append((w.dst, w.src, w.src, w.dst, w.plates, True))
    has_output = {n: b.kind != "factor" and n not in marg for n, b in boxes.items()}
    top = max(lay.values(), default=-1) + 1
    for n in boxes:
        if has_output[n]:
            edges.append((n, ("out", n), n, None, (), False))
    consumers = {n: 0 for n in boxes}
    for u, v, src, dst, _, fb in edges:
        if not fb:
            consumers[src] += 1

    # layered graph with dummies
    level = dict(lay)
    sig: dict = {n: tuple(b.plates) for n, b in boxes.items()}
    width: dict = {}
    for n, b in boxes.items():
        width[n] = _width(_label(b)) + (0.3 if b.is_hard else 0.0)
    chains: list = []
    rows: dict = {}
    for n in boxes:
        rows.setdefault(level[n], []).append(n)
    for i, (u, v, src, dst, plates, fb) in enumerate(edges):
        lv = top if dst is None and not fb else level[v]
        if isinstance(v, tuple):
            level[v] = top
            sig[v] = ()
            width[v] = 0.09 * len(_label(boxes[src])) + 0.1  # room for its label
            rows.setdefault(top, []).append(v)
        chain = [u]
        for layer in range(level[u] + 1, lv):
            dn = ("dummy", i, layer)
            level[dn] = layer
            sig[dn] = tuple(plates)
            width[dn] = 0.0
            rows.setdefault(layer, []).append(dn)
            chain.append(dn)
        chain.append(v)
        chains.append(chain)
    nlayers = top + 1 if any(has_output.values()) else top
    succ: dict = {}
    pred: dict = {}
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            succ.setdefault(a, []).append(b)
            pred.setdefault(b, []).append(a)

    # ordering: barycentre sweeps, plate members kept together
    rank = {n: i for i, n in enumerate(boxes)}

    def tie(n):
        if isinstance(n, str):
            return rank[n]
        if n[0] == "out":
            return rank[n[1]]
        return rank[edges[n[1]][2]] + 0.5

    def sweep(rows, down: bool, second, mode):
        new = dict(rows)
        seq = range(1, nlayers) if down else range(nlayers - 2, -1, -1)
        for layer in seq:
            ref = new[layer - 1] if down else new[layer + 1]
            pos = {n: i for i, n in enumerate(ref)}
            nbrs = pred if down else succ
            cur = new[layer]
            keys = {}
            for i, n in enumerate(cur):
                ps = [pos[m] for m in nbrs.get(n, []) if m in pos]
                b = sum(ps) / len(ps) if ps else i * len(ref) / max(len(cur), 1)
                keys[n] = (b, second(n, i))
            new[layer] = _grouped(cur, keys, sig, mode)
        return new

    # barycentre sweeps under five tie-breaking rules (execution order, its reverse, the current
    # order, boxes before wires, wires before boxes), each finished by transpositions; the order
    # with the fewest crossings wins (the first one on a tie)
    def boxes_first(n, i):
        return (not isinstance(n, str), tie(n))

    def wires_first(n, i):
        return (isinstance(n, str), -tie(n))

    # plates: with at most one plate at each level, its block floats among the other nodes
    # (barycentre); with sibling plates, blocks go in a fixed order in every layer, the other
    # nodes all after them or all before them (whichever crosses less), so that no box has to
    # sit between two frames
    siblings: dict = {}
    for sg in set(sig.values()):
        for k in range(len(sg)):
            siblings.setdefault(sg[:k], set()).add(sg[k])
    modes = ("first", "last") if any(len(v) > 1 for v in siblings.values()) else ("bary",)
    best, best_c, best_mode = None, None, modes[0]
    for mode, second in [(m, f) for m in modes for f in
                         (lambda n, i: tie(n), lambda n, i: -tie(n), lambda n, i: i, boxes_first, wires_first)]:
        cur = {layer: _grouped(rows.get(layer, []), {n: (tie(n), second(n, i)) for i, n in enumerate(rows.get(layer, []))}, sig, mode)
               for layer in range(nlayers)}
        found, found_c = cur, _crossings(cur, succ, nlayers)
        for _ in range(6):
            for down in (True, False):
                cur = sweep(cur, down, second, mode)
                c = _crossings(cur, succ, nlayers)
                if c < found_c:
                    found, found_c = cur, c
        found = _transpose(_sift_chains(found, chains, succ, sig, nlayers, mode), pred, succ, sig, nlayers)
        found_c = _crossings(found, succ, nlayers)
        if best_c is None or found_c < best_c:
            best, best_c, best_mode = found, found_c, mode
    rows = best

    # coordinates: weighted least squares towards the neighbours, under the spacing
    ypos = {n: level[n] * LAYER for n in level}
    x: dict = {}
    for layer, row in rows.items():
        acc = 0.0
        for i, n in enumerate(row):
            if i:
                acc += _sep(row[i - 1], n, width, sig)
            x[n] = acc
        for n in row:
            x[n] -= acc / 2
    for it in range(40):
        seq = list(range(nlayers)) if it % 2 == 0 else list(range(nlayers - 1, -1, -1))
        for layer in seq:
            row = rows[layer]
            if not row:
                continue
            target, weight = [], []
            for n in row:
                ws = tx = 0.0
                for m in pred.get(n, []) + succ.get(n, []):
                    wgt = 4.0 if (not isinstance(n, str) and not isinstance(m, str)) else 1.0
                    ws += wgt
                    tx += wgt * x[m]
                target.append(tx / ws if ws else x[n])
                weight.append(max(ws, 0.5))
            seps = [0.0] + [_sep(a, b, width, sig) for a, b in zip(row, row[1:])]
            for n, v in zip(row, _spaced_fit(target, weight, seps)):
                x[n] = v
    _straighten(chains, rows, x, width, sig)
    if best_mode == "bary":
        _push_out_of_frames(rows, x, width, sig, level, boxes, best_mode)
    else:
        _separate_blocks(rows, x, width, sig, level, boxes, best_mode)

    # geometry
    bgeo = {}
    for n, b in boxes.items():
        shape = "state" if b.is_hard else ("soft" if b.is_soft else "box")
        bgeo[n] = BoxGeom(n, x[n], ypos[n], width[n], BOX_H, shape, _label(b), lay[n])
    dots = {n: (x[n], ypos[n] + BOX_H / 2 + DOT) for n in boxes if consumers[n] >= 2}
    discards = {n: (x[n], ypos[n] + BOX_H / 2 + DOT) for n in boxes
                if consumers[n] == 0 and boxes[n].kind != "factor"}
    outputs = {}
    top_y = (nlayers - 1) * LAYER
    # ports at the bottom of each box, ordered by where their wires come from
    arrivals: dict = {}
    for ci, chain in enumerate(chains):
        v = chain[-1]
        if isinstance(v, str):
            prev = chain[-2]
            arrivals.setdefault(v, []).append((x[prev], ci))
    port: dict = {}
    for v, lst in arrivals.items():
        lst.sort()
        k = len(lst)
        step = min(0.22, (width[v] - 0.2) / max(k - 1, 1))
        for j, (_, ci) in enumerate(lst):
            port[ci] = x[v] + (j - (k - 1) / 2) * step
    wires = []
    for ci, (chain, (u, v, src, dst, plates, fb)) in enumerate(zip(chains, edges)):
        pts = [(x[u] + (width[u] / 2 - 0.12 if fb else 0.0), ypos[u] + BOX_H / 2)]
        if not fb and u in dots:
            pts.append(dots[u])
        if route:
            for dn in chain[1:-1]:
                pts.append((x[dn], ypos[dn] - BOX_H / 2))
                pts.append((x[dn], ypos[dn] + BOX_H / 2))
        if isinstance(v, tuple):
            end = (x[v], top_y)
            outputs[src] = end
        else:
            end = (port[ci], ypos[v] - BOX_H / 2)
        pts.append(end)
        wires.append(WireGeom(src, dst, tuple(_smooth(pts)), tuple(plates), fb))
    plates = _plate_frames(boxes, bgeo, dots, discards)
    return Geometry(bgeo, wires, dots, discards, outputs, plates, getattr(d.model, "name", "model"))


def _grouped(row, keys, sig, mode: str = "bary", depth: int = 0):
    """Order `row` by key, keeping the nodes of a plate together (a block).

    ``mode="bary"``: a block goes where the mean key of its members puts it; ``"first"`` /
    ``"last"``: blocks by plate name, before / after the nodes outside them.
    """
    groups: dict = {}
    singles = []
    for n in row:
        s = sig[n]
        if len(s) > depth:
            groups.setdefault(s[depth], []).append(n)
        else:
            singles.append(n)
    if mode == "bary":
        items = [(keys[n], [n]) for n in singles]
        for g, members in groups.items():
            k = sum(keys[m][0] for m in members) / len(members)
            items.append(((k, min(keys[m][1] for m in members)), _grouped(members, keys, sig, mode, depth + 1)))
        items.sort(key=lambda t: t[0])
        return [n for _, ms in items for n in ms]
    blocks = [n for g in sorted(groups) for n in _grouped(groups[g], keys, sig, mode, depth + 1)]
    rest = sorted(singles, key=lambda n: keys[n])
    return blocks + rest if mode == "first" else rest + blocks


def _block_key(s: tuple, mode: str) -> tuple:
    """Where a node with plates `s` goes in a layer under a fixed block order (see _grouped)."""
    return tuple((0, p) for p in s) + ((1 if mode == "first" else -1, ""),)


def _sift_chains(rows, chains, succ, sig, nlayers, mode: str = "bary"):
    """Move each long wire (its dummies, and its output end) to the far left or far right of
    every layer it crosses when that removes crossings (wires to the output often belong outside)."""
    rows = {k: list(v) for k, v in rows.items()}
    best_c = _crossings(rows, succ, nlayers)
    for chain in sorted(chains, key=len, reverse=True):
        run = [n for n in chain[1:] if not isinstance(n, str) and sig[n] == ()]
        if not run or best_c == 0:
            continue
        # under a fixed block order, the nodes outside plates keep their side of the blocks
        for side in {"bary": ("left", "right"), "first": ("right",), "last": ("left",)}[mode]:
            trial = dict(rows)
            for n in run:
                layer = next(k for k, row in rows.items() if n in row)
                row = [m for m in trial[layer] if m != n]
                trial[layer] = [n] + row if side == "left" else row + [n]
            c = _crossings(trial, succ, nlayers)
            if c < best_c:
                rows, best_c = trial, c
    return rows


def _transpose(rows, pred, succ, sig, nlayers, passes: int = 8):
    """Swap neighbours in a layer (same plates) while that removes crossings with both adjacent layers."""
    rows = {k: list(v) for k, v in rows.items()}

    def pair(u, v, pos, nbrs) -> int:  # crossings between u's and v's wires when u is left of v
        a = [pos[m] for m in nbrs.get(u, []) if m in pos]
        b = [pos[m] for m in nbrs.get(v, []) if m in pos]
        return sum(1 for i in a for j in b if i > j)

    for _ in range(passes):
        improved = False
        for layer in range(nlayers):
            row = rows[layer]
            below = {n: i for i, n in enumerate(rows.get(layer - 1, []))}
            above = {n: i for i, n in enumerate(rows.get(layer + 1, []))}
            for i in range(len(row) - 1):
                u, v = row[i], row[i + 1]
                if sig[u] != sig[v]:
                    continue
                now = pair(u, v, below, pred) + pair(u, v, above, succ)
                swapped = pair(v, u, below, pred) + pair(v, u, above, succ)
                if swapped < now:
                    row[i], row[i + 1] = v, u
                    improved = True
        if not improved:
            break
    return rows


def _crossings(rows, succ, nlayers) -> int:
    c = 0
    for layer in range(nlayers - 1):
        pos = {n: i for i, n in enumerate(rows[layer + 1])}
        segs = [(i, pos[m]) for i, n in enumerate(rows[layer]) for m in succ.get(n, []) if m in pos]
        for a in range(len(segs)):
            for b in range(a + 1, len(segs)):
                (p0, q0), (p1, q1) = segs[a], segs[b]
                if (p0 - p1) * (q0 - q1) < 0:
                    c += 1
    return c


def _sep(a, b, width, sig) -> float:
    wa, wb = width[a], width[b]
    ba, bb = isinstance(a, str), isinstance(b, str)
    gap = _GAP_BOX if (ba and bb) else (_GAP_MIX if (ba or bb) else _GAP_DUMMY)
    frames = len(set(sig[a]) ^ set(sig[b]))
    return (wa + wb) / 2 + gap + _GAP_PLATE * frames


def _spaced_fit(target, weight, seps):
    """Weighted least squares x close to target with x[i] - x[i-1] >= seps[i] (pool adjacent violators)."""
    c, acc = [], 0.0
    for s in seps:
        acc += s
        c.append(acc)
    t = [a - b for a, b in zip(target, c)]
    blocks: list = []  # [value, weight, count]
    for ti, wi in zip(t, weight):
        blocks.append([ti, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    y = [v for v, _, n in blocks for _ in range(n)]
    return [a + b for a, b in zip(y, c)]


def _straighten(chains, rows, x, width, sig) -> None:
    """Give each long wire one x for all its dummies where the spacing allows (straight runs)."""
    where = {n: (layer, i) for layer, row in rows.items() for i, n in enumerate(row)}

    def fits(n, v) -> bool:
        layer, i = where[n]
        row = rows[layer]
        if i > 0 and v < x[row[i - 1]] + _sep(row[i - 1], n, width, sig) - 1e-9:
            return False
        if i + 1 < len(row) and v > x[row[i + 1]] - _sep(n, row[i + 1], width, sig) + 1e-9:
            return False
        return True

    for chain in sorted(chains, key=len, reverse=True):
        run = [n for n in chain[1:] if not isinstance(n, str)]  # dummies and the output terminal
        if len(run) < 2:
            continue
        candidates = sorted({x[n] for n in run} | {x[chain[0]]}, key=lambda v: sum(abs(x[n] - v) for n in run))
        for v in candidates:
            if all(fits(n, v) for n in run):
                for n in run:
                    x[n] = v
                break


def _frame_pad(p: str, boxes) -> float:
    """How far a plate's frame stands off its boxes (outer frames further than inner ones)."""
    members = [b for b in boxes.values() if p in b.plates]
    inner = max(len(b.plates) for b in members) - min(b.plates.index(p) for b in members)
    return _GAP_PLATE * inner * 0.9


def _separate_blocks(rows, x, width, sig, level, boxes, mode: str) -> None:
    """Under a fixed block order, move each plate's block (and everything after it in its layers)
    right until its frame clears everything before it in the order, over all the layers the frame
    spans; boxes outside plates likewise clear the frames before them."""
    where = {n: layer for layer, row in rows.items() for n in row}
    key = {n: _block_key(sig[n], mode) for n in where}

    def shift_from(layer: int, start, dx: float) -> None:
        """Shift node `start` (a name), or the first node at or after block key `start`, and all after it."""
        row = rows[layer]
        i = row.index(start) if start in where else next((j for j, m in enumerate(row) if key[m] >= start), len(row))
        for m in row[i:]:
            x[m] += dx

    def place(prefix: tuple, prev: list) -> None:
        kids = sorted({sig[n][len(prefix)] for n in boxes if sig[n][: len(prefix)] == prefix and len(sig[n]) > len(prefix)})
        singles = sorted((n for n in boxes if sig[n] == prefix), key=lambda n: (level[n], rows[level[n]].index(n)))
        units = [("block", q) for q in kids]
        units = units + [("single", n) for n in singles] if mode == "first" else [("single", n) for n in singles] + units
        for kind, u in units:
            if kind == "single":
                layer = level[u]
                need = max((r for a, b, r in prev if a <= layer <= b), default=None)
                left = x[u] - width[u] / 2
                if need is not None and left < need + 0.15:
                    shift_from(layer, u, need + 0.15 - left)
                prev.append((layer, layer, x[u] + width[u] / 2))
                continue
            path = prefix + (u,)
            members = [n for n in boxes if sig[n][: len(path)] == path]
            l0, l1 = min(level[n] for n in members), max(level[n] for n in members)
            pad = _frame_pad(u, boxes)
            lo = min(x[n] - width[n] / 2 for n in members) - pad
            need = max((r for a, b, r in prev if a <= l1 and l0 <= b), default=None)
            start = _block_key(path, mode)[: len(path)]
            if need is not None and lo < need + 0.15:
                for layer in range(l0, l1 + 1):
                    shift_from(layer, start, need + 0.15 - lo)
            place(path, [])
            hi = max(x[n] + width[n] / 2 for n in members) + pad
            prev.append((l0, l1, hi))

    place((), [])


def _push_out_of_frames(rows, x, width, sig, level, boxes, mode: str = "bary") -> None:
    """Move boxes that are not in a plate out of that plate's frame (span of its members)."""
    plates = sorted({p for n in boxes for p in sig[n]})
    for _ in range(50):
        moved = False
        for p in plates:
            members = [n for n in boxes if p in sig[n]]
            depth = max(len(sig[n]) for n in members)
            pad = _GAP_PLATE * (1 + depth - min(sig[n].index(p) for n in members))
            lo = min(x[n] - width[n] / 2 for n in members) - pad
            hi = max(x[n] + width[n] / 2 for n in members) + pad
            l0, l1 = min(level[n] for n in members), max(level[n] for n in members)
            for layer in range(l0, l1 + 1):
                row = rows[layer]
                for i, n in enumerate(row):
                    if not isinstance(n, str) or p in sig[n]:
                        continue
                    left, right = x[n] - width[n] / 2, x[n] + width[n] / 2
                    if right <= lo - 0.05 or left >= hi + 0.05:
                        continue
                    # push it (and everything beyond it) to the side of the frame it is on: in the
                    # fixed order of the blocks, or beside the members of its layer
                    here = [x[m] for m in members if level[m] == layer]
                    if mode != "bary":
                        first = next(sig[m] for m in members)
                        path = _block_key(first, mode)[: first.index(p) + 1]
                        to_left = _block_key(sig[n], mode)[: len(path)] < path
                    else:
                        to_left = x[n] < (sum(here) / len(here) if here else (lo + hi) / 2)
                    if to_left:
                        shift = right - (lo - 0.1)
                        for m in row[: i + 1]:
                            x[m] -= shift
                    else:
                        shift = (hi + 0.1) - left
                        for m in row[i:]:
                            x[m] += shift
                    moved = True
        if not moved:
            return


def _plate_frames(boxes, bgeo, dots, discards) -> list:
    plates = []
    names = sorted({p for b in boxes.values() for p in b.plates})
    for p in names:
        members = [n for n, b in boxes.items() if p in b.plates]
        pad = _frame_pad(p, boxes)
        x0 = min(bgeo[n].rect[0] for n in members) - pad
        x1 = max(bgeo[n].rect[2] for n in members) + pad
        y0 = min(bgeo[n].rect[1] for n in members) - pad
        y1 = max(bgeo[n].rect[3] for n in members) + pad
        plates.append(PlateGeom(p, (x0, y0, x1, y1), tuple(members)))
    return plates


def _smooth(pts) -> list:
    """The drawn path: straight runs inside a layer band, vertical-ended cubics between them."""
    out = [pts[0]]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if abs(x1 - x0) < 1e-12 or abs(y1 - y0) < 1e-12:
            out.append((x1, y1))
            continue
        t = (y1 - y0) / 2
        c0, c1 = (x0, y0 + t), (x1, y1 - t)
        for k in range(1, _CURVE_POINTS + 1):
            s = k / _CURVE_POINTS
            a, b, c, e = (1 - s) ** 3, 3 * (1 - s) ** 2 * s, 3 * (1 - s) * s**2, s**3
            out.append((a * x0 + b * c0[0] + c * c1[0] + e * x1, a * y0 + b * c0[1] + c * c1[1] + e * y1))
    return out
