"""The smoking model of Jacobs, Kissinger & Zanasi drawn as a string diagram, before and after surgery.

A hidden genotype confounds smoking and cancer; tar mediates smoking's effect::

    hidden -> smoke -> tar -> cancer,   hidden -> cancer

``causal.diagram(smoking).draw(marginalise=["hidden"])`` draws the observational distribution
of (smoke, tar, cancer) as in the paper: wires flow upwards, a copy dot where a variable feeds
several boxes and the output, the hidden genotype not an output.  Its wire into ``cancer`` runs
beside the chain smoke -> tar, in plain sight.  ``causal.surgery(d, {"smoke": 1})`` replaces the
``smoke`` box by a state (a triangle holding the value) and cuts the wire from ``hidden`` into
it; the confounder's wire into ``cancer`` stays.

Run with ``.venv/bin/python examples/causal_draw.py [output folder]`` (a few seconds); it writes
``causal-smoking.png`` and ``causal-smoking-surgery.png`` (default folder: docs/tutorials/img).
"""

from __future__ import annotations

import os
import sys

from inference import causal
from inference.causal.examples import smoking


def main(folder: str) -> list:
    os.makedirs(folder, exist_ok=True)
    d = causal.diagram(smoking)
    cut = causal.surgery(d, {"smoke": 1})
    out = []
    for diagram, name, title in (
        (d, "causal-smoking.png", "smoking: P(smoke, tar, cancer)"),
        (cut, "causal-smoking-surgery.png", "after surgery: do(smoke = 1)"),
    ):
        fig = diagram.draw(marginalise=["hidden"], title=title)
        path = os.path.join(folder, name)
        fig.savefig(path, dpi=130, bbox_inches="tight")
        out.append(path)
    print(d)
    print(cut)
    return out


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "docs", "tutorials", "img")
    for p in main(target):
        print("wrote", os.path.normpath(p))
