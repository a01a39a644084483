"""Planted-bug twins for the SMC tests: one exact piece of library source replaced, in process.

``plant(monkeypatch, "inference/smc/blocks.py", (find, replace), ...)`` compiles the module's source
with `find` replaced by `replace` (the text must occur exactly once, so a twin whose code has
moved fails loudly instead of testing nothing) and installs the changed functions and methods
over the shipped ones for the duration of the test: module functions are replaced wherever the
package holds them (``blocks.resample`` and ``smc.resample`` alike), methods are replaced on
the shipped classes.  A twin so planted breaks the block itself — the same code path the real
test runs — rather than a stand-in for it, and runs through the same check with the same seed.

Only functions whose code overlaps the changed lines are replaced; everything else is the
shipped code.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _span(code: types.CodeType) -> tuple[int, int]:
    lines = [ln for _, _, ln in code.co_lines() if ln is not None]
    lo = min([code.co_firstlineno, *lines])
    hi = max([code.co_firstlineno, *lines])
    for c in code.co_consts:  # nested functions and lambdas
        if isinstance(c, types.CodeType):
            hi = max(hi, _span(c)[1])
    return lo, hi


def plant(monkeypatch, file: str, *edits: tuple[str, str]) -> list[str]:
    """Install the module `file` (path from the repository root) with each ``(find, replace)``
    of `edits` applied (each `find` must occur exactly once).

    Returns the qualified names replaced (at least one, else the twin plants nothing)."""
    path = ROOT / file
    src = path.read_text()
    spans = []
    for find, replace in edits:
        n = src.count(find)
        assert n == 1, f"plant: the text to replace occurs {n} times in {file} (must be once): {find!r}"
        start = src[: src.index(find)].count("\n") + 1
        src = src.replace(find, replace, 1)
        spans.append((start, start + replace.count("\n")))
    modname = file[:-3].replace("/", ".")
    orig = importlib.import_module(modname)
    ns = {"__name__": modname, "__package__": modname.rpartition(".")[0], "__file__": str(path)}
    exec(compile(src, f"<planted {file}>", "exec"), ns)

    def touched(fn) -> bool:
        code = getattr(fn, "__code__", None)
        if code is None or code.co_filename != f"<planted {file}>":
            return False
        lo, hi = _span(code)
        return any(lo <= end and start <= hi for start, end in spans)

    done = []
    for name, new in ns.items():
        old = getattr(orig, name, None)
        if old is None:
            continue
        if isinstance(new, types.FunctionType) and touched(new):
            # wherever the package holds the shipped function (``from .blocks import resample``)
            for mod in list(sys.modules.values()):
                mname = getattr(mod, "__name__", "") or ""
                if mname.split(".")[0] in ("inference", "ppl", "semantics") and getattr(mod, name, None) is old:
                    monkeypatch.setattr(mod, name, new)
            done.append(name)
        elif isinstance(new, type) and isinstance(old, type):
            for attr, fn in vars(new).items():
                if isinstance(fn, types.FunctionType) and touched(fn):
                    monkeypatch.setattr(old, attr, fn)
                    done.append(f"{name}.{attr}")
    assert done, f"plant: no function of {file} covers the planted lines {spans}"
    # compiled programs cached by the drivers (inference._run.cache.PROGRAMS) hold the shipped
    # code: the twin starts from an empty cache, and its programs go with the test (the tables
    # are restored on undo, so no later test can reuse a program built from planted code)
    import weakref

    from inference._run.cache import PROGRAMS

    monkeypatch.setattr(PROGRAMS, "_weak", weakref.WeakKeyDictionary())
    monkeypatch.setattr(PROGRAMS, "_strong", {})
    return done
