"""Drawing diagrams as string diagrams: the geometry of the layout on generated diagrams.

Checked without rendering (``inference.causal.layout``): every wire segment misses every box
other than its own two ends, wires flow bottom to top, a copy dot sits exactly where a variable
has two or more consumers (boxes or the output), a discard exactly where a marginalised variable
has none, hard-intervened boxes are states with no incoming wire, plate frames hold their
members and no other box.  Planted-bug twins: the old column layout with straight wires, and our
layout with routing disabled, must fail the check on the paper's smoking model.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ppl
from inference import causal
from inference.causal.diagram import Box, Diagram, Mechanism
from inference.causal.examples import smoking
from inference.causal.layout import LAYER, BoxGeom, Geometry, WireGeom, layers, layout

pytestmark = [pytest.mark.exact]

MARGIN = 0.03  # a wire must keep at least this far from a box it does not connect


# ---------------------------------------------------------------------------------------------
# the geometry check


def _hits(p, q, rect, margin=MARGIN) -> bool:
    """Does segment p-q meet the rectangle grown by `margin`? (Liang-Barsky clipping)"""
    x0, y0, x1, y1 = rect[0] - margin, rect[1] - margin, rect[2] + margin, rect[3] + margin
    dx, dy = q[0] - p[0], q[1] - p[1]
    t0, t1 = 0.0, 1.0
    for num, den in ((p[0] - x0, -dx), (x1 - p[0], dx), (p[1] - y0, -dy), (y1 - p[1], dy)):
        if den == 0:
            if num < 0:
                return False
            continue
        t = num / den
        if den < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def violations(d: Diagram, g: Geometry, marginalise=()) -> list:
    """Everything wrong with the geometry `g` of diagram `d` (empty when it is right)."""
    bad = []
    order = list(d.boxes)
    marg = set(marginalise)
    for w in g.wires:
        if w.feedback:
            continue
        ends = {w.src, w.dst}
        for p, q in zip(w.points, w.points[1:]):
            for n, b in g.boxes.items():
                if n not in ends and _hits(p, q, b.rect):
                    bad.append(f"wire {w.src}->{w.dst} crosses box {n}")
            if q[1] < p[1] - 1e-9:
                bad.append(f"wire {w.src}->{w.dst} runs downwards")
        if not w.points[-1][1] > w.points[0][1]:
            bad.append(f"wire {w.src}->{w.dst} does not rise")
        s = g.boxes[w.src].rect
        if abs(w.points[0][1] - s[3]) > 1e-9 or not s[0] <= w.points[0][0] <= s[2]:
            bad.append(f"wire {w.src}->{w.dst} does not leave the top of {w.src}")
        if w.dst is not None:
            t = g.boxes[w.dst].rect
            if abs(w.points[-1][1] - t[1]) > 1e-9 or not t[0] <= w.points[-1][0] <= t[2]:
                bad.append(f"wire {w.src}->{w.dst} does not enter the bottom of {w.dst}")
    # one drawn wire per wire of the diagram, plus one per output
    want = sorted((w.src, w.dst) for w in d.wires if w.src != w.dst)
    want += sorted((n, None) for n, b in d.boxes.items() if b.kind != "factor" and n not in marg)
    got = [(w.src, w.dst) for w in g.wires]
    if sorted(got, key=repr) != sorted(want, key=repr):
        bad.append(f"drawn wires {sorted(got, key=repr)} != diagram's {sorted(want, key=repr)}")
    # copy dots and discards, from the diagram (not from the layout)
    consumers = {n: sum(1 for b in d.boxes.values() if n in b.parents and order.index(n) < order.index(b.name))
                 + (d.boxes[n].kind != "factor" and n not in marg) for n in d.boxes}
    if set(g.dots) != {n for n, c in consumers.items() if c >= 2}:
        bad.append(f"copy dots at {sorted(g.dots)}, consumers {consumers}")
    if set(g.discards) != {n for n, c in consumers.items() if c == 0 and d.boxes[n].kind != "factor"}:
        bad.append(f"discards at {sorted(g.discards)}, consumers {consumers}")
    for n, b in d.boxes.items():
        if b.is_hard and (g.boxes[n].shape != "state" or any(w.dst == n for w in g.wires)):
            bad.append(f"hard-intervened {n} is not a state without inputs")
    # boxes apart; wires into boxes from their layer below
    geo = list(g.boxes.values())
    for i, a in enumerate(geo):
        for b in geo[i + 1:]:
            if a.rect[0] < b.rect[2] and b.rect[0] < a.rect[2] and a.rect[1] < b.rect[3] and b.rect[1] < a.rect[3]:
                bad.append(f"boxes {a.name} and {b.name} overlap")
    # plate frames: hold their members, and no other box
    for p in g.plates:
        x0, y0, x1, y1 = p.rect
        for n, b in g.boxes.items():
            bx0, by0, bx1, by1 = b.rect
            inside = x0 <= bx0 and bx1 <= x1 and y0 <= by0 and by1 <= y1
            meets = bx0 < x1 and x0 < bx1 and by0 < y1 and y0 < by1
            if p.name in d.boxes[n].plates and not inside:
                bad.append(f"box {n} sticks out of its plate {p.name}")
            if p.name not in d.boxes[n].plates and meets:
                bad.append(f"box {n} is drawn inside plate {p.name} it is not in")
    return list(dict.fromkeys(bad))  # each fault once


# ---------------------------------------------------------------------------------------------
# generated diagrams


PLATES = [(), (), ("N",), ("N", "M"), ("K",)]


@st.composite
def diagrams(draw, max_nodes: int = 10):
    """Random DAGs (≤ max_nodes boxes) with kinds, plates, hard/soft cuts, and a marginalised set."""
    n = draw(st.integers(1, max_nodes))
    names = [f"v{i}" for i in range(n)]
    boxes = OrderedDict()
    use_plates = draw(st.booleans())
    for i, v in enumerate(names):
        parents = tuple(u for u in names[:i] if draw(st.integers(0, 9)) < 3)
        kind = draw(st.sampled_from(["sample", "sample", "sample", "deterministic", "factor"]))
        plates = draw(st.sampled_from(PLATES)) if use_plates else ()
        cut = draw(st.integers(0, 9)) if kind != "factor" else 9
        intervention = None
        if cut == 0:
            intervention, parents = draw(st.integers(0, 2)), ()
        elif cut == 1 and kind == "sample":
            intervention = Mechanism(lambda: None, parents=parents)
        boxes[v] = Box(name=v, kind=kind, parents=parents, plates=plates, intervention=intervention,
                       observed=draw(st.booleans()) and kind == "sample" and intervention is None)
    marg = tuple(v for v in names if draw(st.integers(0, 3)) == 0)
    return Diagram(smoking, (), {}, boxes), marg


@settings(deadline=None, max_examples=100)
@given(diagrams())
def test_generated_diagrams_have_routed_wires_dots_and_states(dm):
    d, marg = dm
    g = layout(d, marginalise=marg)
    assert violations(d, g, marg) == []


# ---------------------------------------------------------------------------------------------
# the paper's smoking model, before and after surgery


def _column_layout(d) -> Geometry:
    """The old drawing: one box per layer in a column, straight wires from box to box (the twin)."""
    lay = layers(d)
    boxes = {n: BoxGeom(n, 0.0, lay[n] * LAYER, 0.9, 0.5, "box", n, lay[n]) for n in d.boxes}
    wires = [WireGeom(w.src, w.dst, ((0.0, boxes[w.src].rect[3]), (0.0, boxes[w.dst].rect[1]))) for w in d.wires]
    top = (max(lay.values()) + 1) * LAYER
    wires += [WireGeom(n, None, ((0.0, boxes[n].rect[3]), (0.0, top))) for n in d.boxes]
    return Geometry(boxes, wires, {n: (0.0, 0.0) for n in d.boxes if n != "cancer"}, {}, {})


@pytest.fixture(scope="module")
def smoking_diagram():
    return causal.diagram(smoking)


def test_smoking_confounder_wire_in_plain_sight_before_and_after_surgery(smoking_diagram):
    d = smoking_diagram
    cut = causal.surgery(d, {"smoke": 1})
    for dd in (d, cut):
        for marg in ((), ("hidden",)):
            g = layout(dd, marginalise=marg)
            assert violations(dd, g, marg) == []
            (w,) = [w for w in g.wires if (w.src, w.dst) == ("hidden", "cancer")]
            for other in ("smoke", "tar"):  # the confounder's wire runs beside the chain, not behind it
                b = g.boxes[other].rect
                assert all(x < b[0] - MARGIN or x > b[2] + MARGIN for x, y in w.points if b[1] <= y <= b[3])
    g = layout(cut, marginalise=("hidden",))
    assert g.boxes["smoke"].shape == "state" and g.boxes["smoke"].label == "smoke = 1"
    assert not any(w.dst == "smoke" for w in g.wires)  # the wire hidden -> smoke is cut
    assert set(g.dots) == {"smoke", "tar"} and g.discards == {}  # hidden now feeds cancer only
    assert set(g.outputs) == {"smoke", "tar", "cancer"}


def test_planted_twins_fail_the_geometry_check(smoking_diagram):
    d = smoking_diagram
    cut = causal.surgery(d, {"smoke": 1})
    # the old column drawing hides the confounder: hidden -> cancer runs behind smoke and tar
    bad = violations(d, _column_layout(d))
    assert "wire hidden->cancer crosses box smoke" in bad and "wire hidden->cancer crosses box tar" in bad
    # our layout with routing disabled (straight wires) crosses boxes too
    hid = ("hidden",)  # the paper's picture: the confounder is not an output
    straight = violations(d, layout(d, marginalise=hid, route=False), hid)
    assert any(v.startswith("wire hidden->cancer crosses box") for v in straight), straight
    # a drawing that forgets the cut (smoke still a box, fed by hidden) is caught
    forgot = violations(cut, layout(d, marginalise=hid), hid)
    assert "hard-intervened smoke is not a state without inputs" in forgot
    # a drawing that forgets a copy dot is caught
    g = layout(d)
    g.dots.pop("hidden")
    assert any(v.startswith("copy dots") for v in violations(d, g))


def test_discards_factors_and_feedback():
    boxes = OrderedDict(
        a=Box("a", "sample", ()),
        b=Box("b", "sample", ("a", "c")),  # c runs later: a loop's feedback through its carry
        c=Box("c", "sample", ("b",)),
        f=Box("f", "factor", ("a", "c")),
    )
    d = Diagram(smoking, (), {}, boxes)
    g = layout(d, marginalise=("c",))
    assert violations(d, g, ("c",)) == []
    (fb,) = [w for w in g.wires if w.feedback]
    assert (fb.src, fb.dst) == ("c", "b")
    assert "c" not in g.discards and "f" not in g.outputs  # c feeds f; a factor has no output
    g2 = layout(d, marginalise=("c", "b"))
    assert g2.discards == {} and set(g2.dots) == {"a"}  # b feeds c only, c feeds f only
    assert violations(d, g2, ("c", "b")) == []
    d3 = Diagram(smoking, (), {}, OrderedDict(a=Box("a", "sample", ()), b=Box("b", "sample", ("a",))))
    g3 = layout(d3, marginalise=("b",))
    assert set(g3.discards) == {"b"} and set(g3.dots) == {"a"}
    assert violations(d3, g3, ("b",)) == []


def test_plates_are_frames_around_their_boxes():
    # eight schools' shape, plus a nested plate and a box outside every plate in the same layers
    boxes = OrderedDict(
        mu=Box("mu", "sample", ()),
        tau=Box("tau", "sample", ()),
        free=Box("free", "sample", ()),
        theta=Box("theta", "sample", ("mu", "tau"), plates=("school",)),
        other=Box("other", "sample", ("free", "mu")),
        y=Box("y", "sample", ("theta",), observed=True, plates=("school",)),
        z=Box("z", "sample", ("theta", "other"), plates=("school", "pupil")),
    )
    d = Diagram(smoking, (), {}, boxes)
    g = layout(d)
    assert violations(d, g) == []
    frames = {p.name: p for p in g.plates}
    assert set(frames["school"].members) == {"theta", "y", "z"} and frames["pupil"].members == ("z",)
    assert {w.plates for w in g.wires if (w.src, w.dst) == ("theta", "y")} == {("school",)}


def test_render_svg_png_and_notebook(tmp_path, smoking_diagram):
    d = smoking_diagram
    fig = d.draw(marginalise=["hidden"])
    ax = fig.axes[0]
    assert len(ax.patches) >= len(d.boxes) and ax.get_title() == "smoking"
    cut = causal.surgery(d, {"smoke": 1})
    assert cut._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in cut._repr_svg_()[:2000]
    assert open(d.save(str(tmp_path / "d.svg")), encoding="utf-8").read(200).lstrip().startswith("<?xml")
    assert open(cut.to_png(str(tmp_path / "c.png")), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, axes = plt.subplots(1, 2)
    assert d.draw(ax=axes[1]) is f  # draws into the given axes
    plt.close(f)
    # the example script that makes the tutorial's pictures
    import runpy

    script = runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" / "causal_draw.py"))
    for path in script["main"](str(tmp_path / "img")):
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_errors_name_what_is_wrong(tmp_path, smoking_diagram):
    d = smoking_diagram
    with pytest.raises(ppl.AddressError, match="marginalise names 'hiden'.*hidden"):
        d.draw(marginalise=["hiden"])
    with pytest.raises(ppl.ModelError, match=r"\.svg or \.png.*d\.pdf"):
        d.save(str(tmp_path / "d.pdf"))
